"""uint8 camera frames -> normalised float tensors, as a module so that it lives in the graph.

Input: uint8 [..., H, W, 3] in the ClipSpec's pixel format. Output: float32 [..., 3, H, W],
normalised with the spec's mean/std. The same module serves training, the torch backend and the
ONNX export, so normalisation is defined in exactly one place.
"""
from __future__ import annotations

import torch
from torch import nn

from edgevt.spec import ClipSpec


class FramePreprocess(nn.Module):
    def __init__(self, spec: ClipSpec):
        super().__init__()
        mean = torch.tensor(spec.mean, dtype=torch.float32)
        std = torch.tensor(spec.std, dtype=torch.float32)
        # (x / 255 - mean) / std == x * scale + shift: one multiply-add in the graph.
        self.register_buffer("scale", (1.0 / (255.0 * std)).view(3, 1), persistent=False)
        self.register_buffer("shift", (-mean / std).view(3, 1), persistent=False)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames.to(torch.float32).movedim(-1, -3)
        # The multiply-add runs on [..., 3, H*W] (each channel one contiguous run) and is reshaped back:
        # on a graph of one frame, onnxruntime's layout pass otherwise moves it behind the NHWC transpose
        # its integer convolutions want, where a per-channel broadcast over runs of 3 values was the
        # slowest part of the stateful INT8 step (benchmarks/int8_cpu.py).
        return (x.flatten(-2) * self.scale + self.shift).unflatten(-1, x.shape[-2:])


class FramesClassifier(nn.Module):
    """A classifier that takes uint8 frames [N, T, H, W, 3] directly (what edge devices feed)."""

    def __init__(self, model: nn.Module, spec: ClipSpec):
        super().__init__()
        self.preprocess = FramePreprocess(spec)
        self.model = model

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.model(self.preprocess(frames))


def model_input(clips, spec: ClipSpec, float_input: bool):
    """uint8 clips [N, T, H, W, 3] (numpy) -> what the exported window graph takes: the clips
    themselves, or for a ``--float-input`` graph the output of this module's ``FramePreprocess``
    (float32 [N, T, 3, H, W]) -- the same normalisation as in the graph, not a second copy of it."""
    import numpy as np

    clips = np.ascontiguousarray(clips)
    if not float_input:
        return clips
    with torch.no_grad():
        return np.ascontiguousarray(FramePreprocess(spec)(torch.from_numpy(clips)).numpy())
