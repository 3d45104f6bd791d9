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

    def broken_runner(be, inputs):
        def one():
            raise RuntimeError("the accelerator fell off")
        return one

    monkeypatch.setattr(suite, "_runner", broken_runner)
    code, err = _main(["bench", str(bench_bundle), "--backend", "ort-cpu", "--runs", "3", "--warmup-s", "0",
                       "--out", str(tmp_path)], capsys)
    assert code == 2 and "no configuration could be timed" in err and "fell off" in err and "Traceback" not in err
    assert (tmp_path / "bench.json").exists()  # the failed rows are still reported


def test_cli_bench_rounds_and_efficiency_in_reports(bench_bundle, tmp_path):
    out = tmp_path / "r"
    res = CliRunner().invoke(app, ["bench", str(bench_bundle), "--backend", "ort-cpu", "--precision", "fp32",
                                   "--batch", "1,2", "--warmup-s", "0", "--runs", "8", "--rounds", "4",
                                   "--order", "shuffle", "--threads", "1", "--out", str(out)],
                             env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.output
    data = json.loads((out / "bench.json").read_text())
    assert data["format_version"] == 2 and data["config"]["rounds"] == 4 and data["config"]["order"] == "shuffle"
    assert data["efficiency"]["flops_per_clip"] > 0 and data["efficiency"]["peak"]["formula"]
    ort = [r for r in data["rows"] if r["backend"] == "ort-cpu"]
    assert len(ort) == 2 and all(len(r["rounds_ms"]) == 4 and r["stats"]["runs"] == 8 for r in ort)
    assert all(r["speedup_spread"]["rounds"] == 4 and r["gflops"] > 0 and r["peak_share"] > 0 for r in ort)
    # a share above 1 means the paper peak is too low here (e.g. a VM reporting a base clock): it is said
    above = [r for r in ort if r["peak_share"] > 1]
    assert bool(above) == ("above_peak" in data["efficiency"])
    assert all("above it" in r["efficiency_note"] for r in above)
    md = (out / "bench.md").read_text()
    assert all(r["cpu_speedup_spread"]["rounds"] == 4 and r["cpu_speedup"] > 0 for r in ort)
    assert "ratio IQR (rounds)" in md and "vs eager (CPU time)" in md and "% of peak" in md and "4 interleaved rounds (order: shuffle" in md
    assert "peak" in res.output and "±" in res.output


def test_cli_bench_rejects_bad_rounds(bench_bundle, tmp_path, capsys):
    code, err = _main(["bench", str(bench_bundle), "--rounds", "0", "--out", str(tmp_path)], capsys)
    assert code == 2 and "--rounds 0" in err
    code, err = _main(["bench", str(bench_bundle), "--backend", "ort-cpu", "--order", "sideways", "--runs", "1",
                       "--out", str(tmp_path)], capsys)
    assert code == 2 and "--order 'sideways'" in err
