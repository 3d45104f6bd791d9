"""Temporal modules: TSN average pooling and the TSM temporal shift.

The shift is written with slicing and ``torch.cat`` into new tensors (no in-place slice
assignment), which exports to ONNX correctly; in-place versions are a known source of silently
wrong exports.
"""
from __future__ import annotations

import torch
from torch import nn


SHIFT_DIRECTIONS = ("bidirectional", "causal")


def temporal_shift(x: torch.Tensor, num_frames: int, fold_div: int = 8, causal: bool = False) -> torch.Tensor:
    """Shift 1/fold_div of the channels one step back in time and 1/fold_div one step forward.

    x: [N*T, C, H, W]. Frame t receives channels [0, fold) from frame t+1 and channels
    [fold, 2*fold) from frame t-1 (zeros at the clip borders), as in TSM (Lin et al., 2019).
    causal: channels [0, fold) are zero instead (no future frame), which is exactly what the
    stateful stream form computes; a model trained this way streams with no offline/online gap.
    """
    nt, c, h, w = x.shape
    v = x.reshape(-1, num_frames, c, h, w)
    fold = c // fold_div
    if causal:
        from_future = torch.zeros_like(v[:, :, :fold])
    else:
        from_future = torch.cat([v[:, 1:, :fold], torch.zeros_like(v[:, :1, :fold])], dim=1)
    from_past = torch.cat([torch.zeros_like(v[:, :1, fold:2 * fold]), v[:, :-1, fold:2 * fold]], dim=1)
    out = torch.cat([from_future, from_past, v[:, :, 2 * fold:]], dim=2)
    return out.reshape(nt, c, h, w)


class TemporalShift(nn.Module):
    """Applies ``temporal_shift`` before the wrapped module (the first conv of a residual branch)."""

    def __init__(self, module: nn.Module, num_frames: int, fold_div: int = 8, causal: bool = False):
        super().__init__()
        self.module = module
        self.num_frames = num_frames
        self.fold_div = fold_div
        self.causal = causal

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(temporal_shift(x, self.num_frames, self.fold_div, self.causal))


def insert_temporal_shift(backbone: nn.Module, num_frames: int, fold_div: int = 8, causal: bool = False) -> int:
    """Put a TemporalShift on the residual branch of every residual block; returns how many.

    Shifting only the residual branch keeps the identity path intact ("residual shift"), which is
    what TSM recommends. Supports torchvision ResNet, MobileNetV2/V3, EfficientNet and our
    EfficientNet-Lite0.
    """
    from torchvision.models.resnet import BasicBlock, Bottleneck

    count = 0
    for m in backbone.modules():
        if isinstance(m, (BasicBlock, Bottleneck)):
            m.conv1 = TemporalShift(m.conv1, num_frames, fold_div, causal)
            count += 1
        elif getattr(m, "use_res_connect", False):
            # torchvision MobileNetV2 (.conv), MobileNetV3 / EfficientNet (.block)
            seq = getattr(m, "conv", None) if hasattr(m, "conv") else getattr(m, "block", None)
            if isinstance(seq, nn.Sequential):
                seq[0] = TemporalShift(seq[0], num_frames, fold_div, causal)
                count += 1
        elif getattr(m, "use_residual", False):  # EfficientNet-Lite0 MBConvBlock
            first = "_expand_conv" if m.has_expand else "_depthwise_conv"
            setattr(m, first, TemporalShift(getattr(m, first), num_frames, fold_div, causal))
            count += 1
    return count
