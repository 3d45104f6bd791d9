"""``--strategy auto``: a short, budgeted ladder of recipes, chosen on labeled target-val clips.

The ladder, each rung with the run's model and input:

1. ``source_only``: fine-tune on the labeled source (and ``--target-labeled``) clips with the run's
   ``--augment``; ``source_only_plain``: the same without augmentation (only when ``--augment`` is
   not ``none``). Neither look wins everywhere: appearance augmentation carries across light,
   colour and background shifts, and costs accuracy on rain, blur, angle and codec shifts, where the
   plain model is better (benchmarks/adapt_shifts.py).
2. ``bn``, ``bn_plain``: each source-only model with BatchNorm statistics re-estimated on the target
   (free). ``pixel`` (only with ``--pixel fda|hist|gan``): the plain source-only recipe on the source
   clips translated to the target's look (edgevt.adapt.pixel), then BatchNorm re-estimated.
3. The *start*: the best of rungs 1-2 by the selection rule below (a pixel start keeps training on
   the translated source). From it:
   ``labeled`` (only with ``--target-labeled``): a short fine-tune on the source plus the few labeled
   target clips, in the start's look, then BatchNorm re-estimated on the target;
   ``selftrain``: self-training + information maximisation on the target with temporal
   consistency (two playback speeds); ``dann+selftrain``: the same with adversarial feature
   alignment. They get half the source-only epochs at a third of its learning rate; with
   ``--target-labeled`` (labels to learn the target's look from) selftrain and dann+selftrain get the
   full epochs and rate.

Selection with ``--target-val`` (n labeled clips): the one-standard-error rule. The best target-val
accuracy ``a`` is known only to within ``sqrt(a(1-a)/n)`` (5.6 points per clip with 18 clips), so
the winner is the most *preferred* candidate whose target-val accuracy is within one standard error
of the best. The preference (``PREFER``) puts ``bn_plain`` first: across 8 deployment shifts and the
development seeds 0-2 of benchmarks/adapt_shifts.py it closed 97% of the source-only -> oracle gap,
more than any trained rung, while picking the plain best-on-val candidate closed 60% (most of the
loss was val noise). A trained rung must beat it clearly to be chosen.
Without ``--target-val``: the best information-maximisation score on the unlabeled target clips
among candidates whose predictions did not collapse (the report says which criterion chose).
Never a test split. ``--rungs`` runs only some candidates (e.g. a recipe a benchmark proved best) and
``--budget`` scales every candidate's epochs.
"""
from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

from edgevt.adapt.config import AUTO_RUNGS, AdaptConfig, AdaptResult
from edgevt.errors import EdgevtError
from edgevt.fileio import atomic_write_text

LADDER = AUTO_RUNGS  # --rungs runs a subset (in this order)
# which candidate wins when several are within one standard error of the best on target-val
PREFER = ("bn_plain", "bn", "source_only_plain", "source_only", "pixel", "labeled", "selftrain", "dann+selftrain")
SOURCE_RUNGS = {"source_only": "bn", "source_only_plain": "bn_plain"}  # each source model -> its bn rung
PLAIN = ("source_only_plain", "bn_plain", "pixel")  # candidates trained without augmentation
# what each candidate is, in a line (reports quote it)
DESCRIBE = {
    "source_only": "trains on the labeled source clips (and any --target-labeled clips) with --augment",
    "source_only_plain": "the same without augmentation",
    "bn": "source_only with its BatchNorm statistics re-estimated on the unlabeled target clips (no training)",
    "bn_plain": "source_only_plain with its BatchNorm statistics re-estimated on the unlabeled target clips",
    "pixel": "the plain recipe on the source clips translated to the target's look (--pixel), then BatchNorm re-estimated",
    "labeled": "from the start, a short fine-tune on the source and the --target-labeled clips, then BatchNorm re-estimated",
    "selftrain": "from the start, self-training + information maximisation on the unlabeled target clips, "
                 "with temporal consistency (two playback speeds)",
    "dann+selftrain": "selftrain with adversarial feature alignment (DANN)",
}


def _source_base(cfg: AdaptConfig) -> AdaptConfig:
    return replace(cfg, strategy="finetune", self_train=0.0, im_weight=0.0, bn_adapt=False, pixel="none", rungs="all",
                   epochs=max(1, round(cfg.epochs * cfg.budget)))


def pixel_rung(cfg: AdaptConfig, translated: str) -> AdaptConfig:
    """The ``pixel`` candidate: plain source-only training on ``translated`` (the source clips in the
    target's look, edgevt.adapt.pixel.translate_source), then BatchNorm re-estimated on the target."""
    return replace(_source_base(cfg), source=translated, augment="none", bn_adapt=True,
                   out=str(Path(cfg.out) / "candidates" / "pixel"))


def _warm(cfg: AdaptConfig, ckpt: str, full: bool | None = None) -> AdaptConfig:
    """A rung that continues from ``ckpt``: half the epochs at a third of the rate, or the full
    schedule (``full``; by default when a few labeled target clips give the target's look to learn)."""
    base = _source_base(cfg)
    warm = replace(base, init=ckpt, model=None, weights="none", bn_source=False)  # ckpt has its statistics
    if bool(cfg.target_labeled) if full is None else full:
        return warm
    return replace(warm, epochs=max(1, round(cfg.epochs * cfg.budget / 2)), lr=cfg.lr / 3, schedule="constant")


def is_plain(start: str, cfg: AdaptConfig) -> bool:
    """Whether the start candidate was trained without augmentation (its look, for the labeled rung)."""
    return start in PLAIN or cfg.augment in (None, False, "none")


