from typer.testing import CliRunner

from edgevt.cli import app, main

runner = CliRunner()


def test_translate_fda_cli(motiondigits, tmp_path):
    out = tmp_path / "fda"
    r = runner.invoke(app, ["translate", "-s", str(motiondigits / "source_train.txt"), "-t",
                            str(motiondigits / "target" / "train"), "-o", str(out), "--method", "fda", "--size", "32"])
    assert r.exit_code == 0, r.output
    assert "use it as --source" in r.output and (out / "source.txt").exists() and (out / "labels.txt").exists()
    assert "translate" in runner.invoke(app, ["--help"]).output
    assert "--pixel" in runner.invoke(app, ["adapt", "--help"]).output


def test_translate_bad_input_is_one_line(motiondigits, tmp_path, capsys):
    try:
        main(["translate", "-s", str(motiondigits / "source_train.txt"), "-t", str(motiondigits / "target" / "train"),
              "-o", str(tmp_path / "x"), "--method", "gan", "--size", "30"])
    except SystemExit as e:
        assert e.code == 2
    err = capsys.readouterr().err
    assert "divisible by 4" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
