"""edgevt export CLI: bad input exits 2 with a one-line message; --help explains the options."""
import pytest

from edgevt.cli import main


def test_export_cli_bad_checkpoint(tmp_path, capsys):
    bogus = tmp_path / "x.pt"
    bogus.write_text("nope")
    with pytest.raises(SystemExit) as e:
        main(["export", str(bogus), "-o", str(tmp_path / "b")])
    assert e.value.code == 2
    assert "not an edgevt checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


def test_export_cli_help(capsys):
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    out = capsys.readouterr().out
    for opt in ("--precision", "--calib", "--calib-method", "--flavour", "--eval", "--max-drop", "--float-input",
                "--no-skip-bad"):
        assert opt in out


def test_export_cli_no_skip_bad_names_the_unreadable_calibration_video(tmp_path, capsys, make_tiny_checkpoint):
    bad = tmp_path / "x.mp4"
    bad.write_bytes(b"garbage, not a video" * 8)
    with pytest.raises(SystemExit) as e:
        main(["export", str(make_tiny_checkpoint()), "-o", str(tmp_path / "b"), "--precision", "int8",
              "--calib", str(tmp_path), "--no-skip-bad"])
    assert e.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "x.mp4" in errors[0] and "--skip-bad" in errors[0]
    assert not (tmp_path / "b").exists()
