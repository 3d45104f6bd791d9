"""How accurate is the INT8 benchmark's lite0 on its target camera, and why?

The INT8 benchmark (``benchmarks/int8_cpu.py``) adapts EfficientNet-Lite0 at 224x224 on frame
differences with ``LITE0_RECIPE`` (``edgevt adapt --strategy auto --rungs source_only,bn``: the
bundled ImageNet backbone, its last 6 of 9 stages + the head trained on cached frozen features,
chosen on target-val) on its own MotionDigits-DA set (``--per-class`` source and target-train clips
per class, 64x64 videos upscaled). This script reports, per architecture (``--archs``):

- auto's two candidates (source-only, bn) on target-val / target-test / source-test, and auto's
  choice;
- the share of target-test errors that are the *partner* class (the same motion reversed: right <->
  left, up <-> down, cw <-> ccw);
- the polarity probe: the chosen model on source-test clips as they are and inverted (255 - pixel:
  dark ink on a white background). A model that reads the direction of motion from the sign of a
  single frame difference predicts the partner class on inverted clips, and then cannot work on a
  target whose ink is bright on dark scenes and dark on bright ones (MotionDigits-DA's photo
  target: ``edgevt.data.synth.compose_target``);
- ``tsm_inv``: TSM trained on the source clips each also inverted (see ``ARCHS``), so that the
  polarity shortcut is gone from the source; ``tsm_invaug``: the same with ``--augment invert``
  (each clip inverted on the fly with probability 0.5); ``tsm_so``: tsm_inv's plain baseline, the same
  TSM source-only without the copies; ``tsm_inv_bn``: tsm_inv with ``--bn-source`` and the bn rung
  (the demo's recipe, AdaBN); ``tsm_inv_prog``: tsm_inv trained at 112x112 for 12 epochs, then
  finished at 224 for 2 (progressive resizing; its first stage is reported as a row too);
  ``edge``: the TSN on ``--input edgediff`` (the differences of each frame's local contrast, the same
  for a clip and its negative: the polarity shortcut removed from the input itself), source-only;
  ``tsm_edge``: the same input on the TSM (``tsm_so``'s recipe otherwise);
- with ``--oracle``: the same model, input and schedule trained on the labeled target-train clips
  (``--strategy finetune --source target_train.txt``), the most adaptation could reach.

``tsn`` is ``tsn_efficientnet_lite0`` (per-frame encoder, average over time); ``tsm`` is
``tsm_efficientnet_lite0`` (the same backbone with TSM's temporal shifts in its residual blocks,
which let it follow where the moving glyph is from frame to frame, whatever its polarity).
Reuses what ``int8_cpu.py`` made under ``--work`` (same folders).

    python benchmarks/lite0_target.py --work /tmp/int8_all [--archs tsn,tsm,tsm_inv] [--seeds 0,1,2] [--oracle] [--no-train]

Writes benchmarks/results/<--name>.{md,json} (default lite0_target).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import fmt_mean_std, write_results  # noqa: E402
from int8_cpu import LITE0_RECIPE, LITE0_VARIANTS, PROGRESSIVE, adapted_lite0, finish_config, inverted_source  # noqa: E402

# name -> (architecture, what changes from LITE0_RECIPE): int8_cpu.LITE0_VARIANTS (tsm_inv: TSM on the
# source clips each also inverted, so the ink's polarity no longer predicts the direction)
ARCHS = {k.replace("lite0_", "") if k != "lite0" else "tsn": v for k, v in LITE0_VARIANTS.items()}


def partner_share(confusion: list, labels: list[str]) -> float | None:
    """Of the off-diagonal (wrong) predictions, the share that is the true class's partner."""
    from edgevt.data.synth import PARTNER

    c = np.asarray(confusion)
    wrong = c.sum() - np.trace(c)
    if not wrong:
        return None
    part = sum(c[i, labels.index(PARTNER[n])] for i, n in enumerate(labels) if PARTNER.get(n) in labels)
    return float(part / wrong)


