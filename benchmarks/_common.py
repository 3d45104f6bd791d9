"""Shared helpers for benchmark scripts: provenance and writing result tables."""
from __future__ import annotations

import json
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def mean_std(values, ddof: int = 0) -> tuple[float, float]:
    """Mean and standard deviation of the values that are not None (nan, nan when there are none);
    ``ddof=1``: the sample standard deviation."""
    import numpy as np

    a = np.array([v for v in values if v is not None], dtype=float)
    if not len(a):
        return float("nan"), float("nan")
    return float(a.mean()), float(a.std(ddof=ddof)) if len(a) > ddof else 0.0


def fmt_mean_std(values, scale: float = 100.0, ddof: int = 0) -> str:
    """'mean ± std' (times ``scale``), the mean alone for one value, '—' for none."""
    import numpy as np

    m, s = mean_std(values, ddof)
    return "—" if np.isnan(m) else (f"{scale * m:.1f} ± {scale * s:.1f}" if len(values) > 1 else f"{scale * m:.1f}")


def provenance() -> dict:
    from edgevt.env import environment

    return {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), **environment()}


def provenance_line(prov: dict) -> str:
    """The italic line under a results table: date, CPU and versions."""
    return (f"\n\n_{prov['date']}; CPU: {prov['cpu']}; torch {prov['torch']} "
            f"({prov['torch_threads']} threads); onnxruntime {prov['onnxruntime']}_\n")


def write_results(name: str, markdown: str, data: dict) -> Path:
    """Write results/<name>.md (table + provenance line) and results/<name>.json."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    prov = provenance()
    md = markdown.rstrip() + provenance_line(prov)
    (RESULTS / f"{name}.md").write_text(md)
    (RESULTS / f"{name}.json").write_text(json.dumps({"provenance": prov, **data}, indent=2, default=str))
    return RESULTS / f"{name}.md"
