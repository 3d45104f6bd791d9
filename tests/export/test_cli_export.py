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
    for opt in ("--precision", "--calib", "--calib-method", "--flavour", "--eval", "--max-drop", "--float-input"):
        assert opt in out
