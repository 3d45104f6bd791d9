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


def _main(args, capsys):
    import pytest

    from edgevt.cli import main

    with pytest.raises(SystemExit) as e:
        main(args)
    err = capsys.readouterr().err
    return e.value.code, err


def test_cli_bench_rejects_bad_values_in_one_line(bench_bundle, tmp_path, capsys):
    for args, message in ((["--runs", "0"], "--runs 0: must be >= 1"), (["--warmup-s", "-1"], "--warmup-s -1.0"),
                          (["--duration-s", "0"], "--duration-s 0.0"), (["--threads", "-1"], "--threads -1")):
        code, err = _main(["bench", str(bench_bundle), "--backend", "ort-cpu", "--out", str(tmp_path), *args], capsys)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not list(tmp_path.iterdir())


def test_cli_bench_fails_when_every_row_failed(bench_bundle, tmp_path, capsys, monkeypatch):
    import edgevt.bench.suite as suite

    def broken(*a, **k):
        raise RuntimeError("the accelerator fell off")

    monkeypatch.setattr(suite, "time_backend", broken)
    code, err = _main(["bench", str(bench_bundle), "--backend", "ort-cpu", "--runs", "3", "--warmup-s", "0",
                       "--out", str(tmp_path)], capsys)
    assert code == 2 and "no configuration could be timed" in err and "fell off" in err and "Traceback" not in err
    assert (tmp_path / "bench.json").exists()  # the failed rows are still reported
