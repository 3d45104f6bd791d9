"""What trains (freezing by stage) and the frozen-prefix feature cache.

A 2D frame encoder is cut into stages (stem, the backbone's stages, its head conv) followed by a
global average pool. ``mode=linear`` freezes every stage, ``partial`` trains the last N, ``full``
trains all. Frozen stages in eval mode are a fixed function of each frame, so when no augmentation
changes pixels their per-frame output can be computed once and cached: training then runs only the
trainable stages and the temporal head. A frame-difference model (``input="diff"``) caches the
encoding of each difference of two frames that a clip window can pair, and of the zero difference
that starts every clip. ``ClipNet`` gives the same clip features from pixels or from that cache (a
test checks they agree).
"""
from __future__ import annotations

import hashlib
import time

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from edgevt.data.sampling import sample_indices
from edgevt.models.preprocess import FramePreprocess


def model_stages(model: nn.Module) -> list[nn.Module] | None:
    """The stages the model says it has (edgevt.models: ``model.stages()``), or None."""
    stages = getattr(model, "stages", None)
    return stages() if callable(stages) else None


def frame_stages(model: nn.Module) -> list[nn.Module] | None:
    """The per-frame encoder's stages (then a global mean pool): 2D models only (cacheable)."""
    return model_stages(model) if hasattr(model, "encode_frames") else None


def new_stages(model: nn.Module) -> list[nn.Module]:
    """The last stages that are new layers on a pretrained prefix (none for most backbones)."""
    stages = model_stages(model) or []
    n = int(getattr(model, "new_stages", 0))
    return stages[len(stages) - n:] if n else []


def trainable_split(model: nn.Module, mode: str, unfreeze: int) -> tuple[list[nn.Parameter], list[nn.Parameter], int | None]:
    """Freeze per ``mode``; returns (pretrained params to train, new-layer params, frozen stage count).

    New layers are the temporal head, the classifier and any new stages the backbone puts on a
    pretrained prefix (``new_stages``): they always train, at the full learning rate. ``partial``
    trains the last ``unfreeze`` pretrained stages too. The stages are the ones the model says it
    has (edgevt.models). The frozen stage count is None when the model has no stages to cut (MViT):
    ``partial`` is then refused (there is no honest choice of what to train), ``linear`` and ``full``
    work, and nothing is cacheable.
    """
    from edgevt.errors import EdgevtError

    stages = model_stages(model)
    if stages is None and mode == "partial":
        raise EdgevtError(f"--mode partial: {getattr(model, 'arch', type(model).__name__)} has no stages to choose "
                          "from; use --mode linear (classifier only) or --mode full")
    new = new_stages(model)
    n_new = len(new)
    head_modules = [m for m in (getattr(model, "tconv", None), getattr(model, "tnorm", None), model.fc) if m is not None]
    head_modules += new
    head_ids = {id(p) for m in head_modules for p in m.parameters()}
    head = [p for m in head_modules for p in m.parameters()]
    backbone = [p for p in model.parameters() if id(p) not in head_ids]
    if mode == "full":
        return backbone, head, 0 if stages else None
    for p in backbone:
        p.requires_grad_(False)
    if mode == "linear":
        return [], head, len(stages) - n_new if stages else None
    pretrained_stages = stages[:len(stages) - n_new]
    n = max(0, min(unfreeze, len(pretrained_stages)))
    trained = [p for s in pretrained_stages[len(pretrained_stages) - n:] for p in s.parameters()]
    for p in trained:
        p.requires_grad_(True)
    return trained, head, len(pretrained_stages) - n


def set_train_mode(model: nn.Module, frozen_stages: int | None, freeze_bn: bool) -> None:
    """Train mode for what learns; frozen stages (and all BatchNorm when ``freeze_bn``) stay in eval
    mode so their running statistics are neither updated nor replaced by tiny-batch statistics.
    BatchNorm in new stages on a pretrained prefix always trains: it has no statistics to keep, and
    frozen at its initial ones it would not normalise at all."""
    model.train()
    stages = model_stages(model) or []
    for s in stages[:frozen_stages or 0]:
        s.eval()
    if freeze_bn:
        new_ids = {id(m) for s in new_stages(model) for m in s.modules()}
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and id(m) not in new_ids:
                m.eval()


