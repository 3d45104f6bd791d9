"""Augmentations on uint8 clips [T, H, W, 3] (numpy), applied identically to every frame.

Temporal jitter lives in sampling (a random start/offset when training). Horizontal flip is off
unless a dataset says its classes are flip-invariant: flipping turns "moving left" into
"moving right".
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np


@dataclass
class ClipAugment:
    """Random crop-and-resize, colour jitter and an optional horizontal flip."""

    crop_scale: tuple[float, float] = (0.8, 1.0)
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    hflip: bool = False

    def __call__(self, clip: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        t, h, w, _ = clip.shape
        scale = rng.uniform(*self.crop_scale)
        ch, cw = max(8, int(round(h * np.sqrt(scale)))), max(8, int(round(w * np.sqrt(scale))))
        if (ch, cw) != (h, w):
            y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            clip = np.stack([cv2.resize(f[y:y + ch, x:x + cw], (w, h), interpolation=cv2.INTER_LINEAR)
                             for f in clip])
        if self.brightness or self.contrast or self.saturation:
            clip = colour_jitter(clip, rng, self.brightness, self.contrast, self.saturation)
        if self.hflip and rng.random() < 0.5:
            clip = np.ascontiguousarray(clip[:, :, ::-1])
        return clip


def colour_jitter(clip: np.ndarray, rng: np.random.Generator, brightness: float, contrast: float,
                  saturation: float) -> np.ndarray:
    x = clip.astype(np.float32)
    x *= rng.uniform(1 - brightness, 1 + brightness)
    mean = x.mean()
    x = (x - mean) * rng.uniform(1 - contrast, 1 + contrast) + mean
    grey = x.mean(axis=-1, keepdims=True)
    x = (x - grey) * rng.uniform(1 - saturation, 1 + saturation) + grey
    return np.clip(x, 0, 255).astype(np.uint8)


@dataclass
class AppearanceAugment:
    """Domain randomisation of a clip's look, shared by all its frames (so motion is untouched).

    A source camera films one kind of scene; a target camera another. Varying what does not carry
    the label (the scene behind the action, colour, light, noise, sharpness) teaches the model to
    ignore it. Per clip: a procedurally generated background texture blended in (no photos, so
    nothing of a real target leaks in), per-channel gain and offset (white balance, exposure),
    contrast, a blur, and sensor noise drawn anew for every frame. Then ``ClipAugment``'s crop.
    """

    p_background: float = 0.8
    mix: tuple[float, float] = (0.2, 0.8)  # share of the background texture where the scene is dark
    gain: tuple[float, float] = (0.5, 1.3)
    offset: float = 40.0
    noise: tuple[float, float] = (0.0, 14.0)  # per-frame Gaussian sigma, in pixel levels
    p_blur: float = 0.3
    crop: ClipAugment = field(default_factory=lambda: ClipAugment(brightness=0.0, contrast=0.0, saturation=0.0))

    def __call__(self, clip: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        clip = self.crop(clip, rng)
        t, h, w, _ = clip.shape
        x = clip.astype(np.float32)
        if rng.random() < self.p_background:
            bg = random_texture(h, w, rng)
            # where the scene is bright (the actor) it stays; dark scene parts take the texture
            lum = x.mean(axis=-1, keepdims=True) / 255.0
            alpha = rng.uniform(*self.mix) * (1.0 - lum)
            x = x * (1 - alpha) + bg[None] * alpha
        x = x * rng.uniform(*self.gain, size=3).astype(np.float32) + rng.uniform(-self.offset, self.offset, 3)
        if rng.random() < self.p_blur:
            k = float(rng.uniform(0.5, 1.5))
            x = np.stack([cv2.GaussianBlur(f, (0, 0), k) for f in x])
        sigma = rng.uniform(*self.noise)
        if sigma > 0:
            x = x + rng.normal(0, sigma, x.shape).astype(np.float32)
        return np.clip(x, 0, 255).astype(np.uint8)


@dataclass
class PolarityInvert:
    """The clip's negative (255 - pixel, every frame alike) with probability ``p``; the motion and the
    label are unchanged.

    A source camera that films bright actors on a dark scene lets a model read the direction of a
    motion from the sign of a frame difference (bright arriving, dark leaving); on a target where
    the actor is darker than the scene the signs flip and that model predicts the reversed motion.
    Seeing both polarities removes the shortcut (``benchmarks/lite0_target.py``). It suits models
    that relate frames (TSM, 3D, frame differences across a TSM): for TSN on frame differences one
    difference alone is then ambiguous.
    """

    p: float = 0.5

    def __call__(self, clip: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return 255 - clip if rng.random() < self.p else clip


def random_texture(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A random RGB texture [h, w, 3] in [0, 255]: smooth colour noise at a random scale, with
    optional stripes, like the clutter of a scene (float32)."""
    cells = int(rng.integers(2, max(3, h // 4)))
    base = rng.uniform(0, 255, (cells, cells, 3)).astype(np.float32)
    tex = cv2.resize(base, (w, h), interpolation=cv2.INTER_CUBIC)
    fine = cv2.resize(rng.uniform(-60, 60, (h // 2, w // 2, 3)).astype(np.float32), (w, h),
                      interpolation=cv2.INTER_LINEAR)
    tex = tex + fine * rng.uniform(0, 1)
    if rng.random() < 0.3:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        a, period = rng.uniform(0, np.pi), rng.uniform(4, 16)
        tex = tex + 40 * np.sin((np.cos(a) * xx + np.sin(a) * yy) * 2 * np.pi / period)[..., None]
    return np.clip(tex, 0, 255)


# --augment's vocabulary: each name and the transform it makes ("none": no transform)
AUGMENT_TYPES = {"basic": ClipAugment, "appearance": AppearanceAugment, "invert": PolarityInvert}
AUGMENTS = ("none", *AUGMENT_TYPES)


@dataclass
class Compose:
    """Several augmentations applied in turn (``--augment appearance+invert``)."""

    steps: tuple

    def __call__(self, clip: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        for step in self.steps:
            clip = step(clip, rng)
        return clip


def augment_names(name: str | bool | None) -> tuple[str, ...]:
    """The augmentations ``--augment`` names, in order: one of AUGMENTS, or several joined by '+'
    (``appearance+invert``: a randomised look, then its negative half the time). () for none."""
    from edgevt.errors import EdgevtError

    if name is True:
        return ("basic",)
    if name in (None, False, "none"):
        return ()
    parts = tuple(p.strip() for p in str(name).split("+"))
    for p in parts:
        if p not in AUGMENTS or (p == "none" and len(parts) > 1):
            raise EdgevtError(f"unknown --augment {name!r}; use one of {', '.join(AUGMENTS)}, "
                              "or several joined by '+' (e.g. appearance+invert)")
    if len(set(parts)) < len(parts):
        raise EdgevtError(f"--augment {name!r} names an augmentation twice")
    return parts


def make_augment(name: str | bool | None):
    """The training transform named by ``--augment``: none, basic (crop + colour jitter),
    appearance (domain randomisation: background textures, colour, light, blur, noise + crop),
    invert (the clip's negative half the time: ``PolarityInvert``), or several joined by '+',
    applied left to right."""
    steps = tuple(AUGMENT_TYPES[n]() for n in augment_names(name))
    if not steps:
        return None
    return steps[0] if len(steps) == 1 else Compose(steps)
