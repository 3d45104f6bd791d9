"""Latency measurement over the one backend interface: warm-up by time, timed runs, percentiles.

Each run is timed end to end around ``Backend.run`` (host numpy in, host numpy out). Backends that
can separate host->device copies from device compute report it in ``last_timing``; those figures
are averaged next to the end-to-end ones. Statistics are computed on every timed run (no trimming)
and a configuration is flagged *noisy* when its spread says the machine was busy.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgevt.errors import EdgevtError
from edgevt.spec import ClipSpec

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


def measure(run, warmup_s: float = 2.0, duration_s: float | None = 10.0, runs: int | None = None,
            min_runs: int = 5, on_run=None) -> tuple[list[float], list]:
    """Call ``run()`` for ``warmup_s`` seconds (at least once), then time it ``runs`` times or for
    ``duration_s`` seconds (at least ``min_runs`` times). ``run`` may return a Timing to record.
    Returns (seconds per run, Timing per run or None)."""
    if runs is None and duration_s is None:
        raise EdgevtError("give a duration (--duration-s) or a number of runs (--runs)")
    if runs is not None and runs < 1:
        raise EdgevtError(f"--runs must be >= 1, got {runs}")
    start = time.perf_counter()
    while True:
        run()
        if time.perf_counter() - start >= warmup_s:
            break
    samples: list[float] = []
    timings: list = []
    t_end = time.perf_counter() + (duration_s or 0.0)
    while True:
        t0 = time.perf_counter()
        timing = run()
        samples.append(time.perf_counter() - t0)
        timings.append(timing)
        if on_run is not None:
            on_run(len(samples))
        if runs is not None:
            if len(samples) >= runs:
                break
        elif len(samples) >= min_runs and time.perf_counter() >= t_end:
            break
    return samples, timings


def time_backend(backend, inputs: dict[str, np.ndarray], warmup_s: float = 2.0, duration_s: float | None = 10.0,
                 runs: int | None = None, min_runs: int = 5, on_run=None) -> tuple[LatencyStats, list[float]]:
    """Time ``backend.run(inputs)``; returns the statistics and the raw per-run latencies (ms)."""
    batch = int(next(iter(inputs.values())).shape[0])

    def one():
        backend.run(inputs)
        t = backend.last_timing
        return type(t)(t.h2d, t.compute, t.d2h)  # copy: backends may reuse the object

    samples, timings = measure(one, warmup_s, duration_s, runs, min_runs, on_run)
    return LatencyStats.from_samples(samples, batch, timings), [s * 1e3 for s in samples]


# -- inputs --------------------------------------------------------------------------------------
def sample_clips(source: str | Path, spec: ClipSpec, count: int, seed: int = 0) -> np.ndarray:
    """``count`` uint8 clips [count, T, H, W, 3] from a folder/list of videos, sampled with the spec
    (clips are reused round-robin when the source has fewer videos)."""
    from edgevt.data.datasets import load_dataset

    ds = load_dataset(source, spec, labeled=False, skip_bad=True)
    order = np.random.default_rng(seed).permutation(len(ds))
    picked = [ds.clip(int(order[i % len(ds)])) for i in range(min(count, len(ds)))]
    return np.stack([picked[i % len(picked)] for i in range(count)])


def _concrete_shape(shape, batch: int, spec: ClipSpec) -> tuple[int, ...]:
    dims = []
    for i, d in enumerate(shape):
        if isinstance(d, int) and d > 0:
            dims.append(d)
        elif i == 0:
            dims.append(batch)
        else:
            raise EdgevtError(f"cannot make a benchmark input for shape {shape}: dynamic axis {i} other than batch")
    return tuple(dims)


def make_inputs(infos, batch: int, spec: ClipSpec, clips: np.ndarray | None = None,
                seed: int = 0) -> dict[str, np.ndarray]:
    """One batch for a backend's inputs. uint8 frame inputs take real clips when given, otherwise
    random uint8 pixels (never zeros: an all-zero input can take fast paths real data does not);
    float inputs (embeddings, state) get random normal values."""
    rng = np.random.default_rng(seed)
    out = {}
    for info in infos:
        shape = _concrete_shape(info.shape, batch, spec)
        if info.dtype == "uint8":
            if clips is not None and tuple(clips.shape[1:]) == shape[1:]:
                idx = np.arange(batch) % len(clips)
                out[info.name] = np.ascontiguousarray(clips[idx])
            else:
                out[info.name] = rng.integers(1, 256, size=shape, dtype=np.uint8)
        elif info.dtype.startswith("float"):
            out[info.name] = rng.standard_normal(shape).astype(info.dtype)
        elif info.dtype.startswith("int"):
            out[info.name] = rng.integers(0, 2, size=shape).astype(info.dtype)
        else:
            raise EdgevtError(f"cannot make a benchmark input of dtype {info.dtype} for {info.name}")
    return out


@dataclass
class Case:
    """One configuration to time: a backend on one artifact at one precision and batch size."""

    backend: str
    precision: str
    batch: int
    artifact: str = ""  # bundle artifact key, or "checkpoint"
    path: str = ""
    baseline: bool = False
    options: dict = field(default_factory=dict)
