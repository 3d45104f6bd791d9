"""The demo's model and recipe over seeds, with the same model's target-trained oracle; and whether a
pretrained backbone beats training from scratch when the source is realistic.

Section A (the numbers behind README's "What the demo's model reaches"): at the demo's quick size
(``edgevt.demo.SIZES["quick"]``: its frame size, clips per class and epochs; the default photo
shift in the ``cameras`` split), for each seed: the demo's own data and adapt steps
(``edgevt.demo.run_demo(..., until="adapt")``: ``--strategy auto`` over the demo's rungs, chosen on
target-val), the same model and input trained on the labeled target-train clips (the oracle, with
its train accuracy), and the chosen checkpoint streamed over the demo's target stream video (the
share of decisions that match the ground truth). Every run goes through the demo's run cache
(``edgevt.demo.cached_adapt``/``cached_data`` under ``--work``): a rerun reuses what is still valid.

Section B: a realistic source (``--source-style photo``: glyphs over daytime photos, none of them a
target photo), source-only, 3 seeds, at 32x32: the pretrained EfficientNet-Lite0 prefix
(tsm_efficientnet_lite0_s4, frozen, the old demo recipe) vs the same architecture and TinyCNN from
scratch, all on RGB frames with the same (no) augmentation; plus TinyCNN on frame differences.

    python benchmarks/demo_recipe.py                 # both sections, 3 seeds
    python benchmarks/demo_recipe.py --skip B --seeds 1
    python benchmarks/demo_recipe.py --skip B --input edgediff   # section A on another model input

``--input`` changes section A's model input only (the demo's recipe otherwise) and writes
``demo_recipe_..._<input>``.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import write_results  # noqa: E402

from edgevt.adapt import AdaptConfig  # noqa: E402
from edgevt.demo import SIZES, DemoContext, cached_adapt, cached_data, run_demo, synth_config, with_clip  # noqa: E402


def fmt(values, scale=100.0):
    a = np.array([v for v in values if v is not None], dtype=float)
    if not len(a):
        return "—"
    return f"{scale * a.mean():.1f} ± {scale * a.std():.1f}" if len(a) > 1 else f"{scale * a.mean():.1f}"


def stream_match(ckpt: str, video: Path) -> float | None:
    from edgevt.bench.streaming import bench_stream

    r = bench_stream(ckpt, video, backend="torch", precision="fp32")
    return None if not r.ground_truth else r.ground_truth.get("accuracy")


def section_a(args, q) -> dict:
    """``q``: the demo's quick size (with ``--input``'s model input, if given)."""
    out = {}
    for seed in range(args.seeds):
        s = replace(q, seed=seed)
        # the demo's own data and adapt steps, in its run cache (a rerun reuses what is still valid)
        demo = run_demo(args.work / "A" / f"seed{seed}", s, threads=args.threads, until="adapt")
        ctx = DemoContext(demo.out, s, records=dict(demo.records))
        adapted = demo.records["adapt"]
        auto = json.loads((ctx.models / "auto" / "report.json").read_text())
        cand = auto["candidates"]
        so_ckpt = str(Path(cand["source_only"]["out"]) / "model.pt")
        _, orc, _ = cached_adapt(ctx, "oracle", AdaptConfig(
            source=str(ctx.data / "target_train.txt"), target_test=str(ctx.data / "target_test.txt"),
            model=s.model, weights=s.weights, input=s.input, augment="none", mode="full",
            **AdaptConfig.clip_fields(s.clip), epochs=s.epochs, batch_size=s.batch_size, lr=s.lr, seed=seed,
            progress=False, out=str(ctx.models / "oracle")), needs=("data",))
        out[seed] = {"chosen": auto["chosen"], "adapt_seconds": adapted["seconds"],
                     "candidates": {k: {m: v[m] for m in ("target_val", "target_test", "source_test")}
                                    for k, v in cand.items()},
                     "source_only": cand["source_only"]["target_test"], "adapted": cand[auto["chosen"]]["target_test"],
                     "oracle": orc["eval"]["target_test"]["accuracy"],
                     "oracle_train_acc": orc["train"]["history"][-1]["acc"],
                     "stream_match_source_only": stream_match(so_ckpt, ctx.stream_video),
                     "stream_match_adapted": stream_match(str(ctx.out / adapted["summary"]["best_checkpoint"]),
                                                          ctx.stream_video)}
        print(f"seed {seed}: {out[seed]}", flush=True)
    return out


def section_b(args) -> dict:
    s = with_clip(SIZES["quick"], size=(32, 32))
    rows = {"tsm_efficientnet_lite0_s4, ImageNet prefix frozen, RGB": dict(model="tsm_efficientnet_lite0_s4",
                                                                              weights="pretrained", mode="linear"),
            "tsm_efficientnet_lite0_s4 from scratch, RGB": dict(model="tsm_efficientnet_lite0_s4", weights="none",
                                                               mode="full"),
            "tsm_tinycnn from scratch, RGB": dict(model="tsm_tinycnn", weights="none", mode="full"),
            "tsm_tinycnn from scratch, frame differences": dict(model="tsm_tinycnn", weights="none", mode="full",
                                                                input="diff")}
    out = {k: [] for k in rows}
    for seed in range(args.seeds):
        sb = replace(s, seed=seed)
        ctx = DemoContext((args.work / "B" / f"seed{seed}").resolve(), sb)
        data = cached_data(ctx, "data", ctx.data, replace(synth_config(sb), source_style="photo"))
        for name, kw in rows.items():
            slug = re.sub(r"\W+", "_", name).strip("_")  # one run folder and cache record per row
            _, r, _ = cached_adapt(ctx, slug, AdaptConfig(
                source=str(data / "source_train.txt"), target_test=str(data / "target_test.txt"),
                source_test=str(data / "source_test.txt"), **AdaptConfig.clip_fields(s.clip), epochs=s.epochs,
                batch_size=s.batch_size, lr=s.lr, seed=seed, progress=False, out=str(ctx.models / slug), **kw),
                needs=("data",))
            out[name].append({"target_test": r["eval"]["target_test"]["accuracy"],
                              "source_test": r["eval"]["source_test"]["accuracy"]})
            print(f"B seed {seed} {name}: {out[name][-1]}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--skip", default="", help="A and/or B")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", type=Path, default=Path("/tmp/edgevt_demo_recipe"))
    ap.add_argument("--input", default=None, help="section A with another --input than the demo's (e.g. edgediff)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.time()
    md, data = [], {}
    q = replace(SIZES["quick"], input=args.input or SIZES["quick"].input)
    if "A" not in args.skip:
        a = data["A"] = section_a(args, q)
        seeds = list(a.values())
        md += ["# The demo's recipe at demo size (quick)", "",
               f"{q.model} (weights {q.weights}), input {q.input}, augmentation {q.augment}, `--strategy auto --rungs "
               f"{q.rungs}`; {q.frame_size}x{q.frame_size}, T={q.clip.num_frames}, {q.train_per_class} clips per class, "
               f"{q.epochs} epochs; photo shift, cameras split; {len(seeds)} seeds, mean ± std.", "",
               "| | source-only | adapted (auto's choice) | oracle (target labels) | oracle train acc |",
               "|---|---:|---:|---:|---:|",
               f"| target-test top-1 | {fmt([x['source_only'] for x in seeds])} | {fmt([x['adapted'] for x in seeds])} "
               f"| {fmt([x['oracle'] for x in seeds])} | {fmt([x['oracle_train_acc'] for x in seeds])} |",
               f"| stream decisions matching the ground truth | {fmt([x['stream_match_source_only'] for x in seeds], 1)} "
               f"| {fmt([x['stream_match_adapted'] for x in seeds], 1)} | | |", "",
               "auto chose: " + ", ".join(f"seed {k}: {v['chosen']}" for k, v in a.items()) + "; adapted beats "
               f"source-only on {sum(x['adapted'] > x['source_only'] for x in seeds)}/{len(seeds)} seeds.", "",
               "Every candidate (target-val chooses; target-test only reports):", "",
               "| seed | " + " | ".join(seeds[0]["candidates"]) + " |", "|---|" + "---:|" * len(seeds[0]["candidates"])]
        for k, v in a.items():
            md.append(f"| {k} | " + " | ".join(f"val {100 * c['target_val']:.1f} / test {100 * c['target_test']:.1f}"
                                               for c in v["candidates"].values()) + " |")
        md += [""]
    if "B" not in args.skip:
        b = data["B"] = section_b(args)
        md += ["# Realistic source (glyphs over daytime photos): pretrained vs scratch, source-only", "",
               (f"32x32, T={q.clip.num_frames}, {q.train_per_class} clips per class, {args.seeds} seeds, no "
                "augmentation for any row."), "",
               "| model | target-test | source-test |", "|---|---:|---:|"]
        for name, vals in b.items():
            md.append(f"| {name} | {fmt([v['target_test'] for v in vals])} | {fmt([v['source_test'] for v in vals])} |")
        md += [""]
    md += [f"Wall clock {(time.time() - t0) / 60:.0f} min. Command: `python benchmarks/demo_recipe.py "
           f"{' '.join(sys.argv[1:])}`"]
    write_results("demo_recipe" + (f"_{args.skip.replace(',', '')}less" if args.skip else "")
                  + (f"_{args.input}" if args.input else ""), "\n".join(md), data)


if __name__ == "__main__":
    main()
