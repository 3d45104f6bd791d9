import json
import subprocess
import sys

import pytest

from typer.testing import CliRunner

from edgevt.cli import app, main

runner = CliRunner()


def test_help_lists_verbs():
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0
    for verb in ("synth", "models", "info"):
        assert verb in r.output


def test_models_lists_registry():
    r = runner.invoke(app, ["models"])
    assert r.exit_code == 0 and "tsn_efficientnet_lite0" in r.output and "r2plus1d_18" in r.output


def test_info_json():
    r = runner.invoke(app, ["info", "--json"])
    assert r.exit_code == 0
    env = json.loads(r.output)
    assert env["torch"] and env["onnxruntime"] and "backends" in env


def test_synth_writes_dataset(tmp_path):
    out = tmp_path / "md"
    r = runner.invoke(app, ["synth", "-o", str(out), "--train-per-class", "1", "--test-per-class", "1",
                            "--frames", "4", "--size", "32"])
    assert r.exit_code == 0, r.output
    assert (out / "labels.txt").exists() and len((out / "target_test.txt").read_text().split("\n")) == 7


def test_bad_input_is_one_line_without_traceback(capsys):
    with pytest.raises(SystemExit) as e:  # main must exit (2), not return
        main(["synth", "--train-per-class", "0"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_python_dash_m_entry_point():
    r = subprocess.run([sys.executable, "-m", "edgevt", "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "synth" in r.stdout
