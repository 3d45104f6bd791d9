"""Augmentations on uint8 clips [T, H, W, 3] (numpy), applied identically to every frame.

Temporal jitter lives in sampling (a random start/offset when training). Horizontal flip is off
unless a dataset says its classes are flip-invariant: flipping turns "moving left" into
"moving right".
"""
from __future__ import annotations

from dataclasses import dataclass

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