def polarity_probe(ckpt: Path, data: Path) -> dict:
    """The model on source-test clips as they are and inverted: share of true and partner predictions."""
    import torch

    from edgevt.adapt.data import collate, open_labeled
    from edgevt.adapt.features import ClipNet
    from edgevt.data.datasets import LabelMap
    from edgevt.data.synth import PARTNER
    from edgevt.data.transforms import PolarityInvert
    from edgevt.models.checkpoint import model_from_checkpoint

    invert, rng = PolarityInvert(p=1.0), np.random.default_rng(0)  # the --augment invert transform, always on
    model, spec = model_from_checkpoint(ckpt)
    ds = open_labeled(str(data / "source_test.txt"), spec, LabelMap(spec.labels), train=False, seed=0,
                      what="source-test")
    net = ClipNet(model, spec).eval()
    partner = torch.tensor([spec.labels.index(PARTNER[n]) for n in spec.labels])
    out = {}
    with torch.no_grad():
        for name, f in (("as_is", lambda x: x), ("inverted", lambda x: invert(x, rng))):
            true = part = n = 0
            for i in range(0, len(ds), 16):
                x, y = collate(ds, range(i, min(i + 16, len(ds))), "cpu")
                p = net(f(x)).argmax(1)
                true += int((p == y).sum())
                part += int((p == partner[y]).sum())
                n += len(y)
            out[name] = {"true": true / n, "partner": part / n, "clips": n}
    return out


def oracle(data: Path, out: Path, arch: str, size: int, seed: int, change: dict | None = None) -> dict:
    """The same model, input and schedule (``change``: the variant's, e.g. its inverted copies, epochs,
    augmentation) trained on the labeled target-train clips."""
    from edgevt.adapt import AdaptConfig, adapt

    change = dict(change or {})
    invert = change.pop("invert", False)
    change.pop("rungs", None)  # a plain fine-tune, no auto ladder
    progressive = {k: change.pop(k) for k in PROGRESSIVE if k in change}
    if not (out / "report.json").exists():
        recipe = {k: v for k, v in LITE0_RECIPE.items() if k not in ("strategy", "rungs", "model")}
        source = inverted_source(data, "target_train") if invert else data / "target_train.txt"
        cfg = AdaptConfig(source=str(source), target_test=str(data / "target_test.txt"),
                          source_test=str(data / "source_test.txt"), out=str(out), size=size, seed=seed,
                          strategy="finetune", model=arch, **{**recipe, **change})
        if progressive:  # the same two stages as the variant: at train_size, then finished at size
            t = progressive["train_size"]
            small = Path(f"{out}_at{t}")
            if not (small / "report.json").exists():
                print(f"training the oracle at {t}x{t} into {small}", flush=True)
                adapt(replace(cfg, size=t, out=str(small)))
            cfg = finish_config(cfg, small / "model.pt", **progressive)
        print(f"training the oracle into {out}", flush=True)
        adapt(cfg)
    rep = json.loads((out / "report.json").read_text())
    return {"target_test": rep["eval"]["target_test"]["accuracy"],
            "source_test": (rep["eval"].get("source_test") or {}).get("accuracy"),
            "train_acc": rep["train"]["history"][-1]["acc"]}


def describe(change: dict) -> str:
    """A row's name suffix: what the variant changes from LITE0_RECIPE."""
    if not change:
        return ""
    rest = {k: v for k, v in change.items() if k != "invert"}
    head = " + each source clip also inverted (copies)" if change.get("invert") else " +"
    return head + (", " if change.get("invert") and rest else " ") + ", ".join(f"{k}={v}" for k, v in rest.items())


def pct(v) -> str:
    return "—" if v is None else f"{100 * v:.1f}"


def mean_std(xs: list) -> str:
    """'mean ± std' in percent (sample std, n-1) over the seeds that have a value."""
    return fmt_mean_std([x for x in xs if x is not None], ddof=1)


def chosen_candidate(r: dict) -> dict:
    """auto's choice, or (auto unfinished) the first finished candidate."""
    return r["candidates"][r["chosen"]] if r["chosen"] else next(iter(r["candidates"].values()))


