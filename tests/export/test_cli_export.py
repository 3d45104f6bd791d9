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
                "--no-skip-bad", "--min-agreement", "--gate-min-clips", "--bias-correction"):
        assert opt in out
    flat = " ".join(out.replace("│", " ").split())
    assert "tensorrt (symmetric int8 Q/DQ" in flat and "or auto (both" in flat and "[default: auto]" in flat


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


def test_export_cli_rejects_bad_values_in_one_line(tmp_path, capsys, make_tiny_checkpoint):
    ckpt = str(make_tiny_checkpoint())
    for args, message in ((["--threads", "-1"], "--threads -1: must be >= 1"),
                          (["--calib-clips", "0"], "--calib-clips 0: must be >= 1"),
                          (["--eval-clips", "0"], "--eval-clips 0: must be >= 1"),
                          (["--flavour", "gpu"], "--flavour 'gpu': choose from auto, tensorrt, cpu"),
                          (["--min-agreement", "101"], "--min-agreement must be a percentage")):
        with pytest.raises(SystemExit) as e:
            main(["export", ckpt, "-o", str(tmp_path / "b"), *args])
        err = capsys.readouterr().err
        assert e.value.code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "b").exists()


def test_calibration_lists_ignore_their_labels(motiondigits, tiny_spec, tmp_path):
    """--calib's help says labels are ignored: a list whose labels are unknown (here beside the
    data set's labels.txt) still calibrates."""
    from edgevt.data.datasets import load_clips

    lst = motiondigits / "calib_unknown_labels.txt"
    lines = (motiondigits / "target_train.txt").read_text().split("\n")
    lst.write_text("\n".join(f"{line.split()[0]} not_a_class" for line in lines if line.strip()) + "\n")
    try:
        clips, labels, paths = load_clips(lst, tiny_spec)
    finally:
        lst.unlink()
    assert len(clips) == len([x for x in lines if x.strip()]) and (labels == -1).all()


def test_two_concurrent_exports_into_one_folder(tmp_path, make_tiny_checkpoint):
    """Each export assembles its bundle in its own staging folder and swaps it in: both succeed (the
    last one wins) and the result is one whole, verified bundle -- no 'try another --opset'."""
    import os
    import subprocess
    import sys

    from edgevt.bundle import Bundle

    ckpt, out = make_tiny_checkpoint(), tmp_path / "b"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-m", "edgevt", "export", str(ckpt), "-o", str(out), "--threads", "1"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read().decode()) for p in procs]
    for code, err in results:
        assert "Traceback" not in err and "--opset" not in err, err
        assert code == 0 or (code == 2 and len([x for x in err.splitlines() if x.startswith("error:")]) == 1), err
    assert any(code == 0 for code, _ in results)
    Bundle.load(out)  # whole and hash-verified
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]  # no staging or .old folder left behind


def test_export_cli_bias_correction_is_on_by_default_and_can_be_turned_off(tmp_path, capsys, make_tiny_checkpoint,
                                                                           motiondigits):
    from edgevt.bundle import Bundle

    ckpt = str(make_tiny_checkpoint())
    common = ["--precision", "int8", "--flavour", "cpu", "--calib", str(motiondigits / "target" / "train"),
              "--calib-cache", str(tmp_path / "cache"), "--threads", "1", "--adaround-steps", "0"]
    with pytest.raises(SystemExit) as e:
        main(["export", ckpt, "-o", str(tmp_path / "on"), *common])
    assert e.value.code == 0
    assert "INT8 (window, cpu): bias correction on" in capsys.readouterr().out
    assert Bundle.load(tmp_path / "on").manifest["checks"]["int8-cpu"]["bias_correction"]["convs"] > 0
    assert "adaround" not in Bundle.load(tmp_path / "on").manifest["checks"]["int8-cpu"]  # --adaround-steps 0
    with pytest.raises(SystemExit) as e:
        main(["export", ckpt, "-o", str(tmp_path / "off"), *common, "--no-bias-correction"])
    assert e.value.code == 0
    assert "bias correction" not in capsys.readouterr().out
    assert "bias_correction" not in Bundle.load(tmp_path / "off").manifest["checks"]["int8-cpu"]
