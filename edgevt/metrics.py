"""The two numbers every stage reports the same way: top-1 accuracy and top-1 agreement, in percent.

Used by export (parity checks, the INT8 gate), eval and bench, so that "agreement 98.5" means the
same thing in a bundle manifest, an eval table and a benchmark report.
"""
from __future__ import annotations

import numpy as np


def top1(logits: np.ndarray, labels: np.ndarray) -> float:
    """Percent of clips whose highest logit is their label."""
    return float((np.asarray(logits).argmax(1) == np.asarray(labels)).mean() * 100.0)


def top1_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Percent of clips on which two sets of logits pick the same class."""
    return float((np.asarray(a).argmax(1) == np.asarray(b).argmax(1)).mean() * 100.0)
