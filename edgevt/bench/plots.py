"""PNG plots for bench reports: latency distribution per configuration, accuracy vs latency,
confusion matrix. matplotlib with the Agg backend (no display needed); writes are atomic."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from edgevt.fileio import atomic_write_bytes


def _figure(*args, **kwargs):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, plt.subplots(*args, **kwargs)


def _save(plt, fig, path: Path) -> Path:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)


def plot_latency(result, path: str | Path) -> Path | None:
    """Box plot (whiskers at p1/p99) of every timed run per configuration, baseline first."""
    rows = [r for r in result.rows if r.status == "ok" and r.samples_ms]
    if not rows:
        return None
    plt, (fig, ax) = _figure(figsize=(8, 0.45 * len(rows) + 1.6))
    data = [np.asarray(r.samples_ms) for r in rows][::-1]
    labels = [r.label + (" (baseline)" if r.baseline else "") + (f"  {r.speedup:.2f}x" if r.speedup and not r.baseline
                                                                   else "") for r in rows][::-1]
    ax.boxplot(data, vert=False, whis=(1, 99), showfliers=True, flierprops={"markersize": 2, "alpha": 0.4})
    ax.set_yticks(range(1, len(labels) + 1), labels, fontsize=8)
    lo, hi = min(d.min() for d in data), max(d.max() for d in data)
    if hi / max(lo, 1e-9) > 20:
        ax.set_xscale("log")
    ax.set_xlabel("latency per batch (ms), whiskers p1-p99")
    ax.set_title("edgevt bench: latency per configuration")
    ax.grid(axis="x", alpha=0.3)
    return _save(plt, fig, path)


def _top1(entry) -> float | None:
    """Top-1 in percent from an eval entry ({"top1": 0.93} / {"top1": 93.0} / {"accuracy": ...})."""
    if not isinstance(entry, dict):
        return None
    for key in ("top1", "top1_acc", "accuracy", "acc"):
        v = entry.get(key)
        if isinstance(v, (int, float)):
            return float(v) * 100 if v <= 1.0 else float(v)
    return None


def accuracy_by_precision(eval_section: dict) -> dict[str, float]:
    """{precision: top-1 %} from a bundle manifest's eval section, whatever its nesting
    (``{"model.int8": {...}}``, ``{"int8": {...}}`` or ``{"results": {...}}``)."""
    from edgevt.bundle import PRECISION_NAMES

    found: dict[str, float] = {}

    def visit(d):
        if not isinstance(d, dict):
            return
        for k, v in d.items():
            prec = str(k).split(".")[-1]
            if prec in PRECISION_NAMES and _top1(v) is not None:  # int8-cpu / int8-tensorrt: each its own graph
                found.setdefault(prec, _top1(v))
            elif isinstance(v, dict):
                visit(v)

    visit(eval_section or {})
    return found


def accuracy_points(result) -> list[tuple[str, float, float]]:
    """(label, p50 ms, top-1 %) for every timed row whose accuracy is in the bundle's eval section:
    the row's own backend and precision when evaluated (``eval["ort-cpu.int8"]``), else the same
    precision on another backend (the graphs are the same; parity is checked at export)."""
    acc = accuracy_by_precision(result.eval)
    exact = {k: _top1(v) for k, v in (result.eval or {}).items() if isinstance(v, dict) and _top1(v) is not None}
    points = []
    for r in result.rows:
        if r.status != "ok":
            continue
        top1 = exact.get(f"{r.backend}.{r.precision}", acc.get(r.precision))
        if top1 is not None:
            points.append((r.label, r.stats.p50_ms, top1))
    return points


def plot_accuracy_vs_latency(points: list[tuple[str, float, float]], path: str | Path,
                             title: str = "accuracy vs latency (target-test)") -> Path:
    plt, (fig, ax) = _figure(figsize=(7.5, 4.5))
    markers = "osD^v<>px*"
    for i, (label, ms, acc) in enumerate(points):
        ax.scatter(ms, acc, s=40, marker=markers[i % len(markers)], label=f"{label}: {acc:.1f}%, {ms:.2f} ms")
    ax.set_xlabel("p50 latency per batch (ms)")
    ax.set_ylabel("top-1 (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return _save(plt, fig, path)
