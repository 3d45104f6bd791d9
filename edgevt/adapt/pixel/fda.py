"""No-training pixel-level baselines: Fourier domain adaptation and colour-histogram matching.

Both restyle a whole source clip after *one* target frame, so every frame of the clip gets the
same change and the clip does not flicker.

- FDA (Yang & Soatto, CVPR'20): per channel, the low-frequency part of the source frame's
  amplitude spectrum is replaced by the target frame's, the source phase is kept. The band is a
  centred square of half-width ``max(1, floor(beta * min(H, W)))`` in the shifted spectrum.
- Histogram matching: each channel's values are mapped so that the clip's histogram (all frames
  pooled, one mapping per clip) matches the target frame's.
"""
from __future__ import annotations

import numpy as np

DEFAULT_BETA = 0.09


def band_halfwidth(shape: tuple[int, int], beta: float) -> int:
    return max(1, int(np.floor(beta * min(shape))))


def low_frequency_amplitude(frames: np.ndarray, beta: float = DEFAULT_BETA) -> np.ndarray:
    """The centred low-frequency amplitude block of each frame: [..., 2b+1, 2b+1, 3] (float)."""
    x = np.asarray(frames, dtype=np.float32)
    h, w = x.shape[-3:-1]
    b = band_halfwidth((h, w), beta)
    amp = np.abs(np.fft.fftshift(np.fft.fft2(x, axes=(-3, -2)), axes=(-3, -2)))
    cy, cx = h // 2, w // 2
    return amp[..., cy - b:cy + b + 1, cx - b:cx + b + 1, :]


def fda_clip(clip: np.ndarray, target_frame: np.ndarray, beta: float = DEFAULT_BETA) -> np.ndarray:
    """``clip`` uint8 [T, H, W, 3] restyled with ``target_frame`` uint8 [H, W, 3]'s low-frequency amplitude."""
    src = clip.astype(np.float32)
    tgt = target_frame.astype(np.float32)
    h, w = src.shape[1:3]
    b = band_halfwidth((h, w), beta)
    cy, cx = h // 2, w // 2
    f_src = np.fft.fftshift(np.fft.fft2(src, axes=(1, 2)), axes=(1, 2))
    f_tgt = np.fft.fftshift(np.fft.fft2(tgt, axes=(0, 1)), axes=(0, 1))
    amp, phase = np.abs(f_src), np.angle(f_src)
    amp[:, cy - b:cy + b + 1, cx - b:cx + b + 1, :] = np.abs(f_tgt)[cy - b:cy + b + 1, cx - b:cx + b + 1, :]
    mixed = np.fft.ifftshift(amp * np.exp(1j * phase), axes=(1, 2))
    out = np.real(np.fft.ifft2(mixed, axes=(1, 2)))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def hist_match_clip(clip: np.ndarray, target_frame: np.ndarray) -> np.ndarray:
    """``clip`` uint8 [T, H, W, 3] with each channel's histogram (pooled over the clip) mapped onto
    ``target_frame``'s: one monotone lookup table per channel, shared by every frame."""
    out = np.empty_like(clip)
    for c in range(3):
        src = clip[..., c].ravel()
        tgt = target_frame[..., c].ravel()
        s_cdf = np.cumsum(np.bincount(src, minlength=256)).astype(np.float64) / src.size
        t_cdf = np.cumsum(np.bincount(tgt, minlength=256)).astype(np.float64) / tgt.size
        lut = np.clip(np.searchsorted(t_cdf, s_cdf, side="left"), 0, 255).astype(np.uint8)
        out[..., c] = lut[clip[..., c]]
    return out
