"""Interleaved rounds: every row gets a slice of each round, so a burst of load hits all rows alike.

Timing rows one after another lets one burst of load from another process land on one row and turn
its ratio to the baseline into nonsense. Here the timed runs of every row are cut into ``rounds``
slices; round r runs a slice of every row, in an order rotated by r (or shuffled), so over the
rounds each row sits in each position. A speed-up is then computed *per round* (baseline mean in
that round / row mean in that round) and reported as the median of those ratios with their
spread (IQR, mean and std) across rounds: a round hit by load moves both sides of its ratio.

Per round the *mean* call time, not the median: under a competing process the scheduler gives each
runnable process time slices of a few milliseconds, so a call shorter than a slice often runs
untouched while a long call is always cut. The median of short calls barely moves and that of long
calls doubles, which bends a ratio between a short and a long row by up to 2x; the mean of either
grows with the share of the core taken, so their ratio keeps (tests/bench/test_rounds.py simulates
it). The median across rounds then drops rounds a burst of load hit.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

ORDERS = ("rotate", "shuffle")


def round_orders(n_rows: int, n_rounds: int, order: str = "rotate", seed: int = 0) -> list[list[int]]:
    """The row order of each round. ``rotate``: round r starts at row r mod n (every row takes every
    position equally often when n_rounds is a multiple of n_rows); ``shuffle``: a seeded permutation."""
    if order not in ORDERS:
        raise ValueError(f"order {order!r}: choose from {', '.join(ORDERS)}")
    if n_rows < 0 or n_rounds < 1:
        raise ValueError(f"need n_rows >= 0 and n_rounds >= 1, got {n_rows}, {n_rounds}")
    if order == "rotate":
        return [[(r + i) % n_rows for i in range(n_rows)] for r in range(n_rounds)]
    rng = np.random.default_rng(seed)
    return [[int(i) for i in rng.permutation(n_rows)] for _ in range(n_rounds)]


def split_runs(total: int, n_rounds: int) -> list[int]:
    """``total`` timed runs spread over the rounds as evenly as possible (earlier rounds take the
    remainder); fewer runs than rounds gives fewer rounds (each with one run)."""
    if total < 1 or n_rounds < 1:
        raise ValueError(f"need total >= 1 and n_rounds >= 1, got {total}, {n_rounds}")
    n = min(total, n_rounds)
    return [total // n + (1 if r < total % n else 0) for r in range(n)]


@dataclass
class RatioSpread:
    """A speed-up across rounds: the per-round ratios and their summary."""

    ratios: list[float]
    median: float
    p25: float
    p75: float
    mean: float
    std: float

    @property
    def rounds(self) -> int:
        return len(self.ratios)

    @property
    def iqr(self) -> float:
        return self.p75 - self.p25

    @property
    def rel_half_iqr(self) -> float:
        """Half the IQR as a share of the median: the '±' the report prints."""
        return self.iqr / 2 / self.median if self.median > 0 else 0.0

    @property
    def drift(self) -> float | None:
        return ratio_drift(self.ratios)

    def to_dict(self) -> dict:
        return asdict(self) | {"rounds": self.rounds, "iqr": self.iqr, "rel_half_iqr": self.rel_half_iqr,
                               "drift": self.drift}


# A ratio whose second-half median differs from its first-half median by more than this is flagged:
# the load changed during the run, and the ratio depends on it.
DRIFT_FLAG = 0.15


def ratio_drift(ratios) -> float | None:
    """median(second half of the rounds) / median(first half) - 1; None under 6 rounds (two halves
    of 2 rounds say little)."""
    a = [float(x) for x in ratios]
    if len(a) < 6:
        return None
    half = len(a) // 2
    first, second = float(np.median(a[:half])), float(np.median(a[len(a) - half:]))
    return second / first - 1 if first > 0 else None


def ratio_spread(base_ms, row_ms) -> RatioSpread | None:
    """Per-round speed-ups base / row (one value per round both were timed in; None entries, rounds a
    side missed, are left out) and their median, quartiles, mean and std (ddof=1). None without a
    common round."""
    ratios = [b / r for b, r in zip(base_ms, row_ms) if b is not None and r is not None and r > 0]
    if not ratios:
        return None
    a = np.asarray(ratios, dtype=np.float64)
    p25, med, p75 = np.percentile(a, [25, 50, 75])
    return RatioSpread([float(x) for x in a], float(med), float(p25), float(p75), float(a.mean()),
                       float(a.std(ddof=1)) if a.size > 1 else 0.0)


def round_means(per_round_s: list[list[float]]) -> list[float | None]:
    """Mean latency (ms) of each round's slice; None for a round without runs."""
    return [float(np.mean(s)) * 1e3 if s else None for s in per_round_s]


