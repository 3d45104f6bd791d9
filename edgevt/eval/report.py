"""Evaluation reports: confusion matrix PNG and the side-by-side precision table."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgevt.fileio import atomic_path


def save_confusion_png(confusion: np.ndarray, labels: list[str], title: str, path: str | Path) -> None:
    """Row-normalised confusion matrix with counts, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conf = np.asarray(confusion, dtype=np.float64)
    norm = conf / np.maximum(conf.sum(1, keepdims=True), 1)
    n = len(conf)
    size = max(4.0, 0.5 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), labels[:n], rotation=45, ha="right")
    ax.set_yticks(range(n), labels[:n])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if conf[i, j]:
                    ax.text(j, i, int(conf[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if norm[i, j] > 0.5 else "black")
    fig.tight_layout()
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=100, format="png")
    finally:
        plt.close(fig)


def results_table_rows(results) -> list[dict]:
    """One row per result, with the top-1 change against the first fp32 row."""
    ref = next((r.top1 for r in results if r.precision == "fp32"), None)
    rows = []
    for r in results:
        lat = r.latency or {}
        rows.append({
            "backend": r.backend, "precision": r.precision, "clips": r.clips, "top1": r.top1, "top5": r.top5,
            "delta_top1": None if ref is None else r.top1 - ref,
            "agreement_fp32": r.agreement_with.get("fp32"),
            "p50_ms": lat.get("p50_ms"), "p90_ms": lat.get("p90_ms"), "throughput": lat.get("throughput"),
            "batch": r.batch_size,
        })
    return rows
