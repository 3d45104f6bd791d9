import shutil

import pytest

from edgevt.adapt import adapt
from edgevt.errors import EdgevtError


def test_mismatched_label_sets(tiny_cfg, motiondigits, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(motiondigits / "target" / "test", other)
    (other / "move_left").rename(other / "walk")
    with pytest.raises(EdgevtError, match="labels the source does not.*walk"):
        adapt(tiny_cfg(strategy="finetune", target_test=str(other)))


def test_empty_target_folder_for_dann(tiny_cfg, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EdgevtError, match="empty"):
        adapt(tiny_cfg(strategy="dann", target=str(empty)))


def test_too_few_clips_for_shots_and_ways(tiny_cfg):
    with pytest.raises(EdgevtError, match="--ways 5"):
        adapt(tiny_cfg(strategy="maml", ways=5, shots=2, queries=2))


def test_checkpoint_of_another_arch(tiny_cfg, tmp_path):
    first = adapt(tiny_cfg(mode="linear", out=str(tmp_path / "a"), source_test=None, target_test=None))
    with pytest.raises(EdgevtError, match="tsn_tinycnn.*tsm_tinycnn"):
        adapt(tiny_cfg(init=first.checkpoint, model="tsm_tinycnn"))
    with pytest.raises(EdgevtError, match="is for tsn_tinycnn, not --model tsm_tinycnn"):
        adapt(tiny_cfg(model="tsm_tinycnn", out=str(tmp_path / "a"), resume=True))
    with pytest.raises(EdgevtError, match="nothing to resume"):
        adapt(tiny_cfg(out=str(tmp_path / "fresh"), resume=True))


def test_cli_prints_one_line_error(motiondigits, tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "edgevt", "adapt", "--source", str(motiondigits / "source_train.txt"),
                           "--strategy", "dann", "--target", str(tmp_path / "missing"), "-o", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "missing" in proc.stderr


def test_bad_video_stops_the_run_unless_skip_bad(tiny_cfg, motiondigits, tmp_path, capsys):
    source = tmp_path / "source"
    shutil.copytree(motiondigits / "source" / "train", source)
    (source / "move_up" / "broken.mp4").write_bytes(b"\x00" * 64)
    with pytest.raises(EdgevtError, match="broken.mp4.*--skip-bad"):
        adapt(tiny_cfg(source=str(source)))
    result = adapt(tiny_cfg(source=str(source), skip_bad=True))
    assert result.checkpoint
    assert "skipped 1 unreadable" in capsys.readouterr().err


def test_shift_direction_is_checked_and_only_for_tsm(tmp_path, motiondigits):
    from edgevt.adapt import AdaptConfig, adapt
    from edgevt.errors import EdgevtError

    with pytest.raises(EdgevtError, match="--shift-direction must be"):
        AdaptConfig(source=str(motiondigits / "source_train.txt"), shift_direction="forward").validate()
    with pytest.raises(EdgevtError, match="only applies to TSM"):
        adapt(AdaptConfig(source=str(motiondigits / "source_train.txt"), model="tsn_tinycnn", out=str(tmp_path),
                          shift_direction="causal", epochs=1, progress=False))


@pytest.mark.parametrize("model, direction, form", [("tsm_tinycnn", "bidirectional", "window"),
                                                     ("tsm_tinycnn", "causal", "stateful"),
                                                     ("tsn_tinycnn", "bidirectional", "incremental")])
def test_default_stream_form_computes_the_trained_model(motiondigits, model, direction, form):
    """A bidirectional TSM streams by default in the window form (its stateful form is causal, a
    different model); a causal one in the stateful form; TSN incrementally."""
    from edgevt.adapt import AdaptConfig
    from edgevt.adapt.api import _build
    from edgevt.data.datasets import LabelMap

    cfg = AdaptConfig(source=str(motiondigits / "source_train.txt"), model=model, shift_direction=direction)
    model_, spec, kwargs = _build(cfg, LabelMap(["a", "b"]), None)
    assert spec.streaming == form
    assert kwargs.get("shift_direction", "bidirectional") == direction


def test_device_cuda_without_a_gpu_is_a_one_line_error(monkeypatch, motiondigits, tmp_path, capsys):
    """Bug: adapt --device cuda on a CPU machine ended in torch's RuntimeError traceback."""
    import pytest
    import torch

    from edgevt.cli import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as e:
        main(["adapt", "--source", str(motiondigits / "source_train.txt"), "--device", "cuda", "-o", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "no CUDA GPU is visible" in err and "Traceback" not in err
