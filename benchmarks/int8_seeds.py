"""One model's INT8 over several seeds: post-training quantization (PTQ) beside AdaRound, mean ± std.

``benchmarks/int8_cpu.py`` measures one run: a model per seed, PTQ or ``--adaround-steps`` (not both in one
run: the bundle holds one INT8 graph per flavour). This script reads several of its result files, finds each
seed's row of ``--model`` in them, tells PTQ from AdaRound by the row's own record (``int8.adaround``), and
writes per seed and over the seeds (mean ± sample std, ddof 1):

- on the longer target-test list (``--test-per-class``): FP32 and INT8 top-1, the drop, the agreement with
  FP32 on the centred window and on every window, and the centred agreement pooled over the seeds with its
  95% Wilson interval;
- the gate's agreement on target-val and the number of its decisions;
- the speed-up INT8 vs FP32 at batch 1 and 4 (median over the run's interleaved rounds, wall and CPU time).

Every number is read from the files named; nothing is measured here. Each file's CPU and date are listed
(ratios are compared only within a run; a run is one seed).

    python benchmarks/int8_seeds.py benchmarks/results/int8_cpu_round14_{ptq,adaround}_intel.json \\
        benchmarks/results/int8_cpu_round16_{ptq,adaround}_s{0,2}_intel.json --model lite0_tsm_so \\
        --name int8_seeds_lite0_tsm_so_intel
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import fmt_mean_std, write_results  # noqa: E402
from int8_cpu import GOAL_AGREEMENT, GOAL_DROP, GOAL_SPEEDUP, wilson  # noqa: E402


def method(row: dict) -> str:
    """'adaround', 'qat' or 'ptq', from what the export recorded for the row's INT8 graph."""
    int8 = row.get("int8") or {}
    return "adaround" if int8.get("adaround") else "qat" if int8.get("qat") else "ptq"


def seed_rows(paths: list[Path], model: str) -> dict:
    """{(method, seed): row} for every row of ``model`` in the files, each row with the file it came from
    and that file's CPU and date. int8_cpu.py names a row ``<model>_s<seed>``, and seed 0's plain
    ``<model>``; a row that records its ``seed`` is read by that. Two rows for one (method, seed) is an
    error."""
    rows: dict = {}
    for p in paths:
        res = json.loads(p.read_text())
        for name, row in (res.get("models") or {}).items():
            m = re.fullmatch(re.escape(model) + r"(?:_s(\d+))?", name)
            if not m:
                continue
            seed = row["seed"] if row.get("seed") is not None else int(m.group(1) or 0)
            key = (method(row), seed)
            if key in rows:
                raise SystemExit(f"error: {p}: {name} ({key[0]}) is also in {rows[key]['file']}; name each run once")
            rows[key] = {**row, "file": str(p), "cpu": res.get("cpu"),
                         "date": (res.get("provenance") or {}).get("date")}
    if not rows:
        raise SystemExit(f"error: no row {model}_s<seed> in {', '.join(map(str, paths))}; check --model")
    return rows


def summary(row: dict) -> dict:
    """The figures of one row that the table shows."""
    more = row["accuracy"].get("more") or {}
    c, w = more.get("centred"), more.get("windows")
    if not c:
        raise SystemExit(f"error: {row['file']}: no longer target-test list; rerun int8_cpu.py with --test-per-class")
    t, g = row["timing"], row["gate"]
    return {"clips": c["clips"], "fp32": c["fp32_top1"], "int8": c["int8_top1"], "drop": c["fp32_top1"] - c["int8_top1"],
            "agreement": c["agreement"], "changed": c["clips"] - round(c["agreement"] * c["clips"] / 100),
            "windows": w["rows"], "agreement_windows": w["agreement"],
            "gate_agreement": g["agreement"], "gate_decisions": g["decisions"], "gate_passed": g["passed"],
            "b1": t["speedup_b1"]["median"], "b4": t["speedup_b4"]["median"],
            "cpu_b1": t["cpu_speedup_b1"]["median"], "cpu_b4": t["cpu_speedup_b4"]["median"],
            "adaround": {k: (row["int8"].get("adaround") or {}).get(k) for k in
                         ("steps", "lr", "clips", "kept", "convolutions", "simulated_logit_error_before",
                          "simulated_logit_error_after", "seconds")} if method(row) == "adaround" else None,
            "file": row["file"], "cpu": row["cpu"], "date": row["date"]}


def speed(vals: list) -> str:
    """A speed-up's mean ± sample std over seeds, two decimals."""
    from _common import mean_std

    m, sd = mean_std(vals, ddof=1)
    return f"{m:.2f}x ± {sd:.2f}" if len(vals) > 1 else f"{m:.2f}x"


NAMES = {"ptq": "PTQ", "adaround": "AdaRound", "qat": "QAT"}


