"""``--strategy auto``: a short, budgeted ladder of recipes, chosen on labeled target-val clips.

The ladder, each rung with the run's model, input and augmentation:

1. ``source_only``: fine-tune on the labeled source (and ``--target-labeled``) clips.
2. ``bn``: the source-only model with BatchNorm statistics re-estimated on the target (free).
3. ``selftrain``: from the source-only model, self-training + information maximisation on the
   target with temporal consistency (two playback speeds).
4. ``dann+selftrain``: the same with adversarial feature alignment.

Rungs 3-4 get half the source-only epochs. With ``--target-val`` the candidate with the best
target-val accuracy wins (ties go to the earlier, simpler rung); without it, the best
information-maximisation score on the unlabeled target clips among candidates whose predictions did
not collapse (the report says which criterion chose). Never a test split.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

from edgevt.adapt.config import AdaptConfig, AdaptResult
from edgevt.errors import EdgevtError
from edgevt.fileio import atomic_write_text

LADDER = ("source_only", "bn", "selftrain", "dann+selftrain")


def ladder_configs(cfg: AdaptConfig, source_ckpt: str | None = None) -> dict[str, AdaptConfig]:
    """The candidate configs (after the source-only rung, which the others start from)."""
    root = Path(cfg.out) / "candidates"
    half = max(1, round(cfg.epochs * cfg.budget / 2))
    base = replace(cfg, strategy="finetune", self_train=0.0, im_weight=0.0, bn_adapt=False,
                   epochs=max(1, round(cfg.epochs * cfg.budget)))
    if source_ckpt is None:
        return {"source_only": replace(base, out=str(root / "source_only"))}
    warm = replace(base, init=source_ckpt, model=None, weights="none", target_labeled=cfg.target_labeled,
                   epochs=half, lr=cfg.lr / 3, schedule="constant")
    return {
        "bn": replace(warm, strategy="bn", epochs=1, out=str(root / "bn")),
        "selftrain": replace(warm, strategy="selftrain", self_train=None, im_weight=None,
                             out=str(root / "selftrain")),
        "dann+selftrain": replace(warm, strategy="dann", self_train=1.0, im_weight=0.3, out=str(root / "dann_selftrain")),
    }


def choose(candidates: dict[str, dict]) -> tuple[str, str]:
    """(winner, criterion) from each candidate's report."""
    with_val = {k: r["eval"]["target_val"]["accuracy"] for k, r in candidates.items() if "target_val" in r["eval"]}
    if len(with_val) == len(candidates):
        best = max(with_val.values())
        return next(k for k in candidates if with_val[k] == best), "target-val accuracy"
    ok = {k: r["target_predictions"]["im_score"] for k, r in candidates.items()
          if r.get("target_predictions") and not r["target_predictions"]["collapsed"]}
    if not ok:
        return "source_only", "every candidate collapsed on the target: kept source-only"
    best = max(ok.values())
    return next(k for k in candidates if ok.get(k) == best), \
        "information-maximisation score on the unlabeled target clips (no --target-val given)"


def adapt_auto(cfg: AdaptConfig, feature_cache=None, console=None) -> AdaptResult:
    from edgevt.adapt.api import adapt

    if cfg.init is not None:
        raise EdgevtError("--strategy auto trains its own source-only model; drop --init (or pick one strategy)")
    if cfg.target_val is None and console is not None:
        console.print("[yellow]--strategy auto without --target-val: choosing by an unsupervised score "
                      "(information maximisation); label a few target clips for a reliable choice[/]")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    reports: dict[str, dict] = {}
    results: dict[str, AdaptResult] = {}
    first = ladder_configs(cfg)["source_only"]
    results["source_only"] = adapt(first, feature_cache=feature_cache, console=console)
    reports["source_only"] = results["source_only"].report
    for name, sub in ladder_configs(cfg, results["source_only"].checkpoint).items():
        if console is not None:
            console.print(f"[bold]auto[/]: candidate {name}")
        results[name] = adapt(sub, feature_cache=feature_cache, console=console)
        reports[name] = results[name].report
    winner, criterion = choose(reports)
    final = out / "model.pt"
    shutil.copyfile(results[winner].checkpoint, final)
    table = {k: {"target_val": r["eval"].get("target_val", {}).get("accuracy"),
                 "target_test": r["eval"].get("target_test", {}).get("accuracy"),
                 "source_test": r["eval"].get("source_test", {}).get("accuracy"),
                 "target_predictions": r.get("target_predictions"), "seconds": r.get("seconds_total"),
                 "out": results[k].out} for k, r in reports.items()}
    report = {**reports[winner], "strategy": "auto", "chosen": winner, "criterion": criterion,
              "candidates": table, "checkpoint": str(final)}
    atomic_write_text(out / "report.json", json.dumps(report, indent=1, default=str))
    lines = ["# edgevt adapt --strategy auto", "", f"Chosen: **{winner}** by {criterion}.", "",
             "| candidate | target-val | target-test | source-test | largest target class | IM score |",
             "|---|---:|---:|---:|---:|---:|"]

    def pct(v):
        return "—" if v is None else f"{100 * v:.1f}"

    for k, r in table.items():
        tp = r["target_predictions"] or {}
        lines.append(f"| {k}{' (chosen)' if k == winner else ''} | {pct(r['target_val'])} | {pct(r['target_test'])} "
                     f"| {pct(r['source_test'])} | {pct(tp.get('largest_class_share'))} | {tp.get('im_score', '—')} |")
    lines += ["", "target-test is reported, never used to choose."]
    atomic_write_text(out / "report.md", "\n".join(lines) + "\n")
    if console is not None:
        console.print(f"auto: chose {winner} by {criterion}; wrote {final} and {out / 'report.md'}")
    return AdaptResult(checkpoint=str(final), report=report, out=str(out))
