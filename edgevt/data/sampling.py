"""Which source frames make a clip.

Three strategies, all returning ``num_frames`` indices into a video of ``n`` frames:

- ``dense``: T consecutive sampled frames at ``frame_stride`` -- the windows the streaming loop
  sees. Training picks a random start (temporal jitter); evaluation takes the centred window.
- ``segment``: TSN sampling: split the video into T equal segments and take one frame from each
  (random offset when training, the segment centre when evaluating).
- ``uniform``: T frames evenly spread over the whole video (deterministic).

``window_indices`` gives several evaluation windows of one video (dense: starts evenly spread from
the first to the last full window), so a check can judge more decisions than one per clip.

Short videos (fewer frames than a clip spans) never crash. The rule is ``spec.short_clip``:
``loop`` wraps around to the first frame again; ``pad`` repeats the last frame.
"""
from __future__ import annotations

import numpy as np

from edgevt.errors import EdgevtError


def _fit(indices: np.ndarray, n: int, rule: str) -> np.ndarray:
    if rule == "loop":
        return indices % n
    return np.minimum(indices, n - 1)


def dense_indices(n: int, num_frames: int, stride: int, train: bool, rng: np.random.Generator | None,
                  short_clip: str = "loop") -> np.ndarray:
    span = (num_frames - 1) * stride + 1
    offsets = np.arange(num_frames) * stride
    if n < span:
        return _fit(offsets, n, short_clip)
    slack = n - span
    start = int(rng.integers(0, slack + 1)) if (train and rng is not None) else slack // 2
    return start + offsets


def segment_indices(n: int, num_frames: int, train: bool, rng: np.random.Generator | None,
                    short_clip: str = "loop") -> np.ndarray:
    if n < num_frames:
        return _fit(np.arange(num_frames), n, short_clip)
    edges = np.linspace(0, n, num_frames + 1)
    lo = np.floor(edges[:-1]).astype(int)
    hi = np.maximum(np.floor(edges[1:]).astype(int), lo + 1)
    if train and rng is not None:
        return np.array([int(rng.integers(a, b)) for a, b in zip(lo, hi)])
    return (lo + hi - 1) // 2


def uniform_indices(n: int, num_frames: int, short_clip: str = "loop") -> np.ndarray:
    if n < num_frames:
        return _fit(np.arange(num_frames), n, short_clip)
    return np.round(np.linspace(0, n - 1, num_frames)).astype(int)


def sample_indices(n: int, spec, train: bool = False, rng: np.random.Generator | None = None,
                   sampling: str | None = None) -> np.ndarray:
    """Frame indices for one clip of ``spec`` from a video with ``n`` frames."""
    if n <= 0:
        raise EdgevtError("cannot sample a clip from a video with no frames")
    sampling = sampling or spec.sampling
    if sampling == "dense":
        return dense_indices(n, spec.num_frames, spec.frame_stride, train, rng, spec.short_clip)
    if sampling == "segment":
        return segment_indices(n, spec.num_frames, train, rng, spec.short_clip)
    if sampling == "uniform":
        return uniform_indices(n, spec.num_frames, spec.short_clip)
    raise EdgevtError(f"unknown sampling {sampling!r}: use dense, segment or uniform")


def window_indices(n: int, spec, windows: int) -> list[np.ndarray]:
    """Up to ``windows`` evaluation clips of a video with ``n`` frames: for dense sampling, windows
    whose starts are evenly spread from the first full window to the last (each distinct start once;
    ``windows=1`` is the centred window that ``sample_indices`` gives); other samplings and videos too
    short for more than one window give the one evaluation clip."""
    if windows < 1:
        raise EdgevtError(f"windows per clip must be >= 1, got {windows}")
    if windows == 1 or spec.sampling != "dense":
        return [sample_indices(n, spec)]
    span = (spec.num_frames - 1) * spec.frame_stride + 1
    if n <= span:
        return [sample_indices(n, spec)]
    starts = np.unique(np.linspace(0, n - span, windows).round().astype(int))
    offsets = np.arange(spec.num_frames) * spec.frame_stride
    return [s + offsets for s in starts]