def round_medians(per_round_s: list[list[float]]) -> list[float | None]:
    """Median latency (ms) of each round's slice; None for a round without runs."""
    return [float(np.median(s)) * 1e3 if s else None for s in per_round_s]


def warm_up(run, seconds: float) -> int:
    """Call ``run()`` for ``seconds`` (at least once); returns the number of calls."""
    start, n = time.perf_counter(), 0
    while True:
        run()
        n += 1
        if time.perf_counter() - start >= seconds:
            return n


def run_rounds(runners: list, n_rounds: int, runs: int | None = None, slice_s: float | None = None,
               min_per_slice: int = 1, order: str = "rotate", seed: int = 0, rewarm: int = 1,
               rewarm_below_s: float | None = 0.05, on_slice=None, on_error=None,
               clock=time.perf_counter, cpu_clock=time.process_time
               ) -> tuple[list[list[list[float]]], list[list], list[list[list[float]]]]:
    """Time every runner in interleaved rounds.

    ``runners[i]()`` runs row i once and may return a Timing. Each round runs a slice of every live
    row in that round's order: ``rewarm`` untimed calls (the caches went to the other rows; skipped
    for a row whose last timed call took ``rewarm_below_s`` or longer, as such a call refills the
    caches itself), then either a fixed count (``runs`` split over the rounds) or at least ``min_per_slice`` timed calls
    for ``slice_s`` seconds. A runner that raises is reported to ``on_error(i, exc)`` and dropped
    from later rounds (its earlier samples are kept). Returns (wall seconds[row][round] -> list,
    timings[row] -> list over all its timed calls, CPU seconds[row][round] -> list). CPU seconds
    are ``cpu_clock`` (the process's CPU time, all threads) around each call: time the process was
    preempted by other processes does not count, so a ratio of CPU times survives load that only
    steals the core (not the caches); a wall ratio is what a user waits for."""
    if (runs is None) == (slice_s is None):
        raise ValueError("give exactly one of runs (a count) or slice_s (seconds per slice)")
    counts = split_runs(runs, n_rounds) if runs is not None else [None] * n_rounds
    n = len(runners)
    samples: list[list[list[float]]] = [[[] for _ in counts] for _ in range(n)]
    cpu: list[list[list[float]]] = [[[] for _ in counts] for _ in range(n)]
    timings: list[list] = [[] for _ in range(n)]
    dead: set[int] = set()
    timed_last: list[float | None] = [None] * n
    for r, row_order in enumerate(round_orders(n, len(counts), order, seed)):
        for i in row_order:
            if i in dead:
                continue
            run = runners[i]
            try:
                last = timed_last[i]
                if rewarm_below_s is None or last is None or last < rewarm_below_s:
                    for _ in range(rewarm):
                        run()
                t_end = clock() + (slice_s or 0.0)
                while True:
                    c0, t0 = cpu_clock(), clock()
                    timing = run()
                    samples[i][r].append(clock() - t0)
                    cpu[i][r].append(cpu_clock() - c0)
                    timed_last[i] = samples[i][r][-1]
                    timings[i].append(timing)
                    done = len(samples[i][r])
                    if counts[r] is not None:
                        if done >= counts[r]:
                            break
                    elif done >= min_per_slice and clock() >= t_end:
                        break
            except Exception as e:  # one broken row must not stop the others
                dead.add(i)
                if on_error is None:
                    raise
                on_error(i, e)
            if on_slice is not None:
                on_slice(r, i)
    return samples, timings, cpu
