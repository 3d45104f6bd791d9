"""``tensorrt`` backend: native TensorRT engines built by ``edgevt build`` (10.x and 11.x).

Opens ``engine.<role>.<precision>`` from a bundle (or an ``.engine`` file with its sidecar). The
sidecar is checked first: an engine built by another TensorRT version or for another GPU is refused
with a message that says how to rebuild. Device memory is owned by torch (CUDA tensors allocated
once per input shape, addresses bound with ``set_tensor_address``); inference is
``execute_async_v3`` on a torch CUDA stream, with host->device copy, compute and device->host copy
timed by CUDA events.

Not run in edgevt's CI (no GPU there): written against the TensorRT 10/11 Python API and checked by
``benchmarks/gpu_check.py`` on a GPU machine.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgevt.backends import register_backend
from edgevt.backends.base import Backend, BackendEntry, TensorInfo, Timing, check_inputs, resolve_artifact
from edgevt.backends.trt_build import (TRT_HINT, check_engine_compatible, check_sidecar_matches, gpu_identity,
                                       import_tensorrt)
from edgevt.bundle import read_sidecar
from edgevt.errors import EdgevtError

# TensorRT DataType names -> numpy (trt.nptype lacks uint8 on some 10.x releases).
_NP = {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32, "INT64": np.int64,
       "BOOL": np.bool_, "UINT8": np.uint8}


def numpy_dtype(trt_dtype) -> np.dtype:
    name = getattr(trt_dtype, "name", str(trt_dtype).rsplit(".", 1)[-1])
    if name not in _NP:
        raise EdgevtError(f"engine tensor type {name} has no numpy equivalent")
    return np.dtype(_NP[name])


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, artifact, *, key: str | None = None, role: str = "model", precision: str | None = None,
                 device_id: int = 0, verbose: bool = False, **_ignored):
        super().__init__()
        import torch

        trt = import_tensorrt()
        if key is not None and not key.startswith("engine."):
            key = f"engine.{key}"
        self.art = resolve_artifact(artifact, key=key, role=role, precision=precision, kind="engine",
                                    backend="tensorrt")
        self.path = Path(self.art.path)
        self.sidecar = read_sidecar(self.path)
        gpu, cc = gpu_identity(device_id)
        check_engine_compatible(self.path, self.sidecar, trt.__version__, gpu, cc)
        self.precision = self.sidecar.precision
        self.device = torch.device("cuda", device_id)
        self.gpu = gpu
        self._logger = trt.Logger(trt.Logger.VERBOSE if verbose else trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        data = self.path.read_bytes()
        check_sidecar_matches(self.path, data, self.sidecar)
        with torch.cuda.device(self.device):
            self.engine = self._runtime.deserialize_cuda_engine(data)
            if self.engine is None:
                raise EdgevtError(f"{self.path}: TensorRT {trt.__version__} could not deserialize it -- rebuild it "
                                  f"with `edgevt build {self.path.parent} --precision {self.precision}`")
            self.context = self.engine.create_execution_context()
        self.inputs, self.outputs = [], []
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            dims = tuple(d if d >= 0 else ("batch" if j == 0 else None)
                         for j, d in enumerate(self.engine.get_tensor_shape(name)))
            info = TensorInfo(name, dims, numpy_dtype(self.engine.get_tensor_dtype(name)).name)
            (self.inputs if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else self.outputs).append(info)
        self.state = dict(self.sidecar.state or self.art.meta.get("state", {}))
        self.stream = torch.cuda.Stream(self.device)
        self._events = [torch.cuda.Event(enable_timing=True) for _ in range(4)]
        self._buffers: dict = {}  # input shapes -> {"host": pinned inputs, "dev": device tensors}
        self._bound = None  # shape key whose addresses are set on the context

    def _prepare(self, feeds: dict[str, np.ndarray]):
        import torch

        key = tuple((n, a.shape) for n, a in feeds.items())
        if key not in self._buffers:
            prof = self.sidecar.profile
            for n, a in feeds.items():
                if n in prof and not all(lo <= s <= hi for lo, s, hi in zip(prof[n]["min"], a.shape, prof[n]["max"])):
                    raise EdgevtError(f"{self.path.name}: input {n} shape {a.shape} is outside the engine's profile "
                                      f"{prof[n]['min']}..{prof[n]['max']}; rebuild with a wider --batch")
            host, dev = {}, {}  # pinned host staging and device tensors, inputs and outputs
            for n, a in feeds.items():
                tdt = torch.from_numpy(np.empty(0, a.dtype)).dtype
                host[n] = torch.empty(a.shape, dtype=tdt, pin_memory=True)
                dev[n] = torch.empty(a.shape, dtype=tdt, device=self.device)
                self.context.set_input_shape(n, a.shape)
            for t in self.outputs:
                shape = tuple(self.context.get_tensor_shape(t.name))
                tdt = torch.from_numpy(np.empty(0, t.dtype)).dtype
                dev[t.name] = torch.empty(shape, dtype=tdt, device=self.device)
                host[t.name] = torch.empty(shape, dtype=tdt, pin_memory=True)
            self._buffers[key] = {"host": host, "dev": dev}
        bufs = self._buffers[key]
        if self._bound != key:  # shapes and addresses change together; rebind only then
            for n in feeds:
                self.context.set_input_shape(n, feeds[n].shape)
            for n, t in bufs["dev"].items():
                self.context.set_tensor_address(n, t.data_ptr())
            self._bound = key
        return bufs

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        feeds = check_inputs(self, inputs)
        bufs = self._prepare(feeds)
        ev = self._events
        with torch.cuda.stream(self.stream):
            for n, a in feeds.items():
                bufs["host"][n].numpy()[...] = a
            ev[0].record(self.stream)
            for n in feeds:
                bufs["dev"][n].copy_(bufs["host"][n], non_blocking=True)
            ev[1].record(self.stream)
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise EdgevtError(f"{self.path.name}: TensorRT execution failed (see the TensorRT log)")
            ev[2].record(self.stream)
            for t in self.outputs:
                bufs["host"][t.name].copy_(bufs["dev"][t.name], non_blocking=True)
            ev[3].record(self.stream)
        self.stream.synchronize()  # buffers live in self._buffers, so nothing is freed mid-flight
        s = [ev[i].elapsed_time(ev[i + 1]) / 1e3 for i in range(3)]
        self.last_timing = Timing(h2d=s[0], compute=s[1], d2h=s[2])
        # Copies: the pinned buffers are reused by the next call.
        return {t.name: bufs["host"][t.name].numpy().copy() for t in self.outputs}

    def close(self) -> None:
        self._buffers.clear()
        self.context = None
        self.engine = None

    def describe(self) -> dict:
        sc = self.sidecar
        return {"backend": "tensorrt", "artifact": str(self.path), "key": self.art.key, "device": str(self.device),
                "gpu": self.gpu, "compute_capability": sc.compute_capability, "precision": sc.precision,
                "precision_name": self.art.meta.get("precision_name") or sc.precision,
                "tensorrt": sc.tensorrt, "strongly_typed": sc.strongly_typed, "flags": sc.flags,
                "profile": sc.profile, "dla": sc.dla}


def _check() -> tuple[bool, str]:
    import importlib.util

    if importlib.util.find_spec("tensorrt") is None:
        return False, f"tensorrt not installed: {TRT_HINT}"
    import torch

    if not torch.cuda.is_available():
        return False, "no CUDA device (or a torch build without CUDA)"
    import tensorrt

    return True, f"TensorRT {tensorrt.__version__}"


register_backend(BackendEntry("tensorrt", "native TensorRT engines from `edgevt build` (10.x / 11.x)",
                              lambda a, **o: TensorRTBackend(a, **o), _check, ("engine",)))
