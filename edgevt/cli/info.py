"""edgevt info: library versions, GPUs, and which backends are usable here."""
from __future__ import annotations

import json
import platform

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table


def environment() -> dict:
    """Versions and devices; reused as provenance by reports and benchmarks."""
    import cv2
    import numpy
    import onnx
    import onnxruntime
    import torch

    info = {
        "edgevt": __import__("edgevt").__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
        "cuda": torch.version.cuda,
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if torch.cuda.is_available() else [],
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "onnxruntime_providers": onnxruntime.get_available_providers(),
        "opencv": cv2.__version__,
        "numpy": numpy.__version__,
    }
    try:
        import tensorrt

        info["tensorrt"] = tensorrt.__version__
    except ImportError:
        info["tensorrt"] = None
    return info


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def info(as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON.")) -> None:
    """Show versions of torch/onnxruntime/TensorRT/CUDA, the GPUs, and which backends run here."""
    from edgevt.backends import available_backends

    env = environment()
    backends = available_backends()
    if as_json:
        env["backends"] = {n: {"usable": ok, "reason": r} for n, ok, r in backends}
        typer.echo(json.dumps(env, indent=2))
        return
    console = Console()
    t = Table(title="edgevt environment", show_header=False)
    for k, v in env.items():
        t.add_row(k, str(v) if v not in (None, []) else "[dim]not available[/]")
    console.print(t)
    if backends:
        b = Table(title="backends")
        b.add_column("backend")
        b.add_column("usable")
        b.add_column("why / what")
        for name, ok, reason in backends:
            b.add_row(name, "[green]yes[/]" if ok else "[red]no[/]", escape(reason))  # "[gpu]" is not markup
        console.print(b)


def register(app: typer.Typer) -> None:
    app.command()(info)
