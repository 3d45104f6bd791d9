"""edgevt.eval: same clips for every artifact, metrics, confusion PNG, manifest eval section, errors."""
import json
import shutil

import numpy as np
import pytest

from edgevt.errors import EdgevtError
from edgevt.eval import evaluate, evaluate_all, load_eval_clips
from edgevt.eval.evaluate import accuracy_metrics
from edgevt.bundle import Bundle


def test_accuracy_metrics_by_hand():
    logits = np.array([[3, 1, 0, 0, 0, 0, 0], [0, 2, 1, 0, 0, 0, 0], [1, 1, -1, 1, 1, 1, 9]], np.float32)
    labels = np.array([0, 2, 2])
    m = accuracy_metrics(logits, labels, list("abcdefg"))
    assert m["top1"] == pytest.approx(100 / 3)
    assert m["top5"] == pytest.approx(200 / 3)  # clip 3: class 2 has the lowest logit
    assert m["confusion"][2][1] == 1 and m["confusion"][2][6] == 1 and m["confusion"][0][0] == 1
    assert m["per_class"]["a"]["top1"] == 100.0 and m["per_class"]["c"]["top1"] == 0.0
    assert m["per_class"]["d"] == {"clips": 0, "top1": None}


def test_checkpoint_and_onnx_agree_on_the_same_clips(tmp_path, ev_ckpt, ev_bundle, motiondigits, tiny_spec):
    clips = load_eval_clips(motiondigits / "target" / "test", tiny_spec)
    r_ckpt = evaluate(ev_ckpt, clipset=clips, out_dir=tmp_path, batch_size=4)
    r_onnx = evaluate(ev_bundle.path, clipset=clips, precision="fp32", out_dir=tmp_path, batch_size=4)
    assert (r_ckpt.backend, r_onnx.backend) == ("torch", "ort-cpu")
    assert r_ckpt.clips == r_onnx.clips == 12
    assert r_ckpt.top1 == r_onnx.top1 and r_ckpt.confusion == r_onnx.confusion
    assert sum(map(sum, r_onnx.confusion)) == 12 and r_onnx.top5 is not None
    assert r_onnx.latency["runs"] >= 1 and r_onnx.latency["p50_ms"] > 0
    assert (tmp_path / "confusion.ort-cpu.fp32.png").stat().st_size > 1000
    # a plain ONNX file carries its ClipSpec in the metadata
    r_file = evaluate(ev_bundle.artifact_path("model.fp32"), motiondigits / "target" / "test")
    assert r_file.top1 == r_onnx.top1


def test_evaluate_all_side_by_side_and_stored(ev_bundle, motiondigits, tmp_path):
    b = Bundle.load(shutil.copytree(ev_bundle.path, tmp_path / "b"))
    results = evaluate_all(b, motiondigits / "target" / "test", include_checkpoint=True)
    # the bundle holds both INT8 flavours; on ort-cpu the CPU one is evaluated, named as what it is
    assert [(r.backend, r.precision) for r in results] == [("torch", "fp32"), ("ort-cpu", "fp32"),
                                                           ("ort-cpu", "fp16"), ("ort-cpu", "int8-cpu")]
    assert results[3].device["key"] == "model.int8-cpu" and results[3].device["flavour"] == "cpu"
    assert results[1].agreement_with["fp32"] == 100.0
    assert {r.clips for r in results} == {12}
    stored = json.loads((b.path / "edgevt.json").read_text())["eval"]
    assert set(stored) == {"torch.fp32", "ort-cpu.fp32", "ort-cpu.fp16", "ort-cpu.int8-cpu"}
    assert stored["ort-cpu.int8-cpu"]["top1"] == results[3].top1
    # the other flavour only when asked by name
    other = evaluate_all(b, motiondigits / "target" / "test", precisions=["fp32", "int8-tensorrt"], save=False)
    assert [r.precision for r in other] == ["fp32", "int8-tensorrt"]
    assert other[1].device["key"] == "model.int8" and other[1].agreement_with["fp32"] is not None
    Bundle.load(b.path)  # manifest rewrite kept the hashes valid


def test_bad_inputs(tmp_path, ev_bundle, motiondigits):
    b = tmp_path / "b"
    shutil.copytree(ev_bundle.path, b)
    with open(b / "model.fp16.onnx", "ab") as f:
        f.write(b"tampered")
    with pytest.raises(EdgevtError, match="hash does not match"):
        evaluate(b, motiondigits / "target" / "test", precision="fp16")
    (b / "model.int8-cpu.onnx").unlink()  # the INT8 graph ort-cpu runs
    with pytest.raises(EdgevtError, match="missing its file model.int8-cpu.onnx"):
        evaluate(b, motiondigits / "target" / "test", precision="int8")
    with pytest.raises(EdgevtError, match="unknown precision"):
        evaluate(ev_bundle.path, motiondigits / "target" / "test", precision="bf16")
    unlabeled = tmp_path / "unlabeled"
    unlabeled.mkdir()
    shutil.copy(next((motiondigits / "target" / "test").rglob("*.mp4")), unlabeled / "a.mp4")
    with pytest.raises(EdgevtError, match="no class subfolders"):
        evaluate(ev_bundle.path, unlabeled)
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"x")
    with pytest.raises(EdgevtError, match="sidecar"):
        evaluate(engine, motiondigits / "target" / "test")
    with pytest.raises(EdgevtError, match="no such"):
        evaluate(tmp_path / "nothing.pt", motiondigits / "target" / "test")


