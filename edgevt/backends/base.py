"""The one small inference interface every consumer (eval, run, bench) talks to.

A backend opens an artifact (checkpoint, ONNX file, engine) and runs batches of named numpy
arrays. Backends register by name with a function that says whether they can run here and, if
not, what to install. See edgevt/backends/__init__.py for the registry.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple  # ints, or str/None for dynamic axes (e.g. "batch")
    dtype: str  # numpy dtype name: "uint8", "float32", "float16"


@dataclass
class Timing:
    """Seconds spent in the last ``run``: host->device copy, device compute, device->host copy.
    Backends that cannot tell them apart leave the copies at 0 and put everything in compute."""

    h2d: float = 0.0
    compute: float = 0.0
    d2h: float = 0.0

    @property
    def total(self) -> float:
        return self.h2d + self.compute + self.d2h


class Backend(ABC):
    """Run named inputs through a model. Subclasses set ``name``, ``inputs`` and ``outputs``."""

    name: str = ""
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    # Inputs/outputs that carry recurrent state (stateful streaming models), as {input: output}.
    state: dict[str, str] = {}

    def __init__(self) -> None:
        self.last_timing = Timing()

    @abstractmethod
    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch; inputs and outputs are keyed by tensor name."""

    def close(self) -> None:
        """Release sessions, engines and device buffers."""

    @abstractmethod
    def describe(self) -> dict:
        """Device, precision and library versions, for reports."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]


@dataclass
class BackendEntry:
    name: str
    description: str
    opener: object  # callable(artifact, **options) -> Backend
    check: object  # callable() -> (usable: bool, reason: str)
    artifact_kinds: tuple = field(default=())
