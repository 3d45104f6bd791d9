"""No import runs back up the pipeline: every edgevt module imports only its own room or rooms below.

Every import is read with ``ast`` (module-level and function-local alike: a lazy import is still an
arrow), so a module that reaches for a later stage fails here even if it only does so inside a
function.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "edgevt"

# The rooms in pipeline order, lowest first; a module may import its own layer and the ones above it
# in this list. "edgevt" is the package itself (``import edgevt`` for ``__version__``).
LAYERS = [
    {"errors", "fileio", "env", "_callable"},
    {"edgevt", "spec", "metrics", "stats"},  # the contracts every stage shares
    {"data"},
    {"models"},
    # The bundle format sits above models: open_artifact reads a checkpoint's ClipSpec through
    # models.checkpoint (a bundle is made from a checkpoint); nothing in data/ or models/ reads bundles.
    {"bundle"},
    {"adapt"},
    {"export"},
    {"backends"},
    {"stream"},
    {"deploy"},  # Triton/DeepStream configs and the Triton model stub, which runs edgevt.stream
    {"eval"},
    {"bench"},
    {"demo"},
    {"cli", "__main__"},
]
RANK = {room: i for i, rooms in enumerate(LAYERS) for room in rooms}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def room(module: str) -> str:
    """``edgevt.eval.evaluate`` -> ``eval``; ``edgevt.spec`` -> ``spec``; ``edgevt`` -> ``edgevt``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def imported(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, edgevt module) for every import in ``source``, the module ``module`` (relative imports
    resolved; ``from edgevt import adapt`` counts as ``edgevt.adapt``)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "edgevt":  # a room (``from edgevt import adapt``) or a name of the package itself
                found += [(node.lineno, f"edgevt.{a.name}" if a.name in RANK else "edgevt") for a in node.names]
            else:
                found.append((node.lineno, target))
    return [(line, name) for line, name in found if name == "edgevt" or name.startswith("edgevt.")]


def back_arrows(source: str, module: str, is_package: bool = False) -> list[str]:
    """The imports of ``module`` that go to a later room of the pipeline."""
    own = RANK[room(module)]
    return [f"{module}:{line} imports {target} ({room(module)} -> {room(target)})"
            for line, target in imported(source, module, is_package) if RANK.get(room(target), -1) > own]


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_every_room_has_a_place_in_the_pipeline():
    rooms = {room(module_name(p)) for p in modules()}
    assert rooms - set(RANK) == set(), "put each new room of edgevt/ into LAYERS"
    assert set(RANK) - rooms == set(), "LAYERS names a room that is gone"


def test_no_import_runs_back_up_the_pipeline():
    arrows = []
    for path in modules():
        arrows += back_arrows(path.read_text(), module_name(path), path.name == "__init__.py")
    assert arrows == [], "\n".join(arrows)


@pytest.mark.parametrize("module, source", [
    # the import eval had before edgevt.stats existed: inside a function, still an arrow
    ("edgevt.eval.evaluate", "def predict():\n    from edgevt.bench.latency import LatencyStats\n"),
    ("edgevt.backends.triton", "from edgevt.stream.sources import GapEvent\n"),
    ("edgevt.data.datasets", "import edgevt.models.zoo\n"),
    ("edgevt.export.onnx", "from edgevt import stream\n"),
    ("edgevt.adapt.pixel.gan", "from ...eval import evaluate\n"),
])
def test_a_back_arrow_is_caught(module, source):
    assert len(back_arrows(source, module)) == 1


@pytest.mark.parametrize("module, source", [
    ("edgevt.eval.evaluate", "from edgevt.stats import LatencyStats\nfrom edgevt.backends import open_backend\n"),
    ("edgevt.bench.suite", "from edgevt.eval.evaluate import evaluate\nimport edgevt\n"),
    ("edgevt.adapt.pixel.gan", "from . import fda\nfrom ..trainer import train\n"),
])
def test_imports_down_or_within_a_room_pass(module, source):
    assert back_arrows(source, module) == []