def markdown(res: dict) -> str:
    seeds = res["seeds"]
    lines = [
        "# lite0 (EfficientNet-Lite0, 224x224, frame differences) on its target camera",
        "",
        f"Recipe (`benchmarks/int8_cpu.py` LITE0_RECIPE; a row's name says what it changes): "
        f"`{json.dumps({k: v for k, v in LITE0_RECIPE.items() if k != 'model'})}`; {res['per_class']} source and "
        f"target-train clips per class; seeds {', '.join(map(str, seeds))} (each seed its own generated data set "
        f"and training){' (one seed: no spread)' if len(seeds) == 1 else ''}. Chance is 16.7%. "
        "Target-test: 60 clips; target-val: 180 clips (auto chooses on it).",
        "",
    ]
    if len(seeds) > 1:
        lines += ["Over the seeds (mean ± std; the chosen candidate; the oracle: the same model, input and schedule "
                  "trained on the labeled target-train clips):", "",
                  "| model | seeds | target-val | target-test | source-test | inverted source-test: true | "
                  "oracle target-test (seeds) |", "|---|---|---:|---:|---:|---:|---:|"]
        for key in res["archs"]:
            runs = [res["runs"][f"{key}_s{sd}"] for sd in seeds]
            ch = [chosen_candidate(r) for r in runs]
            orc = [r["oracle"]["target_test"] for r in runs if r.get("oracle")]
            lines.append(f"| {runs[0]['arch'] + describe(runs[0]['change'])} | {len(runs)} "
                         f"| {mean_std([c['target_val'] for c in ch])} | {mean_std([c['target_test'] for c in ch])} "
                         f"| {mean_std([c['source_test'] for c in ch])} "
                         f"| {mean_std([r['polarity']['inverted']['true'] for r in runs])} "
                         f"| {mean_std(orc)} ({len(orc)}) |")
        lines.append("")
    lines += ["| model | seed | candidate | target-val | target-test | source-test | target-test errors that are the partner class |",
              "|---|---|---|---:|---:|---:|---:|"]
    for r in res["runs"].values():
        name = r["arch"] + describe(r["change"])
        for c, v in r["candidates"].items():
            chosen = (" (auto's choice)" if r.get("auto", True) else " (the delivered model)") if c == r["chosen"] else ""
            chosen += "" if r["auto_finished"] else " (auto did not finish: finished candidates only)"
            collapsed = ", predictions collapsed" if v["collapsed"] else ""
            lines.append(f"| {name} | {r['seed']} | {c}{chosen}{collapsed} | {pct(v['target_val'])} | {pct(v['target_test'])} "
                         f"| {pct(v['source_test'])} | {pct(v['partner_share'])}% |")
        if r.get("oracle"):
            o = r["oracle"]
            lines.append(f"| {name} | {r['seed']} | oracle (target-train labels; train acc {pct(o['train_acc'])}) | — "
                         f"| {pct(o['target_test'])} | {pct(o['source_test'])} | |")
    lines += ["", "Polarity probe (auto's choice, or the finished candidate, on source-test clips, as they are and inverted: 255 - pixel):", "",
              "| model | seed | as is: true / partner class | inverted: true / partner class |", "|---|---|---:|---:|"]
    for r in res["runs"].values():
        p = r["polarity"]
        lines.append(f"| {r['key']}: {r['arch']} | {r['seed']} | {pct(p['as_is']['true'])} / {pct(p['as_is']['partner'])} "
                     f"| {pct(p['inverted']['true'])} / {pct(p['inverted']['partner'])} |")
    if res.get("demo_polarity"):
        p = res["demo_polarity"]
        lines.append(f"| the demo's model (tsm_tinycnn from scratch, 64x64, its own data) | — | "
                     f"{pct(p['as_is']['true'])} / {pct(p['as_is']['partner'])} "
                     f"| {pct(p['inverted']['true'])} / {pct(p['inverted']['partner'])} |")
    lines += ["", f"Command: `{res['command']}`"]
    return "\n".join(lines)


