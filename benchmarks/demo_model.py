"""Which model should ``edgevt demo`` adapt, and does the pretrained Lite0 prefix help?

Every variant runs the demo's adaptation step exactly (the config comes from ``edgevt.demo``'s own
``_adapt_config`` with the ``quick`` DemoSize, only model / weights / mode / seed swapped):
source-only training on labeled source clips, then DANN starting from the source-only checkpoint
with the unlabeled target-adapt clips. Data: the demo's quick MotionDigits-DA (generated once,
seed 0) with target-train split into target-adapt / target-val by ``edgevt.demo.split_target_train``.

Variants (``--variants``, comma list):
  s4_pretrained     tsm_efficientnet_lite0_s4, ImageNet weights, mode linear (the demo default:
                    stem + stages 1-2 frozen and cached, the two new TSM blocks and head trained)
  s4_pretrained_full  the same with ImageNet weights as the start, mode full (the prefix fine-tuned too,
                    at the backbone learning rate; nothing cached)
  s4_scratch        the same architecture, random init, mode full (everything trained)
  lite0_pretrained  tsm_efficientnet_lite0 (the whole Lite0), ImageNet weights, mode linear
  tinycnn_scratch   tsm_tinycnn, random init, mode full (the demo's previous model)

Per variant x seed: source-test and target-test top-1 (the adapt report), target-val top-1
(``edgevt.eval.evaluate``, PyTorch) and wall seconds of each run; then the demo's selection rule
(higher target-val top-1, a tie keeps source-only) and what the picked model scores on target-test.
Writes benchmarks/results/demo_model[_quick].{md,json}. A finished run whose config is unchanged is
reused (``--fresh`` reruns everything).

    python benchmarks/demo_model.py --quick --variants s4_pretrained,tinycnn_scratch   # plumbing, minutes
    python benchmarks/demo_model.py                                                   # 4 variants x 3 seeds
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import write_results  # noqa: E402

from edgevt.adapt import adapt  # noqa: E402
from edgevt.adapt.features import FeatureCache  # noqa: E402
from edgevt.data.synth import SynthConfig, generate  # noqa: E402
from edgevt.demo import SIZES, STRATEGIES, DemoContext, DemoSize, _adapt_config, split_target_train  # noqa: E402
from edgevt.eval.evaluate import evaluate  # noqa: E402

VARIANTS = {
    "s4_pretrained": dict(model="tsm_efficientnet_lite0_s4", weights="pretrained", adapt_mode="linear"),
    "s4_pretrained_full": dict(model="tsm_efficientnet_lite0_s4", weights="pretrained", adapt_mode="full"),
    "s4_scratch": dict(model="tsm_efficientnet_lite0_s4", weights="none", adapt_mode="full"),
    "lite0_pretrained": dict(model="tsm_efficientnet_lite0", weights="pretrained", adapt_mode="linear"),
    "tinycnn_scratch": dict(model="tsm_tinycnn", weights="none", adapt_mode="full"),
}
LABEL = {"source_only": "source-only", "dann": "DANN"}


@dataclass
class _RunContext(DemoContext):
    """The demo's context with the data folder shared by every run (the demo keeps it under ``out``),
    so that ``_adapt_config`` builds the demo's config with this run's models folder."""

    data_root: Path | None = None

    @property
    def data(self) -> Path:
        return self.data_root


def make_data(root: Path, size: DemoSize) -> dict:
    """The demo's quick data (as ``demo.step_data``, without the stream video), generated once."""
    cfg = SynthConfig(size=size.frame_size, frames=size.video_frames, seed=size.seed,
                      per_class={"source_train": size.train_per_class, "source_test": size.test_per_class,
                                 "target_train": size.train_per_class, "target_test": size.test_per_class})
    meta_path = root / "meta.json"
    want = json.loads(json.dumps(asdict(cfg)))
    if meta_path.exists() and json.loads(meta_path.read_text()).get("config") == want:
        meta = json.loads(meta_path.read_text())
    else:
        meta = generate(root, cfg)
    split_target_train(root, seed=size.seed)
    return {"root": str(root), "classes": meta["classes"], "splits": meta["splits"],
            "target_val_clips": len(_lines(root / "target_val.txt")),
            "target_adapt_clips": len(_lines(root / "target_adapt.txt"))}