class ClipNet(nn.Module):
    """Clip features and logits from uint8 clips [N, T, H, W, 3], or from cached frozen-stage
    outputs [N, T, ...] when ``cached_stages`` is set."""

    def __init__(self, model: nn.Module, spec, cached_stages: int | None = None):
        super().__init__()
        self.model = model
        self.preprocess = FramePreprocess(spec)
        self.cached_stages = cached_stages
        self._stages = frame_stages(model) if cached_stages is not None else None

    def features(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.cached_stages is None:
            return self.model.clip_features(self.preprocess(inputs))
        n, t = inputs.shape[:2]
        h = inputs.flatten(0, 1)
        for stage in self._stages[self.cached_stages:]:
            h = stage(h)
        emb = h.mean(dim=(2, 3)) if h.dim() == 4 else h
        return self.model.pool(emb.reshape(n, t, -1))

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        return self.model.fc(self.model.dropout(features))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(inputs))


def prefix_has_shift(model: nn.Module, frozen_stages: int) -> bool:
    """Whether a temporal shift sits inside the frozen prefix (then frames of a clip are mixed
    there and the cache must hold clip windows instead of single frames)."""
    from edgevt.models.temporal import TemporalShift

    stages = frame_stages(model) or []
    return any(isinstance(m, TemporalShift) for s in stages[:frozen_stages] for m in s.modules())


def can_cache(model: nn.Module, frozen_stages: int | None, augment: bool, sampling: str = "dense") -> tuple[bool, str]:
    """Whether the frozen-prefix cache is exact, and why not if it is not.

    2D models without temporal shift cache each frame once. TSM shifts mix neighbouring frames
    inside the backbone, so there the cache holds every distinct clip window a video can give
    (dense sampling: one per start offset), which is exact as long as windows are enumerable.
    """
    if frozen_stages is None or frame_stages(model) is None:
        return False, "the model has no per-frame stages to cache (3D model)"
    if getattr(model, "differences", False) and sampling == "segment":
        return False, ("frame-difference input with segment sampling: random per-segment frames pair too many "
                       "frames to cache their differences")
    if frozen_stages == 0:
        return False, "nothing is frozen (mode full or partial with every stage trained)"
    if augment:
        return False, "augmentation changes pixels every epoch"
    if prefix_has_shift(model, frozen_stages) and sampling == "segment":
        return False, "TSM with segment sampling: random per-segment frames make too many distinct clips"
    return True, ""


def clip_windows(n: int, spec) -> list[np.ndarray]:
    """Every frame-index window that training or evaluation can sample from an n-frame video."""
    if spec.sampling == "dense" and n >= spec.span:
        offsets = np.arange(spec.num_frames) * spec.frame_stride
        return [s + offsets for s in range(n - spec.span + 1)]
    return [sample_indices(n, spec, train=False)]


