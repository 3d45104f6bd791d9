"""The ``edgevt`` command line: a thin typer layer over the library.

Each verb lives in its own module of this package and exposes ``register(app)``; the app picks
them all up, so adding a verb never touches another verb's file. Bad input raises EdgevtError,
which is printed as one line (no traceback) with exit code 2.
"""
from __future__ import annotations

import importlib
import os
import pkgutil
import sys
import warnings

import typer
from rich.console import Console
from rich.markup import escape

from edgevt.errors import EdgevtError

app = typer.Typer(
    name="edgevt",
    help="Adapt video classifiers to a target domain, export them with calibrated precision, build "
         "TensorRT engines and stream them on edge devices.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
err_console = Console(stderr=True)


def _load_verbs() -> None:
    for mod in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{mod.name}")
        if hasattr(module, "register"):
            module.register(app)


_load_verbs()


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """edgevt's own warnings (skipped videos...) as one 'warning:' line, not Python's two-line
    'path:line: UserWarning:' form; other libraries' warnings keep the default format."""
    if issubclass(category, UserWarning) and f"{os.sep}edgevt{os.sep}" in str(filename):
        err_console.print(f"[yellow]warning:[/] {escape(str(message))}", highlight=False, soft_wrap=True)
    else:
        _default_showwarning(message, category, filename, lineno, file, line)


_default_showwarning = warnings.showwarning


def main(argv: list[str] | None = None) -> None:
    previous, warnings.showwarning = warnings.showwarning, _show_warning
    try:
        app(args=argv, prog_name="edgevt")
    except EdgevtError as e:
        err_console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    finally:
        warnings.showwarning = previous
