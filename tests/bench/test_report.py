"""The terminal tables fit an 80-column terminal without cutting key cells; the reports stay complete."""
import pytest
from rich.console import Console

from edgevt.bench.report import COLUMNS, COMPACT_COLUMNS, rich_table, row_cells, to_markdown
from edgevt.bench.suite import BenchResult, BenchRow
from edgevt.stats import LatencyStats


def _stats(ms: float, batch: int = 1, spread: float = 0.01) -> LatencyStats:
    return LatencyStats.from_samples([ms / 1000 * (1 + spread * (i % 5)) for i in range(20)], batch)


@pytest.fixture
def wide_result():
    # Widest realistic cells: a slow CPU model (4-digit ms), a fast GPU one (5-digit clips/s), a skip reason.
    rows = [BenchRow("torch", "fp32", 1, "ok", baseline=True, stats=_stats(1234.5)),
            BenchRow("ort-cuda", "int8", 64, "ok", stats=_stats(3.2, 64), speedup=123.45, gflops=12345.6,
                     speedup_spread={"rounds": 10, "p25": 100.12, "p75": 150.55, "rel_half_iqr": 0.2043}),
            BenchRow("ort-cpu", "int8", 16, "ok", stats=_stats(33.2, 16), speedup=0.31, gflops=65.4, peak_share=0.123,
                     speedup_spread={"rounds": 100, "p25": 0.21, "p75": 0.41, "rel_half_iqr": 1.23}),
            BenchRow("tensorrt", "fp16", 64, "ok", stats=_stats(2.1, 64, spread=0.5), speedup=150.2),
            BenchRow("ort-trt", "int8", 4, "skipped", reason="onnxruntime-gpu with the TensorRT provider "
                                                             "is not installed (see `edgevt info`)")]
    return BenchResult(rows, {}, {}, bundle="/home/someone/projects/edgevt/runs/demo/bundle")


def _render(renderable, width: int) -> list[str]:
    c = Console(width=width, record=True)
    c.print(renderable)
    return c.export_text().splitlines()


def test_bench_table_fits_80_columns_without_cutting_key_cells(wide_result):
    assert wide_result.rows[3].stats.noisy  # a noisy row has the longest noise cell
    lines = _render(rich_table(wide_result, width=80), 80)
    text = "\n".join(lines)
    assert max(map(len, lines)) <= 80
    assert "…" not in text
    pick = [COLUMNS.index(c) for c in COMPACT_COLUMNS[:-1]]
    for r in wide_result.rows:
        cells = [row_cells(r)[i] for i in pick]
        if r.baseline:
            cells[COMPACT_COLUMNS.index("vs PyTorch eager")] = "baseline"
        # the row's key cells on one line, in order, whole
        assert any(all(c in line for c in cells) for line in lines), (r.label, text)
    assert "not installed (see `edgevt info`)" in " ".join(text.split())  # skip reason in full, under the table
    assert "p90 ms" not in text and "vs eager" in text


def test_bench_table_has_every_column_when_wide(wide_result):
    for table in (rich_table(wide_result, width=260), rich_table(wide_result, width=80, wide=True),
                  rich_table(wide_result)):
        assert [c.header for c in table.columns] == COLUMNS
    # a long skip reason wraps in the last column instead of forcing the compact table
    lines = _render(rich_table(wide_result, width=260), 260)
    assert max(map(len, lines)) <= 260 and "…" not in "\n".join(lines)
    text = "\n".join(lines)
    assert "123.45x ±20%" in text and "100.12-150.55 (n=10)" in text and "12%" in text and "12346" in text
    assert "h2d / compute / d2h ms" in "\n".join(lines)


def test_markdown_keeps_every_column(wide_result):
    assert "| " + " | ".join(COLUMNS) + " |" in to_markdown(wide_result)


def test_stream_table_fits_80_columns():
    from edgevt.bench.streaming import STAGES, StreamBench, stream_table

    r = StreamBench(video="/data/videos/a_rather_long_recording_name_from_camera_7.mp4", bundle="b",
                    backend="ort-cuda", precision="int8", form="incremental", summary={},
                    latency=_stats(1234.5), stages={k: _stats(999.99) for k in STAGES})
    lines = _render(stream_table(r), 80)
    text = "\n".join(lines)
    assert max(map(len, lines)) <= 80 and "…" not in text
    assert all(k in text for k in STAGES) and "end to end" in text
    assert f"{r.latency.p99_ms:.2f}" in text


def test_ratio_drift_is_flagged(wide_result):
    from edgevt.bench.report import drift_warning

    assert drift_warning(wide_result) is None
    wide_result.rows[1].speedup_spread["drift"] = 0.42
    md = to_markdown(wide_result)
    assert "ratio drift +42%" in md and "Speed-up drift" in md and "ort-cuda int8 b64 (+42%)" in md
    wide_result.rows[1].speedup_spread["drift"] = -0.1
    assert drift_warning(wide_result) is None
