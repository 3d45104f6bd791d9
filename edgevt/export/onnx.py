"""PyTorch model -> one-file ONNX graph that takes uint8 camera frames, plus the parity check.

The exported graph's input is ``frames`` uint8 [batch, T, H, W, 3] (the spec's pixel format); cast,
normalisation and the NTHWC -> NTCHW change happen inside the graph (``FramesClassifier``), so the
device feeds what the camera gives. ``float_input=True`` keeps the classic normalised float input
``frames`` float32 [batch, T, 3, H, W]. The output is ``logits`` float32 [batch, classes].

Exporter: torch's dynamo exporter (``torch.onnx.export(dynamo=True)``, dynamic batch through
``torch.export.Dim``). Documented fallback: ``exporter="auto"`` retries with the TorchScript-based
exporter (``dynamo=False``) when dynamo fails, and records which one produced the file; the parity
check afterwards guards either. ``exporter="dynamo"`` or ``"legacy"`` forces one.
"""
from __future__ import annotations

import re
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from edgevt.errors import EdgevtError
from edgevt.fileio import atomic_path
from edgevt.spec import ClipSpec

INPUT_NAME = "frames"
OUTPUT_NAME = "logits"
BATCH_AXIS = "batch"
DEFAULT_OPSET = 20  # torch's dynamo default; >= 19 is needed for FP16 Q/DQ scales (TensorRT strongly typed)
EXPORTERS = ("auto", "dynamo", "legacy")


@dataclass
class OnnxExportInfo:
    """What was exported and how; goes into the bundle manifest."""

    exporter: str  # dynamo | legacy
    opset: int
    inputs: list = field(default_factory=list)  # [{"name", "shape", "dtype"}]
    outputs: list = field(default_factory=list)
    float_input: bool = False
    fallback_reason: str = ""
    seconds: float = 0.0
    checker: str = "passed"
    shape_inference: str = "passed"
    size_bytes: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def deploy_module(model: nn.Module, spec: ClipSpec, float_input: bool = False) -> nn.Module:
    """The module that is exported: uint8 frames in (preprocessing in-graph) unless ``float_input``."""
    from edgevt.models.preprocess import FramesClassifier

    return model.eval() if float_input else FramesClassifier(model, spec).eval()


