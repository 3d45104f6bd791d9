"""The runtime streaming forms of a model, as torch modules (what the exporter exports and the torch
backend runs; the ONNX artifacts have the same inputs and outputs).

``window`` is the model itself (``FramesClassifier``). The per-frame forms let the streaming loop
do each frame's work once:

- ``incremental`` (TSN: 2D encoder + temporal pooling): ``StreamEncoder`` maps uint8 frames
  [batch, H, W, 3] to embeddings [batch, D] (preprocessing inside) and ``StreamHead`` maps the last T
  embeddings [batch, T, D] to logits. head(encoder(frames)) is the window model's computation split
  in two, so the decisions are the same.

- ``stateful`` (TSM): ``StatefulFrameModel`` maps one uint8 frame [1, H, W, 3] plus one buffer per
  temporal-shift site to that frame's embedding [1, D] plus the new buffers, as in the TSM online
  demo; the same ``StreamHead`` classifies the last T embeddings (so any temporal head works:
  average or temporal conv). The loop feeds the buffers back. Where it differs from the offline
  model *by design*:

  * causal: the offline shift moves 1/8 of the channels from frame t+1 into frame t. A stream
    has no future frame, so those channels are zero (as they are for the last frame of an
    offline clip).
  * uni-directional, unbounded past: the other 1/8 of the channels come from frame t-1 as
    offline, but the past is not cut at the window border: frame t sees frames before the
    window through the buffers, while the offline model zero-pads at the clip start.

  ``causal_clip_embeddings`` computes the same causal model on a whole clip offline; the stateful
  graph matches it exactly when started from zero buffers, which is how it is checked. How far
  the causal model's decisions are from the bidirectional offline model's is a property of the
  weights (a model fine-tuned with a uni-directional shift has no gap) and is measured by
  ``compare_stateful`` rather than assumed.

``stream_forms_for(model)`` lists the per-frame forms a model has; ``default_stream_form(model)`` is
the one decision of which form a model streams in by default (written into its ClipSpec).
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from edgevt.errors import EdgevtError
from edgevt.metrics import top1_agreement
from edgevt.models.preprocess import FramePreprocess, FramesClassifier
from edgevt.models.temporal import TemporalShift
from edgevt.spec import ClipSpec


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
    offline = FramesClassifier(model, spec).eval()
    with torch.no_grad():
        ref = offline(clips)
    stream = torch.cat([causal_stream_logits(model, spec, c) for c in clips])
    return {"clips": int(clips.shape[0]),
            "top1_agreement": top1_agreement(ref.numpy(), stream.numpy()),
            "max_abs_logit_diff": float((ref - stream).abs().max())}


def stream_forms_for(model: nn.Module) -> list[str]:
    """The per-frame forms a model supports besides ``window``."""
    if not hasattr(model, "encode_frames") or getattr(model, "input", "rgb") != "rgb":
        return []  # 3D models and frame-difference inputs need whole clips
    return ["stateful"] if _shift_sites(model) else ["incremental"]


def default_stream_form(model: nn.Module) -> str:
    """The form a model streams in unless asked otherwise: one that computes the model itself.

    TSN -> incremental (exact). TSM -> stateful only when its shift is causal (a bidirectional TSM's
    stateful form is a different, causal model: it is exported too, but chosen only explicitly).
    3D models and frame-difference inputs -> window (they need whole clips)."""
    forms = stream_forms_for(model)
    if forms == ["incremental"]:
        return "incremental"
    if forms == ["stateful"] and all(site.causal for _, site in _shift_sites(model)):
        return "stateful"
    return "window"
