"""Temporal smoothing of per-decision class probabilities (softmax -> smoothed scores).

Both smoothers keep a fixed amount of state (no growth over a long run):
``ema`` -- exponential moving average, s_t = alpha * p_t + (1 - alpha) * s_{t-1};
``mean`` -- moving average over the last ``window`` decisions (a preallocated ring);
``none`` -- the raw probabilities.
"""
from __future__ import annotations

import numpy as np

from edgevt.errors import EdgevtError

SMOOTHERS = ("ema", "mean", "none")


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class Smoother:
    def __init__(self, num_classes: int, kind: str = "ema", alpha: float = 0.5, window: int = 5):
        if kind not in SMOOTHERS:
            raise EdgevtError(f"--smooth {kind!r}: choose from {', '.join(SMOOTHERS)}")
        if kind == "ema" and not 0 < alpha <= 1:
            raise EdgevtError(f"--smooth-alpha {alpha}: must be in (0, 1]")
        if kind == "mean" and window < 1:
            raise EdgevtError(f"--smooth-window {window}: must be >= 1")
        self.kind, self.alpha, self.window = kind, float(alpha), int(window)
        self._state = np.zeros(num_classes)
        self._hist = np.zeros((max(1, self.window), num_classes))
        self._sum = np.zeros(num_classes)
        self._n = 0

    def update(self, probs: np.ndarray) -> np.ndarray:
        p = np.asarray(probs, np.float64).reshape(-1)
        if self.kind == "none":
            return p
        if self.kind == "ema":
            self._state = p.copy() if self._n == 0 else self.alpha * p + (1 - self.alpha) * self._state
            self._n += 1
            return self._state
        slot = self._n % self.window
        if self._n >= self.window:
            self._sum -= self._hist[slot]
        self._hist[slot] = p
        self._sum += p
        self._n += 1
        return self._sum / min(self._n, self.window)

    def reset(self) -> None:
        self._n = 0
        self._sum[:] = 0