def _lines(path: Path) -> list[str]:
    return [ln for ln in path.read_text().splitlines() if ln.strip()]


def run_one(ctx: _RunContext, strategy: str, cache: FeatureCache, threads: int, may_reuse: bool,
            console=None) -> dict:
    """One adapt run of the demo recipe plus its target-val top-1; reuses a finished run with the same
    config on the same data (regenerated data keeps its paths, so its synth config is part of the key)."""
    cfg = _adapt_config(ctx, strategy)
    key = {**json.loads(json.dumps(cfg.to_dict(), default=str)),
           "data": json.loads((ctx.data / "meta.json").read_text())["config"]}
    record = Path(cfg.out) / "bench_run.json"
    if may_reuse and record.exists() and (Path(cfg.out) / "model.pt").exists():
        rec = json.loads(record.read_text())
        if rec.get("config") == key:
            return {**rec, "reused": True}
    t0 = time.perf_counter()
    res = adapt(cfg, feature_cache=cache, console=console)
    seconds = time.perf_counter() - t0
    ev = res.report.get("eval", {})
    val = evaluate(res.checkpoint, str(ctx.data / "target_val.txt"), backend="torch", threads=threads)
    rec = {"config": key, "checkpoint": res.checkpoint,
           "seconds": round(seconds, 1), "source_test": 100 * ev["source_test"]["accuracy"],
           "target_test": 100 * ev["target_test"]["accuracy"], "target_val": val.top1,
           "feature_cache": res.report.get("feature_cache")}
    record.write_text(json.dumps(rec, indent=1))
    return {**rec, "reused": False}


def mean_std(values) -> tuple[float, float]:
    a = np.array([v for v in values if v is not None], dtype=float)
    return (float(a.mean()), float(a.std(ddof=0))) if len(a) else (float("nan"), float("nan"))


def fmt(values, digits: int = 1) -> str:
    m, s = mean_std(values)
    return f"{m:.{digits}f} ± {s:.{digits}f}" if len(values) > 1 else f"{m:.{digits}f}"


def summarize(runs: dict) -> dict:
    """Per variant: the lists over seeds that the tables show."""
    out = {}
    for variant, by_seed in runs.items():
        seeds = sorted(by_seed)
        col = {f"{k}_{m}": [by_seed[s][k][m] for s in seeds]
               for k in STRATEGIES for m in ("source_test", "target_test", "target_val", "seconds")}
        col["dann_minus_source_only"] = [by_seed[s]["dann"]["target_test"] - by_seed[s]["source_only"]["target_test"]
                                         for s in seeds]
        col["picked_target_test"] = [by_seed[s][by_seed[s]["picked"]]["target_test"] for s in seeds]
        col["picked"] = [by_seed[s]["picked"] for s in seeds]
        out[variant] = col
    return out