def markdown(model: str, table: dict) -> str:
    ms = lambda vals: fmt_mean_std(vals, scale=1, ddof=1)  # noqa: E731
    out = [f"# {model}: INT8 (CPU flavour) over seeds, PTQ beside AdaRound", "",
           "Read from `benchmarks/int8_cpu.py` result files (one run per seed and method; see the files below). "
           "Target-test: each seed's longer list (its own clips and new ones from the same target cameras; "
           "never seen by training or the gate). Speed-ups: ort-cpu, median over each run's interleaved rounds.", "",
           "| method | seed | clips | FP32 / INT8 top-1 (drop) | agreement, centred (changed) | agreement, every window "
           "| gate (target-val) | speed-up b1 / b4 (wall) | CPU-time b1 / b4 |",
           "|---|---:|---:|---|---|---|---|---|---|"]
    for (meth, seed), s in sorted(table.items()):
        out.append(f"| {NAMES[meth]} | {seed} | {s['clips']} | {s['fp32']:.1f} / {s['int8']:.1f} ({s['drop']:+.1f}) | "
                   f"{s['agreement']:.1f}% ({s['changed']}) | {s['agreement_windows']:.1f}% ({s['windows']}) | "
                   f"{'passed' if s['gate_passed'] else 'refused'}, {s['gate_agreement']:.1f}% of {s['gate_decisions']} | "
                   f"{s['b1']:.2f}x / {s['b4']:.2f}x | {s['cpu_b1']:.2f}x / {s['cpu_b4']:.2f}x |")
    out += ["", "Over the seeds (mean ± sample std):", "",
            "| method | seeds | FP32 top-1 | drop | agreement, centred | centred, pooled (95% Wilson) "
            "| agreement, every window | speed-up b1 | speed-up b4 |", "|---|---|---:|---:|---:|---|---:|---:|---:|"]
    goals = []
    for meth in sorted({m for m, _ in table}):
        ss = [table[k] for k in sorted(table) if k[0] == meth]
        seeds = ",".join(str(k[1]) for k in sorted(table) if k[0] == meth)
        total, changed = sum(s["clips"] for s in ss), sum(s["changed"] for s in ss)
        pooled = 100 * (total - changed) / total
        lo, hi = wilson(pooled, total)
        col = lambda k: [s[k] for s in ss]  # noqa: E731
        out.append(f"| {NAMES[meth]} | {seeds} | {ms(col('fp32'))} | {ms(col('drop'))} | {ms(col('agreement'))} | "
                   f"{pooled:.1f}% ({changed} of {total} changed; {lo:.1f}-{hi:.1f}) | {ms(col('agreement_windows'))} | "
                   f"{speed(col('b1'))} | {speed(col('b4'))} |")
        n = len(ss)
        for what, vals, ok in (("agreement, centred", col("agreement"), lambda v: v >= GOAL_AGREEMENT),
                               ("agreement, every window", col("agreement_windows"), lambda v: v >= GOAL_AGREEMENT),
                               ("top-1 drop", col("drop"), lambda v: v <= GOAL_DROP),
                               ("speed-up b1", col("b1"), lambda v: v >= GOAL_SPEEDUP),
                               ("speed-up b4", col("b4"), lambda v: v >= GOAL_SPEEDUP)):
            met = sum(ok(v) for v in vals)
            goals.append(f"- {NAMES[meth]}, {what}: met on {met} of {n} seeds "
                         f"({', '.join(f'{v:.2f}' if 'speed' in what else f'{v:.1f}' for v in vals)})")
    out += ["", f"Goals (issue 14: agreement >= {GOAL_AGREEMENT}%, drop <= {GOAL_DROP} point, speed-up >= "
            f"{GOAL_SPEEDUP}x), per seed:", "", *goals]
    ada = {k: s["adaround"] for k, s in sorted(table.items()) if s["adaround"]}
    if ada:
        out += ["", "AdaRound, per seed (simulated INT8 logits off FP32's on its calibration clips, nearest -> adaptive):", ""]
        for (_, seed), a in ada.items():
            out.append(f"- seed {seed}: {a['steps']} steps, lr {a['lr']}, {a['clips']} clips; {a['kept']} of "
                       f"{a['convolutions']} convolutions kept it; {100 * a['simulated_logit_error_before']:.2f}% -> "
                       f"{100 * a['simulated_logit_error_after']:.2f}%; {a['seconds']:.0f} s")
    out += ["", "Files:", ""]
    for f in sorted({(s["file"], s["cpu"], s["date"]) for s in table.values()}):
        out.append(f"- `{f[0]}`: {f[1]}, {f[2]}")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="+", type=Path, help="int8_cpu.py result files (.json)")
    ap.add_argument("--model", default="lite0_tsm_so", help="the model's row name without _s<seed>")
    ap.add_argument("--name", default=None, help="write benchmarks/results/<name>.{md,json}; else print")
    args = ap.parse_args()
    missing = [str(p) for p in args.results if not p.is_file()]
    if missing:
        raise SystemExit(f"error: no such result file: {', '.join(missing)}")
    table = {k: summary(r) for k, r in seed_rows(args.results, args.model).items()}
    md = markdown(args.model, table)
    if args.name:
        data = {"model": args.model, "rows": [{"method": m, "seed": s, **v} for (m, s), v in sorted(table.items())],
                "command": " ".join(["benchmarks/int8_seeds.py", *sys.argv[1:]])}
        print(write_results(args.name, md, data))
    else:
        print(md)


if __name__ == "__main__":
    main()
