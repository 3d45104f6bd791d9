"""Interleaved rounds: who runs when, how runs are split, and the per-round ratio spread."""
import numpy as np
import pytest

from edgevt.bench.rounds import ratio_spread, round_means, round_medians, round_orders, run_rounds, split_runs


def test_rotate_puts_every_row_in_every_position():
    orders = round_orders(3, 6, "rotate")
    assert orders[:3] == [[0, 1, 2], [1, 2, 0], [2, 0, 1]] and orders[3:] == orders[:3]
    for pos in range(3):
        assert sorted(o[pos] for o in orders) == [0, 0, 1, 1, 2, 2]


def test_shuffle_is_seeded_permutations():
    a, b = round_orders(5, 4, "shuffle", seed=1), round_orders(5, 4, "shuffle", seed=1)
    assert a == b and all(sorted(o) == list(range(5)) for o in a)
    assert len({tuple(o) for o in a}) > 1  # not the same order every round
    with pytest.raises(ValueError):
        round_orders(3, 2, "sorted")


def test_split_runs():
    assert split_runs(10, 4) == [3, 3, 2, 2] and sum(split_runs(10, 4)) == 10
    assert split_runs(3, 10) == [1, 1, 1]  # fewer runs than rounds: fewer rounds
    assert split_runs(7, 1) == [7]
    with pytest.raises(ValueError):
        split_runs(0, 3)


def test_run_rounds_interleaves_rows_by_count():
    log = []
    runners = [lambda i=i: log.append(i) for i in range(3)]
    samples, timings, cpu = run_rounds(runners, 3, runs=6, rewarm=1)
    # each slice: 1 untimed re-warm + 2 timed calls; round r starts with row r
    assert log == [0] * 3 + [1] * 3 + [2] * 3 + [1] * 3 + [2] * 3 + [0] * 3 + [2] * 3 + [0] * 3 + [1] * 3
    assert [len(s) for s in samples[0]] == [2, 2, 2] and len(timings[0]) == 6
    assert [len(s) for s in cpu[2]] == [2, 2, 2]


def test_run_rounds_by_time_uses_slices_of_every_row():
    t = [0.0]
    order = []

    def clock():
        return t[0]

    def make(i, cost):
        def run():
            order.append(i)
            t[0] += cost
        return run

    # slices of 1 s: row 0 costs 0.25 s a call, row 1 costs 0.5 s
    samples, _, _ = run_rounds([make(0, 0.25), make(1, 0.5)], 2, slice_s=1.0, rewarm=0, clock=clock)
    assert [len(s) for s in samples[0]] == [4, 4] and [len(s) for s in samples[1]] == [2, 2]
    assert samples[0][0] == pytest.approx([0.25] * 4)
    assert order == [0] * 4 + [1] * 2 + [1] * 2 + [0] * 4  # round 2 is rotated


def test_a_burst_of_load_hits_every_row_of_its_round():
    """A fake machine that is 3x slower for a while: sequential timing wrecks one row's ratio,
    interleaved rounds keep the per-round median ratio at the true 2x."""
    t = [0.0]
    busy = (4.0, 8.0)  # seconds of fake time in which every call takes 3x as long

    def make(cost):
        def run():
            t[0] += cost * (3.0 if busy[0] <= t[0] < busy[1] else 1.0)
        return run

    def clock():
        return t[0]

    samples, _, _ = run_rounds([make(0.02), make(0.01)], 10, slice_s=0.6, rewarm=1, clock=clock)
    med = [round_medians(s) for s in samples]
    sp = ratio_spread(med[0], med[1])
    assert sp.median == pytest.approx(2.0, rel=0.05) and sp.rounds == 10
    # the same load on rows timed one after another: the baseline's whole run is slowed
    t[0], busy = 0.0, (0.0, 6.0)
    seq = [run_rounds([make(c)], 1, slice_s=6.0, rewarm=0, clock=clock)[0][0] for c in (0.02, 0.01)]
    assert np.median(seq[0][0]) / np.median(seq[1][0]) == pytest.approx(6.0, rel=0.05)


def test_run_rounds_drops_a_failing_row_and_keeps_the_rest():
    calls = {"n": 0}

    def flaky():
        calls["n"] += 1
        if calls["n"] > 3:
            raise RuntimeError("device lost")

    errors = []
    samples, _, _ = run_rounds([flaky, lambda: None], 4, runs=4, rewarm=0, on_error=lambda i, e: errors.append((i, str(e))))
    assert errors == [(0, "device lost")]
    assert sum(map(len, samples[0])) == 3 and sum(map(len, samples[1])) == 4
    with pytest.raises(ValueError):
        run_rounds([flaky], 2)  # neither runs nor slice_s


