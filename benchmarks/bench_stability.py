"""Do `edgevt bench` speed-up ratios survive a busy machine? Two runs of the same bundle, one of them
with a competing CPU load started halfway; the ratios should agree within 15% (issue 14).

    python benchmarks/bench_stability.py --bundle demo/bundle          # after `edgevt demo`
    python benchmarks/bench_stability.py                               # builds the demo's quick bundle first
    python benchmarks/bench_stability.py --bundle demo/bundle --sequential   # also the old one-row-after-another way

Each run is `edgevt bench BUNDLE --threads 1` in a subprocess. The load is a Python busy loop. With
--pin (default), the bench and the busy loop are pinned to the same CPU, so during the load the
bench gets about half of its core no matter what the scheduler does. The load starts at the point
where the quiet run was half-way through its timed rounds, and stops when the bench exits. --sequential adds the same
pair of runs with --rounds 1: every row is timed in one block, one row after another, as before
interleaving. Results: benchmarks/results/<name>.{md,json}.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

GOAL = 0.15  # issue 14: ratios agree within 15%

from edgevt.bench.rounds import DRIFT_FLAG, ratio_drift


def busy_loop(cpu: int | None) -> subprocess.Popen:
    code = "import os,sys\nc=int(sys.argv[1])\nif c>=0: os.sched_setaffinity(0,{c})\nwhile True: pass\n"
    return subprocess.Popen([sys.executable, "-c", code, str(-1 if cpu is None else cpu)])


def bench_once(bundle: Path, out: Path, name: str, args, cpu: int | None, load_after_s: float | None) -> dict:
    """One `edgevt bench` run; a busy loop starts ``load_after_s`` seconds in when given."""
    cmd = [sys.executable, "-m", "edgevt", "bench", str(bundle), "--backend", args.backend, "--precision",
           args.precision, "--batch", args.batch, "--threads", "1", "--warmup-s", str(args.warmup_s),
           "--duration-s", str(args.duration_s), "--rounds", str(args.rounds_for[name]), "--out", str(out),
           "--name", name]
    if args.clips:
        cmd += ["--clips", str(args.clips)]

    t0, launched = time.perf_counter(), time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "COLUMNS": "200"})
    if cpu is not None:  # pinned before its imports are done: long before any timing starts
        os.sched_setaffinity(proc.pid, {cpu})
    load, load_started = None, None
    try:
        if load_after_s is not None:
            try:
                proc.wait(timeout=load_after_s)
            except subprocess.TimeoutExpired:
                load, load_started = busy_loop(cpu), time.perf_counter() - t0
        output, _ = proc.communicate()
    finally:
        if load is not None:
            load.kill()
            load.wait()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"edgevt bench failed ({proc.returncode}):\n{output[-3000:]}")
    data = json.loads((out / f"{name}.json").read_text())
    return {"name": name, "wall_s": wall, "launched_unix": launched, "load_started_s": load_started, "data": data,
            "cmd": cmd}


def ratios(run: dict) -> dict[str, dict]:
    """label -> {speedup, p25, p75, pooled, p50_ms} for the non-baseline rows timed in the run."""
    out = {}
    for r in run["data"]["rows"]:
        if r["status"] == "ok" and not r["baseline"] and r.get("speedup"):
            sp = r.get("speedup_spread") or {}
            cp = r.get("cpu_speedup_spread") or {}
            out[f"{r['backend']} {r['precision']} b{r['batch']}"] = {
                "speedup": r["speedup"], "p25": sp.get("p25"), "p75": sp.get("p75"),
                "pooled": r.get("speedup_pooled"), "p50_ms": r["stats"]["p50_ms"],
                "cpu": r.get("cpu_speedup"), "cpu_p25": cp.get("p25"), "cpu_p75": cp.get("p75"),
                "drift": ratio_drift(sp.get("ratios") or []), "cpu_drift": ratio_drift(cp.get("ratios") or [])}
    return out


def baseline_p50(run: dict) -> dict[int, float]:
    return {r["batch"]: r["stats"]["p50_ms"] for r in run["data"]["rows"] if r["baseline"] and r["status"] == "ok"}


def compare(quiet: dict, loaded: dict, key: str = "speedup") -> list[dict]:
    a, b = ratios(quiet), ratios(loaded)
    rows = []
    for label in a:
        if label in b and a[label][key] and b[label][key]:
            change = b[label][key] / a[label][key] - 1
            rows.append({"row": label, "quiet": a[label], "loaded": b[label], "change": change,
                         "within": abs(change) <= GOAL})
    return rows


def _cell(r: dict, key: str) -> str:
    lo, hi = {"speedup": ("p25", "p75"), "cpu": ("cpu_p25", "cpu_p75")}.get(key, (None, None))
    if lo and r.get(lo) is not None and r[hi] > r[lo]:
        return f"{r[key]:.2f}x ({r[lo]:.2f}-{r[hi]:.2f})"
    return f"{r[key]:.2f}x"


def _drift(r: dict, key: str) -> str:
    d = r.get("cpu_drift" if key == "cpu" else "drift")
    if d is None:
        return "-"
    return f"{d:+.0%}" + (" (flagged)" if abs(d) > DRIFT_FLAG else "")


def table(rows: list[dict], key: str) -> list[str]:
    lines = ["| row | quiet run | run with load from halfway | change | within 15% | drift, quiet / loaded run |",
             "|---|---:|---:|---:|---|---|"]
    for c in rows:
        lines.append(f"| {c['row']} | {_cell(c['quiet'], key)} | {_cell(c['loaded'], key)} | {c['change']:+.1%} | "
                     f"{'yes' if c['within'] else 'no'} | {_drift(c['quiet'], key)} / {_drift(c['loaded'], key)} |")
    return lines


def verdict(rows: list[dict]) -> tuple[bool, float, str]:
    if not rows:
        return False, float("nan"), "no comparable rows"
    worst = max(rows, key=lambda c: abs(c["change"]))
    met = abs(worst["change"]) <= GOAL
    how = (f"met: worst change {worst['change']:+.1%} ({worst['row']}), {GOAL:.0%} allowed" if met else
           f"missed by {abs(worst['change']) - GOAL:.1%} points: worst change {worst['change']:+.1%} "
           f"({worst['row']}), {GOAL:.0%} allowed; {sum(not c['within'] for c in rows)} of {len(rows)} rows outside")
    return met, abs(worst["change"]), how


def load_hit(quiet: dict, loaded: dict) -> str:
    qa, la = baseline_p50(quiet), baseline_p50(loaded)
    parts = [f"b{b}: {qa[b]:.1f} -> {la[b]:.1f} ms ({la[b] / qa[b]:.2f}x)" for b in sorted(qa) if b in la]
    return "baseline p50 quiet -> loaded: " + ", ".join(parts)


def halfway(run: dict) -> float:
    """Seconds after launch at which the quiet run was half-way through its timed rounds: from the
    wall-clock time the bench says its rounds began (older bench JSONs: wall time minus the phases,
    which counts the reports written after the rounds as start-up and so starts the load late)."""
    ph = run["data"]["provenance"].get("phases_s") or {}
    if not ph:
        return run["wall_s"] / 2
    if ph.get("rounds_started_unix") and run.get("launched_unix"):
        return max(0.0, ph["rounds_started_unix"] - run["launched_unix"]) + ph["rounds"] / 2
    startup = max(0.0, run["wall_s"] - ph["open_warmup"] - ph["rounds"])
    return startup + ph["open_warmup"] + ph["rounds"] / 2


def _lean(data: dict) -> dict:
    """The bench JSON without every per-run latency (the per-round medians stay)."""
    return {**data, "rows": [{k: v for k, v in r.items() if k != "samples_ms"} for r in data["rows"]]}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", type=Path, default=None, help="bundle to bench (default: build the demo's)")
    ap.add_argument("--clips", type=Path, default=None, help="videos for real input clips")
    ap.add_argument("--work", type=Path, default=Path("runs/bench_stability"), help="demo folder when building")
    ap.add_argument("--size", default="quick", help="demo size that builds the bundle")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--batch", default="1,4")
    ap.add_argument("--warmup-s", type=float, default=1.0)
    ap.add_argument("--duration-s", type=float, default=8.0, help="timed seconds per row")
    ap.add_argument("--rounds", type=int, default=16)
    ap.add_argument("--sequential", action="store_true", help="also time the pair with --rounds 1 (no interleaving)")
    ap.add_argument("--pin", action=argparse.BooleanOptionalAction, default=True,
                    help="pin the bench and the busy loop to one CPU (the last one this process may use)")
    ap.add_argument("--name", default="bench_stability")
    ap.add_argument("--out", type=Path, default=Path("runs/bench_stability/out"))
    ap.add_argument("--from-json", action="store_true",
                    help="rewrite results/<name>.md from the runs saved in results/<name>.json (no timing)")
    args = ap.parse_args(argv)
    cmd = " ".join(["python benchmarks/bench_stability.py", *(argv if argv is not None else sys.argv[1:])])
    saved = None
    if args.from_json:
        from _common import RESULTS

        saved = json.loads((RESULTS / f"{args.name}.json").read_text())
        for k in ("bundle", "backend", "precision", "batch", "warmup_s", "duration_s"):
            setattr(args, k, saved["config"][k])
        args.sequential = any(k.startswith("sequential") for k in saved["runs"])
        args.rounds = int(saved["config"]["rounds"])
        cmd = saved.get("command") or cmd

    from _common import write_results

    if args.bundle is None and saved is None:
        from edgevt.demo import SIZES, run_demo

        demo = run_demo(args.work / args.size, SIZES[args.size], until="export")
        args.bundle, args.clips = demo.out / "bundle", args.clips or demo.out / "data" / "target_test.txt"
    cpu = max(os.sched_getaffinity(0)) if args.pin and hasattr(os, "sched_getaffinity") else None
    if saved is not None:
        cpu = saved.get("pinned_cpu", cpu)
    args.rounds_for = {}
    modes = [("interleaved", args.rounds)] + ([("sequential", 1)] if args.sequential else [])
    runs, sections, summary = {}, [], {}
    for mode, n_rounds in modes:
        q, ld = f"{mode}_quiet", f"{mode}_loaded"
        args.rounds_for[q] = args.rounds_for[ld] = n_rounds
        if saved is not None:
            for k in (q, ld):
                runs[k] = {kk: vv for kk, vv in saved["runs"][k].items() if kk != "bench"} | {
                    "data": saved["runs"][k]["bench"]}
        else:
            print(f"[{mode}] quiet run ...", flush=True)
            runs[q] = bench_once(args.bundle, args.out, q, args, cpu, None)
            half = halfway(runs[q])
            print(f"[{mode}] quiet run took {runs[q]['wall_s']:.0f} s; run with the load from {half:.0f} s ...",
                  flush=True)
            runs[ld] = bench_once(args.bundle, args.out, ld, args, cpu, half)
        rows = compare(runs[q], runs[ld])
        met, worst, how = verdict(rows)
        pooled = compare(runs[q], runs[ld], "pooled")
        cpu_rows = compare(runs[q], runs[ld], "cpu")
        cpu_met, cpu_worst, cpu_how = verdict(cpu_rows)
        summary[mode] = {"met": met, "worst_change": worst, "verdict": how, "rows": rows, "pooled_rows": pooled,
                         "pooled_verdict": verdict(pooled)[2], "cpu_met": cpu_met, "cpu_worst_change": cpu_worst,
                         "cpu_verdict": cpu_how, "cpu_rows": cpu_rows, "load": load_hit(runs[q], runs[ld]),
                         "load_started_s": runs[ld]["load_started_s"], "walls_s": [runs[q]["wall_s"],
                                                                                   runs[ld]["wall_s"]]}
        title = (f"{n_rounds} interleaved rounds (`--rounds {n_rounds}`)" if n_rounds > 1 else
                 "sequential: one row after another (`--rounds 1`, the pre-round method)")
        sections += [f"## {title}", "", f"**Goal (ratios agree within 15%), wall time: {how}.**", "",
                     f"**CPU time: {cpu_how}.**", "",
                     ("Wall-time speed-up vs PyTorch eager: median of per-round ratios (IQR across rounds):"
                      if n_rounds > 1 else "Wall-time speed-up vs PyTorch eager (one round: the ratio of the "
                                           "medians):"), "", *table(rows, "speedup"), "",
                     "CPU-time speed-up (`time.process_time` per run; time preempted by the load not counted):",
                     "", *table(cpu_rows, "cpu"), ""]
        if n_rounds > 1:
            fq = sum(1 for c in rows if c["quiet"]["drift"] is not None and abs(c["quiet"]["drift"]) > DRIFT_FLAG)
            fl = sum(1 for c in rows if c["loaded"]["drift"] is not None and abs(c["loaded"]["drift"]) > DRIFT_FLAG)
            summary[mode]["drift_flagged"] = {"quiet": fq, "loaded": fl, "rows": len(rows)}
            sections += [("The same runs, ratio of pooled p50s instead of per-round ratios: "
                          f"{summary[mode]['pooled_verdict']}."), "",
                         (f"Drift (median ratio over the second half of the rounds / first half - 1; `edgevt bench` "
                          f"flags more than {DRIFT_FLAG:.0%} under the table): flagged in {fl} of {len(rows)} rows of "
                          f"the run with the load, {fq} of {len(rows)} of the quiet run."), ""]
        la = runs[ld]["data"]["provenance"].get("load_average")
        started = runs[ld]["load_started_s"]
        sections += [(f"- load: busy loop started {started:.0f} s into a " if started is not None else
                      "- load: never started (the run ended first) in a ")
                     + (f"{runs[ld]['wall_s']:.0f} s run (quiet run {runs[q]['wall_s']:.0f} s); "
                        f"{summary[mode]['load']}; load average after {la.get('after') if la else '?'}"), ""]
    d = runs[modes[0][0] + "_quiet"]["data"]
    eff = d.get("efficiency") or {}
    head = [f"# `edgevt bench` ratios on a busy machine ({args.bundle})", "",
            f"Command: `{cmd}`", "",
            f"Each run: `edgevt bench {args.bundle} --backend {args.backend} --precision {args.precision} "
            f"--batch {args.batch} --threads 1 --warmup-s {args.warmup_s} --duration-s {args.duration_s}` "
            f"(+ `--rounds N`). Load: a Python busy loop"
            + (f", pinned with the bench to CPU {cpu}" if cpu is not None else "")
            + ", started when the quiet run was half-way through its timed rounds. 'quiet' means no load of "
              "ours: other processes on this shared machine ran throughout (load average before the first run "
              f"{d['provenance'].get('load_average', {}).get('before')}).", ""]
    if saved is not None:
        timed = saved.get("timed") or saved["provenance"]
        head += [(f"Timed on {timed['date']} ({timed['cpu']}); this page was rewritten from the saved JSON "
                  "with `--from-json` (same numbers, new drift column)."), ""]
    if eff.get("flops_per_clip"):
        head += [(f"FLOPs per clip {eff['flops_per_clip'] / 1e9:.3f} GFLOP; CPU peak {eff['peak']['formula']}"
                  if eff.get("peak") else ""), ""]
    md = "\n".join(head + sections)
    extra = {"timed": saved.get("timed") or saved["provenance"]} if saved is not None else {}
    path = write_results(args.name, md, {**extra, "command": cmd, "pinned_cpu": cpu, "summary": summary,
                                         "config": {k: str(v) for k, v in vars(args).items()},
                                         "runs": {k: {kk: vv for kk, vv in v.items() if kk != "data"}
                                                  | {"bench": _lean(v["data"])} for k, v in runs.items()}})
    print(md)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
