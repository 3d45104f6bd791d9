"""edgevt: video classifiers from PyTorch to the edge -- adapt, export, build, stream, measure."""
from edgevt.errors import EdgevtError
from edgevt.spec import ClipSpec

__version__ = "0.1.0"
__all__ = ["ClipSpec", "EdgevtError", "__version__", "stream"]


def __getattr__(name: str):
    # Lazy: ``edgevt.stream(source, model)`` (a callable package) without importing OpenCV at ``import edgevt``.
    if name == "stream":
        import importlib

        return importlib.import_module("edgevt.stream")
    raise AttributeError(f"module 'edgevt' has no attribute {name!r}")
