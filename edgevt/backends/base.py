"""The one small inference interface every consumer (eval, run, bench) talks to.

A backend opens an artifact (checkpoint, ONNX file, engine) and runs batches of named numpy
arrays. Backends register by name with a function that says whether they can run here and, if
not, what to install. See edgevt/backends/__init__.py for the registry.

Opening (``open_backend(name, artifact, **options)``):

- ``torch``: a checkpoint (.pt), a bundle (its ``source.checkpoint``), a checkpoint dict, or an
  ``nn.Module`` with ``spec=``; ``role`` model | encoder | head, ``device`` auto | cpu | cuda,
  ``precision`` fp32 | fp16 (CUDA), ``threads``.
- ``ort-cpu`` / ``ort-cuda`` / ``ort-trt``: an .onnx file, or a bundle with ``key="model.int8"`` or
  ``role=`` + ``precision=``; ``threads``; ort-trt also ``batch=(min, opt, max)``, ``cache_dir``,
  ``workspace_mb``, ``dla_core``.
- ``tensorrt``: an .engine file with its sidecar, or a bundle with ``role=`` + ``precision=``.

Every backend takes the same named inputs as the exported graph (``frames`` uint8
[batch, T, H, W, 3] -> ``logits``), reports ``last_timing`` after each ``run`` and ``describe()``
for reports; a missing or mistyped input is an EdgevtError naming the tensor.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

from edgevt.errors import EdgevtError


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


@dataclass
class GapEvent:
    """A live source stalled or disconnected, or a remote backend lost its server (backends/triton.py):
    the record both hand the streaming loop (defined here, below both, so backends need not import
    stream). ``start_time`` is when its last frame arrived, ``end_time`` when frames flowed again
    (recovered) or when the reader gave up. After a recovered gap the stream starts a new segment:
    ``first_ring_index`` is the first ring frame after it, and no window, embedding history,
    stateful buffer or smoothed score crosses it."""

    start_time: float
    end_time: float
    after_source_frame: int  # source frames read before the gap (the next frame gets this number)
    attempts: int
    reason: str
    recovered: bool
    first_ring_index: int = -1  # ring index of the first frame after the gap (-1: none came)
    duration_s: float = 0.0


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


# -- helpers shared by backends ------------------------------------------------------------------
@dataclass
class ResolvedArtifact:
    """What a backend opens: a file, and the bundle entry it came from (if any)."""

    path: "object"  # pathlib.Path
    key: str | None = None  # bundle artifact key, e.g. "model.int8"
    bundle: "object" = None  # edgevt.bundle.Bundle or None
    meta: dict = field(default_factory=dict)  # the bundle's artifact entry


def resolve_artifact(artifact, *, key: str | None = None, role: str = "model", precision: str | None = None,
                     kind: str = "onnx", suffixes: tuple | None = None, backend: str | None = None) -> ResolvedArtifact:
    """A file path, or a bundle folder/manifest (or Bundle) + ``key`` / ``role`` + ``precision``.

    ``precision`` defaults to fp32; ``int8`` is the INT8 flavour that fits ``backend`` (the backend's
    name), ``int8-cpu``/``int8-tensorrt`` a flavour by name (``Bundle.resolve_precision``); ``meta``
    then holds ``precision_name``, the name to show. For ``kind="engine"`` the key is
    ``engine.<role>.<precision>``.
    """
    from pathlib import Path

    from edgevt.bundle import ENGINE_SUFFIXES, MANIFEST, ONNX_SUFFIXES, Bundle, artifact_key

    if isinstance(artifact, Bundle):
        bundle = artifact
    else:
        p = Path(artifact)
        if p.is_file() and p.name != MANIFEST:  # a bare file: no bundle entry, no spec needed to open it
            suffixes = suffixes or (ENGINE_SUFFIXES if kind == "engine" else ONNX_SUFFIXES)
            if p.suffix not in suffixes:
                raise EdgevtError(f"{p}: expected a {' or '.join(suffixes)} file or an edgevt bundle folder")
            return ResolvedArtifact(path=p)
        if not p.exists():
            raise EdgevtError(f"{p}: no such file or bundle folder")
        bundle = Bundle.load(p, verify=False)
    name = None
    if key is None:
        stored, name = bundle.resolve_precision(precision, backend)
        key = artifact_key(role, stored, engine=kind == "engine")
    meta = dict(bundle.artifact(key))
    bundle.verify([key])  # a missing or altered file is caught before it is run
    meta["precision_name"] = name or _shown_precision(meta)
    return ResolvedArtifact(path=bundle.artifact_path(key), key=key, bundle=bundle, meta=meta)


def _shown_precision(meta: dict) -> str | None:
    from edgevt.bundle import int8_name

    p = meta.get("precision")
    return int8_name(meta.get("flavour") or "tensorrt") if p == "int8" else p


def parse_batch(batch) -> tuple[int, int, int]:
    """``"1,8,32"`` / ``(1, 8, 32)`` / ``8`` -> (min, opt, max), checked min <= opt <= max."""
    if isinstance(batch, int):
        vals = (batch, batch, batch)
    elif isinstance(batch, str):
        try:
            vals = tuple(int(v) for v in batch.split(","))
        except ValueError:
            raise EdgevtError(f"--batch {batch!r}: expected min,opt,max integers, e.g. 1,8,32") from None
    else:
        vals = tuple(int(v) for v in batch)
    if len(vals) == 1:
        vals = vals * 3
    if len(vals) != 3 or not (1 <= vals[0] <= vals[1] <= vals[2]):
        raise EdgevtError(f"batch {batch!r}: need min,opt,max with 1 <= min <= opt <= max")
    return vals  # type: ignore[return-value]


def cuda_device_count() -> int:
    """CUDA devices visible to the driver, asked through libcuda (no torch/onnxruntime-gpu needed)."""
    import ctypes

    for lib in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            cuda = ctypes.CDLL(lib)
        except OSError:
            continue
        n = ctypes.c_int(0)
        if cuda.cuInit(0) != 0 or cuda.cuDeviceGetCount(ctypes.byref(n)) != 0:
            return 0
        return n.value
    return 0


def numpy_dtype_name(onnx_type: str) -> str:
    """'tensor(float16)' -> 'float16' (onnxruntime's type strings)."""
    t = onnx_type.removeprefix("tensor(").removesuffix(")")
    return {"float": "float32", "double": "float64"}.get(t, t)


def check_inputs(backend: "Backend", inputs: dict) -> dict:
    """Contiguous arrays with the declared dtypes; a clear error for a missing or mistyped input."""

    out = {}
    for t in backend.inputs:
        if t.name not in inputs:
            raise EdgevtError(f"{backend.name}: missing input {t.name!r} (expects {backend.input_names})")
        a = np.ascontiguousarray(inputs[t.name])
        if a.dtype.name != t.dtype:
            raise EdgevtError(f"{backend.name}: input {t.name!r} must be {t.dtype}, got {a.dtype.name}")
        if len(a.shape) != len(t.shape) or any(isinstance(d, int) and d != s for d, s in zip(t.shape, a.shape)):
            raise EdgevtError(f"{backend.name}: input {t.name!r} has shape {tuple(a.shape)}, expected {t.shape}")
        out[t.name] = a
    return out