def ladder_configs(cfg: AdaptConfig, source_ckpt: str | None = None, plain: bool = False) -> dict[str, AdaptConfig]:
    """Without ``source_ckpt``: the source-only configs (rung 1). With it: the rungs that start from
    that model (rung 3); ``plain``: the start was trained without augmentation (the labeled rung keeps
    its look)."""
    root = Path(cfg.out) / "candidates"
    if source_ckpt is None:
        base = _source_base(cfg)
        configs = {"source_only": replace(base, out=str(root / "source_only"))}
        if cfg.augment not in (None, False, "none"):
            configs["source_only_plain"] = replace(base, augment="none", out=str(root / "source_only_plain"))
        return configs
    warm = _warm(cfg, source_ckpt)
    configs = {}
    if cfg.target_labeled:
        configs["labeled"] = replace(_warm(cfg, source_ckpt, full=False), bn_adapt=True,
                                     augment="none" if plain else cfg.augment, out=str(root / "labeled"))
    configs["selftrain"] = replace(warm, strategy="selftrain", self_train=None, im_weight=None,
                                   out=str(root / "selftrain"))
    configs["dann+selftrain"] = replace(warm, strategy="dann", self_train=1.0, im_weight=0.3,
                                        out=str(root / "dann_selftrain"))
    return configs


def bn_config(cfg: AdaptConfig, source_ckpt: str, name: str = "bn") -> AdaptConfig:
    """Rung 2: ``source_ckpt`` with its BatchNorm statistics re-estimated on the target clips."""
    return replace(_warm(cfg, source_ckpt), strategy="bn", epochs=1, out=str(Path(cfg.out) / "candidates" / name))


def one_se(accuracy: float, clips: int) -> float:
    """The standard error of an accuracy measured on ``clips`` clips (binomial)."""
    return math.sqrt(max(accuracy * (1 - accuracy), 0.0) / max(clips, 1))


def choose(candidates: dict[str, dict], prefer: tuple[str, ...] = PREFER, se: float = 1.0) -> tuple[str, str]:
    """(winner, criterion) from each candidate's report. With target-val everywhere: the most
    preferred (``prefer``, then the given order) candidate within ``se`` standard errors of the best
    target-val accuracy (``se=0, prefer=()``: plain best-on-val, ties to the earlier candidate);
    otherwise the best information-maximisation score among candidates that did not collapse (ties to
    the earlier candidate)."""
    with_val = {k: r["eval"]["target_val"] for k, r in candidates.items() if "target_val" in r["eval"]}
    if len(with_val) == len(candidates):
        best = max(v["accuracy"] for v in with_val.values())
        clips = min(v.get("clips") or 1 for v in with_val.values())
        margin = se * one_se(best, clips)
        order = [k for k in prefer if k in candidates] + [k for k in candidates if k not in prefer]
        winner = next(k for k in order if with_val[k]["accuracy"] >= best - margin - 1e-9)
        if not se:
            return winner, "target-val accuracy"
        return winner, (f"target-val accuracy, one-standard-error rule (best {100 * best:.1f}% on {clips} clips, "
                        f"{se:g} SE = {100 * margin:.1f} points; preferred order {', '.join(order)})")
    ok = {k: r["target_predictions"]["im_score"] for k, r in candidates.items()
          if r.get("target_predictions") and not r["target_predictions"]["collapsed"]}
    if not ok:
        first = next(iter(candidates))
        return first, f"every candidate collapsed on the target: kept {first}"
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
    results: dict[str, AdaptResult] = {}

    def run(name: str, sub: AdaptConfig) -> None:
        if console is not None:
            console.print(f"[bold]auto[/]: candidate {name}")
        results[name] = adapt(sub, feature_cache=feature_cache, console=console)

    wanted = cfg.auto_rungs
    sources = {k: c for k, c in ladder_configs(cfg).items() if k in wanted}
    if not sources:  # only source_only_plain asked for, with --augment none: the same model
        sources = {"source_only": ladder_configs(cfg)["source_only"]}
    for name, sub in sources.items():
        run(name, sub)
    for name in list(results):
        if SOURCE_RUNGS[name] in wanted:
            run(SOURCE_RUNGS[name], bn_config(cfg, results[name].checkpoint, SOURCE_RUNGS[name]))
    translated = None
    if cfg.pixel != "none" and "pixel" in wanted:
        from edgevt.adapt.pixel import translate_source

        translated = translate_source(cfg, console=console)
        run("pixel", pixel_rung(cfg, translated))
    start, start_criterion = choose({k: r.report for k, r in results.items()})
    from_start = cfg if start != "pixel" else replace(cfg, source=translated)
    for name, sub in ladder_configs(from_start, results[start].checkpoint, is_plain(start, cfg)).items():
        if name in wanted:
            run(name, sub)
    reports = {k: results[k].report for k in LADDER if k in results}
    winner, criterion = choose(reports)
    final = out / "model.pt"
    shutil.copyfile(results[winner].checkpoint, final)
    table = {k: {"target_val": r["eval"].get("target_val", {}).get("accuracy"),
                 "target_test": r["eval"].get("target_test", {}).get("accuracy"),
                 "source_test": r["eval"].get("source_test", {}).get("accuracy"),
                 "target_predictions": r.get("target_predictions"), "seconds": r.get("seconds_total"),
                 "out": results[k].out} for k, r in reports.items()}
    report = {**reports[winner], "strategy": "auto", "chosen": winner, "criterion": criterion,
              "start": start, "start_criterion": start_criterion, "candidates": table, "checkpoint": str(final)}
    atomic_write_text(out / "report.json", json.dumps(report, indent=1, default=str))
    lines = ["# edgevt adapt --strategy auto", "", f"Chosen: **{winner}** by {criterion}.", "",
             f"The trained rungs started from **{start}** (the best source-only or bn candidate "
             f"by {start_criterion}).", "",
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
