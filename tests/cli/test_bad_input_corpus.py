"""The bad-input corpus: every reader verb (eval, export, run, adapt) over broken videos, paths,
labels, checkpoints and bundles, generated here in temporary folders (nothing is checked in).

The promise under test (README, "Every command has --help. Bad input ..."): each case ends with
exit 0 and, where something was skipped, a one-line ``warning:`` that names it -- or with exit 2
and exactly one ``error:`` line that names the file or value -- and never a traceback. Every case
runs the real CLI entry point (``edgevt.cli.main``) in-process; an exception escaping it is a
failure of the promise. Tiny clips (32x32, T=4) and a tiny model keep the whole corpus fast.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from edgevt.cli import main


# -- the corpus -----------------------------------------------------------------------------------
def _write(path: Path, frames: np.ndarray, color: bool = True) -> Path:
    import cv2

    h, w = frames.shape[1:3]
    fourcc = cv2.VideoWriter_fourcc(*("mp4v" if path.suffix == ".mp4" else "MJPG"))
    writer = cv2.VideoWriter(str(path), fourcc, 25.0, (w, h), color)
    assert writer.isOpened(), path
    for f in frames:
        writer.write(f)
    writer.release()
    return path


def _frames(n: int, h: int = 32, w: int = 32, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((n, h, w, 3)) * 255).astype(np.uint8)


class Hostile:
    """Unpickling this would run a shell command that leaves a marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, motiondigits, make_tiny_checkpoint):
    root = tmp_path_factory.mktemp("corpus")
    v = root / "videos"
    v.mkdir()
    good = sorted((motiondigits / "target" / "test").rglob("*.mp4"))
    videos = {
        "zero-byte": v / "zero.mp4",
        "random-bytes": v / "random.mp4",
        "text-as-video": v / "text.mp4",
        "truncated-mp4": v / "cut.mp4",
        "1x1": _write(v / "dot.avi", _frames(10, 1, 1)),
        "truncated-avi": v / "cut.avi",
        "1-frame": _write(v / "one.avi", _frames(1)),
        "shorter-than-T": _write(v / "short.avi", _frames(5)),  # 3 frames after frame_stride 2; T = 4
        "grayscale": _write(v / "gray.avi", _frames(12)[..., 0], color=False),
        "1080p": _write(v / "hd.mp4", _frames(8, 1080, 1920)),
    }
    videos["zero-byte"].write_bytes(b"")
    videos["random-bytes"].write_bytes(np.random.default_rng(1).bytes(5000))
    videos["text-as-video"].write_text("this is not a video\n" * 50)
    videos["truncated-mp4"].write_bytes(good[0].read_bytes()[:1500])
    full = _write(root / "full.avi", _frames(60))
    videos["truncated-avi"].write_bytes(full.read_bytes()[:full.stat().st_size // 2])

    label = good[0].parent.name
    lists = root / "lists"
    lists.mkdir()
    (lists / "all.txt").write_text("".join(f"{p} {p.parent.name}\n" for p in good[:4])
                                   + "".join(f"{p} {label}\n" for p in videos.values()))
    (lists / "unknown_label.txt").write_text(f"{good[0]} {label}\n{good[1]} no_such_class\n")
    (lists / "empty.txt").write_text("")
    (lists / "good.txt").write_text("".join(f"{p} {p.parent.name}\n" for p in good))

    ckpt = make_tiny_checkpoint("tsn_tinycnn", seed=3)
    c = root / "ckpts"
    c.mkdir()
    raw = torch.load(ckpt, weights_only=True)
    (c / "junk.pt").write_bytes(b"\x80\x04junk" * 10)
    torch.save({"state_dict": raw["state_dict"]}, c / "foreign.pt")
    nospec = dict(raw)
    nospec.pop("spec")
    torch.save(nospec, c / "nospec.pt")
    torch.save({**raw, "state_dict": {"w": torch.zeros(2)}}, c / "wrongweights.pt")
    marker = root / "PWNED"
    torch.save({"format": "edgevt-checkpoint", "payload": Hostile(marker)}, c / "hostile.pt")

    from edgevt.export.exporter import ExportConfig, export_bundle

    bundle = export_bundle(ckpt, root / "bundle", ExportConfig(threads=1)).path
    b = root / "bundles"
    b.mkdir()
    import shutil

    for name in ("flipped", "no_manifest", "bad_json", "missing_file"):
        shutil.copytree(bundle, b / name)
    data = bytearray((b / "flipped" / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (b / "flipped" / "model.onnx").write_bytes(bytes(data))
    (b / "no_manifest" / "edgevt.json").unlink()
    (b / "bad_json" / "edgevt.json").write_text("{ not json")
    (b / "missing_file" / "model.onnx").unlink()
    return {"root": root, "videos": videos, "lists": lists, "ckpt": ckpt, "ckpts": c, "marker": marker,
            "bundle": bundle, "bundles": b, "good": good}


def invoke(args: list[str], capfd) -> tuple[int, str]:
    """Run the CLI in-process; (exit code, stderr). An exception escaping main() is a traceback."""
    capfd.readouterr()
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException as e:  # the promise is broken: report the case, not this test's frame
        pytest.fail(f"edgevt {' '.join(map(str, args))}: traceback ({type(e).__name__}: {e})")
    return code, capfd.readouterr().err


def check(case: str, args: list, capfd, code: int, pattern: str) -> str:
    got, err = invoke(args, capfd)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert "Traceback" not in err, f"{case}: {err}"
    assert not re.search(r"^\[[\w,]+ @ 0x", err, re.M), f"{case}: FFmpeg's own line on stderr: {err}"
    assert got == code, f"{case}: exit {got}, expected {code}: {err}"
    if code == 2:
        assert len(errors) == 1 and errors[0] == err.strip().splitlines()[-1], f"{case}: not one error line: {err}"
        assert re.search(pattern, errors[0]), f"{case}: {errors[0]!r} does not match {pattern!r}"
    else:
        assert not errors, f"{case}: {err}"
        if pattern:
            assert any(line.startswith("warning:") and re.search(pattern, line) for line in err.splitlines()), \
                f"{case}: no warning matching {pattern!r}: {err}"
    return err


# -- run: every video on its own ----------------------------------------------------------------
RUN = {  # case -> (exit code, what the one line says)
    "zero-byte": (2, r"zero\.mp4: cannot be opened"),
    "random-bytes": (2, r"random\.mp4: cannot be opened"),
    "text-as-video": (2, r"text\.mp4: cannot be opened"),
    "truncated-mp4": (2, r"cut\.mp4: cannot be opened"),
    "1x1": (2, r"dot\.avi: frames are 1x1 pixels"),
    "truncated-avi": (2, r"cut\.avi: the video ends after \d+ of the 60 frames"),
    "1-frame": (0, r"one\.avi: only 1 frame.*no decision"),
    "shorter-than-T": (0, r"short\.avi: only 3 frame.*no decision"),
    "grayscale": (0, ""),
    "1080p": (0, ""),
}


def test_run_over_every_bad_video(corpus, capfd, tmp_path):
    for case, (code, pattern) in RUN.items():
        out = tmp_path / f"{case}.jsonl"
        check(f"run {case}", ["run", corpus["bundle"], corpus["videos"][case], "--no-live", "--jsonl", out], capfd,
              code, pattern)
        if out.exists():  # whatever was written parses, and ends with the summary
            recs = [json.loads(line) for line in out.read_text().splitlines()]
            assert recs[-1]["type"] == "summary" and recs[-1]["decisions"] == sum(r["type"] == "decision" for r in recs)


def test_run_bad_paths_checkpoints_and_bundles(corpus, capfd):
    v, c, b = corpus["good"][0], corpus["ckpts"], corpus["bundles"]
    cases = [  # (source, model): run takes them the other way round, the artifact first
        ("missing video", [corpus["root"] / "nope.mp4", corpus["bundle"]], r"nope\.mp4: no such video file"),
        ("empty source", ["", corpus["bundle"]], r"is a folder"),
        ("missing model", [v, corpus["root"] / "nope"], r"no such bundle or checkpoint"),
        ("bare onnx", [v, corpus["bundle"] / "model.onnx"], r"bare ONNX file"),
        ("junk checkpoint", [v, c / "junk.pt"], r"junk\.pt: not an edgevt checkpoint"),
        ("foreign checkpoint", [v, c / "foreign.pt"], r"foreign\.pt: not an edgevt checkpoint"),
        ("checkpoint without spec", [v, c / "nospec.pt"], r"nospec\.pt: damaged edgevt checkpoint"),
        ("wrong weights", [v, c / "wrongweights.pt"], r"wrongweights\.pt: damaged .*weights do not fit"),
        ("hostile pickle", [v, c / "hostile.pt"], r"hostile\.pt: not an edgevt checkpoint"),
        ("flipped byte", [v, b / "flipped"], r"model\.onnx"),
        ("no manifest", [v, b / "no_manifest"], r"no_manifest"),
        ("bad manifest", [v, b / "bad_json"], r"edgevt\.json"),
        ("missing artifact", [v, b / "missing_file"], r"model\.onnx"),
    ]
    for case, (source, model), pattern in cases:
        check(f"run {case}", ["run", model, source, "--no-live"], capfd, 2, pattern)
    # the old order (source first) gets a one-line hint with the command the other way round
    check("run source first", ["run", v, corpus["bundle"], "--no-live"], capfd, 2,
          "takes the bundle first.*" + re.escape(f"edgevt run {corpus['bundle']} {v}"))
    assert not corpus["marker"].exists()  # the hostile pickle never ran


# -- eval, export, adapt: one data set holding every bad video ---------------------------------------
UNREADABLE = ("zero.mp4", "random.mp4", "text.mp4", "cut.mp4", "dot.avi")  # what probing rejects


def test_eval_skips_or_stops(corpus, capfd):
    lst, ckpt = corpus["lists"], corpus["ckpt"]
    err = check("eval all", ["eval", ckpt, lst / "all.txt"], capfd, 0, r"skipped 5 unreadable video")
    assert all(name in err for name in UNREADABLE)
    check("eval --no-skip-bad", ["eval", ckpt, lst / "all.txt", "--no-skip-bad"], capfd, 2, r"zero\.mp4")
    check("eval unknown label", ["eval", ckpt, lst / "unknown_label.txt"], capfd, 2, r"unknown label 'no_such_class'")
    check("eval empty list", ["eval", ckpt, lst / "empty.txt"], capfd, 2, r"empty\.txt")
    check("eval missing data", ["eval", ckpt, lst / "nope.txt"], capfd, 2, r"nope\.txt")
    c, b = corpus["ckpts"], corpus["bundles"]
    for name, pattern in (("junk.pt", "not an edgevt checkpoint"), ("nospec.pt", "damaged edgevt checkpoint"),
                          ("wrongweights.pt", "damaged edgevt checkpoint .*weights do not fit"), ("hostile.pt", "not an edgevt checkpoint")):
        check(f"eval {name}", ["eval", c / name, lst / "good.txt"], capfd, 2, re.escape(name) + ": " + pattern)
    for name in ("flipped", "no_manifest", "bad_json", "missing_file"):
        check(f"eval bundle {name}", ["eval", b / name, lst / "good.txt"], capfd, 2, name)
    assert not corpus["marker"].exists()


def test_export_skips_or_stops(corpus, capfd, tmp_path):
    lst, ckpt = corpus["lists"], corpus["ckpt"]
    err = check("export --eval all", ["export", ckpt, "-o", tmp_path / "b", "--eval", lst / "all.txt",
                                      "--threads", "1"], capfd, 0, r"skipped 5 unreadable video")
    assert (tmp_path / "b" / "edgevt.json").exists() and all(name in err for name in UNREADABLE)
    check("export --no-skip-bad", ["export", ckpt, "-o", tmp_path / "c", "--eval", lst / "all.txt", "--no-skip-bad"],
          capfd, 2, r"zero\.mp4")
    for name in ("junk.pt", "nospec.pt", "wrongweights.pt", "hostile.pt"):
        check(f"export {name}", ["export", corpus["ckpts"] / name, "-o", tmp_path / "d"], capfd, 2, re.escape(name))
    for case, extra, pattern in (
            ("--adaround-steps without int8", ["--adaround-steps", "5"], r"--adaround-steps .*add int8 to --precision"),
            ("--adaround-steps with --qat-steps", ["--precision", "fp32,int8", "--calib", lst / "good.txt",
                                                   "--adaround-steps", "5", "--qat-steps", "5"], r"choose one"),
            ("--adaround-lr 0", ["--precision", "fp32,int8", "--calib", lst / "good.txt", "--adaround-steps", "5",
                                 "--adaround-lr", "0"], r"--adaround-lr must be > 0")):
        check(f"export {case}", ["export", ckpt, "-o", tmp_path / "e", *extra], capfd, 2, pattern)
    assert not (tmp_path / "c").exists() and not (tmp_path / "d").exists() and not (tmp_path / "e").exists()
    assert not corpus["marker"].exists()


def test_adapt_skips_or_stops(corpus, capfd, tmp_path):
    lst = corpus["lists"]
    common = ["--model", "tsn_tinycnn", "--frames", "4", "--size", "32", "--epochs", "1", "--batch-size", "4",
              "--device", "cpu"]
    check("adapt all", ["adapt", "--source", lst / "all.txt", "-o", tmp_path / "a", *common], capfd, 2,
          r"zero\.mp4.*--skip-bad")
    err = check("adapt --skip-bad", ["adapt", "--source", lst / "all.txt", "-o", tmp_path / "b", "--skip-bad",
                                     *common], capfd, 0, "")
    assert all(name in err for name in UNREADABLE) and (tmp_path / "b" / "model.pt").exists()
    for name in ("junk.pt", "nospec.pt", "hostile.pt"):
        check(f"adapt --init {name}", ["adapt", "--source", lst / "good.txt", "--init", corpus["ckpts"] / name,
                                       "-o", tmp_path / "c", *common[4:]], capfd, 2, re.escape(name))
    assert not corpus["marker"].exists()


def test_adapt_bad_values(corpus, capfd, tmp_path):
    lst = corpus["lists"]
    check("adapt --lr -1", ["adapt", "--source", lst / "good.txt", "-o", tmp_path / "a", "--lr", "-1"], capfd, 2,
          r"--lr must be > 0")
    assert not (tmp_path / "a").exists()
