"""The PNG users look at: one row per class, source frame | translated frame | a target frame."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edgevt.fileio import atomic_path


def write_grid(path: str | Path, rows: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]], tile: int = 96) -> None:
    """``rows``: (class name, source, translated, target) uint8 RGB frames [H, W, 3]."""
    label_w = 110
    lines = []
    header = np.full((22, label_w + 3 * tile, 3), 255, np.uint8)
    for k, name in enumerate(("source", "translated", "target")):
        cv2.putText(header, name, (label_w + k * tile + 4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
    lines.append(header)
    for name, *frames in rows:
        label = np.full((tile, label_w, 3), 255, np.uint8)
        cv2.putText(label, name[:14], (4, tile // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1)
        tiles = [cv2.resize(f, (tile, tile), interpolation=cv2.INTER_NEAREST) for f in frames]
        lines.append(np.concatenate([label, *tiles], axis=1))
    image = np.concatenate(lines, axis=0)
    path = Path(path)
    with atomic_path(path) as tmp:
        _, buf = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        tmp.write_bytes(buf.tobytes())
