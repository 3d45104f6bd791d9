"""edgevt info: library versions, GPUs, and which backends are usable here."""
from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from edgevt.env import environment


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
