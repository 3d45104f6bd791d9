"""edgevt: video classifiers from PyTorch to the edge -- adapt, export, build, stream, measure."""
from edgevt.errors import EdgevtError
from edgevt.spec import ClipSpec

__version__ = "0.1.0"
__all__ = ["ClipSpec", "EdgevtError", "__version__"]