def markdown(results: dict) -> str:
    c, summ, runs = results["config"], results["summary"], results["runs"]
    splits = ", ".join(f"{n} {k.replace('_', '-')}" for k, n in c["data"]["splits"].items())
    L = ["# Which model should the demo adapt?" + (" (--quick: plumbing only)" if c["quick"] else ""), "",
         f"The demo's adaptation step on its quick MotionDigits-DA data ({splits} clips; target-train split "
         f"into {c['data']['target_adapt_clips']} target-adapt / {c['data']['target_val_clips']} target-val clips). "
         f"Recipe: T={c['num_frames']}, stride {c['frame_stride']}, {c['frame_size']}x{c['frame_size']}, batch "
         f"{c['batch_size']}; source-only {c['epochs']} epochs (lr {c['lr']}, cosine), then DANN from the source-only "
         f"checkpoint {c['dann_epochs']} epochs (lr {c['dann_lr']}, schedule dann) with unlabeled target-adapt clips. "
         f"Seeds {', '.join(map(str, c['seeds']))}; top-1 in percent, mean ± std over seeds; {c['threads']} torch "
         "threads.", ""]
    L += ["| variant | model (weights, mode) | source-only target-test | DANN target-test | DANN - source-only "
          "| source-only source-test | picked by target-val: target-test | seconds per run (source-only + DANN) |",
          "|---|---|---|---|---|---|---|---|"]
    for v, s in summ.items():
        spec = VARIANTS[v]
        L.append(f"| {v} | {spec['model']} ({spec['weights']}, {spec['adapt_mode']}) | {fmt(s['source_only_target_test'])} "
                 f"| {fmt(s['dann_target_test'])} | {fmt(s['dann_minus_source_only'])} "
                 f"| {fmt(s['source_only_source_test'])} | {fmt(s['picked_target_test'])} "
                 f"| {fmt(s['source_only_seconds'], 0)} + {fmt(s['dann_seconds'], 0)} |")
    L += ["", "Seconds: wall time of each `adapt` run on a shared CPU; a pretrained (linear) variant's first run "
          "also encodes the frozen prefix's features once (shared by its later runs: "
          + (", ".join(f"{v} {t:.0f} s" for v, t in results["feature_cache_seconds"].items() if t > 0) or "none")
          + ").", ""]
    L += ["## Per seed", "",
          "| variant | seed | source-only source / val / test | DANN source / val / test | picked (val rule) "
          "| picked target-test | seconds (source-only, DANN) |", "|---|---|---|---|---|---|---|"]
    for v, by_seed in runs.items():
        for seed in sorted(by_seed, key=int):
            r = by_seed[seed]
            so, da = r["source_only"], r["dann"]
            reused = " (reused)" if so.get("reused") or da.get("reused") else ""
            L.append(f"| {v} | {seed} | {so['source_test']:.1f} / {so['target_val']:.1f} / {so['target_test']:.1f} "
                     f"| {da['source_test']:.1f} / {da['target_val']:.1f} / {da['target_test']:.1f} "
                     f"| {LABEL[r['picked']]} | {r[r['picked']]['target_test']:.1f} "
                     f"| {so['seconds']:.0f}, {da['seconds']:.0f}{reused} |")
    L += ["", "Selection rule (the demo's): the run with the higher top-1 on the labeled target-val clips (held out "
          "of target-train); a tie keeps source-only. Target-test is never used to choose.", ""]
    L += verdict(summ)
    return "\n".join(L)


