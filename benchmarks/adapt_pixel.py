"""Pixel-level adaptation under deployment shifts: train on translated source clips.

The data, model and recipes of ``benchmarks/adapt_shifts.py`` (imported from it: same shift rows,
same MotionDigits-DA generation per seed, same ``--strategy auto`` ladder configs). Per shift and
seed:

- ``source-only (plain)`` / ``source-only``: re-run here, as a check that this run reproduces the
  reference run's numbers (the table says whether it did);
- ``fda`` / ``gan``: the source clips translated towards target-adapt (``edgevt.adapt.pixel``: FDA,
  no training; or the CycleGAN with semantic + warp consistency, trained here), then the
  source-only recipe on them; ``+selftrain`` / ``+dann+selftrain``: the auto ladder's feature-level
  rungs started from that model (CyCADA's pixel + feature); ``fda (plain)+bn`` / ``gan (plain)+bn``:
  the auto ladder's ``pixel`` candidate (``edgevt.adapt.auto.pixel_rung``: the plain recipe on the
  translated clips, then BatchNorm re-estimated on the target);
- ``best feature-only``, ``oracle``: from the reference run of adapt_shifts.py (``--reference``, the
  same data and seeds): the best mean per shift of the feature-level recipes it holds (bn, bn (plain),
  dann, coral, selftrain, dann+selftrain).

Temporal consistency: the mean frame-to-frame change of the translated clips over that of the
source clips (1.0: as steady as the source). GAN time: training steps only, then translating.

    python benchmarks/adapt_pixel.py --quick --shifts photo,night,clutter
    python benchmarks/adapt_pixel.py --quick --shifts rain,blur --name adapt_pixel_quick_more
    python benchmarks/adapt_pixel.py --quick --first-seed 3 --methods fda \
        --reference benchmarks/results/adapt_shifts_quick_fresh.json --name adapt_pixel_quick_fresh
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, write_results
from adapt_shifts import SHIFT_ROWS, fmt, make_data, mean_std, sizes_and_rows

from edgevt.adapt import AdaptConfig, adapt
from edgevt.adapt.auto import ladder_configs, pixel_rung
from edgevt.adapt.pixel import TranslateConfig, translate

FEATURE = ["bn (plain)", "bn", "dann", "coral", "selftrain", "dann+selftrain"]  # those the reference holds
PIXEL = ["fda", "fda+selftrain", "fda+dann+selftrain", "fda (plain)+bn",
         "gan", "gan+selftrain", "gan+dann+selftrain", "gan (plain)+bn"]
COLUMNS = ["source-only (plain)", "source-only", "best feature-only"] + PIXEL + ["oracle"]


def run_seed(data: Path, seed: int, args, runs: Path) -> dict:
    d = str(data)
    base = AdaptConfig(source=f"{d}/source_train.txt", target=f"{d}/target_adapt.txt",
                       target_val=f"{d}/target_val.txt", target_test=f"{d}/target_test.txt",
                       source_test=f"{d}/source_test.txt", model=args.model, weights="none", input=args.input,
                       augment="appearance", mode="full", size=args.size, num_frames=8, frame_stride=1,
                       epochs=args.epochs, batch_size=16, lr=3e-3, seed=seed, progress=False, out=str(runs / "auto"))
    res: dict = {}

    def run(name, cfg):
        t0 = time.perf_counter()
        r = adapt(cfg).report
        res[name] = {"target_test": r["eval"]["target_test"]["accuracy"],
                     "source_test": r["eval"].get("source_test", {}).get("accuracy"),
                     "seconds": round(time.perf_counter() - t0, 1)}
        print(f"    {name:22s} target-test {100 * res[name]['target_test']:5.1f}  ({res[name]['seconds']} s)", flush=True)
        return r

    run("source-only (plain)", replace(base, augment="none", target=None, target_val=None, out=str(runs / "plain")))
    run("source-only", ladder_configs(base)["source_only"])
    for method in args.methods.split(","):
        t0 = time.perf_counter()
        tr = translate(TranslateConfig(source=base.source, target=base.target, out=str(runs / f"pixel_{method}"),
                                       method=method, size=args.size, num_frames=8, frame_stride=1,
                                       steps=args.gan_steps, batch_size=args.gan_batch, seed=seed, progress=False))
        info = {"seconds_total": round(time.perf_counter() - t0, 1), **tr.report["temporal_consistency"]}
        if "train" in tr.report:
            info.update(train_seconds=tr.report["train"]["seconds"], steps=tr.report["train"]["steps"],
                        warp_error=tr.report["train"]["warp_error"], warp_reference=tr.report["train"]["warp_reference"])
        print(f"    translate {method}: {info}", flush=True)
        pbase = replace(base, source=tr.list, out=str(runs / f"auto_{method}"))
        first = ladder_configs(pbase)["source_only"]
        run(method, first)
        res[method]["translate"] = info
        rungs = ladder_configs(pbase, str(Path(first.out) / "model.pt"))
        run(f"{method}+selftrain", rungs["selftrain"])
        run(f"{method}+dann+selftrain", rungs["dann+selftrain"])
        run(f"{method} (plain)+bn", replace(pixel_rung(base, tr.list), out=str(runs / f"pixel_rung_{method}")))
    res["seed"] = seed
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="as adapt_shifts.py --quick: 32x32, 12/10 clips per class, 15 epochs")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed+seeds-1 (the "
                    "reference must hold the same seeds, in order)")
    ap.add_argument("--shifts", default="photo,night,clutter", help=f"rows: {', '.join(SHIFT_ROWS)}")
    ap.add_argument("--model", default="tsm_tinycnn")
    ap.add_argument("--input", default="diff")
    ap.add_argument("--size", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--methods", default="fda,gan", help="pixel methods to run (seeds finished earlier keep theirs)")
    ap.add_argument("--note", default="", help="a line added under the table (e.g. how earlier seeds were run)")
    ap.add_argument("--gan-steps", type=int, default=250)
    ap.add_argument("--gan-batch", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reference", type=Path, default=RESULTS / "adapt_shifts_quick_all.json",
                    help="results JSON of adapt_shifts.py on the same data: feature-only recipes and the oracle")
    ap.add_argument("--work", type=Path, default=Path("/tmp/edgevt_adapt_pixel"))
    ap.add_argument("--name", default=None)
    ap.add_argument("--rewrite", action="store_true", help="only rewrite the table from results/<name>.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    per_class, rows = sizes_and_rows(args)  # the same sizes and rows as adapt_shifts.py
    name = args.name or ("adapt_pixel_quick" if args.quick else "adapt_pixel")
    reference = json.loads(args.reference.read_text())
    done = RESULTS / f"{name}.json"
    results: dict = {r: [] for r in rows}
    seconds = 0.0
    if done.exists():  # continue an interrupted run: keep the finished (row, seed) results
        old = json.loads(done.read_text())
        results.update({r: v for r, v in old["results"].items() if r in rows})
        seconds = old.get("seconds", 0.0)
    if args.rewrite:
        write(name, args, rows, results, reference, seconds)
        return
    t_start = time.time() - seconds
    for i, seed in enumerate(range(args.first_seed, args.first_seed + args.seeds)):
        for row in rows:
            if len(results[row]) > i:
                continue
            print(f"[{time.time() - t_start:6.0f} s] {row}, seed {seed}", flush=True)
            data = make_data(args.work / "data", row, seed, args.size, per_class)
            tag = f"{row}_{seed}".replace(" ", "_").replace("(", "").replace(")", "")
            results[row].append(run_seed(data, seed, args, args.work / "runs" / tag))
            write(name, args, rows, results, reference, time.time() - t_start)


def write(name, args, rows, results, reference, seconds) -> None:
    md = [f"# Pixel-level adaptation under deployment shifts ({args.model}, input {args.input}, {args.size}x{args.size}, "
          f"T=8, {args.epochs} source epochs; GAN {args.gan_steps} steps x {args.gan_batch} clips)", "",
          "Target-test top-1 (%), mean ± std over seeds. fda / gan: the source-only recipe trained on the translated "
          "source clips; +selftrain / +dann+selftrain: the auto ladder's rungs started from that model. "
          "best feature-only and oracle come from the reference adapt_shifts.py run on the same data "
          f"(`{args.reference.name}`), best feature-only = the best mean of those of {', '.join(FEATURE)} it holds.", ""]
    md.append("| shift | seeds | " + " | ".join(COLUMNS) + " |")
    md.append("|---|---:|" + "---:|" * len(COLUMNS))
    summary, goal, extra = {}, [], []
    for row in rows:
        seeds = results[row]
        if not seeds:
            continue
        ref = reference["results"].get(row, [])[:len(seeds)]
        if len(ref) < len(seeds):
            continue
        feature = [m for m in FEATURE if all(m in s for s in ref)]
        best_f = max(feature, key=lambda m: mean_std([s[m]["target_test"] for s in ref])[0])
        vals = {"source-only (plain)": [s["source-only (plain)"]["target_test"] for s in seeds],
                "source-only": [s["source-only"]["target_test"] for s in seeds],
                "best feature-only": [s[best_f]["target_test"] for s in ref],
                "oracle": [s["oracle"]["target_test"] for s in ref]}
        vals.update({m: [s[m]["target_test"] for s in seeds if m in s] for m in PIXEL})

        def cell(c):
            n = len(vals[c])
            return (fmt(vals[c]) + (f" ({best_f})" if c == "best feature-only" else "")
                    + (f" (n={n})" if 0 < n < len(seeds) else ""))

        cells = [cell(c) for c in COLUMNS]
        md.append(f"| {row} | {len(seeds)} | " + " | ".join(cells) + " |")
        summary[row] = {c: mean_std(v) for c, v in vals.items()}
        for fam in ("fda", "gan"):  # each family against feature-only on the seeds it ran
            combos = [m for m in PIXEL if (m.startswith(fam + "+") or m.startswith(fam + " (plain)+")) and vals[m]]
            if not combos:
                continue
            best_p = max(combos, key=lambda m: summary[row][m][0])
            idx = [i for i, s in enumerate(seeds) if best_p in s]
            feat = [vals["best feature-only"][i] for i in idx]
            delta = 100 * (summary[row][best_p][0] - mean_std(feat)[0])
            goal.append(f"| {row} | {best_f} {fmt(feat)} | {best_p} {fmt(vals[best_p])} | {delta:+.1f} | {len(idx)} |")
        same = [abs(a["source-only"]["target_test"] - b["source-only"]["target_test"]) < 1e-9 for a, b in zip(seeds, ref)]
        tr = {m: [s[m]["translate"] for s in seeds if m in s] for m in ("fda", "gan")}
        def avg(method, key, digits):
            v = [t[key] for t in tr[method] if key in t]
            return f"{np.mean(v):.{digits}f}" if v else "—"

        extra.append(f"| {row} | {avg('fda', 'source_frame_change', 4)} | {avg('fda', 'ratio', 2)} | {avg('gan', 'ratio', 2)} | "
                     f"{avg('gan', 'train_seconds', 0)} | {avg('gan', 'seconds_total', 0)} | {avg('fda', 'seconds_total', 1)} | "
                     f"{sum(same)}/{len(same)} |")
    md += ["", "Goal: the best pixel + feature recipe against the best feature-only recipe (means; both chosen "
           "per shift on target-test, so both are optimistic):", "",
           "| shift | best feature-only | best pixel + feature | difference (points) | seeds compared |",
           "|---|---|---|---:|---:|"] + goal
    md += ["", "Temporal consistency (frame-to-frame change of translated / source clips, mean over seeds; 1.0 = as "
           "steady as the source) and translator time (torch threads as below):", "",
           "| shift | source frame change | fda ratio | gan ratio | GAN training s | GAN total s (classifier + "
           "training + writing) | fda total s | seeds where source-only reproduces the reference |",
           "|---|---:|---:|---:|---:|---:|---:|---:|"] + extra
    md += ["", f"Wall clock {seconds / 60:.0f} min. Command: `python benchmarks/adapt_pixel.py"
           f"{' --quick' if args.quick else ''} --seeds {args.seeds}"
           f"{f' --first-seed {args.first_seed}' if int(getattr(args, 'first_seed', 0)) else ''}"
           f" --shifts \"{args.shifts}\" --threads {args.threads} --methods {args.methods}"
           f" --reference {args.reference}`"] + ([args.note] if args.note else [])
    write_results(name, "\n".join(md), {"args": {k: str(v) for k, v in vars(args).items()}, "results": results,
                                        "summary": summary, "seconds": seconds})


if __name__ == "__main__":
    main()