def prefix_key(model: nn.Module, frozen_stages: int) -> str:
    """Identifies the frozen prefix's weights, so a cache is reused only for the same function."""
    h = hashlib.sha256(f"{frozen_stages} {getattr(model, 'input', 'rgb')}".encode())
    for stage in frame_stages(model)[:frozen_stages]:
        for t in stage.state_dict().values():
            h.update(t.detach().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def frame_pairs(windows: list[np.ndarray]) -> list[tuple[int, int]]:
    """The (earlier, later) frame pairs whose differences the windows' clips hold, in order."""
    return sorted({(int(a), int(b)) for w in windows for a, b in zip(w[:-1], w[1:])})


@torch.no_grad()
def encode_videos(dataset, model: nn.Module, spec, frozen_stages: int, device: torch.device,
                  progress=None, chunk: int = 64) -> list[dict]:
    """Outputs of the frozen stages for every video of a ClipDataset: per frame (``frames``
    [F, ...]) for 2D models, per clip window (``windows`` [S, T, ...] with their frame indices)
    for TSM, per frame difference (``diffs`` [P + 1, ...]: the zero difference, then each pair in
    ``pairs``) for a frame-difference model without a shift in the prefix."""
    all_stages = frame_stages(model)
    stages = all_stages[:frozen_stages]
    pooled = frozen_stages == len(all_stages)  # whole encoder frozen: keep only the pooled embedding
    per_clip = prefix_has_shift(model, frozen_stages)
    diff = getattr(model, "differences", False)
    frame_map = getattr(model, "frame_map", lambda h: h)  # what a difference model differences
    frame_inputs = getattr(model, "frame_inputs", lambda x: x)  # [N, T, 3, H, W] -> what the encoder sees
    pre = FramePreprocess(spec).to(device)
    for s in stages:
        s.eval()

    def run(h):  # preprocessed frames (or their differences) [M, 3, H, W]
        h = h.to(device)
        for s in stages:
            h = s(h)
        return (h.mean(dim=(2, 3)) if pooled else h).cpu()

    task = progress.add_task("caching frozen features", total=len(dataset), info="") if progress else None
    out = []
    for i in range(len(dataset)):
        frames = torch.from_numpy(dataset.video(i))
        windows = clip_windows(len(frames), spec)
        shape = (3, *frames.shape[1:3])  # one preprocessed frame
        if per_clip:
            per = max(1, chunk // spec.num_frames)
            feats = []
            for j in range(0, len(windows), per):
                idx = torch.from_numpy(np.stack(windows[j:j + per]))
                x = pre(frames[idx.flatten()].to(device)).reshape(len(idx), spec.num_frames, *shape)
                h = run(frame_inputs(x).flatten(0, 1))
                feats.append(h.reshape(-1, spec.num_frames, *h.shape[1:]))
            out.append({"windows": torch.cat(feats), "starts": [int(w[0]) for w in windows], "n": len(frames)})
        elif diff:
            pairs = frame_pairs(windows)
            a, b = (torch.as_tensor([p[k] for p in pairs]) for k in (0, 1))
            zero = run(torch.zeros(1, *shape))
            # each frame preprocessed and mapped once (a frame sits in up to two pairs), then paired
            maps = torch.cat([frame_map(pre(frames[j:j + chunk].to(device))) for j in range(0, len(frames), chunk)])
            parts = [run(maps[b[j:j + chunk]] - maps[a[j:j + chunk]]) for j in range(0, len(pairs), chunk)]
            out.append({"diffs": torch.cat([zero, *parts]), "pairs": {p: k + 1 for k, p in enumerate(pairs)},
                        "n": len(frames)})
        else:
            out.append({"frames": torch.cat([run(pre(frames[j:j + chunk].to(device)))
                                             for j in range(0, len(frames), chunk)])})
        if progress:
            progress.advance(task)
    if progress:
        progress.remove_task(task)
    return out


class CachedClips(Dataset):
    """Clips of cached frozen-stage outputs, sampled exactly like ``ClipDataset`` samples pixels."""

    def __init__(self, dataset, videos: list[dict]):
        self.base = dataset
        self.videos = videos
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.videos)

    @property
    def labels(self) -> np.ndarray:
        return self.base.labels

    @property
    def train(self) -> bool:
        return self.base.train

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.base.set_epoch(epoch)

    def __getitem__(self, i: int):
        b, v = self.base, self.videos[i]
        rng = np.random.default_rng((b.seed, self.epoch, i)) if b.train else None
        n = v["n"] if "n" in v else len(v["frames"])
        idx = sample_indices(n, b.spec, train=b.train, rng=rng, sampling=b.sampling)
        label = b.records[i].label
        if "diffs" in v:
            clip = v["diffs"][[0] + [v["pairs"][(int(a), int(c))] for a, c in zip(idx[:-1], idx[1:])]]
        elif "windows" in v:
            if len(v["starts"]) == 1:
                clip = v["windows"][0]
            else:
                clip = v["windows"][v["starts"].index(int(idx[0]))]
        else:
            clip = v["frames"][idx]
        return clip, -1 if label is None else label


class FeatureCache:
    """In-memory cache of encoded videos keyed by (video, clip spec, frozen-prefix weights); pass
    one instance to several ``adapt`` calls (as the benchmark does) to encode each video once,
    whatever subsets of it later runs use."""

    def __init__(self):
        self.store: dict[tuple, dict] = {}
        self.seconds = 0.0

    def get(self, dataset, model, spec, frozen_stages, device, progress=None) -> tuple[list[dict], bool]:
        """Encoded videos of ``dataset`` in order, and whether all of them were cached already."""
        prefix = (spec.to_json(), prefix_key(model, frozen_stages))
        keys = [(r.path, r.start, r.end, *prefix) for r in dataset.records]
        missing = [i for i, k in enumerate(keys) if k not in self.store]
        if missing:
            from edgevt.adapt.data import subset

            t0 = time.perf_counter()
            encoded = encode_videos(subset(dataset, missing), model, spec, frozen_stages, device, progress)
            self.seconds += time.perf_counter() - t0
            for i, v in zip(missing, encoded):
                self.store[keys[i]] = v
        return [self.store[k] for k in keys], not missing
