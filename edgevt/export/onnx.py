"""PyTorch model -> one-file ONNX graph that takes uint8 camera frames, plus the parity check.

The exported graph's input is ``frames`` uint8 [batch, T, H, W, 3] (the spec's pixel format); cast,
normalisation and the NTHWC -> NTCHW change happen inside the graph (``FramesClassifier``), so the
device feeds what the camera gives. ``float_input=True`` keeps the classic normalised float input
``frames`` float32 [batch, T, 3, H, W]. The output is ``logits`` float32 [batch, classes].

Exporter: torch's dynamo exporter (``torch.onnx.export(dynamo=True)``, dynamic batch through
``torch.export.Dim``). Documented fallback: ``exporter="auto"`` retries with the TorchScript-based
exporter (``dynamo=False``) when dynamo fails, and records which one produced the file; the parity
check afterwards guards either. ``exporter="dynamo"`` or ``"legacy"`` forces one.

One path for every form: ``form_graphs(model, spec, form)`` lists the graphs of a streaming form
(``window``: ``model``; ``incremental``: ``encoder`` + ``head``; ``stateful``: ``stateful`` +
``head``, the torch modules of edgevt.models.forms), ``export_graph`` exports any of them (same
exporter, opset, checker, metadata and atomic write), and ``form_logits`` runs a whole form over
uint8 clips -- on onnxruntime sessions or on the torch modules -- so the parity check and the INT8
gate compare the same thing for every form.
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
from edgevt.metrics import top1_agreement
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


def _export_once(module: nn.Module, args: tuple, path: Path, opset: int, dynamo: bool, max_batch: int,
                 input_names: list[str], output_names: list[str], dynamic_batch: bool) -> None:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        if dynamo:
            batch = torch.export.Dim(BATCH_AXIS, min=1, max=max_batch)
            shapes = tuple({0: batch} for _ in args) if dynamic_batch else None
            prog = torch.onnx.export(module, args, None, dynamo=True, opset_version=opset,
                                     input_names=input_names, output_names=output_names,
                                     dynamic_shapes=shapes, optimize=True, verbose=False)
            prog.save(str(path), external_data=False)
        else:
            axes = {n: {0: BATCH_AXIS} for n in input_names + output_names} if dynamic_batch else None
            torch.onnx.export(module, args, str(path), dynamo=False, opset_version=opset,
                              input_names=input_names, output_names=output_names,
                              dynamic_axes=axes, do_constant_folding=True)


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


@dataclass
class Graph:
    """One ONNX graph of a form: the torch module, example arguments (batch >= 2 where the batch axis
    is dynamic, so it stays symbolic), its I/O names and extra fields for its bundle entry."""

    role: str
    module: nn.Module
    args: tuple
    input_names: list
    output_names: list
    dynamic_batch: bool = True
    entry: dict = field(default_factory=dict)  # e.g. {"state": {...}, "embedding_dim": D}


def export_graph(graph: Graph, spec: ClipSpec, path: str | Path, *, opset: int = DEFAULT_OPSET,
                 exporter: str = "auto", max_batch: int = 64, metadata: dict | None = None,
                 float_input: bool = False) -> OnnxExportInfo:
    """Export one graph to a single ONNX file at ``path``: checker, strict shape inference, the
    ClipSpec in the metadata (``edgevt.spec``), one atomic write.

    Raises EdgevtError naming the unsupported operator when no exporter can convert the module.
    """
    if exporter not in EXPORTERS:
        raise EdgevtError(f"unknown exporter {exporter!r}; choose from {', '.join(EXPORTERS)}")
    if opset < 13:
        raise EdgevtError(f"opset {opset} is too old; use 17 or newer (19+ for FP16 Q/DQ scales)")
    path = Path(path)
    tries = ["dynamo", "legacy"] if exporter == "auto" else [exporter]
    errors: list[str] = []
    t0 = time.perf_counter()
    used = None
    for name in tries:
        try:
            _export_once(graph.module.eval(), graph.args, path, opset, name == "dynamo", max_batch,
                         list(graph.input_names), list(graph.output_names), graph.dynamic_batch)
            used = name
            break
        except EdgevtError:
            raise
        except Exception as e:  # exporter errors come in many types; report the operator
            op = unsupported_operator(e)
            errors.append(f"{name} exporter: " + (f"unsupported operator {op}" if op else _first_line(e)))
    if used is None:
        model = getattr(graph.module, "model", graph.module)
        arch = getattr(model, "arch", type(model).__name__)
        raise EdgevtError(f"{arch}: could not export {graph.role} to ONNX opset {opset} ({'; '.join(errors)}); "
                          "try another --opset or --exporter, or a different architecture")
    seconds = time.perf_counter() - t0
    m = onnx.load(str(path), load_external_data=True)
    if graph.dynamic_batch:
        _name_batch_axis(m)
    props = {"edgevt.spec": spec.to_json(), "edgevt.input": "float" if float_input else "uint8",
             "edgevt.exporter": used, "edgevt.role": graph.role, **(metadata or {})}
    set_metadata(m, props)
    check_and_save(m, path)
    m = onnx.load(str(path))
    ins, outs = io_signature(m)
    return OnnxExportInfo(exporter=used, opset=opset_of(m), inputs=ins, outputs=outs, float_input=float_input,
                          fallback_reason="; ".join(errors), seconds=round(seconds, 3),
                          size_bytes=path.stat().st_size)


def export_onnx(model: nn.Module, spec: ClipSpec, path: str | Path, *, float_input: bool = False,
                opset: int = DEFAULT_OPSET, exporter: str = "auto", max_batch: int = 64,
                metadata: dict | None = None) -> OnnxExportInfo:
    """Export ``model`` (normalised float [N,T,3,H,W] -> logits) as the window graph (uint8 frames in,
    unless ``float_input``) to one ONNX file at ``path``."""
    graph = Graph("model", deploy_module(model, spec, float_input),
                  (example_input(spec, batch=2, float_input=float_input),), [INPUT_NAME], [OUTPUT_NAME])
    return export_graph(graph, spec, path, opset=opset, exporter=exporter, max_batch=max_batch,
                        metadata=metadata, float_input=float_input)


def opset_of(model: onnx.ModelProto) -> int:
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return int(o.version)
    return 0


# -- running and parity ------------------------------------------------------------------------
def ort_session(path: str | Path, threads: int | None = None, optimization: str = "auto"):
    """A CPU onnxruntime session used by export-time checks (eval uses the backend registry).

    optimization: ``all``, ``basic``, ``none`` or ``auto`` (all, then none). onnxruntime's CPU QDQ
    fusions (QLinearConcat, ...) reject the FP16 scales of the TensorRT-flavour INT8 graph, so that graph
    runs on CPU with graph optimisation off: its Q/DQ execute as ops (simulated quantization), which is
    what the accuracy measurement needs. Not ``basic``: on onnxruntime 1.32 (Intel Xeon with AMX), the
    basic optimisations turned the FP16 Q/DQ graph of an ImageNet EfficientNet-Lite0 into garbage, its
    logits 2.4x their own size off FP32's, against 0.1x with optimisation off
    (``tests/export/test_onnx.py::test_the_tensorrt_flavour_runs_on_cpu_unoptimised``). The plain FP16
    graph and the FP32-scale Q/DQ graph were fine at ``basic``. ``session.edgevt_optimization`` says
    which level was used.
    """
    import onnxruntime as ort

    levels = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL, "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL}
    order = ["all", "none"] if optimization == "auto" else [optimization]
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
    """Max/mean abs logit difference, the same relative to the logit scale, and top-1 agreement (%)."""
    diff = np.abs(reference.astype(np.float64) - other.astype(np.float64))
    scale = max(1.0, float(np.abs(reference).max()))
    return {"clips": int(len(reference)), "max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
            "max_rel_diff": float(diff.max() / scale), "logit_scale": scale,
            "top1_agreement": top1_agreement(reference, other)}


# -- the graphs of every form ------------------------------------------------------------------
def form_graphs(model: nn.Module, spec: ClipSpec, form: str, *, float_input: bool = False,
                seed: int = 0) -> list[Graph]:
    """The graphs a form is made of, as torch modules with example arguments (see the module doc)."""
    from edgevt.models.forms import StatefulFrameModel, StreamEncoder, StreamHead, stream_forms_for

    if form == "window":
        return [Graph("model", deploy_module(model, spec, float_input),
                      (example_input(spec, batch=2, float_input=float_input, seed=seed),), [INPUT_NAME], [OUTPUT_NAME])]
    supported = stream_forms_for(model)
    if form not in supported:
        raise EdgevtError(f"{getattr(model, 'arch', 'this model')} cannot stream as {form!r}; "
                          f"it supports: {', '.join(['window', *supported])}")
    model = model.eval()
    g = torch.Generator().manual_seed(seed)
    (h, w), t = spec.size, spec.num_frames
    frames = torch.randint(0, 256, (2, h, w, 3), dtype=torch.uint8, generator=g)
    if form == "incremental":
        first = StreamEncoder(model, spec).eval()
        with torch.no_grad():
            dim = int(first(frames[:1]).shape[-1])
        first_graph = Graph("encoder", first, (frames,), ["frames"], ["embedding"], entry={"embedding_dim": dim})
    else:
        first = StatefulFrameModel(model, spec).eval()
        state0 = first.initial_state()
        with torch.no_grad():
            dim = int(first(frames[:1], *state0)[0].shape[-1])
        first_graph = Graph("stateful", first, (frames[:1], *state0), list(first.input_names),
                            list(first.output_names), dynamic_batch=False,
                            entry={"state": dict(first.state), "embedding_dim": dim})
    embeddings = torch.randn(2, t, dim, generator=g)
    head = Graph("head", StreamHead(model).eval(), (embeddings,), ["embeddings"], [OUTPUT_NAME],
                 entry={"embedding_dim": dim})
    return [first_graph, head]


def initial_state(graphs: list[Graph]) -> dict[str, np.ndarray]:
    """Zero buffers for the stateful graph's state inputs (empty for the other forms)."""
    for g in graphs:
        if g.entry.get("state"):
            return {n: np.zeros(tuple(a.shape), np.float32) for n, a in zip(g.input_names[1:], g.args[1:])}
    return {}