def verdict(summ: dict) -> list[str]:
    """Plain statements computed from the table (no judgement beyond the numbers)."""
    if not summ:
        return []
    ranked = sorted(summ, key=lambda v: -mean_std(summ[v]["picked_target_test"])[0])
    L = ["## Reading", "",
         "- Target-test of the model the demo would export (val rule), best first: "
         + ", ".join(f"{v} {fmt(summ[v]['picked_target_test'])}" for v in ranked) + "."]
    if "s4_pretrained" in summ and "s4_scratch" in summ:
        p, s = summ["s4_pretrained"], summ["s4_scratch"]
        diffs = [a - b for a, b in zip(p["picked_target_test"], s["picked_target_test"])]
        L.append(f"- Pretrained prefix vs the same architecture from scratch (picked model, target-test, per seed "
                 f"pretrained - scratch): {', '.join(f'{d:+.1f}' for d in diffs)} (mean {mean_std(diffs)[0]:+.1f}); "
                 f"source-only target-test {fmt(p['source_only_target_test'])} vs {fmt(s['source_only_target_test'])}.")
    return L + [""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma list of {', '.join(VARIANTS)}")
    ap.add_argument("--seeds", default=None, help="comma list of seeds (default 0,1,2; --quick 0)")
    ap.add_argument("--quick", action="store_true", help="1 seed, 4 + 2 epochs: checks the plumbing, not the models")
    ap.add_argument("--epochs", type=int, default=None, help="source-only epochs (default: the demo's; quick 4)")
    ap.add_argument("--dann-epochs", type=int, default=None, help="DANN epochs (default: the demo's; quick 2)")
    ap.add_argument("--data", type=Path, default=Path("/tmp/edgevt_bench_demo_model"),
                    help="work folder: data/ (generated once) and runs/")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--fresh", action="store_true", help="rerun runs that finished before with the same config")
    ap.add_argument("--verbose", action="store_true", help="show each adapt run's own log (stderr)")
    ap.add_argument("--name", default=None, help="results name (default demo_model, demo_model_quick with --quick)")
    args = ap.parse_args()
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        ap.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    seeds = [int(s) for s in (args.seeds or ("0" if args.quick else "0,1,2")).split(",")]
    torch.set_num_threads(args.threads)

    # adapt's own log repeats what the per-run line below says; --verbose shows it (warnings included)
    console = None if args.verbose else Console(stderr=True, quiet=True)
    base = SIZES["quick"]
    epochs = args.epochs or (4 if args.quick else base.epochs)
    dann_epochs = args.dann_epochs or (2 if args.quick else base.dann_epochs)
    base = replace(base, epochs=epochs, dann_epochs=dann_epochs)
    name = args.name or ("demo_model_quick" if args.quick else "demo_model")
    data_root = args.data / "data"
    t_start = time.time()
    print(f"data: {data_root}", flush=True)
    data_info = make_data(data_root, base)

    results: dict = {"config": {"quick": args.quick, "variants": {v: VARIANTS[v] for v in variants}, "seeds": seeds,
                                "threads": args.threads, "data": data_info, "command": "python " + " ".join(sys.argv),
                                **{k: getattr(base, k) for k in ("num_frames", "frame_stride", "frame_size",
                                                                 "batch_size", "epochs", "dann_epochs", "lr",
                                                                 "dann_lr")}},
                     "runs": {}, "summary": {}, "feature_cache_seconds": {}}
    for v in variants:
        cache = FeatureCache()  # per variant: its frozen prefix is encoded once for every seed and strategy
        results["runs"][v] = {}
        for seed in seeds:
            size = replace(base, seed=seed, **VARIANTS[v])
            ctx = _RunContext(args.data / "runs" / f"{v}_s{seed}", size, threads=args.threads, data_root=data_root)
            rec: dict = {}
            so_reused = False
            for strategy in STRATEGIES:
                # a rerun source-only model means its DANN must rerun too (same config, new init)
                r = run_one(ctx, strategy, cache, args.threads, may_reuse=not args.fresh and
                            (strategy == "source_only" or so_reused), console=console)
                so_reused = so_reused or (strategy == "source_only" and r["reused"])
                rec[strategy] = r
                print(f"  {v:<16} seed {seed} {LABEL[strategy]:<11}: source-test {r['source_test']:5.1f}  "
                      f"target-val {r['target_val']:5.1f}  target-test {r['target_test']:5.1f}  "
                      f"({r['seconds']:.0f} s{', reused' if r['reused'] else ''})", flush=True)
            # the demo's rule (demo.step_adapt): higher target-val, a tie keeps source-only
            rec["picked"] = max(STRATEGIES, key=lambda k: (rec[k]["target_val"], k == "source_only"))
            print(f"  {v:<16} seed {seed} picked {LABEL[rec['picked']]}: target-test "
                  f"{rec[rec['picked']]['target_test']:.1f}", flush=True)
            results["runs"][v][seed] = rec
        results["feature_cache_seconds"][v] = round(cache.seconds, 1)
        results["summary"] = summarize(results["runs"])
        results["seconds"] = round(time.time() - t_start, 1)
        path = write_results(name, markdown(results), results)  # after each variant: partial results survive
    print(path.read_text(), flush=True)


if __name__ == "__main__":
    main()
