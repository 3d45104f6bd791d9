"""ClipSpec: the one contract on how a clip is made from frames, shared by every stage.

It travels inside checkpoints, ONNX metadata, engine sidecars and bundle manifests, so that
training, calibration, evaluation and streaming sample and normalise frames the same way.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from edgevt.errors import EdgevtError

SPEC_VERSION = 1
SAMPLINGS = ("segment", "uniform", "dense")
RESIZES = ("stretch", "short_side")
PIXEL_FORMATS = ("RGB", "BGR")
STREAMING_FORMS = ("window", "incremental", "stateful")
SHORT_CLIP_RULES = ("loop", "pad")


@dataclass
class ClipSpec:
    """How a model's input clip is built.

    num_frames: frames per clip (T). frame_stride: take every k-th source frame (dense sampling).
    size: (H, W) after resize. resize: ``stretch`` to (H, W), or ``short_side`` resize then a
    centre crop to (H, W). mean/std: per-channel normalisation of [0, 1] pixels, in the order of
    ``pixel_format``. layout: layout of the uint8 frames the deployed model takes.
    sampling: default sampling of clips from a video (see edgevt.data.sampling).
    short_clip: what to do when a video has fewer frames than a clip needs (``loop`` or ``pad``).
    streaming: how a deployed model streams (window, incremental, stateful).
    """

    num_frames: int = 8
    frame_stride: int = 1
    size: tuple[int, int] = (64, 64)
    resize: str = "stretch"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    pixel_format: str = "RGB"
    layout: str = "NTHWC"
    sampling: str = "dense"
    short_clip: str = "loop"
    streaming: str = "window"
    labels: list[str] = field(default_factory=list)
    version: int = SPEC_VERSION

    def __post_init__(self) -> None:
        self.size = tuple(int(s) for s in self.size)  # type: ignore[assignment]
        self.mean = tuple(float(m) for m in self.mean)  # type: ignore[assignment]
        self.std = tuple(float(s) for s in self.std)  # type: ignore[assignment]
        self.labels = [str(label) for label in self.labels]
        self.validate()

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def span(self) -> int:
        """Source frames covered by one dense clip."""
        return (self.num_frames - 1) * self.frame_stride + 1

    def validate(self) -> None:
        def bad(msg: str) -> EdgevtError:
            return EdgevtError(f"invalid ClipSpec: {msg}")

        if self.version > SPEC_VERSION:
            raise bad(f"version {self.version} is newer than this edgevt ({SPEC_VERSION}); upgrade edgevt")
        if self.num_frames < 1:
            raise bad(f"num_frames must be >= 1, got {self.num_frames}")
        if self.frame_stride < 1:
            raise bad(f"frame_stride must be >= 1, got {self.frame_stride}")
        if len(self.size) != 2 or min(self.size) < 8:
            raise bad(f"size must be (H, W) with both >= 8, got {self.size}")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise bad("mean and std need 3 values each")
        if min(self.std) <= 0:
            raise bad(f"std must be positive, got {self.std}")
        for name, value, allowed in [
            ("resize", self.resize, RESIZES),
            ("pixel_format", self.pixel_format, PIXEL_FORMATS),
            ("sampling", self.sampling, SAMPLINGS),
            ("short_clip", self.short_clip, SHORT_CLIP_RULES),
            ("streaming", self.streaming, STREAMING_FORMS),
            ("layout", self.layout, ("NTHWC",)),
        ]:
            if value not in allowed:
                raise bad(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        if len(set(self.labels)) != len(self.labels):
            raise bad("labels must be unique")

    # -- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = asdict(self)
        d["size"] = list(self.size)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ClipSpec":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise EdgevtError(f"invalid ClipSpec: unknown fields {sorted(unknown)}")
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ClipSpec":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise EdgevtError(f"invalid ClipSpec JSON: {e}") from e
        return cls.from_dict(d)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> "ClipSpec":
        p = Path(path)
        if not p.exists():
            raise EdgevtError(f"{p}: no such ClipSpec file")
        return cls.from_json(p.read_text())

    def replace(self, **changes) -> "ClipSpec":
        d = self.to_dict()
        d.update(changes)
        return ClipSpec.from_dict(d)
