"""Temporal consistency of translated video: it must not flicker.

``frame_change``: the mean absolute change between consecutive frames (0-1 scale), averaged over
videos. A per-frame translator that flickers raises it above the source clips' value; the report
gives the ratio translated / source (1.0: exactly as steady as the source).
"""
from __future__ import annotations

import numpy as np


def frame_change(videos) -> float:
    """Mean |frame[t+1] - frame[t]| / 255 over the frames of each uint8 video [F, H, W, 3], averaged over videos."""
    values = [float(np.abs(np.diff(v.astype(np.int16), axis=0)).mean()) / 255.0 for v in videos if len(v) > 1]
    return float(np.mean(values)) if values else 0.0


def temporal_consistency(source_videos, translated_videos) -> dict:
    src, out = frame_change(source_videos), frame_change(translated_videos)
    return {"source_frame_change": round(src, 5), "translated_frame_change": round(out, 5),
            "ratio": round(out / src, 3) if src > 0 else None}
