"""edgevt: video classifiers from PyTorch to the edge -- adapt, export, build, stream, measure."""
import os as _os

# FFmpeg (inside OpenCV) prints its own lines ("moov atom not found") to stderr before edgevt's
# one-line error about the same file; edgevt names unreadable videos itself. Set before cv2 is
# imported; export OPENCV_FFMPEG_LOGLEVEL=24 (or OPENCV_LOG_LEVEL=INFO) to see them again.
_os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
_os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")

from edgevt.errors import EdgevtError
from edgevt.spec import ClipSpec

__version__ = "0.1.0"
__all__ = ["ClipSpec", "EdgevtError", "__version__", "adapt", "eval", "stream"]

# Verbs that are callable packages, imported on first use (``import edgevt`` stays light):
# ``edgevt.adapt(AdaptConfig(...))``, ``edgevt.eval(artifact, data)``, ``edgevt.stream(source, model)``.
_LAZY = ("adapt", "eval", "stream")


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return importlib.import_module(f"edgevt.{name}")
    raise AttributeError(f"module 'edgevt' has no attribute {name!r}")
