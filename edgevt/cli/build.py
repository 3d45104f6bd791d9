"""edgevt build: TensorRT engines from a bundle's ONNX graphs, on the machine that will run them."""
from __future__ import annotations

from pathlib import Path

import typer

from edgevt.errors import EdgevtError


def build(
    bundle: Path = typer.Argument(..., help="Bundle folder written by `edgevt export`."),
    precision: str = typer.Option(None, "--precision", "-p",
                                  help="Comma list of fp32,fp16,int8 (default: every precision the bundle has)."),
    batch: str = typer.Option("1,1,8", help="Optimisation profile for the dynamic batch: min,opt,max."),
    workspace: int = typer.Option(1024, help="Builder workspace limit in MiB."),
    dla_core: int = typer.Option(None, "--dla-core", help="Jetson: run on this DLA core with GPU fallback "
                                                          "(2D models only; needs a fixed --batch)."),
    opt_level: int = typer.Option(None, "--opt-level", help="Builder optimisation level 0..5 (TensorRT default 3)."),
    role: str = typer.Option("model", help="Which graph: model (window), encoder, head (incremental) or stateful."),
    verbose: bool = typer.Option(False, "--verbose", help="TensorRT's verbose log."),
) -> None:
    """Build TensorRT engines (model.<precision>.engine + a JSON sidecar) into the bundle.

    The path is chosen by what the installed TensorRT offers: strongly typed on 11.x and >= 10.12,
    weakly typed with the INT8/FP16 flags on older 10.x (JetPack 6). The timing cache is kept in the
    bundle (trt_cache/) and reused. Engines only run on the TensorRT version and GPU that built them.
    """
    from rich.console import Console

    from edgevt.backends.base import parse_batch
    from edgevt.backends.trt_build import build_bundle

    precisions = None
    if precision:
        precisions = [p.strip() for p in precision.split(",") if p.strip()]
        from edgevt.bundle import PRECISIONS

        bad = [p for p in precisions if p not in PRECISIONS]
        if bad:
            raise EdgevtError(f"--precision {','.join(bad)}: choose from {', '.join(PRECISIONS)}")
    console = Console()
    with console.status("building TensorRT engines (minutes per engine on a Jetson)..."):
        results = build_bundle(bundle, precisions=precisions, role=role, batch=parse_batch(batch),
                               workspace_mib=workspace, dla_core=dla_core, opt_level=opt_level, verbose=verbose,
                               log=console.print)
    for r in results:
        sc = r.sidecar
        typer.echo(f"{r.key}: {r.engine} ({r.size_bytes / 2**20:.1f} MiB, {sc.build_seconds:.0f} s, "
                   f"TensorRT {sc.tensorrt}, {sc.gpu}, {'strongly typed' if sc.strongly_typed else 'weakly typed, flags ' + ('+'.join(sc.flags) or 'none')})")


def register(app: typer.Typer) -> None:
    app.command()(build)