def ort_runner(session):
    """feeds -> {output name: array} over an onnxruntime session."""
    names = [o.name for o in session.get_outputs()]
    return lambda feeds: dict(zip(names, session.run(None, feeds)))


def torch_runner(graph: Graph):
    """feeds -> {output name: array} over a graph's torch module (the parity reference)."""
    def run(feeds: dict) -> dict:
        with torch.no_grad():
            out = graph.module(*[torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in graph.input_names])
        out = out if isinstance(out, (tuple, list)) else (out,)
        return {n: v.float().numpy() for n, v in zip(graph.output_names, out)}
    return run


def form_logits(form: str, runners: dict, clips: np.ndarray, state: dict | None = None,
                zero_state: dict | None = None, batch_size: int = 8,
                record: bool = False) -> tuple[np.ndarray, dict]:
    """Logits [N, C] of a whole form over clips [N, T, H, W, 3] (the window graph's input for
    ``window``), computed as the stream loop computes them: the per-frame graph once per frame
    (the stateful one from zero buffers at each clip's start), then the head over the T embeddings.

    runners: {role: feeds -> outputs} (``ort_runner`` / ``torch_runner``). record: also return, per
    role, every input the graphs saw, stacked along the batch axis (INT8 calibration data)."""
    seen: dict = {}

    def call(role: str, feeds: dict) -> dict:
        if record:
            for k, v in feeds.items():
                seen.setdefault(role, {}).setdefault(k, []).append(np.asarray(v))
        return runners[role](feeds)

    n = len(clips)
    if form == "window":
        out = [call("model", {INPUT_NAME: clips[i:i + batch_size]})[OUTPUT_NAME] for i in range(0, n, batch_size)]
    else:
        t = clips.shape[1]
        emb = []
        if form == "incremental":
            frames = clips.reshape(-1, *clips.shape[2:])
            step = batch_size * t
            emb = [call("encoder", {"frames": frames[i:i + step]})["embedding"] for i in range(0, len(frames), step)]
            emb = np.concatenate(emb).reshape(n, t, -1)
        else:
            for clip in clips:
                buffers = dict(zero_state or {})
                per_frame = []
                for f in clip:
                    o = call("stateful", {"frames": np.ascontiguousarray(f[None]), **buffers})
                    buffers = {k: o[v] for k, v in (state or {}).items()}
                    per_frame.append(o["embedding"][0])
                emb.append(np.stack(per_frame))
            emb = np.stack(emb)
        emb = np.ascontiguousarray(emb, dtype=np.float32)
        out = [call("head", {"embeddings": emb[i:i + batch_size]})[OUTPUT_NAME] for i in range(0, n, batch_size)]
    logits = np.concatenate(out).astype(np.float32)
    return logits, {r: {k: np.concatenate(v) for k, v in d.items()} for r, d in seen.items()}
