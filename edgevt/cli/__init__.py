"""The ``edgevt`` command line: a thin typer layer over the library.

Each verb lives in its own module of this package and exposes ``register(app)``; the app picks
them all up, so adding a verb never touches another verb's file. Bad input raises EdgevtError,
which is printed as one line (no traceback) with exit code 2. SIGTERM (``kill``, a CI timeout,
``docker stop``) stops a verb as Ctrl-C does, so that what it was writing is removed (an export's
staging folder, temporary files) before it exits with 143.
"""
from __future__ import annotations

import importlib
import os
import pkgutil
import signal
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


_terminated: list[int] = []  # SIGTERM seen: typer turns the KeyboardInterrupt into exit 130 before main sees it


def _on_sigterm(signum, frame) -> None:
    """SIGTERM raised as a KeyboardInterrupt where the process is, so that every ``finally`` and ``except
    BaseException`` on the way out runs (Python's default exits at once and leaves half-written files)."""
    _terminated.append(signum)
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    previous, warnings.showwarning = warnings.showwarning, _show_warning
    _terminated.clear()
    try:  # only the main thread may set a handler (a test may call main from another)
        previous_term = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:
        previous_term = None
    try:
        app(args=argv, prog_name="edgevt")
    except EdgevtError as e:
        err_console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except (KeyboardInterrupt, SystemExit) as e:  # typer turns Ctrl-C into exit code 130 itself
        if _terminated:
            err_console.print("terminated")
            sys.exit(128 + signal.SIGTERM)
        if isinstance(e, SystemExit):
            raise
        err_console.print("interrupted")
        sys.exit(130)
    finally:
        warnings.showwarning = previous
        if previous_term is not None:
            signal.signal(signal.SIGTERM, previous_term)
