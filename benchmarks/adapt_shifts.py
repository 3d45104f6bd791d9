"""Adaptation under deployment shifts: does the model carry to a new camera?

For each target shift of MotionDigits-DA (``edgevt synth --shift``; split ``cameras``: target-train
and target-test from the same few target cameras, plus the original photo shift with disjoint
photos as the "unseen cameras" row), over seeds, every recipe through ``edgevt.adapt.adapt``:

- ``source-only (plain)``: the model on source clips, no augmentation;
- ``source-only``: the same with appearance augmentation (domain randomisation). Every "gap closed"
  is measured against the *stronger* of the two on each seed's target-test (a baseline no
  selection rule could reach, so a conservative one);
- ``bn (plain)``, ``bn``: each with BatchNorm statistics re-estimated on the target;
- ``selftrain``, ``dann+selftrain``: from the *start*, the one of those four that
  ``edgevt.adapt.auto.choose`` picks on target-val, as ``--strategy auto`` does (same configs:
  ``edgevt.adapt.auto``); ``auto``: the candidate that ``choose`` picks on target-val (never on
  target-test) among all six (one-standard-error rule, bn_plain preferred); ``auto (best val)``: the
  rule before it (plain best target-val accuracy, ties to the earlier rung), from the same runs;
  ``auto (no val)``: what auto picks without ``--target-val`` (information maximisation), same runs;
- ``dann``: plain feature alignment from the same start and budget;
- ``semi 1/class``, ``semi 5/class``: the auto ladder's ``labeled`` rung with 1 or 5 labeled target
  clips per class: from the start, a short fine-tune on source + those clips in the start's look,
  then BatchNorm re-estimated on the target. (Before 2026-12-02 09:00 UTC these columns were
  selftrain with the labels mixed in on the full schedule: adapt_shifts_quick_all.md, seeds 0-2.)
- ``oracle``: the same model and input trained on the labeled target-train clips (no appearance
  augmentation: it trains on the target's own look), with its train accuracy so memorising shows.

Target-train is split into target-adapt (unlabeled, what adaptation sees) and target-val (labeled,
for the auto choice). Reported: target-test top-1, mean ± std over seeds, and the share of the
source-only -> oracle gap each recipe closes (mean of per-seed shares).

    python benchmarks/adapt_shifts.py --quick        # 32x32, 3 seeds, every shift (a few hours on 2 cores)
    python benchmarks/adapt_shifts.py --quick --shifts "photo,photo (unseen cameras),night,rain,clutter"
    python benchmarks/adapt_shifts.py --shifts photo,night --seeds 1 --quick
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import fmt_mean_std as fmt, mean_std, write_results  # noqa: E402  (fmt, mean_std: adapt_pixel imports them)

from edgevt.adapt import AdaptConfig, adapt  # noqa: E402
from edgevt.adapt.auto import LADDER, bn_config, choose, is_plain, ladder_configs  # noqa: E402
from edgevt.data.splits import few_labeled, split_target_train  # noqa: E402
from edgevt.data.synth import SynthConfig, generate  # noqa: E402

SHIFT_ROWS = {  # row name -> (shifts, split)
    "photo": (("photo",), "cameras"),
    "photo (unseen cameras)": (("photo",), "unseen"),
    "night": (("night",), "cameras"),
    "rain": (("rain",), "cameras"),
    "blur": (("blur",), "cameras"),
    "angle": (("angle",), "cameras"),
    "codec": (("codec",), "cameras"),
    "clutter": (("clutter",), "cameras"),
}
METHODS = ["source-only (plain)", "source-only", "bn (plain)", "bn", "dann", "selftrain", "dann+selftrain", "auto",
           "auto (best val)", "auto (no val)", "semi 1/class", "semi 5/class", "oracle"]
BASELINES = ("source-only (plain)", "source-only", "oracle")


def make_data(root: Path, row: str, seed: int, size: int, per_class: dict) -> Path:
    shifts, split = SHIFT_ROWS[row]
    data = root / f"{row.replace(' (', '_').replace(')', '').replace(' ', '_')}_{seed}"
    if not (data / "target_val.txt").exists():
        generate(data, SynthConfig(size=size, frames=16, seed=seed, shifts=shifts, split=split, per_class=per_class))
        split_target_train(data, seed=seed)
        for k in (1, 5):
            few_labeled(data / "target_adapt.txt", k, data / f"target_labeled_{k}.txt", seed=seed)
    return data


def run_row(data: Path, seed: int, args, runs: Path) -> dict:
    d = str(data)
    base = AdaptConfig(source=f"{d}/source_train.txt", target=f"{d}/target_adapt.txt",
                       target_val=f"{d}/target_val.txt", target_test=f"{d}/target_test.txt",
                       source_test=f"{d}/source_test.txt", model=args.model, weights=args.weights,
                       input=args.input, augment="appearance", mode="full", size=args.size, num_frames=8,
                       frame_stride=1, epochs=args.epochs, batch_size=16, lr=3e-3, seed=seed, progress=False,
                       out=str(runs / "auto"))
    res, reports = {}, {}

    def run(name, cfg, rung=None):
        t0 = time.perf_counter()
        result = adapt(cfg)
        r = result.report
        if rung is not None:
            reports[rung] = result
        res[name] = {"target_test": r["eval"]["target_test"]["accuracy"],
                     "target_val": r["eval"].get("target_val", {}).get("accuracy"),
                     "source_test": r["eval"].get("source_test", {}).get("accuracy"),
                     "train_acc": (r["train"]["history"] or [{}])[-1].get("acc"),
                     "target_predictions": r.get("target_predictions"), "seconds": round(time.perf_counter() - t0, 1)}
        print(f"    {name:22s} target-test {100 * res[name]['target_test']:5.1f}  ({res[name]['seconds']} s)", flush=True)

    # the --strategy auto ladder, rung by rung (edgevt.adapt.auto), so each rung is also a row
    sources = ladder_configs(base)
    run("source-only", sources["source_only"], "source_only")
    run("source-only (plain)", sources["source_only_plain"], "source_only_plain")
    run("bn", bn_config(base, reports["source_only"].checkpoint, "bn"), "bn")
    run("bn (plain)", bn_config(base, reports["source_only_plain"].checkpoint, "bn_plain"), "bn_plain")
    start, _ = choose({k: r.report for k, r in reports.items()})
    start_ckpt = reports[start].checkpoint
    plain = is_plain(start, base)
    rungs = ladder_configs(base, start_ckpt, plain)
    run("selftrain", rungs["selftrain"], "selftrain")
    run("dann+selftrain", rungs["dann+selftrain"], "dann+selftrain")
    names = {"source_only": "source-only", "source_only_plain": "source-only (plain)", "bn_plain": "bn (plain)"}
    ladder = {k: reports[k].report for k in LADDER if k in reports}
    no_val = {k: {**r, "eval": {e: v for e, v in r["eval"].items() if e != "target_val"}} for k, r in ladder.items()}
    for column, (winner, _) in {"auto": choose(ladder), "auto (best val)": choose(ladder, prefer=(), se=0.0),
                                "auto (no val)": choose(no_val)}.items():
        res[column] = {**res[names.get(winner, winner)], "chosen": winner, "start": start}
    run("dann", replace(rungs["selftrain"], strategy="dann", self_train=0.0, im_weight=0.0, out=str(runs / "dann")))
    for k in (1, 5):
        semi = ladder_configs(replace(base, target_labeled=f"{d}/target_labeled_{k}.txt"), start_ckpt, plain)["labeled"]
        run(f"semi {k}/class", replace(semi, out=str(runs / f"semi{k}")))
    run("oracle", replace(base, source=f"{d}/target_train.txt", target=None, target_val=None, augment="none",
                          out=str(runs / "oracle")))
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="32x32 frames, 12 train / 10 test clips per class, 15 epochs")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=0, help="run seeds first-seed .. first-seed+seeds-1 "
                    "(split one benchmark over several processes, then merge with --rewrite)")
    ap.add_argument("--shifts", default=",".join(SHIFT_ROWS), help=f"rows, comma-separated: {', '.join(SHIFT_ROWS)}")
    ap.add_argument("--model", default="tsm_tinycnn")
    ap.add_argument("--weights", default="none")
    ap.add_argument("--input", default="diff")
    ap.add_argument("--size", type=int, default=None)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", type=Path, default=Path("/tmp/edgevt_adapt_shifts"))
    ap.add_argument("--name", default=None)
    ap.add_argument("--rewrite", type=Path, nargs="+", default=None,
                    help="only rewrite the tables from these results JSONs (several: one merged table, --name)")
    args = ap.parse_args()
    if args.rewrite is not None:
        name = args.name
        docs = [json.loads(p.read_text()) for p in args.rewrite]
        for k, v in docs[0]["args"].items():
            setattr(args, k, int(v) if v.isdigit() else v)
        torch.set_num_threads(int(args.threads))  # the provenance then names the run's thread count
        results: dict = {}
        for d in docs:  # several files: their rows, and their seeds of one row, are merged
            for r, v in d["results"].items():
                results.setdefault(r, []).extend(v)
        results = {r: v for r, v in results.items() if v}
        args.shifts = ",".join(results)
        args.seeds = max(len(v) for v in results.values())
        write(name or args.rewrite[0].stem, args, list(results), results, sum(d.get("seconds", 0) for d in docs),
              note=f"Tables recomputed from {', '.join(p.name for p in args.rewrite)} (the same runs; wall clock summed over them, though they may have run in parallel) with `--rewrite`.")
        return
    torch.set_num_threads(args.threads)
    per_class, rows = sizes_and_rows(args)
    name = args.name or ("adapt_shifts_quick" if args.quick else "adapt_shifts")
    t_start = time.time()
    results: dict = {r: [] for r in rows}
    for seed in range(args.first_seed, args.first_seed + args.seeds):  # seed-major: every row gets seed 0 before any gets seed 1
        for row in rows:
            print(f"[{time.time() - t_start:6.0f} s] {row}, seed {seed}", flush=True)
            data = make_data(args.work / "data", row, seed, args.size, per_class)
            results[row].append(run_row(data, seed, args, args.work / "runs" / f"{row}_{seed}".replace(" ", "_").replace("(", "").replace(")", "")))
            write(name, args, rows, results, time.time() - t_start)


def sizes_and_rows(args) -> tuple[dict, list[str]]:
    """Fill in ``args.size``/``args.epochs`` for ``--quick`` or full size; return the clips per
    class of each split and the requested rows (an unknown row stops the script)."""
    args.size = args.size or (32 if args.quick else 64)
    args.epochs = args.epochs or (15 if args.quick else 20)
    n_train = 12 if args.quick else 20
    per_class = {"source_train": n_train, "source_test": 10, "target_train": n_train, "target_test": 10}
    rows = [r.strip() for r in args.shifts.split(",") if r.strip()]
    unknown = [r for r in rows if r not in SHIFT_ROWS]
    if unknown:
        raise SystemExit(f"unknown rows {unknown}; known: {', '.join(SHIFT_ROWS)}")
    return per_class, rows


def baseline(res_seed: dict) -> float:
    """The strongest source-only recipe of the seed: plain or with appearance augmentation."""
    return max(res_seed["source-only"]["target_test"], res_seed["source-only (plain)"]["target_test"])


def gap_closed(seeds: list[dict], method: str):
    """Points gained over the stronger source-only, as a share of the points between it and the
    oracle, pooled over ``seeds`` (sums, not a mean of per-seed ratios, which explode where a
    seed's gap is a few points). None where the pooled gap is under 2 points."""
    gap = sum(s["oracle"]["target_test"] - baseline(s) for s in seeds)
    if gap < 0.02 * len(seeds):
        return None
    return sum(s[method]["target_test"] - baseline(s) for s in seeds) / gap


def write(name, args, rows, results, seconds, note: str = "") -> None:
    md = [f"# Adaptation under deployment shifts ({args.model}, input {args.input}, {args.size}x{args.size}, "
          f"T=8, {args.epochs} source epochs)", "",
          "Target-test top-1 (%), mean ± std over seeds; in brackets the share of the source-only → oracle gap "
          "closed (points gained over points of gap, summed over the seeds), where source-only is the "
          "*stronger* of the two source-only recipes of the seed (plain, or with appearance augmentation, "
          "which the adaptation recipes use); auto = the rung `--strategy auto` picks on target-val.", ""]
    everything = [s for row in rows for s in results[row]]
    methods = [m for m in METHODS if all(m in s for s in everything)]  # older files lack the newer columns
    md.append("| shift | seeds | " + " | ".join(methods) + " | oracle train acc |")
    md.append("|---|---:|" + "---:|" * (len(methods) + 1))
    summary = {}
    for row in rows:
        seeds = results[row]
        if not seeds:
            continue
        cells = []
        for m in methods:
            vals = [s[m]["target_test"] for s in seeds]
            cell = fmt(vals)
            if m not in BASELINES:
                g = gap_closed(seeds, m)
                if g is not None:
                    cell += f" [{100 * g:.0f}%]"
            cells.append(cell)
        train = fmt([s["oracle"]["train_acc"] for s in seeds])
        md.append(f"| {row} | {len(seeds)} | " + " | ".join(cells) + f" | {train} |")
        summary[row] = {m: mean_std([s[m]["target_test"] for s in seeds]) for m in methods}
    md += ["", "Share of the gap closed, pooled over every shift and seed:", ""]
    md.append("| method | gap closed | seeds where it beats the stronger source-only | the same, on seeds whose oracle "
              "beats it (a gap to close) |")
    md.append("|---|---:|---|---:|")
    for m in [m for m in methods if m not in BASELINES]:
        g = gap_closed(everything, m)
        wins = sum(s[m]["target_test"] > baseline(s) + 1e-9 for s in everything)
        ties = sum(abs(s[m]["target_test"] - baseline(s)) <= 1e-9 for s in everything)
        gapped = [s for s in everything if s["oracle"]["target_test"] > baseline(s) + 1e-9]
        gapped_wins = sum(s[m]["target_test"] > baseline(s) + 1e-9 for s in gapped)
        md.append(f"| {m} | {'—' if g is None else f'{100 * g:.0f}%'} | {wins}/{len(everything)} "
                  f"({ties} ties, {len(everything) - wins - ties} losses) | {gapped_wins}/{len(gapped)} |")
    md.append("")
    for m in [m for m in methods if m.startswith("auto")]:
        chosen = [s[m].get("chosen") for s in everything]
        md.append(f"{m} chose: " + ", ".join(f"{c} ×{chosen.count(c)}" for c in dict.fromkeys(chosen)) + "  ")
    starts = [s["auto"].get("start") for s in everything]
    md += ["", f"start of the rungs (the source-only or bn candidate auto's rule picks on target-val): "
           + ", ".join(f"{c} ×{starts.count(c)}" for c in dict.fromkeys(starts)), "",
           f"Wall clock {seconds / 60:.0f} min. Command: `python benchmarks/adapt_shifts.py"
           f"{' --quick' if args.quick else ''} --seeds {args.seeds}"
           f"{f' --first-seed {args.first_seed}' if int(getattr(args, 'first_seed', 0)) else ''} --shifts \"{args.shifts}\"`"] + ([note] if note else [])
    write_results(name, "\n".join(md), {"args": {k: str(v) for k, v in vars(args).items() if k != "rewrite"},
                                        "results": results, "summary": summary, "seconds": seconds})


if __name__ == "__main__":
    main()
