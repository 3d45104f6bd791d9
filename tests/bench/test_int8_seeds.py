"""benchmarks/int8_seeds.py: which rows it reads, how it tells PTQ from AdaRound, what it pools."""
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import int8_seeds as seeds


def _row(agreement, clips=360, adaround=False, b1=2.0):
    c = {"clips": clips, "rows": clips, "fp32_top1": 70.0, "int8_top1": 69.0, "agreement": agreement}
    return {"accuracy": {"more": {"centred": c, "windows": {**c, "rows": 9 * clips}}},
            "int8": {"adaround": {"steps": 3, "lr": 0.01, "clips": 4, "kept": 2, "convolutions": 2, "seconds": 1.0,
                                  "simulated_logit_error_before": 0.05, "simulated_logit_error_after": 0.02}
                     if adaround else None, "qat": None},
            "gate": {"agreement": 98.0, "decisions": 720, "passed": True},
            "timing": {k: {"median": b1} for k in ("speedup_b1", "speedup_b4", "cpu_speedup_b1", "cpu_speedup_b4")}}


def _file(tmp_path, name, models):
    p = tmp_path / f"{name}.json"
    p.write_text(json.dumps({"cpu": "Test CPU", "provenance": {"date": "today"}, "models": models}))
    return p


def test_rows_by_method_and_seed_and_pooled_agreement(tmp_path):
    a = _file(tmp_path, "a", {"demo": _row(99.0), "m_s0": _row(97.5), "m_s1": _row(95.0)})
    b = _file(tmp_path, "b", {"m_s0": _row(100.0, adaround=True), "m_s1": _row(97.5, adaround=True), "m_inv_s0": _row(1.0)})
    rows = seeds.seed_rows([a, b], "m")
    assert sorted(rows) == [("adaround", 0), ("adaround", 1), ("ptq", 0), ("ptq", 1)]  # demo and m_inv not read
    table = {k: seeds.summary(r) for k, r in rows.items()}
    assert table[("ptq", 0)]["changed"] == 9 and table[("ptq", 1)]["changed"] == 18
    md = seeds.markdown("m", table)
    assert "27 of 720 changed" in md and "9 of 720 changed" in md  # pooled over the two seeds
    assert "- PTQ, agreement, centred: met on 1 of 2 seeds (97.5, 95.0)" in md
    assert "- AdaRound, agreement, centred: met on 2 of 2 seeds" in md


def test_the_same_seed_and_method_twice_is_refused(tmp_path):
    a = _file(tmp_path, "a", {"m_s0": _row(97.5)})
    b = _file(tmp_path, "b", {"m_s0": _row(96.0)})
    with pytest.raises(SystemExit, match="also in"):
        seeds.seed_rows([a, b], "m")
    with pytest.raises(SystemExit, match="no row x_s<seed>"):
        seeds.seed_rows([a], "x")


def test_seed_0_is_the_plain_name_and_a_recorded_seed_wins(tmp_path):
    # int8_cpu.py names seed 0's row without a suffix: it was left out before
    a = _file(tmp_path, "a", {"m": _row(97.5), "m_s2": _row(96.0)})
    b = _file(tmp_path, "b", {"m": {**_row(99.0, adaround=True), "seed": 1}})
    assert sorted(seeds.seed_rows([a, b], "m")) == [("adaround", 1), ("ptq", 0), ("ptq", 2)]