def run_one(args, key: str, seed: int) -> dict:
    """One architecture and seed: its candidates, the polarity probe and (``--oracle``) its oracle."""
    t0 = time.perf_counter()
    arch, change = ARCHS[key]
    ckpt, _, data = adapted_lite0(args.work, args.size, args.per_class, seed=seed, arch=arch,
                                  train=not args.no_train, **change)
    done = (ckpt.parent / "report.json").exists()
    # an auto run that did not finish (--no-train, or killed) still has its finished candidates
    reports = {d.name: json.loads((d / "report.json").read_text())
               for d in sorted((ckpt.parent / "candidates").glob("*")) if (d / "report.json").exists()}
    auto = bool(reports)
    if done and not reports:  # one plain run (a progressive variant's finish): its own candidate
        rep = json.loads((ckpt.parent / "report.json").read_text())
        reports = {f"source-only, finished at {args.size}" if "train_size" in change else rep["strategy"]: rep}
    first = {}
    if "train_size" in change:  # the progressive variant's first stage, as it was before the finish
        t = change["train_size"]
        small, _, _ = adapted_lite0(args.work, t, args.per_class, seed=seed, arch=arch, train=False,
                                    **{k: v for k, v in change.items() if k not in PROGRESSIVE})
        if (small.parent / "report.json").exists():
            rep = json.loads((small.parent / "report.json").read_text())
            first = {f"first stage at {t}x{t}, before the finish ({rep['chosen']})":
                     json.loads((small.parent / "candidates" / rep["chosen"] / "report.json").read_text())}
    if not reports:
        raise SystemExit(f"{ckpt.parent}: no finished candidate; run without --no-train")
    chosen = json.loads((ckpt.parent / "report.json").read_text()).get("chosen", next(iter(reports))) if done else None
    cands = {}
    for name, crep in {**first, **reports}.items():
        ev, labels = crep["eval"], crep["labels"]
        cands[name] = {"target_val": ev["target_val"]["accuracy"], "target_test": ev["target_test"]["accuracy"],
                       "source_test": ev["source_test"]["accuracy"],
                       "collapsed": bool((crep.get("target_predictions") or {}).get("collapsed")),
                       "partner_share": partner_share(ev["target_test"]["confusion"], labels),
                       "target_test_confusion": ev["target_test"]["confusion"]}
    probe = ckpt if done else ckpt.parent / "candidates" / next(iter(reports)) / "model.pt"
    r = {"key": key, "seed": seed, "arch": arch, "change": dict(change), "checkpoint": str(probe),
         "auto": auto, "auto_finished": done, "chosen": chosen, "labels": labels, "candidates": cands,
         "polarity": polarity_probe(probe, data)}
    folder = args.work / f"lite0_{key}_oracle_{args.size}_{args.per_class}_s{seed}"
    if args.oracle or (folder / "report.json").exists():  # an oracle trained before is reported too
        if args.oracle and args.no_train and not (folder / "report.json").exists():
            raise SystemExit(f"{folder}: no oracle trained; run without --no-train")
        r["oracle"] = oracle(data, folder, arch, args.size, seed, change)
    r["seconds"] = round(time.perf_counter() - t0, 1)
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True, help="int8_cpu.py's --work folder (models are reused)")
    ap.add_argument("--archs", default="tsn,tsm", help="comma-separated: " + ", ".join(ARCHS))
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--per-class", type=int, default=60)
    ap.add_argument("--seeds", default="0", help="comma-separated seeds (each its own data set and training)")
    ap.add_argument("--no-train", action="store_true",
                    help="report what the --work folders hold (finished candidates, oracles) without training")
    ap.add_argument("--oracle", action="store_true",
                    help="also train each model's target-trained oracle (slow); oracles already trained are always reported")
    ap.add_argument("--demo", type=Path, default=None,
                    help="also run the polarity probe on this demo folder's adapted model (models/auto/model.pt)")
    ap.add_argument("--name", default="lite0_target")
    args = ap.parse_args()
    try:
        seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    except ValueError:
        raise SystemExit(f"--seeds {args.seeds!r}: give comma-separated integers, e.g. 0,1,2") from None
    keys = [a.strip() for a in args.archs.split(",") if a.strip()]
    for key in keys:
        if key not in ARCHS:
            raise SystemExit(f"unknown --archs entry {key!r}; use {', '.join(ARCHS)}")
    res: dict = {"per_class": args.per_class, "size": args.size, "seeds": seeds, "archs": keys,
                 "command": "python benchmarks/lite0_target.py " + " ".join(sys.argv[1:]), "runs": {}}
    for key in keys:
        for seed in seeds:
            r = run_one(args, key, seed)
            res["runs"][f"{key}_s{seed}"] = r
            print(f"{r['arch']} seed {seed}: {json.dumps({k: v for k, v in r.items() if k != 'candidates'})}", flush=True)
    if args.demo is not None:
        ckpt = args.demo / "models" / "auto" / "model.pt"
        if not ckpt.exists():
            raise SystemExit(f"{ckpt}: no adapted demo model (run `edgevt demo --out {args.demo}` first)")
        res["demo_polarity"] = {"checkpoint": str(ckpt), **polarity_probe(ckpt, args.demo / "data")}
    path = write_results(args.name, markdown(res), res)
    print(path.read_text())


if __name__ == "__main__":
    main()
