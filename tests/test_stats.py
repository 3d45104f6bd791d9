"""edgevt.stats: the latency statistics eval and bench both report."""
import numpy as np
import pytest

from edgevt.backends.base import Timing
from edgevt.stats import LatencyStats


def test_stats_percentiles_and_throughput():
    samples = np.arange(1, 101) / 1000.0  # 1..100 ms
    s = LatencyStats.from_samples(samples, batch=4)
    assert s.runs == 100 and s.min_ms == pytest.approx(1) and s.max_ms == pytest.approx(100)
    assert s.p50_ms == pytest.approx(np.percentile(np.arange(1, 101), 50))
    assert s.p99_ms == pytest.approx(np.percentile(np.arange(1, 101), 99))
    assert s.p50_ms < s.p90_ms < s.p95_ms < s.p99_ms
    assert s.throughput == pytest.approx(4 * 100 / samples.sum())
    assert s.noisy  # 1..100 ms is anything but steady
    assert s.compute_ms is None  # no split given


def test_steady_samples_are_not_noisy_and_outliers_are():
    rng = np.random.default_rng(0)
    steady = 0.010 + rng.normal(0, 0.0002, 200)
    assert not LatencyStats.from_samples(steady, 1).noisy
    spiky = steady.copy()
    spiky[::20] = 0.050  # 5% of runs five times slower: p99 blows up
    s = LatencyStats.from_samples(spiky, 1)
    assert s.noisy and "p99/p50" in s.noise


def test_split_only_when_backend_separates_copies():
    only_compute = [Timing(compute=0.01)] * 3
    assert LatencyStats.from_samples([0.01] * 3, 1, only_compute).compute_ms is None
    split = [Timing(h2d=0.001, compute=0.008, d2h=0.002)] * 3
    s = LatencyStats.from_samples([0.011] * 3, 1, split)
    assert (s.h2d_ms, s.compute_ms, s.d2h_ms) == pytest.approx((1, 8, 2))
