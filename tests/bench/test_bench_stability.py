"""benchmarks/bench_stability.py: when the load starts, how ratios are compared and judged."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import bench_stability as bs


def _run(rows, wall=100.0, phases=None, launched=None):
    return {"wall_s": wall, "launched_unix": launched,
            "data": {"rows": rows, "provenance": {"phases_s": phases or {}}}}


def _row(prec, speedup, batch=1, baseline=False, p50=10.0):
    return {"backend": "torch" if baseline else "ort-cpu", "precision": prec, "batch": batch, "status": "ok",
            "baseline": baseline, "speedup": None if baseline else speedup, "speedup_pooled": speedup,
            "stats": {"p50_ms": p50}, "speedup_spread": {"p25": speedup * 0.9, "p75": speedup * 1.1,
                                                         "ratios": [speedup] * 8}}


def test_halfway_uses_when_the_rounds_began():
    # launched at t=1000, rounds began at t=1030 and took 60 s: half-way is 60 s after launch
    run = _run([], wall=120, phases={"open_warmup": 10, "rounds": 60, "rounds_started_unix": 1030.0}, launched=1000.0)
    assert bs.halfway(run) == pytest.approx(60.0)
    # an older JSON without the start time: wall minus the phases is the start-up
    assert bs.halfway(_run([], wall=120, phases={"open_warmup": 10, "rounds": 60})) == pytest.approx(90.0)
    assert bs.halfway(_run([], wall=120)) == pytest.approx(60.0)


def test_compare_and_verdict():
    quiet = _run([_row("fp32", 0, baseline=True), _row("fp32", 2.0), _row("int8", 0.5)])
    loaded = _run([_row("fp32", 0, baseline=True), _row("fp32", 2.2), _row("int8", 0.3)])
    rows = bs.compare(quiet, loaded)
    by = {r["row"]: r for r in rows}
    assert by["ort-cpu fp32 b1"]["change"] == pytest.approx(0.1) and by["ort-cpu fp32 b1"]["within"]
    assert by["ort-cpu int8 b1"]["change"] == pytest.approx(-0.4) and not by["ort-cpu int8 b1"]["within"]
    met, worst, how = bs.verdict(rows)
    assert not met and worst == pytest.approx(0.4) and how.startswith("missed by 25.0% points")
    met, _, how = bs.verdict(rows[:1])
    assert met and how.startswith("met: worst change +10.0%")
    assert "| ort-cpu fp32 b1 | 2.00x (1.80-2.20) | 2.20x (1.98-2.42) | +10.0% | yes |" in "\n".join(
        bs.table(rows, "speedup"))