def example_input(spec: ClipSpec, batch: int = 2, float_input: bool = False, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    h, w = spec.size
    frames = torch.randint(0, 256, (batch, spec.num_frames, h, w, 3), dtype=torch.uint8, generator=g)
    if float_input:
        from edgevt.models.preprocess import FramePreprocess

        return FramePreprocess(spec)(frames)
    return frames


_OP_PATTERNS = [
    r"No ONNX function found for <OpOverload\(op='([^']+)'",
    r"call_function\[target=torch\.ops\.([A-Za-z0-9_.]+)\]",
    r"unrecognized namespace ([A-Za-z0-9_:.]+)",
    r"aten::[A-Za-z0-9_.]+",
    r"aten\.[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)?",
    r"Unsupported FX nodes: \{[^}]*\}",
    r"operator '[^']+'",
]


def unsupported_operator(err: BaseException) -> str | None:
    """The operator named in an exporter error (dynamo or TorchScript), if any."""
    text = f"{err}\n{err.__cause__ or ''}"
    for pat in _OP_PATTERNS:
        m = re.search(pat, text)
        if m:
            return m.group(1) if m.groups() else m.group(0)
    return None


def _first_line(err: BaseException) -> str:
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    return f"{type(err).__name__}: {lines[0][:240] if lines else ''}"


def _export_once(module: nn.Module, x: torch.Tensor, path: Path, opset: int, dynamo: bool,
                 max_batch: int) -> None:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        if dynamo:
            batch = torch.export.Dim(BATCH_AXIS, min=1, max=max_batch)
            prog = torch.onnx.export(module, (x,), None, dynamo=True, opset_version=opset,
                                     input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                     dynamic_shapes=({0: batch},), optimize=True, verbose=False)
            prog.save(str(path), external_data=False)
        else:
            torch.onnx.export(module, (x,), str(path), dynamo=False, opset_version=opset,
                              input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              dynamic_axes={INPUT_NAME: {0: BATCH_AXIS}, OUTPUT_NAME: {0: BATCH_AXIS}},
                              do_constant_folding=True)


def _name_batch_axis(model: onnx.ModelProto) -> None:
    """Give the dynamic leading axis of every graph input/output the one name ``batch``."""
    for vi in list(model.graph.input) + list(model.graph.output):
        dims = vi.type.tensor_type.shape.dim
        if dims:
            dims[0].ClearField("dim_value")
            dims[0].dim_param = BATCH_AXIS


def io_signature(model: onnx.ModelProto) -> tuple[list, list]:
    def desc(vi):
        t = vi.type.tensor_type
        shape = [d.dim_param if d.dim_param else int(d.dim_value) for d in t.shape.dim]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name
        return {"name": vi.name, "shape": shape, "dtype": dtype}

    inits = {i.name for i in model.graph.initializer}
    return ([desc(v) for v in model.graph.input if v.name not in inits], [desc(v) for v in model.graph.output])


def set_metadata(model: onnx.ModelProto, props: dict[str, str]) -> None:
    existing = {p.key: p.value for p in model.metadata_props}
    existing.update({k: str(v) for k, v in props.items()})
    onnx.helper.set_model_props(model, existing)


def check_and_save(model: onnx.ModelProto, path: Path) -> None:
    """onnx checker (full) and strict shape inference, then one atomic single-file write."""
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as e:
        raise EdgevtError(f"{path.name}: the ONNX checker rejected the graph: {_first_line(e)}") from None
    try:
        model = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    except Exception as e:
        raise EdgevtError(f"{path.name}: ONNX shape inference failed: {_first_line(e)}") from None
    save_onnx_atomic(model, path)


def save_onnx_atomic(model: onnx.ModelProto, path: Path) -> None:
    if model.ByteSize() > 2_000_000_000:
        raise EdgevtError(f"{path}: the model is over 2 GB; single-file ONNX cannot hold it")
    with atomic_path(path) as tmp:
        onnx.save_model(model, str(tmp), save_as_external_data=False)


def export_onnx(model: nn.Module, spec: ClipSpec, path: str | Path, *, float_input: bool = False,
                opset: int = DEFAULT_OPSET, exporter: str = "auto", max_batch: int = 64,
                metadata: dict | None = None) -> OnnxExportInfo:
    """Export ``model`` (normalised float [N,T,3,H,W] -> logits) to one ONNX file at ``path``.

    metadata: extra ``metadata_props`` (strings); the ClipSpec JSON is always added as ``edgevt.spec``.
    Raises EdgevtError naming the unsupported operator when no exporter can convert the model.
    """
    if exporter not in EXPORTERS:
        raise EdgevtError(f"unknown exporter {exporter!r}; choose from {', '.join(EXPORTERS)}")
    if opset < 13:
        raise EdgevtError(f"opset {opset} is too old; use 17 or newer (19+ for FP16 Q/DQ scales)")
    path = Path(path)
    module = deploy_module(model, spec, float_input)
    x = example_input(spec, batch=2, float_input=float_input)  # batch >= 2 so the axis stays symbolic
    tries = ["dynamo", "legacy"] if exporter == "auto" else [exporter]
    errors: list[str] = []
    t0 = time.perf_counter()
    used = None
    for name in tries:
        try:
            _export_once(module, x, path, opset, name == "dynamo", max_batch)
            used = name
            break
        except EdgevtError:
            raise
        except Exception as e:  # exporter errors come in many types; report the operator
            op = unsupported_operator(e)
            errors.append(f"{name} exporter: " + (f"unsupported operator {op}" if op else _first_line(e)))
    if used is None:
        arch = getattr(model, "arch", type(model).__name__)
        raise EdgevtError(f"{arch}: could not export to ONNX opset {opset} ({'; '.join(errors)}); "
                          "try another --opset or --exporter, or a different architecture")
    seconds = time.perf_counter() - t0
    m = onnx.load(str(path), load_external_data=True)
    _name_batch_axis(m)
    props = {"edgevt.spec": spec.to_json(), "edgevt.input": "float" if float_input else "uint8",
             "edgevt.exporter": used, **(metadata or {})}
    set_metadata(m, props)
    check_and_save(m, path)
    m = onnx.load(str(path))
    ins, outs = io_signature(m)
    return OnnxExportInfo(exporter=used, opset=opset_of(m), inputs=ins, outputs=outs, float_input=float_input,
                          fallback_reason="; ".join(errors), seconds=round(seconds, 3),
                          size_bytes=path.stat().st_size)


def opset_of(model: onnx.ModelProto) -> int:
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return int(o.version)
    return 0


# -- running and parity ------------------------------------------------------------------------
def ort_session(path: str | Path, threads: int | None = None, optimization: str = "auto"):
    """A CPU onnxruntime session used by export-time checks (eval uses the backend registry).

    optimization: ``all``, ``basic`` or ``auto`` (all, then basic). onnxruntime's CPU QDQ fusions
    (QLinearConcat, ...) reject FP16 scales, so the TensorRT-flavour INT8 graph runs on CPU with
    basic optimisation: Q/DQ then execute as ops (simulated quantization), which is what the
    accuracy measurement needs. ``session.edgevt_optimization`` says which level was used.
    """
    import onnxruntime as ort

    levels = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL, "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC}
    order = ["all", "basic"] if optimization == "auto" else [optimization]
    err = None
    for level in order:
        so = ort.SessionOptions()
        so.graph_optimization_level = levels[level]
        if threads:
            so.intra_op_num_threads = threads
            so.inter_op_num_threads = 1
        so.log_severity_level = 3
        try:
            s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
            s.edgevt_optimization = level
            return s
        except Exception as e:
            err = e
    raise EdgevtError(f"{path}: onnxruntime cannot load the graph: {_first_line(err)}") from None


def run_onnx(session, clips: np.ndarray, batch_size: int = 8) -> np.ndarray:
    name = session.get_inputs()[0].name
    outs = [session.run(None, {name: clips[i:i + batch_size]})[0] for i in range(0, len(clips), batch_size)]
    return np.concatenate(outs).astype(np.float32)


def run_torch(module: nn.Module, clips: np.ndarray, batch_size: int = 8) -> np.ndarray:
    outs = []
    with torch.no_grad():
        for i in range(0, len(clips), batch_size):
            outs.append(module(torch.from_numpy(np.ascontiguousarray(clips[i:i + batch_size]))).float().numpy())
    return np.concatenate(outs)


def compare_logits(reference: np.ndarray, other: np.ndarray) -> dict:
    """Max/mean abs logit difference, the same relative to the logit scale, and top-1 agreement."""
    diff = np.abs(reference.astype(np.float64) - other.astype(np.float64))
    scale = max(1.0, float(np.abs(reference).max()))
    return {"clips": int(len(reference)), "max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
            "max_rel_diff": float(diff.max() / scale), "logit_scale": scale,
            "top1_agreement": float((reference.argmax(1) == other.argmax(1)).mean())}
