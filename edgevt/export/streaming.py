"""Streaming forms of a model, as torch modules and as ONNX artifacts in a bundle.

``window`` is the plain exported model (edgevt.export.onnx). This module adds the two forms
that let the streaming loop do each frame's work once:

- ``incremental`` (TSN: 2D encoder + temporal average pooling): ``encoder.<p>`` maps uint8
  frames [batch, H, W, 3] to embeddings [batch, D] (preprocessing in the graph) and ``head.<p>``
  maps the last T embeddings [batch, T, D] to logits. head(encoder(frames)) is the window
  model's computation split in two, so the decisions are the same.

- ``stateful`` (TSM): ``stateful.<p>`` maps one uint8 frame [1, H, W, 3] plus one buffer per
  temporal-shift site to that frame's embedding [1, D] plus the new buffers, as in the TSM online
  demo; the same ``head.<p>`` as the incremental form classifies the last T embeddings (so any
  temporal head works: average or temporal conv). The loop feeds the buffers back. Where it
  differs from the offline model *by design*:

  * causal: the offline shift moves 1/8 of the channels from frame t+1 into frame t. A stream
    has no future frame, so those channels are zero (as they are for the last frame of an
    offline clip).
  * uni-directional, unbounded past: the other 1/8 of the channels come from frame t-1 as
    offline, but the past is not cut at the window border: frame t sees frames before the
    window through the buffers, while the offline model zero-pads at the clip start.

  ``causal_clip_embeddings`` computes the same causal model on a whole clip offline; the stateful
  graph matches it exactly when started from zero buffers, which is how it is tested. How far
  the causal model's decisions are from the bidirectional offline model's is a property of the
  weights (a model fine-tuned with a uni-directional shift has no gap) and is measured by
  ``compare_stateful`` rather than assumed.

Everything is exported with ``torch.onnx.export`` (dynamo), one file per artifact
(``external_data=False``), the ClipSpec in the ONNX metadata, and checked against torch on
onnxruntime before it is added to the bundle.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgevt.errors import EdgevtError
from edgevt.models.preprocess import FramePreprocess
from edgevt.models.temporal import TemporalShift
from edgevt.spec import ClipSpec

MAX_BATCH = 64


# -- torch modules ----------------------------------------------------------------------------------
def _require_2d(model: nn.Module, form: str) -> None:
    if not hasattr(model, "encode_frames") or not hasattr(model, "temporal_head"):
        raise EdgevtError(f"the {form} form needs a 2D model (TSN/TSM) with a per-frame encoder; "
                          f"{getattr(model, 'arch', type(model).__name__)} only streams as window")
    if getattr(model, "input", "rgb") != "rgb":
        raise EdgevtError(f"the {form} form encodes one frame at a time; a model with --input "
                          f"{model.input} needs whole clips, so it streams as window")


def _shift_sites(model: nn.Module) -> list[tuple[str, TemporalShift]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, TemporalShift)]


class StreamEncoder(nn.Module):
    """uint8 frames [B, H, W, 3] -> embeddings [B, D]. For TSN only (no cross-frame ops)."""

    def __init__(self, model: nn.Module, spec: ClipSpec):
        super().__init__()
        _require_2d(model, "incremental")
        if _shift_sites(model):
            raise EdgevtError("the incremental form needs a TSN model (no temporal shift); "
                              "temporal-shift (TSM) models stream in the stateful form")
        self.preprocess = FramePreprocess(spec)
        self.model = model

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.model.encode_frames(self.preprocess(frames))


class StreamHead(nn.Module):
    """embeddings [B, T, D] -> logits [B, C]: temporal pooling + classifier."""

    def __init__(self, model: nn.Module):
        super().__init__()
        _require_2d(model, "incremental")
        self.model = model

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.model.temporal_head(embeddings)


class _StateIO:
    """Carries the buffers in and out of the shift sites during one forward (a plain object, so
    that no tensor is stored as a module attribute while torch.export traces it)."""

    def __init__(self) -> None:
        self.inputs: list = []
        self.outputs: list = []


class _OnlineShift(nn.Module):
    """Causal temporal shift for one frame: channels [0, fold) (from the future) are zero,
    channels [fold, 2 fold) come from the previous frame (the buffer), the rest pass through."""

    def __init__(self, site: TemporalShift, io: _StateIO, index: int):
        super().__init__()
        self.module = site.module
        self.fold_div = site.fold_div
        self.io = io
        self.index = index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fold = x.shape[1] // self.fold_div
        current = x[:, fold:2 * fold]
        past = self.io.inputs[self.index] if self.io.inputs else torch.zeros_like(current)
        self.io.outputs.append(current)
        shifted = torch.cat([torch.zeros_like(x[:, :fold]), past, x[:, 2 * fold:]], dim=1)
        return self.module(shifted)


class StatefulFrameModel(nn.Module):
    """One uint8 frame [1, H, W, 3] + shift buffers -> (its embedding [1, D], new buffers...).

    Shares the weights of ``model`` (a TSM TemporalClassifier); ``buffer_shapes`` lists the
    shape of each buffer, in input order ``shift_in_<i>`` / output order ``shift_out_<i>``."""

    def __init__(self, model: nn.Module, spec: ClipSpec):
        super().__init__()
        _require_2d(model, "stateful")
        import copy

        sites = _shift_sites(model)
        if not sites:
            raise EdgevtError("the stateful form needs a temporal-shift (TSM) model; TSN models stream "
                              "in the incremental form")
        self.model = copy.deepcopy(model)  # the original keeps its offline (bidirectional) shift
        self.preprocess = FramePreprocess(spec)
        self.io = _StateIO()
        for i, (name, site) in enumerate(_shift_sites(self.model.encoder)):
            parent_name, _, attr = name.rpartition(".")
            parent = self.model.encoder.get_submodule(parent_name) if parent_name else self.model.encoder
            online = _OnlineShift(site, self.io, i)
            if attr.isdigit():
                parent[int(attr)] = online
            else:
                setattr(parent, attr, online)
        self.num_sites = len(sites)
        # Run one zero frame with zero buffers to learn each buffer's shape.
        self.io.inputs, self.io.outputs = [], []
        with torch.no_grad():
            self.model.encode_frames(self.preprocess(torch.zeros(1, *spec.size, 3, dtype=torch.uint8)))
        self.buffer_shapes = [tuple(o.shape) for o in self.io.outputs]
        self.io.outputs = []
        # I/O names shared by the ONNX graph and the torch backend's stateful role; the loop feeds
        # each output buffer back into the input of the same index (``state``: input -> output).
        n = len(self.buffer_shapes)
        self.input_names = ["frames"] + [f"shift_in_{i}" for i in range(n)]
        self.output_names = ["embedding"] + [f"shift_out_{i}" for i in range(n)]
        self.state = dict(zip(self.input_names[1:], self.output_names[1:]))

    def initial_state(self) -> list[torch.Tensor]:
        return [torch.zeros(s) for s in self.buffer_shapes]

    def forward(self, frames: torch.Tensor, *states: torch.Tensor):
        self.io.inputs, self.io.outputs = list(states), []
        emb = self.model.encode_frames(self.preprocess(frames))
        outs = self.io.outputs
        self.io.inputs, self.io.outputs = [], []
        return (emb, *outs)


def causal_clip_embeddings(model: nn.Module, spec: ClipSpec, frames: torch.Tensor) -> torch.Tensor:
    """Per-frame embeddings [F, D] of the causal (stream) version of a TSM model over uint8 frames
    [F, H, W, 3], computed frame by frame from zero buffers; reference for the stateful form."""
    sm = StatefulFrameModel(model, spec).eval()
    state = sm.initial_state()
    out = []
    with torch.no_grad():
        for f in frames:
            emb, *state = sm(f[None], *state)
            out.append(emb[0])
    return torch.stack(out)


def causal_stream_logits(model: nn.Module, spec: ClipSpec, frames: torch.Tensor) -> torch.Tensor:
    """Logits [F - T + 1, C] of the stateful stream over frames [F, H, W, 3] (zero buffers at the
    first frame): the temporal head over every window of T consecutive causal embeddings."""
    emb = causal_clip_embeddings(model, spec, frames)
    t = spec.num_frames
    with torch.no_grad():
        return model.eval().temporal_head(emb.unfold(0, t, 1).transpose(1, 2))


def compare_stateful(model: nn.Module, spec: ClipSpec, clips: torch.Tensor) -> dict:
    """Stream form vs offline model on uint8 clips [N, T, H, W, 3]: how often the decisions agree.

    The stream form starts each clip from zero buffers, so the remaining difference is only the
    causal shift (see the module docstring)."""
    from edgevt.models.preprocess import FramesClassifier

    offline = FramesClassifier(model, spec).eval()
    with torch.no_grad():
        ref = offline(clips)
    stream = torch.cat([causal_stream_logits(model, spec, c) for c in clips])
    return {"clips": int(clips.shape[0]),
            "top1_agreement": float((ref.argmax(1) == stream.argmax(1)).float().mean()),
            "max_abs_logit_diff": float((ref - stream).abs().max())}


# -- ONNX export ------------------------------------------------------------------------------------
def _export(module: nn.Module, args: tuple, path: Path, input_names: list[str], output_names: list[str],
            dynamic_shapes, spec: ClipSpec, meta: dict) -> None:
    import onnx

    module = module.eval()
    with torch.no_grad():
        prog = torch.onnx.export(module, args, input_names=input_names, output_names=output_names,
                                 dynamic_shapes=dynamic_shapes, dynamo=True, external_data=False,
                                 verbose=False, optimize=True)
    model = prog.model_proto
    onnx.helper.set_model_props(model, {"edgevt.spec": spec.to_json(), **{f"edgevt.{k}": str(v)
                                                                          for k, v in meta.items()}})
    onnx.checker.check_model(model)
    tmp = path.with_name(f".{path.name}.tmp")
    onnx.save(model, str(tmp))
    tmp.replace(path)


def _ort_outputs(path: Path, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def _io(path: Path) -> tuple[list, list]:
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    init = {i.name for i in m.graph.initializer}

    def info(v):
        dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in v.type.tensor_type.shape.dim]
        return {"name": v.name, "shape": dims,
                "dtype": onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name}

    return [info(v) for v in m.graph.input if v.name not in init], [info(v) for v in m.graph.output]


# Max |logit diff| allowed relative to max(1, max |logit|): fp32 vs torch, fp16 vs torch.
TOLERANCE = {"fp32": 1e-3, "fp16": 3e-2}
FILES = {"encoder": "encoder{}.onnx", "head": "head{}.onnx", "stateful": "stateful{}.onnx"}


def _file(role: str, precision: str) -> str:
    return FILES[role].format("" if precision == "fp32" else f".{precision}")


def _check(diff: float, ref: np.ndarray, precision: str, what: str) -> None:
    if diff > TOLERANCE[precision] * max(1.0, float(np.abs(ref).max())):
        raise EdgevtError(f"{what} ({precision}) does not match the model (max |logit diff| {diff:.2e}); "
                          "please report this with the model name")


def _fp16(root: Path, role: str) -> None:
    """FP16 graph with FP32/uint8 I/O, from the fp32 file (edgevt.export.precision.convert_fp16)."""
    from edgevt.export.precision import convert_fp16

    convert_fp16(root / _file(role, "fp32"), root / _file(role, "fp16"))


def _export_head(model: nn.Module, spec: ClipSpec, embeddings: torch.Tensor, root: Path, form: str) -> None:
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    _export(StreamHead(model).eval(), (embeddings,), root / _file("head", "fp32"), ["embeddings"], ["logits"],
            {"embeddings": {0: batch}}, spec, {"form": form, "role": "head"})


def export_incremental(model: nn.Module, spec: ClipSpec, bundle, *, precisions=("fp32",), seed: int = 0) -> dict:
    """Write ``encoder.<p>`` and ``head.<p>`` into a (staged) Bundle; returns their entries.

    Checks on onnxruntime that head(encoder(frames)) matches the torch model on random frames."""
    from edgevt.models.preprocess import FramesClassifier

    model = model.eval()
    enc = StreamEncoder(model, spec).eval()
    g = torch.Generator().manual_seed(seed)
    h, w = spec.size
    t = spec.num_frames
    clips = torch.randint(0, 256, (2, t, h, w, 3), dtype=torch.uint8, generator=g)
    with torch.no_grad():
        emb = enc(clips.flatten(0, 1))
        ref = FramesClassifier(model, spec).eval()(clips).numpy()
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    root = Path(bundle.path)
    _export(enc, (clips[:, 0].contiguous(),), root / _file("encoder", "fp32"), ["frames"], ["embedding"],
            {"frames": {0: batch}}, spec, {"form": "incremental", "role": "encoder"})
    _export_head(model, spec, emb.reshape(2, t, -1), root, "incremental")
    entries = {}
    for p in precisions:
        if p != "fp32":
            _fp16(root, "encoder")
            _fp16(root, "head")
        # Parity: the exported pair against the torch window model on the same frames.
        (o_emb,) = _ort_outputs(root / _file("encoder", p), {"frames": clips.flatten(0, 1).numpy()})
        (o_logits,) = _ort_outputs(root / _file("head", p), {"embeddings": o_emb.reshape(2, t, -1)})
        diff = float(np.abs(o_logits - ref).max())
        _check(diff, ref, p, "incremental export")
        for role in ("encoder", "head"):
            ins, outs = _io(root / _file(role, p))
            entries[f"{role}.{p}"] = bundle.add_artifact(
                f"{role}.{p}", _file(role, p), kind="onnx", form="incremental", role=role, precision=p,
                inputs=ins, outputs=outs, parity={"max_abs_logit_diff_vs_torch": diff},
                embedding_dim=int(emb.shape[-1]))
    return entries


def export_stateful(model: nn.Module, spec: ClipSpec, bundle, *, precisions=("fp32",), seed: int = 0) -> dict:
    """Write ``stateful.<p>`` (with its ``state`` map) and ``head.<p>`` into a (staged) Bundle.

    Checks on onnxruntime, frame by frame over a random clip, against ``causal_stream_logits``."""
    model = model.eval()
    sm = StatefulFrameModel(model, spec).eval()
    g = torch.Generator().manual_seed(seed)
    h, w = spec.size
    t = spec.num_frames
    frames = torch.randint(0, 256, (t + 2, h, w, 3), dtype=torch.uint8, generator=g)
    in_names, out_names, state_map = sm.input_names, sm.output_names, sm.state
    root = Path(bundle.path)
    state0 = sm.initial_state()
    _export(sm, (frames[:1], *state0), root / _file("stateful", "fp32"), in_names, out_names, None, spec,
            {"form": "stateful", "role": "stateful", "state": json.dumps(state_map)})
    emb = causal_clip_embeddings(model, spec, frames)
    _export_head(model, spec, torch.stack([emb[:t], emb[1:t + 1]]), root, "stateful")
    ref = causal_stream_logits(model, spec, frames).numpy()
    entries = {}
    for p in precisions:
        if p != "fp32":
            _fp16(root, "stateful")
            _fp16(root, "head")
        state = [s.numpy() for s in state0]
        got = []
        for f in frames:
            e, *state = _ort_outputs(root / _file("stateful", p),
                                     {"frames": f[None].numpy(), **dict(zip(in_names[1:], state))})
            got.append(e[0])
        windows = np.lib.stride_tricks.sliding_window_view(np.stack(got), t, axis=0).transpose(0, 2, 1)
        (logits,) = _ort_outputs(root / _file("head", p), {"embeddings": np.ascontiguousarray(windows)})
        diff = float(np.abs(logits - ref).max())
        _check(diff, ref, p, "stateful export")
        for role in ("stateful", "head"):
            ins, outs = _io(root / _file(role, p))
            extra = {"state": state_map} if role == "stateful" else {}
            entries[f"{role}.{p}"] = bundle.add_artifact(
                f"{role}.{p}", _file(role, p), kind="onnx", form="stateful", role=role, precision=p,
                inputs=ins, outputs=outs, parity={"max_abs_logit_diff_vs_causal_torch": diff},
                embedding_dim=int(emb.shape[-1]), **extra)
    return entries


def stream_forms_for(model: nn.Module) -> list[str]:
    """The per-frame forms a model supports besides ``window``."""
    if not hasattr(model, "encode_frames") or getattr(model, "input", "rgb") != "rgb":
        return []  # 3D models and frame-difference inputs need whole clips
    return ["stateful"] if _shift_sites(model) else ["incremental"]


def export_stream_forms(model_or_checkpoint, bundle, forms: list[str] | None = None,
                        precisions: list[str] | None = None) -> dict:
    """Add the model's streaming forms to a staged Bundle (the exporter calls this).

    model_or_checkpoint: an nn.Module (with the bundle's spec) or a checkpoint path/dict.
    forms: subset of ("incremental", "stateful"); default: whichever the model supports.
    precisions: "fp32" and/or "fp16" (FP16 graphs with FP32 I/O via edgevt.export.precision);
    default: fp32, plus fp16 when the bundle already has a ``model.fp16``. INT8 variants of the
    stream forms are not made here (they need their own calibration of the per-frame graphs).
    """
    from edgevt.models.checkpoint import model_from_checkpoint

    if isinstance(model_or_checkpoint, nn.Module):
        model, spec = model_or_checkpoint, bundle.spec
    else:
        model, spec = model_from_checkpoint(model_or_checkpoint)
    if precisions is None:
        precisions = ["fp32"] + (["fp16"] if "model.fp16" in bundle.artifacts else [])
    bad = [p for p in precisions if p not in TOLERANCE]
    if bad or "fp32" not in precisions:
        raise EdgevtError(f"stream forms: precisions {list(precisions)} not supported; use fp32 [+ fp16] "
                          "(fp32 is always written: the fp16 graph is converted from it)")
    supported = stream_forms_for(model)
    forms = supported if forms is None else list(forms)
    entries = {}
    for form in forms:
        if form == "window":
            continue
        if form not in supported:
            raise EdgevtError(f"{getattr(model, 'arch', 'this model')} cannot stream as {form!r}; "
                              f"it supports: {', '.join(['window', *supported])}")
        fn = export_incremental if form == "incremental" else export_stateful
        entries.update(fn(model, spec, bundle, precisions=tuple(precisions)))
        # The form is chosen at export: the bundle's ClipSpec says how the loop should stream it,
        # by default in a form that computes the exported model. A bidirectional TSM's stateful form
        # is causal, a different model: it is written, but only `--form stateful` picks it.
        if form == "stateful" and not all(site.causal for _, site in _shift_sites(model)):
            continue
        bundle.manifest["spec"]["streaming"] = form
    return entries
