"""onnxruntime backends: ``ort-cpu``, ``ort-cuda`` and ``ort-trt`` (onnxruntime's TensorRT provider).

All three open an ONNX file or a bundle artifact (``open_backend("ort-cpu", bundle, precision="int8")``).
On CUDA the inputs and outputs are bound with IOBinding to device buffers allocated once per input
shape: uint8 frames are copied to the device once, outputs come back once, and the three steps are
timed separately. On CPU everything is "compute".

``ort-trt`` keeps TensorRT's engine and timing caches inside the bundle (``trt_cache/``) so a second
start does not rebuild; the dynamic batch gets an optimisation profile (``batch=(min, opt, max)``).
A Q/DQ (INT8) graph runs as explicit quantization: no calibration table is ever passed.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edgevt.backends import register_backend
from edgevt.backends.base import (Backend, BackendEntry, TensorInfo, Timing, check_inputs, cuda_device_count,
                                  numpy_dtype_name, parse_batch, resolve_artifact)
from edgevt.bundle import load_onnx_graph
from edgevt.errors import EdgevtError

GPU_HINT = "pip install 'edgevt[gpu]'"
TRT_HINT = "pip install 'edgevt[tensorrt]'"


def onnx_precision(path: Path) -> str:
    """int8 when the graph has Q/DQ nodes, fp16 when it holds float16 weights, else fp32."""
    import onnx

    m = load_onnx_graph(path)
    ops = {n.op_type for n in m.graph.node}
    if ops & {"QuantizeLinear", "DequantizeLinear"}:
        return "int8"
    if any(t.data_type == onnx.TensorProto.FLOAT16 for t in m.graph.initializer):
        return "fp16"
    return "fp32"


def trt_profile_shapes(inputs: list[TensorInfo], batch: tuple[int, int, int]) -> dict[str, str]:
    """onnxruntime's ``trt_profile_{min,opt,max}_shapes`` strings ("frames:1x8x112x112x3,...").

    Only the first axis may be dynamic (the batch); any other dynamic axis cannot be profiled."""
    out = {}
    for kind, b in zip(("min", "opt", "max"), batch):
        parts = []
        for t in inputs:
            dims = []
            for i, d in enumerate(t.shape):
                if isinstance(d, int) and d > 0:
                    dims.append(d)
                elif i == 0:
                    dims.append(b)
                else:
                    raise EdgevtError(f"input {t.name!r} has a dynamic axis {i} ({d!r}) besides the batch; "
                                      "TensorRT needs it fixed at export")
            parts.append(f"{t.name}:" + "x".join(str(d) for d in dims))
        out[f"trt_profile_{kind}_shapes"] = ",".join(parts)
    return out


def trt_provider_options(onnx_path: Path, precision: str, batch, cache_dir: Path, *, workspace_mb: int | None = None,
                         dla_core: int | None = None, device_id: int = 0) -> dict:
    """onnxruntime TensorRT provider options: engine + timing caches in ``cache_dir``, a profile for
    the dynamic batch, and the precision flags for the graph. A Q/DQ (int8) graph is explicit
    quantization: ``trt_int8_enable`` lets the weakly typed 10.x builder honour it, and no
    calibration table is ever passed."""
    m = load_onnx_graph(onnx_path)
    init = {i.name for i in m.graph.initializer}
    infos = []
    for vi in m.graph.input:
        if vi.name in init:
            continue
        dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                     for d in vi.type.tensor_type.shape.dim)
        infos.append(TensorInfo(vi.name, dims, ""))
    opts = {
        "device_id": device_id,
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(cache_dir),
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": str(cache_dir),
        # FP16 lets TensorRT run the non-quantized layers of an int8 graph in half precision too.
        "trt_fp16_enable": precision in ("fp16", "int8"),
        "trt_int8_enable": precision == "int8",
        **trt_profile_shapes(infos, parse_batch(batch)),
    }
    if workspace_mb:
        opts["trt_max_workspace_size"] = int(workspace_mb) << 20
    if dla_core is not None:
        opts.update(trt_dla_enable=True, trt_dla_core=int(dla_core))
    return opts


class OrtBackend(Backend):
    def __init__(self, name: str, artifact, *, key: str | None = None, role: str = "model",
                 precision: str | None = None, threads: int | None = None, device_id: int = 0,
                 batch=(1, 1, 32), cache_dir: str | Path | None = None, workspace_mb: int | None = None,
                 dla_core: int | None = None, state: dict | None = None, iobinding: bool | None = None,
                 verbose: bool = False):
        super().__init__()
        import onnxruntime as ort

        self.name = name
        self.art = resolve_artifact(artifact, key=key, role=role, precision=precision, backend=name)
        self.path = Path(self.art.path)
        self.precision = self.art.meta.get("precision") or onnx_precision(self.path)
        self.device_id = device_id
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            so.intra_op_num_threads = int(threads)
        so.inter_op_num_threads = 1
        so.log_severity_level = 0 if verbose else 3
        self.threads = threads
        providers: list = ["CPUExecutionProvider"]
        if name == "ort-cuda":
            providers = [("CUDAExecutionProvider", {"device_id": device_id}), "CPUExecutionProvider"]
        elif name == "ort-trt":
            providers = [("TensorrtExecutionProvider", self._trt_options(batch, cache_dir, workspace_mb, dla_core)),
                         ("CUDAExecutionProvider", {"device_id": device_id}), "CPUExecutionProvider"]
        try:
            try:
                self.session = ort.InferenceSession(str(self.path), so, providers=providers)
            except Exception:
                if name != "ort-cpu":
                    raise
                # The CPU provider's QDQ fusions (QLinearConcat, ...) reject the FP16 scales of the
                # TensorRT-flavour INT8 graph: without graph optimisation its Q/DQ run as ops. (Not basic
                # optimisation, which garbled that graph of a Lite0: edgevt.export.onnx.ort_session.)
                so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
                self.session = ort.InferenceSession(str(self.path), so, providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types
            raise EdgevtError(f"{self.path}: onnxruntime could not load it ({type(e).__name__}: "
                              f"{str(e).splitlines()[0][:200]})") from None
        self.providers = self.session.get_providers()
        self.graph_optimization = str(so.graph_optimization_level).rsplit(".", 1)[-1]
        if name != "ort-cpu" and self.providers[0] == "CPUExecutionProvider":
            raise EdgevtError(f"{name}: onnxruntime fell back to the CPU provider for {self.path}; "
                              f"check the CUDA/TensorRT install ({GPU_HINT})")
        self.inputs = [TensorInfo(i.name, tuple(i.shape), numpy_dtype_name(i.type)) for i in self.session.get_inputs()]
        self.outputs = [TensorInfo(o.name, tuple(o.shape), numpy_dtype_name(o.type))
                        for o in self.session.get_outputs()]
        self.state = dict(state if state is not None else self.art.meta.get("state", {}))
        # CUDA providers always bind device buffers; ort-cpu can take the same path (iobinding=True),
        # which is how the binding logic is exercised on machines without a GPU.
        self._io_device = "cuda" if name != "ort-cpu" else ("cpu" if iobinding else None)
        self._on_device = self._io_device is not None
        self._bindings: dict = {}  # input shapes -> (IOBinding, input OrtValues, output OrtValues)

    def _trt_options(self, batch, cache_dir, workspace_mb, dla_core) -> dict:
        if cache_dir is None:
            base = self.art.bundle.path if self.art.bundle is not None else self.path.parent
            cache_dir = Path(base) / "trt_cache"
        self.cache_dir = Path(cache_dir)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        return trt_provider_options(self.path, self.precision, batch, self.cache_dir, workspace_mb=workspace_mb,
                                    dla_core=dla_core, device_id=self.device_id)

    # -- running ----------------------------------------------------------------------------------
    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feeds = check_inputs(self, inputs)
        if not self._on_device:
            t0 = time.perf_counter()
            res = self.session.run(self.output_names, feeds)
            self.last_timing = Timing(compute=time.perf_counter() - t0)
            return dict(zip(self.output_names, res))
        io, in_vals, _ = self._binding(feeds)
        t0 = time.perf_counter()
        for name, a in feeds.items():
            in_vals[name].update_inplace(a)  # host -> device, into the buffer bound once
        t1 = time.perf_counter()
        self.session.run_with_iobinding(io)  # returns when the provider's stream is synchronised
        t2 = time.perf_counter()
        res = io.copy_outputs_to_cpu()
        t3 = time.perf_counter()
        self.last_timing = Timing(h2d=t1 - t0, compute=t2 - t1, d2h=t3 - t2)
        return dict(zip(self.output_names, res))

    def _binding(self, feeds: dict[str, np.ndarray]):
        shape_key = tuple((n, a.shape) for n, a in feeds.items())
        if shape_key in self._bindings:
            return self._bindings[shape_key]
        from onnxruntime import OrtValue

        io = self.session.io_binding()
        in_vals = {}
        dims: dict = {}  # symbolic dim name -> size, to size the outputs
        for t in self.inputs:
            a = feeds[t.name]
            ov = OrtValue.ortvalue_from_shape_and_type(a.shape, a.dtype.type, self._io_device,
                                                       self.device_id)
            io.bind_ortvalue_input(t.name, ov)
            in_vals[t.name] = ov
            dims.update({d: s for d, s in zip(t.shape, a.shape) if isinstance(d, str)})
        out_vals = {}
        for t in self.outputs:
            shape = [d if isinstance(d, int) else dims.get(d) for d in t.shape]
            if all(isinstance(d, int) for d in shape):
                ov = OrtValue.ortvalue_from_shape_and_type(shape, np.dtype(t.dtype).type, self._io_device,
                                                           self.device_id)
                io.bind_ortvalue_output(t.name, ov)
                out_vals[t.name] = ov
            else:  # shape only known after the run: onnxruntime allocates it on the device
                io.bind_output(t.name, self._io_device, self.device_id)
        self._bindings[shape_key] = (io, in_vals, out_vals)
        return self._bindings[shape_key]

    def close(self) -> None:
        self._bindings.clear()
        self.session = None

    def describe(self) -> dict:
        import onnxruntime as ort

        d = {"backend": self.name, "artifact": str(self.path), "key": self.art.key, "precision": self.precision,
             "precision_name": self.art.meta.get("precision_name") or self.precision,
             "flavour": self.art.meta.get("flavour"), "providers": self.providers,
             "graph_optimization": self.graph_optimization,
             "onnxruntime": ort.__version__}
        if self.name == "ort-cpu":
            from edgevt.env import cpu_name

            d.update(device="cpu", cpu=cpu_name(), threads=self.threads or "default")
        else:
            d["device"] = f"cuda:{self.device_id}"
        if self.name == "ort-trt":
            d["trt_cache"] = str(self.cache_dir)
            try:
                import tensorrt

                d["tensorrt"] = tensorrt.__version__
            except ImportError:
                pass
        return d


# -- registry ---------------------------------------------------------------------------------------
def _providers() -> list[str]:
    import onnxruntime as ort

    return ort.get_available_providers()


def check_cpu() -> tuple[bool, str]:
    import onnxruntime as ort

    return True, f"onnxruntime {ort.__version__}"


def check_cuda() -> tuple[bool, str]:
    if "CUDAExecutionProvider" not in _providers():
        return False, f"onnxruntime-gpu not installed: {GPU_HINT}"
    if cuda_device_count() == 0:
        return False, "no CUDA device"
    return True, "CUDAExecutionProvider"


def trt_libraries_found() -> bool:
    import ctypes
    import importlib.util

    if importlib.util.find_spec("tensorrt") is not None or importlib.util.find_spec("tensorrt_libs") is not None:
        return True
    for lib in ("libnvinfer.so.11", "libnvinfer.so.10", "libnvinfer.so"):
        try:
            ctypes.CDLL(lib)
            return True
        except OSError:
            pass
    return False


def check_trt() -> tuple[bool, str]:
    if "TensorrtExecutionProvider" not in _providers():
        return False, f"onnxruntime-gpu (with its TensorRT provider) not installed: {GPU_HINT}"
    if not trt_libraries_found():
        return False, f"TensorRT libraries not found: {TRT_HINT}"
    if cuda_device_count() == 0:
        return False, "no CUDA device"
    return True, "TensorrtExecutionProvider"


register_backend(BackendEntry("ort-cpu", "onnxruntime, CPU execution provider",
                              lambda a, **o: OrtBackend("ort-cpu", a, **o), check_cpu, ("onnx",)))
register_backend(BackendEntry("ort-cuda", "onnxruntime, CUDA execution provider (IOBinding)",
                              lambda a, **o: OrtBackend("ort-cuda", a, **o), check_cuda, ("onnx",)))
register_backend(BackendEntry("ort-trt", "onnxruntime, TensorRT execution provider (engine cache in the bundle)",
                              lambda a, **o: OrtBackend("ort-trt", a, **o), check_trt, ("onnx",)))
