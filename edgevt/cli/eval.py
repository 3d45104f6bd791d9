"""edgevt eval: accuracy and latency of a checkpoint, a bundle's ONNX graphs or an engine."""
from __future__ import annotations

import json
from pathlib import Path

import typer


def eval_cmd(
    artifact: Path = typer.Argument(..., help="Checkpoint (.pt), ONNX file, TensorRT engine, or bundle folder."),
    data: str = typer.Argument(..., help="Labeled clips: class folders or a 'path label' .txt/.csv list."),
    precision: str = typer.Option(None, help="For a bundle: fp32, fp16, int8 (the INT8 flavour that fits the "
                                             "backend) or int8-cpu / int8-tensorrt by name (default fp32); with "
                                             "--all a comma list."),
    all_precisions: bool = typer.Option(False, "--all", help="For a bundle: every precision side by side "
                                                             "(stored in the bundle manifest's eval section)."),
    backend: str = typer.Option(None, help="Backend (default: torch for checkpoints, ort-cpu for ONNX and "
                                           "bundles, tensorrt for engines); `edgevt info` lists them."),
    with_checkpoint: bool = typer.Option(False, help="With --all: add the source checkpoint (torch) as a row."),
    batch_size: int = typer.Option(8, help="Clips per batch."),
    max_clips: int = typer.Option(None, help="Evaluate at most this many clips (spread over the data)."),
    out: Path = typer.Option(None, "--out", "-o", help="Folder for confusion matrix PNGs and eval.json "
                                                        "(default: eval/ inside a bundle, else none)."),
    threads: int = typer.Option(None, help="CPU threads for the backend."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
    skip_bad: bool = typer.Option(True, "--skip-bad/--no-skip-bad",
                                  help="Skip unreadable, truncated or empty videos with a warning that lists "
                                       "them (default), or stop at the first one with --no-skip-bad."),
) -> None:
    """Top-1/top-5, per-class accuracy, confusion matrix PNG and a latency summary of ARTIFACT on
    DATA; every row is computed on the same clips sampled with the artifact's ClipSpec."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from edgevt.errors import EdgevtError
    from edgevt.bundle import artifact_kind
    from edgevt.eval.evaluate import evaluate, evaluate_all

    from edgevt.cli._options import at_least, threads as check_threads

    if batch_size < 1:
        raise EdgevtError(f"--batch-size must be >= 1, got {batch_size}")
    at_least("--max-clips", max_clips, 1, "omit it to evaluate every clip")
    check_threads(threads)
    kind = artifact_kind(artifact)
    if all_precisions and kind != "bundle":
        raise EdgevtError(f"{artifact}: --all needs a bundle folder")
    if out is None and kind == "bundle":
        out = (artifact.parent if artifact.name == "edgevt.json" else artifact) / "eval"
    console = Console(stderr=True)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=console,
                  transient=True) as p:
        task = p.add_task("evaluating", total=None)

        def progress(n: int) -> None:
            p.advance(task, n)

        if all_precisions:
            results = evaluate_all(artifact, data, backend=backend, batch_size=batch_size, max_clips=max_clips,
                                   out_dir=out, threads=threads, include_checkpoint=with_checkpoint,
                                   progress=progress, skip_bad=skip_bad,
                                   precisions=[q.strip() for q in precision.split(",") if q.strip()]
                                   if precision else None)
        else:
            results = [evaluate(artifact, data, precision=precision, backend=backend, batch_size=batch_size,
                                max_clips=max_clips, out_dir=out, threads=threads, progress=progress,
                                skip_bad=skip_bad)]
    if out is not None:
        from edgevt.fileio import atomic_write_text

        Path(out).mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(out) / "eval.json", json.dumps([r.to_dict() for r in results], indent=2))
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in results], indent=2))
        return
    print_results(results)


def _f(v, fmt="{:.2f}") -> str:
    return "" if v is None else fmt.format(v)


def print_results(results) -> None:
    from rich.console import Console
    from rich.table import Table

    from edgevt.eval.report import results_table_rows

    console = Console()
    r0 = results[0]
    t = Table(title=f"{r0.artifact} on {r0.data} ({r0.clips} clips)")
    for col in ("backend", "prec", "top-1", "top-5", "Δtop-1", "agree", "p50 ms", "p90 ms", "clips/s"):
        t.add_column(col, justify="right", no_wrap=True)
    for row in results_table_rows(results):
        t.add_row(row["backend"], row["precision"], _f(row["top1"]), _f(row["top5"]), _f(row["delta_top1"], "{:+.2f}"),
                  _f(row["agreement_fp32"], "{:.1f}"), _f(row["p50_ms"]), _f(row["p90_ms"]),
                  _f(row["throughput"], "{:.1f}"))
    console.print(t)
    if len(results) == 1:
        pc = Table(title="per-class top-1")
        pc.add_column("class")
        pc.add_column("clips", justify="right")
        pc.add_column("top-1 %", justify="right")
        for name, v in r0.per_class.items():
            pc.add_row(name, str(v["clips"]), _f(v["top1"], "{:.1f}"))
        console.print(pc)
    for r in results:
        if r.confusion_png:
            console.print(f"confusion matrix: {r.confusion_png}")
    batch = r0.batch_size
    console.print(f"[dim]top-1/top-5 in %; agree: % of clips with the fp32 graph's top-1; latency: wall time "
                  f"of backend.run per batch of {batch} (first and partial batches excluded)[/]")


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_cmd)