def test_cli_eval_all(ev_bundle, motiondigits, tmp_path, capsys):
    from edgevt.cli import main

    b = shutil.copytree(ev_bundle.path, tmp_path / "b")
    with pytest.raises(SystemExit) as e:
        main(["eval", str(b), str(motiondigits / "target" / "test"), "--all", "--json"])
    assert e.value.code in (0, None)
    rows = json.loads(capsys.readouterr().out)
    assert [r["precision"] for r in rows] == ["fp32", "fp16", "int8-cpu"]
    assert (b / "eval" / "eval.json").exists() and (b / "eval" / "confusion.ort-cpu.int8-cpu.png").exists()
    with pytest.raises(SystemExit) as e:
        main(["eval", str(b / "model.onnx"), str(motiondigits / "target" / "test"), "--all"])
    assert e.value.code == 2


def test_unreadable_eval_videos_are_skipped_with_a_warning(motiondigits, tiny_spec, tmp_path):
    import shutil

    from edgevt.eval.evaluate import load_eval_clips

    data = tmp_path / "test"
    shutil.copytree(motiondigits / "target" / "test", data)
    (data / "move_up" / "broken.mp4").write_bytes(b"\x00" * 64)
    with pytest.warns(UserWarning, match="skipped 1 unreadable video.*broken.mp4"):
        clips = load_eval_clips(data, tiny_spec)
    assert len(clips.labels) == 12


@pytest.fixture
def list_with_corrupt_video(motiondigits, tmp_path):
    """A 'path label' list of the target-test clips plus x.mp4, which is garbage bytes."""
    bad = tmp_path / "x.mp4"
    bad.write_bytes(b"garbage, not a video" * 8)
    lines = [f"{p} {p.parent.name}" for p in sorted((motiondigits / "target" / "test").rglob("*.mp4"))]
    lines.insert(3, f"{bad} {lines[0].split()[1]}")
    lst = tmp_path / "test.txt"
    lst.write_text("\n".join(lines) + "\n")
    return lst


def test_no_skip_bad_makes_an_unreadable_eval_video_an_error(list_with_corrupt_video, tiny_spec, ev_ckpt):
    with pytest.warns(UserWarning, match="skipped 1 unreadable video.*x.mp4"):
        assert len(load_eval_clips(list_with_corrupt_video, tiny_spec).labels) == 12
    with pytest.raises(EdgevtError, match=r"x\.mp4: .*pass --skip-bad") as e:
        load_eval_clips(list_with_corrupt_video, tiny_spec, skip_bad=False)
    assert "\n" not in str(e.value)
    with pytest.raises(EdgevtError, match=r"x\.mp4"):
        evaluate(ev_ckpt, list_with_corrupt_video, skip_bad=False)


def test_cli_eval_no_skip_bad(list_with_corrupt_video, ev_ckpt, capsys):
    from edgevt.cli import main

    with pytest.raises(SystemExit) as e:
        main(["eval", str(ev_ckpt), str(list_with_corrupt_video), "--no-skip-bad"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "x.mp4" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def _cli(args, capsys):
    from edgevt.cli import main

    with pytest.raises(SystemExit) as e:
        main(args)
    return e.value.code, capsys.readouterr().err


def test_cli_eval_truncated_onnx_and_bad_values_are_one_line_errors(ev_bundle, motiondigits, tmp_path, capsys):
    data = str(motiondigits / "target_test.txt")
    cut = tmp_path / "cut.onnx"
    cut.write_bytes((ev_bundle.path / "model.onnx").read_bytes()[:3000])
    for args, message in (([str(cut), data], "cut.onnx: not a readable ONNX model"),
                          ([str(ev_bundle.path), data, "--max-clips", "0"], "--max-clips 0: must be >= 1"),
                          ([str(ev_bundle.path), data, "--threads", "-1"], "--threads -1: must be >= 1")):
        code, err = _cli(["eval", *args, "-o", str(tmp_path / "out")], capsys)
        assert code == 2 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


def test_cli_skip_warnings_are_one_line_without_a_source_location(motiondigits, ev_ckpt, tmp_path, capfd):
    """The skip warning used to print as '/path/evaluate.py:65: UserWarning: ...' plus a code line,
    after FFmpeg's own 'moov atom not found' line."""
    data = tmp_path / "test"
    shutil.copytree(motiondigits / "target" / "test", data)
    clip = next((data / "move_up").glob("*.mp4"))
    (data / "move_up" / "cut.mp4").write_bytes(clip.read_bytes()[:2000])
    code, err = _cli(["eval", str(ev_ckpt), str(data)], capfd)  # capfd: FFmpeg writes to fd 2 itself
    assert code == 0
    assert err.strip().splitlines() == ["warning: evaluation: skipped 1 unreadable video(s) in "
                                        f"{data}: cut.mp4"], err
