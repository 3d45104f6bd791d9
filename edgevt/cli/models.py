"""edgevt models: list the model registry."""
from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table


def models() -> None:
    """List registry models: family, backbone, default pretrained weights and streaming forms."""
    from edgevt.models.zoo import list_models

    table = Table(title="edgevt models")
    table.add_column("name", no_wrap=True)
    for col in ("family", "backbone", "pretrained weights", "input", "streaming"):
        table.add_column(col, overflow="fold")
    for m in list_models():
        fixed = "x".join(map(str, m.fixed_input)) + " (T,H,W)" if m.fixed_input else "any"
        table.add_row(m.name, m.family, m.backbone, m.default_weights, fixed, ", ".join(m.streaming))
    Console().print(table)


def register(app: typer.Typer) -> None:
    app.command()(models)