def test_ratio_spread():
    sp = ratio_spread([10, 10, 10, 10, 20], [5, 5, 4, 5, 10])
    assert sp.ratios == [2.0, 2.0, 2.5, 2.0, 2.0]
    assert sp.median == 2.0 and sp.p25 == 2.0 and sp.p75 == 2.0 and sp.rel_half_iqr == 0.0
    assert sp.mean == pytest.approx(2.1) and sp.std == pytest.approx(np.std([2, 2, 2.5, 2, 2], ddof=1))
    sp = ratio_spread([1, 2, 3, 4], [1, 1, 1, 1])
    assert (sp.p25, sp.median, sp.p75) == (1.75, 2.5, 3.25) and sp.rel_half_iqr == pytest.approx(0.3)
    # rounds one side missed do not count
    assert ratio_spread([10, None, 10], [5, 5, None]).ratios == [2.0]
    assert ratio_spread([None], [1.0]) is None
    d = ratio_spread([2, 4], [1, 1]).to_dict()
    assert d["rounds"] == 2 and d["iqr"] == pytest.approx(1.0)


def test_round_medians():
    assert round_medians([[0.001, 0.003, 0.002], [], [0.004]]) == pytest.approx([2.0, None, 4.0])
    assert round_means([[0.001, 0.003, 0.005], [], [0.004]]) == pytest.approx([3.0, None, 4.0])


def test_time_sliced_load_keeps_the_ratio_of_means_not_of_medians():
    """A competing process that takes every other 3 ms time slice: a call is cut (and waits a slice)
    at each slice boundary it crosses. A 1 ms call mostly runs untouched, a 30 ms call is always
    cut: the ratio of medians moves from 30x to about 60x, the ratio of means stays about 30x."""
    rng = np.random.default_rng(0)
    slice_ms = 3.0

    def loaded(work_ms, n=4000):
        phase = rng.uniform(0, slice_ms, n)  # where in its slice each call starts
        cuts = np.floor((phase + work_ms) / slice_ms)  # slice boundaries crossed
        return (work_ms + cuts * slice_ms) / 1e3

    quiet = [[[0.030] * 100], [[0.001] * 100]]
    load = [[loaded(30.0).tolist()], [loaded(1.0).tolist()]]
    base_q, row_q = (ratio_spread(round_means(quiet[0]), round_means(quiet[1])).median,
                     ratio_spread(round_medians(quiet[0]), round_medians(quiet[1])).median)
    means = ratio_spread(round_means(load[0]), round_means(load[1])).median
    medians = ratio_spread(round_medians(load[0]), round_medians(load[1])).median
    assert base_q == pytest.approx(30.0) and row_q == pytest.approx(30.0)
    assert means == pytest.approx(30.0, rel=0.15)
    assert medians == pytest.approx(60.0, rel=0.15)  # what per-round medians reported


def test_rewarm_is_skipped_for_slow_rows():
    t = [0.0]
    calls = [0, 0]

    def make(i, cost):
        def run():
            calls[i] += 1
            t[0] += cost
        return run

    run_rounds([make(0, 0.01), make(1, 0.2)], 3, runs=3, rewarm=1, rewarm_below_s=0.05, clock=lambda: t[0])
    # the fast row re-warms before every slice; the slow one only before its first
    assert calls == [6, 4]


def test_cpu_time_ignores_time_the_process_was_preempted():
    """Wall time grows while another process holds the core; CPU time does not: the fake CPU clock
    advances only by the work a call does."""
    wall, cpu_t = [0.0], [0.0]

    def make(cost, stolen):
        def run():
            cpu_t[0] += cost
            wall[0] += cost + stolen[0]
        return run

    stolen_a, stolen_b = [0.0], [0.0]
    rows = [make(0.02, stolen_a), make(0.01, stolen_b)]
    samples, _, cpu = run_rounds(rows, 4, runs=4, rewarm=0, clock=lambda: wall[0], cpu_clock=lambda: cpu_t[0])
    assert ratio_spread(round_medians(cpu[0]), round_medians(cpu[1])).median == pytest.approx(2.0)
    # a load that steals more from the short row (scheduling quanta) changes the wall ratio only
    wall[0] = cpu_t[0] = 0.0
    stolen_a[0], stolen_b[0] = 0.01, 0.02
    samples, _, cpu = run_rounds(rows, 4, runs=4, rewarm=0, clock=lambda: wall[0], cpu_clock=lambda: cpu_t[0])
    assert ratio_spread(round_medians(samples[0]), round_medians(samples[1])).median == pytest.approx(1.0)
    assert ratio_spread(round_medians(cpu[0]), round_medians(cpu[1])).median == pytest.approx(2.0)


def test_ratio_drift_flags_a_load_that_changed_mid_run():
    from edgevt.bench.rounds import ratio_drift

    assert ratio_drift([2.0, 2.1, 1.9, 2.0, 3.0, 3.2, 3.1, 2.9]) == pytest.approx(3.05 / 2.0 - 1)
    # odd count: the middle round is left out
    assert ratio_drift([2.0, 2.1, 2.2, 9.0, 1.9, 2.0, 2.1]) == pytest.approx(2.0 / 2.1 - 1)
    assert ratio_drift([2.0, 3.0, 4.0, 5.0, 6.0]) is None  # too few rounds to split
    assert ratio_spread([4, 4, 4, 6, 6, 6], [2] * 6).to_dict()["drift"] == pytest.approx(0.5)
