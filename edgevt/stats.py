"""Latency statistics, the one definition every stage reports with: percentiles, throughput, noise.

``LatencyStats`` summarises timed runs (seconds per batch) in milliseconds. eval records it for the
batches it times while scoring an artifact; bench times backends and streams with it. It lives here,
below both, so that eval does not import bench (eval comes first in the pipeline).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

# A measurement is flagged noisy when its coefficient of variation (std / mean) or its tail
# ratio (p99 / p50) is above these. Quiet machines give CV of a few percent and p99/p50 < 1.3.
NOISY_CV = 0.15
NOISY_TAIL = 1.5


@dataclass
class LatencyStats:
    """Latency of one configuration, in milliseconds per batch; throughput in clips per second."""

    runs: int
    batch: int
    total_s: float
    mean_ms: float
    std_ms: float
    min_ms: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    throughput: float
    cv: float
    tail_ratio: float
    noisy: bool
    noise: str = ""
    # Mean split of a run where the backend measures it (None: not separated by this backend).
    h2d_ms: float | None = None
    compute_ms: float | None = None
    d2h_ms: float | None = None

    @classmethod
    def from_samples(cls, samples_s, batch: int, timings: list | None = None,
                     noisy_cv: float = NOISY_CV, noisy_tail: float = NOISY_TAIL) -> LatencyStats:
        s = np.asarray(samples_s, dtype=np.float64)
        if s.size == 0:
            raise ValueError("no timed runs")
        ms = s * 1e3
        p50, p90, p95, p99 = np.percentile(ms, [50, 90, 95, 99])
        mean = float(ms.mean())
        std = float(ms.std(ddof=1)) if ms.size > 1 else 0.0
        cv = std / mean if mean > 0 else 0.0
        tail = float(p99 / p50) if p50 > 0 else 0.0
        reasons = []
        if cv > noisy_cv:
            reasons.append(f"CV {cv:.0%} > {noisy_cv:.0%}")
        if tail > noisy_tail:
            reasons.append(f"p99/p50 {tail:.2f} > {noisy_tail:.2f}")
        h2d = compute = d2h = None
        if timings:
            t = np.array([[x.h2d, x.compute, x.d2h] for x in timings], dtype=np.float64) * 1e3
            # Only report a split when the backend actually separated the copies from compute.
            if t[:, 0].any() or t[:, 2].any():
                h2d, compute, d2h = (float(v) for v in t.mean(axis=0))
        return cls(runs=int(s.size), batch=batch, total_s=float(s.sum()), mean_ms=mean, std_ms=std,
                   min_ms=float(ms.min()), p50_ms=float(p50), p90_ms=float(p90), p95_ms=float(p95),
                   p99_ms=float(p99), max_ms=float(ms.max()), throughput=batch * s.size / float(s.sum()),
                   cv=cv, tail_ratio=tail, noisy=bool(reasons), noise="; ".join(reasons),
                   h2d_ms=h2d, compute_ms=compute, d2h_ms=d2h)

    def to_dict(self) -> dict:
        return asdict(self)
