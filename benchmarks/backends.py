"""Backends benchmark: `edgevt bench` on the demo's adapted MotionDigits bundle, every usable backend
and precision, with PyTorch eager (the source checkpoint) as the baseline row.

    python benchmarks/backends.py                      # quick demo bundle, threads 1 and all cores
    python benchmarks/backends.py --model tsn_efficientnet_lite0   # an edge-sized network
    python benchmarks/backends.py --threads 2 --duration-s 20 --batch 1,8

The bundle comes from the demo's first steps (data -> adapt -> export, reused when already in
--work). Results go to benchmarks/results/bench_backends_<arch>_t<threads>.{md,json,png}: the markdown
table, a JSON with provenance (versions, CPU/GPU, thread settings, TensorRT when used) and the
latency plot. Not a timed test: numbers depend on the machine and how busy it is (rows flagged
noisy say so).
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path("runs/bench_backends"),
                    help="demo folders (one per model) whose bundle is benchmarked (created when missing)")
    ap.add_argument("--size", default="quick", help="demo size that builds the bundle (tiny, quick, full)")
    ap.add_argument("--model", default=None, help="model the demo adapts and exports (default: the size's); "
                                                  "e.g. tsn_efficientnet_lite0 for an edge-sized network")
    ap.add_argument("--bundle", type=Path, default=None,
                    help="bench this existing bundle instead (its clips: --clips); skips the demo steps")
    ap.add_argument("--clips", type=Path, default=None, help="videos for real input clips (with --bundle)")
    ap.add_argument("--backend", default="auto", help="backends (auto: every usable one)")
    ap.add_argument("--precision", default="auto", help="precisions (auto: every one in the bundle)")
    ap.add_argument("--batch", default="1,4")
    ap.add_argument("--warmup-s", type=float, default=2.0)
    ap.add_argument("--duration-s", type=float, default=10.0)
    ap.add_argument("--threads", default=f"1,{os.cpu_count() or 1}",
                    help="comma list of CPU thread counts; one table per value")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from edgevt.bench.report import rich_table, write_reports
    from edgevt.bench.suite import run_bench
    from dataclasses import replace

    from edgevt.demo import SIZES, run_demo
    from edgevt.bundle import Bundle
    from edgevt.models.zoo import model_info

    console = Console()
    if args.bundle is None:
        size = SIZES[args.size]
        if args.model:
            lite = model_info(args.model).backbone == "efficientnet_lite0"
            size = replace(size, model=args.model, weights="pretrained" if lite else "none")
        demo = run_demo(args.work / size.model, size, console=console, until="export")
        bundle, clips = demo.out / "bundle", demo.out / "data" / "target_test.txt"
        origin = f"demo --{args.size} --model {size.model} bundle"
    else:
        bundle, clips, origin = args.bundle, args.clips, "given bundle"
    for threads in sorted({int(t) for t in args.threads.split(",")}):
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=True) as progress:
            result = run_bench(bundle, args.backend, args.precision, args.batch, warmup_s=args.warmup_s,
                               duration_s=args.duration_s, threads=threads, clips=clips, progress=progress)
        result.config["benchmark"] = f"benchmarks/backends.py ({origin} {bundle}, threads {threads})"
        console.print(rich_table(result))
        arch = (Bundle.load(bundle, verify=False).manifest.get("source") or {}).get("arch") or "model"
        files = write_reports(result, args.out, f"bench_backends_{arch}_t{threads}")
        console.print(f"wrote {', '.join(str(f) for f in files.values())}")


if __name__ == "__main__":
    main()
