import json

from typer.testing import CliRunner

from edgevt.cli import app


def test_cli_bench_writes_reports(bench_bundle, tmp_path):
    out = tmp_path / "b"
    res = CliRunner().invoke(app, ["bench", str(bench_bundle), "--backend", "ort-cpu", "--precision", "fp32",
                                   "--batch", "1", "--warmup-s", "0", "--runs", "3", "--threads", "1",
                                   "--out", str(out)], env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.output
    # an 80-column terminal gets the key columns, whole
    assert max(map(len, res.output.splitlines())) <= 80 and "…" not in res.output
    assert "vs eager" in res.output and "p90 ms" not in res.output
    data = json.loads((out / "bench.json").read_text())
    assert [(r["backend"], r["status"]) for r in data["rows"]] == [("torch", "ok"), ("ort-cpu", "ok")]
    assert (out / "bench.md").exists() and (out / "bench.png").exists()


def test_cli_bench_wide_prints_every_column(bench_bundle, tmp_path):
    from edgevt.bench.report import COLUMNS

    res = CliRunner().invoke(app, ["bench", str(bench_bundle), "--backend", "ort-cpu", "--precision", "fp32",
                                   "--warmup-s", "0", "--runs", "3", "--threads", "1", "--no-baseline", "--wide",
                                   "--out", str(tmp_path)], env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.output
    assert all(c in res.output for c in COLUMNS) and "…" not in res.output


def test_cli_bench_missing_bundle(tmp_path):
    from edgevt.cli import main
    import pytest

    with pytest.raises(SystemExit) as e:
        main(["bench", str(tmp_path / "nothing")])
    assert e.value.code == 2
