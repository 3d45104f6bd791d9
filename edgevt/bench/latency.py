"""Latency measurement over the one backend interface: warm-up by time, timed runs, benchmark inputs.

Each run is timed end to end around ``Backend.run`` (host numpy in, host numpy out). Backends that
can separate host->device copies from device compute report it in ``last_timing``; those figures
are averaged next to the end-to-end ones. The statistics (``edgevt.stats.LatencyStats``) are
computed on every timed run (no trimming), and a configuration is flagged *noisy* when its spread
says the machine was busy.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgevt.errors import EdgevtError
from edgevt.spec import ClipSpec
from edgevt.stats import LatencyStats


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
