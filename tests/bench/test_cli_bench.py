import json

from typer.testing import CliRunner

from edgevt.cli import app


def test_cli_bench_writes_reports(bench_bundle, tmp_path):
    out = tmp_path / "b"
    res = CliRunner().invoke(app, ["bench", str(bench_bundle), "--backend", "ort-cpu", "--precision", "fp32",
                                   "--batch", "1", "--warmup-s", "0", "--runs", "3", "--threads", "1",
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads((out / "bench.json").read_text())
    assert [(r["backend"], r["status"]) for r in data["rows"]] == [("torch", "ok"), ("ort-cpu", "ok")]
    assert (out / "bench.md").exists() and (out / "bench.png").exists()


def test_cli_bench_missing_bundle(tmp_path):
    from edgevt.cli import main
    import pytest

    with pytest.raises(SystemExit) as e:
        main(["bench", str(tmp_path / "nothing")])
    assert e.value.code == 2
