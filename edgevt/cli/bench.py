"""edgevt bench: latency percentiles per backend, precision and batch, against PyTorch eager."""
from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from edgevt.errors import EdgevtError


def bench(
    bundle: Path = typer.Argument(..., help="Bundle folder written by `edgevt export` (edgevt.json inside)."),
    backend: str = typer.Option("auto", "--backend", "-b",
                                help="Comma list of backends (ort-cpu, ort-cuda, ort-trt, tensorrt, torch), "
                                     "or auto = every backend usable here (see `edgevt info`)."),
    precision: str = typer.Option("auto", "--precision", "-p",
                                  help="Comma list of fp32, fp16, int8 (each backend times the INT8 flavour "
                                       "that fits it), int8-cpu / int8-tensorrt (a flavour by name, e.g. the "
                                       "other one), or auto = every precision in the bundle."),
    batch: str = typer.Option("1", "--batch", help="Comma list of batch sizes, e.g. 1,4."),
    warmup_s: float = typer.Option(2.0, "--warmup-s", help="Warm-up seconds per configuration (not timed)."),
    duration_s: float = typer.Option(10.0, "--duration-s", help="Timed seconds per configuration (at least 5 runs)."),
    runs: int = typer.Option(None, "--runs", help="Timed runs per configuration instead of --duration-s."),
    rounds: int = typer.Option(10, "--rounds", help="Interleaved rounds: each round times a slice of every row "
                                                    "(--duration-s or --runs split over them), so load from other "
                                                    "processes hits all rows alike; speed-ups are per round."),
    order: str = typer.Option("rotate", "--order", help="Row order within a round: rotate (round r starts at "
                                                       "row r) or shuffle (seeded)."),
    threads: int = typer.Option(None, "--threads", help="CPU threads for torch and onnxruntime (default: "
                                                        "library default); what was used is recorded."),
    clips: Path = typer.Option(None, "--clips", help="Folder or list of videos to take real input clips from "
                                                    "(sampled with the bundle's ClipSpec); default: random uint8."),
    out: Path = typer.Option(None, "--out", "-o", help="Folder for bench.json/.md/.png (default: <bundle>/bench)."),
    name: str = typer.Option("bench", help="File name stem of the reports."),
    baseline: bool = typer.Option(True, "--baseline/--no-baseline",
                                  help="Time PyTorch eager on the source checkpoint as the baseline row."),
    stream: Path = typer.Option(None, "--stream", help="Time the streaming loop end to end on this video "
                                                       "instead, with its stage breakdown."),
    wide: bool = typer.Option(False, "--wide", help="Print every column even where the terminal is too narrow "
                                                    "(default: the key columns there; the reports have all)."),
) -> None:
    """Time every backend x precision x batch of a bundle: warm-up by time, then timed runs in
    interleaved rounds; reports p50/p90/p95/p99, mean, min, max, clips/s, copies vs compute where the
    backend separates them, the speed-up against PyTorch eager (median over rounds, with its spread),
    and achieved GFLOP/s with its share of the CPU's peak. Writes a JSON with provenance, markdown and
    a PNG plot."""
    from edgevt.bench.report import natural_width, rich_table, write_reports

    console = Console()
    if runs is not None and runs < 1:  # before `runs=None if not runs` below could hide it
        raise EdgevtError(f"--runs {runs}: must be >= 1 (or omit it to time by --duration-s)")
    if rounds < 1:
        raise EdgevtError(f"--rounds {rounds}: must be >= 1")
    if not bundle.exists():
        raise EdgevtError(f"{bundle}: no such bundle folder; create one with `edgevt export`")
    out = out or (Path(bundle) / "bench")
    if stream is not None:
        from edgevt.bench.streaming import bench_stream, stream_table, write_stream_reports

        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=True) as progress:
            result = bench_stream(bundle, stream, backend=None if backend == "auto" else backend,
                                  precision=None if precision == "auto" else precision, threads=threads,
                                  progress=progress)
        console.print(stream_table(result))
        files = write_stream_reports(result, out, name=f"{name}_stream")
    else:
        from edgevt.bench.suite import run_bench

        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=True) as progress:
            result = run_bench(bundle, backend, precision, batch, warmup_s=warmup_s,
                               duration_s=None if runs else duration_s, runs=runs, threads=threads,
                               clips=clips, baseline=baseline, progress=progress,
                               rounds=rounds, order=order)
        table = rich_table(result, width=console.width, wide=wide)
        # --wide: unsqueezed, so a pager (less -S) or a log gets whole cells rather than '…'.
        (Console(width=natural_width(table)) if wide else console).print(table)
        from edgevt.bench.suite import machine_busy

        busy = machine_busy(result.provenance)
        if busy:
            console.print(f"[yellow]{busy}[/]")
        noisy = [r.label for r in result.ok_rows() if r.stats.noisy]
        if noisy:
            console.print(f"[yellow]noisy:[/] {', '.join(noisy)} (busy machine: high spread); rerun before quoting")
        from edgevt.bench.report import drift_warning

        drift = drift_warning(result)
        if drift:
            console.print(f"[yellow]{drift}[/]")
        files = write_reports(result, out, name)
    for kind, f in files.items():
        console.print(f"{kind}: {f}")
    if stream is None and not result.ok_rows():
        failed = [r for r in result.rows if r.status == "failed"]
        why = (failed or result.rows)[0] if result.rows else None
        raise EdgevtError(f"{bundle}: no configuration could be timed" +
                          (f" ({len(failed)} failed, first: {why.backend} {why.precision}: {why.reason})" if why else "")
                          + "; see the table above")


def register(app: typer.Typer) -> None:
    app.command()(bench)
