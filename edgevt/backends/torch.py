"""``torch`` backend: an edgevt checkpoint run eagerly, on CUDA when present, else on the CPU.

It takes the same inputs as the exported ONNX model (uint8 ``frames`` [batch, T, H, W, 3] ->
``logits``), because the model is wrapped with ``FramesClassifier`` (preprocessing in the module,
defined once). ``role="encoder"`` / ``role="head"`` give the incremental streaming form of 2D
models (``frames`` [batch, H, W, 3] -> ``embedding``; ``embeddings`` [batch, T, D] -> ``logits``),
and ``role="stateful"`` the TSM online form (one frame + ``shift_in_<i>`` buffers -> ``embedding``
+ ``shift_out_<i>``, the same I/O as the exported ``stateful`` graph).

Opens: a checkpoint path, a loaded checkpoint dict, a bundle (its ``source.checkpoint``), or an
``nn.Module`` with ``spec=`` (what eval uses on a model still in memory). On CUDA, device buffers
are allocated once per input shape and the host->device copy, compute and device->host copy are
timed with CUDA events.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgevt.backends import register_backend
from edgevt.backends.base import Backend, BackendEntry, TensorInfo, Timing, check_inputs
from edgevt.errors import EdgevtError


def _load_model(artifact, spec):
    """-> (nn.Module in eval mode, ClipSpec, source description)."""
    from edgevt.models.checkpoint import model_from_checkpoint

    if isinstance(artifact, nn.Module):
        if spec is None:
            raise EdgevtError("torch backend: pass spec= (a ClipSpec) with an in-memory model")
        return artifact.eval(), spec, {"checkpoint": None}
    if isinstance(artifact, dict):
        model, spec = model_from_checkpoint(artifact)
        return model, spec, {"checkpoint": None, "arch": artifact.get("arch")}
    from edgevt.bundle import Bundle, artifact_kind

    p = artifact.path if isinstance(artifact, Bundle) else Path(artifact)  # the stream loop passes Bundles
    if artifact_kind(artifact) == "bundle":
        b = artifact if isinstance(artifact, Bundle) else Bundle.load(p, verify=False)
        ck = b.manifest.get("source", {}).get("checkpoint")
        if not ck:
            raise EdgevtError(f"{b.path}: the bundle does not name its source checkpoint; "
                              "open the torch backend with the .pt checkpoint path instead")
        cp = Path(ck)
        if not cp.is_absolute() and not cp.exists():
            cp = b.path / cp
        if not cp.exists():
            raise EdgevtError(f"{b.path}: its source checkpoint {ck} is not here; pass the .pt path instead")
        p = cp
    model, spec = model_from_checkpoint(p)
    return model, spec, {"checkpoint": str(p)}


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, artifact, *, spec=None, role: str = "model", device: str = "auto",
                 precision: str | None = None, threads: int | None = None, **_ignored):
        super().__init__()
        from edgevt.models.forms import StatefulFrameModel, StreamEncoder, StreamHead
        from edgevt.models.preprocess import FramesClassifier

        model, self.spec, self.source = _load_model(artifact, spec)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise EdgevtError("torch backend: device cuda requested but no CUDA device is visible to torch")
        self.device = torch.device(device)
        self.precision = precision or "fp32"
        if self.precision not in ("fp32", "fp16"):
            raise EdgevtError(f"torch backend runs fp32 or fp16 (CUDA), not {self.precision}; "
                              "use an onnxruntime/TensorRT backend for int8")
        if self.precision == "fp16" and self.device.type != "cuda":
            raise EdgevtError("torch backend: fp16 needs a CUDA device; use precision fp32 on the CPU")
        if threads:
            torch.set_num_threads(int(threads))  # process-wide: torch has no per-module setting
        self.threads = threads or torch.get_num_threads()
        self.role = role
        self.state = {}  # the stateful role: {buffer input: the output fed back into it}
        t, (h, w), c = self.spec.num_frames, self.spec.size, self.spec.num_classes
        if role == "model":
            module: nn.Module = FramesClassifier(model, self.spec)
            self.inputs = [TensorInfo("frames", ("batch", t, h, w, 3), "uint8")]
            self.outputs = [TensorInfo("logits", ("batch", c), "float32")]
        elif role in ("encoder", "head"):
            # StreamEncoder/StreamHead refuse models without a per-frame encoder (and TSM for the encoder)
            module = StreamEncoder(model, self.spec) if role == "encoder" else StreamHead(model)
            d = model.encoder.dim  # per-frame embeddings (the temporal head may be wider: conv)
            if role == "encoder":
                self.inputs = [TensorInfo("frames", ("batch", h, w, 3), "uint8")]
                self.outputs = [TensorInfo("embedding", ("batch", d), "float32")]
            else:
                self.inputs = [TensorInfo("embeddings", ("batch", t, d), "float32")]
                self.outputs = [TensorInfo("logits", ("batch", c), "float32")]
        elif role == "stateful":
            module = StatefulFrameModel(model, self.spec)  # a clear error for models without shifts
            frames_in, *buffers_in = module.input_names
            embedding_out, *buffers_out = module.output_names
            self.inputs = [TensorInfo(frames_in, (1, h, w, 3), "uint8")] + [
                TensorInfo(n, sh, "float32") for n, sh in zip(buffers_in, module.buffer_shapes)]
            self.outputs = [TensorInfo(embedding_out, (1, model.encoder.dim), "float32")] + [
                TensorInfo(n, sh, "float32") for n, sh in zip(buffers_out, module.buffer_shapes)]
            self.state = dict(module.state)
        else:
            raise EdgevtError(f"torch backend: role {role!r} is not supported (model, encoder, head, stateful)")
        self.module = module.eval().to(self.device)
        # fp16 through autocast: uint8 -> float preprocessing stays exact, convs/matmuls run in half.
        self._autocast = self.precision == "fp16"
        if self.device.type == "cuda":
            self._stream = torch.cuda.Stream(self.device)
            self._events = [torch.cuda.Event(enable_timing=True) for _ in range(4)]
        self._buffers: dict = {}  # input shapes -> (pinned host, device) tensors per input

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feeds = check_inputs(self, inputs)
        if self.device.type != "cuda":
            t0 = time.perf_counter()
            with torch.inference_mode():
                args = [torch.from_numpy(feeds[t.name]) for t in self.inputs]
                outs = self._as_tuple(self.module(*args))
                result = {o.name: v.float().numpy() for o, v in zip(self.outputs, outs)}
            self.last_timing = Timing(compute=time.perf_counter() - t0)
            return result
        key = tuple((n, a.shape) for n, a in feeds.items())
        if key not in self._buffers:
            self._buffers[key] = {n: (torch.empty(a.shape, dtype=torch.from_numpy(a[:0]).dtype, pin_memory=True),
                                      torch.empty(a.shape, dtype=torch.from_numpy(a[:0]).dtype, device=self.device))
                                  for n, a in feeds.items()}
        bufs = self._buffers[key]
        ev = self._events
        with torch.inference_mode(), torch.cuda.stream(self._stream):
            for n, a in feeds.items():
                bufs[n][0].numpy()[...] = a  # host copy into pinned memory (not device time)
            ev[0].record()
            for n in feeds:
                bufs[n][1].copy_(bufs[n][0], non_blocking=True)
            ev[1].record()
            args = [bufs[t.name][1] for t in self.inputs]
            with torch.autocast("cuda", dtype=torch.float16, enabled=self._autocast):
                outs = [v.float() for v in self._as_tuple(self.module(*args))]
            ev[2].record()
            host = [v.to("cpu", non_blocking=False) for v in outs]
            ev[3].record()
        self._stream.synchronize()
        ms = [ev[i].elapsed_time(ev[i + 1]) / 1e3 for i in range(3)]
        self.last_timing = Timing(h2d=ms[0], compute=ms[1], d2h=ms[2])
        return {o.name: v.numpy() for o, v in zip(self.outputs, host)}

    @staticmethod
    def _as_tuple(out) -> tuple:
        return tuple(out) if isinstance(out, (tuple, list)) else (out,)

    def close(self) -> None:
        self._buffers.clear()
        self.module = None

    def describe(self) -> dict:
        d = {"backend": "torch", "role": self.role, "precision": self.precision, "torch": torch.__version__,
             **{k: v for k, v in self.source.items() if v is not None}}
        if self.device.type == "cuda":
            d.update(device=str(self.device), gpu=torch.cuda.get_device_name(self.device), cuda=torch.version.cuda)
        else:
            from edgevt.env import cpu_name

            d.update(device="cpu", cpu=cpu_name(), threads=self.threads)
        return d


def _check() -> tuple[bool, str]:
    if torch.cuda.is_available():
        return True, f"torch {torch.__version__}, CUDA {torch.version.cuda} ({torch.cuda.get_device_name(0)})"
    return True, f"torch {torch.__version__}, CPU (no CUDA device)"


register_backend(BackendEntry("torch", "PyTorch eager from an edgevt checkpoint (CUDA when present)",
                              lambda a, **o: TorchBackend(a, **o), _check, ("checkpoint",)))
