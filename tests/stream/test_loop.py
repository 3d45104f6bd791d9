import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import edgevt
from edgevt.backends import Backend, open_backend
from edgevt.data.video import read_frames
from edgevt.errors import EdgevtError
from edgevt.models.forms import causal_stream_logits
from edgevt.stream.sinks import JsonlSink


def _decisions(st):
    return [(d.frame, d.first_frame, d.label, d.probs) for d in st]


def test_incremental_gives_the_same_decisions_as_window(stream_assets):
    video, bundle = stream_assets["video"], stream_assets["tsn_tinycnn"]
    win = _decisions(edgevt.stream(video, bundle, form="window", backend="ort-cpu", smooth="none"))
    inc_st = edgevt.stream(video, bundle, form="incremental", smooth="none")
    inc = _decisions(inc_st)
    spec = stream_assets["spec"]
    n_ring = 45  # 90 frames, frame_stride 2
    assert len(win) == len(inc) == n_ring - spec.num_frames + 1
    assert [d[:3] for d in win] == [d[:3] for d in inc]  # same frames, same labels
    np.testing.assert_allclose(np.stack([d[3] for d in win]), np.stack([d[3] for d in inc]), atol=1e-5)
    s = inc_st.summary
    assert s.form == "incremental" and s.frames == n_ring and s.decisions == len(inc) and s.ended == "eof"
    assert s.dropped == 0 and set(s.latency_ms) >= {"p50", "p95", "p99"}


def test_window_stride_and_torch_backend_on_the_checkpoint(stream_assets):
    video, ckpt, bundle = stream_assets["video"], stream_assets["tsn_tinycnn.pt"], stream_assets["tsn_tinycnn"]
    ref = _decisions(edgevt.stream(video, bundle, form="window", smooth="none"))
    got = _decisions(edgevt.stream(video, ckpt, backend="torch", stride=3, smooth="none"))
    assert [d[0] for d in got] == [d[0] for d in ref][::3]
    np.testing.assert_allclose(np.stack([d[3] for d in got]), np.stack([d[3] for d in ref])[::3], atol=1e-5)
    inc = _decisions(edgevt.stream(video, ckpt, backend="torch", form="incremental", stride=3, smooth="none"))
    np.testing.assert_allclose(np.stack([d[3] for d in inc]), np.stack([d[3] for d in got]), atol=1e-5)


def test_stateful_stream_matches_the_causal_model_on_the_same_frames(stream_assets):
    spec, video = stream_assets["spec"], stream_assets["video"]
    st = edgevt.stream(video, stream_assets["tsm_tinycnn"], smooth="none")
    got = _decisions(st)
    assert st.form_name == "stateful"  # the bundle's ClipSpec says how it streams
    frames = torch.from_numpy(read_frames(video, spec.size, spec.resize, spec.pixel_format)[::spec.frame_stride])
    ref = edgevt.stream.loop.softmax(causal_stream_logits(stream_assets["tsm_tinycnn.model"], spec, frames).numpy())
    assert len(got) == len(ref) == len(frames) - spec.num_frames + 1
    np.testing.assert_allclose(np.stack([d[3] for d in got]), ref, atol=1e-4)


class SlowBackend(Backend):
    """Wraps a backend and sleeps: an artificially slow accelerator."""

    def __init__(self, inner, delay):
        super().__init__()
        self.inner, self.delay = inner, delay
        self.name, self.inputs, self.outputs, self.state = "slow", inner.inputs, inner.outputs, inner.state

    def run(self, inputs):
        time.sleep(self.delay)
        return self.inner.run(inputs)

    def describe(self):
        return {"backend": "slow", "delay_s": self.delay}


def test_drop_latest_bounds_latency_under_a_slow_backend(stream_assets):
    spec, video, bundle = stream_assets["spec"], stream_assets["video"], stream_assets["tsn_tinycnn"]
    runs = {}
    for drop in ("latest", "none"):
        slow = SlowBackend(open_backend("ort-cpu", bundle, role="model"), 0.15)  # kept frames arrive every 80 ms
        st = edgevt.stream(video, slow, spec=spec, drop=drop, realtime=True)
        runs[drop] = ([d.latency for d in st], st.summary)
    lat, s = runs["latest"]
    assert s.dropped > 0 and s.decisions + s.dropped == 45 - spec.num_frames + 1
    lat_none, s_none = runs["none"]
    assert s_none.dropped == 0 and s_none.decisions == 42
    # Relative, not a wall-clock limit (the machine may be busy): without dropping the queue -- and
    # the latency -- grows from the first decisions to the last; with drop latest it stays flat.
    def growth(x):
        return float(np.mean(x[-5:]) - np.mean(x[:5]))

    assert growth(lat_none) > 4 * max(growth(lat), slow.delay)
    assert max(lat_none) > 2 * max(lat)


def test_sinks_and_early_stop(stream_assets, tmp_path):
    video, bundle = stream_assets["video"], stream_assets["tsn_tinycnn"]
    out = tmp_path / "d.jsonl"
    from edgevt.stream.sinks import VideoSink

    with edgevt.stream(video, bundle, sinks=[JsonlSink(out), VideoSink(tmp_path / "a.avi")]) as st:
        for d in st:
            assert d.image is not None and d.image.shape == (*stream_assets["spec"].size, 3)
            if d.index == 9:
                break
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert recs[0]["type"] == "start" and recs[-1]["type"] == "summary"
    decisions = [r for r in recs if r["type"] == "decision"]
    assert len(decisions) == 10 == recs[-1]["decisions"]
    assert set(decisions[0]["stages_ms"]) == {"decode", "preprocess", "inference", "post"}
    assert decisions[0]["latency_ms"] > 0 and decisions[0]["decision_time"] >= decisions[0]["capture_time"]
    assert (tmp_path / "a.avi").stat().st_size > 0
    assert not list(tmp_path.glob(".*partial*"))


def test_bad_inputs_are_clear_errors(stream_assets, tmp_path):
    video, bundle = stream_assets["video"], stream_assets["tsn_tinycnn"]
    with pytest.raises(EdgevtError, match="no stateful.fp32"):
        edgevt.stream(video, bundle, form="stateful")
    with pytest.raises(EdgevtError, match="--drop"):
        edgevt.stream(video, bundle, drop="oldest")
    with pytest.raises(EdgevtError, match="no such bundle"):
        edgevt.stream(video, tmp_path / "nothing")


def test_cli_run_writes_jsonl_and_sigterm_exits_cleanly(stream_assets, tmp_path):
    from typer.testing import CliRunner

    from edgevt.cli import app

    video, bundle = stream_assets["video"], stream_assets["tsm_tinycnn"]
    out = tmp_path / "run.jsonl"
    r = CliRunner().invoke(app, ["run", str(bundle), str(video), "--jsonl", str(out), "--no-live"])
    assert r.exit_code == 0, r.output
    last = json.loads(out.read_text().splitlines()[-1])
    assert last["type"] == "summary" and last["ended"] == "eof" and last["form"] == "stateful"
    # SIGTERM mid-stream: sinks flushed, summary written, exit 0.
    out2 = tmp_path / "term.jsonl"
    p = subprocess.Popen([sys.executable, "-m", "edgevt", "run", str(bundle), str(video), "--realtime",
                          "--jsonl", str(out2), "--no-live"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 60
    while time.time() < deadline and not (out2.exists() and '"decision"' in out2.read_text()):
        time.sleep(0.1)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=30)
    assert p.returncode == 0, err.decode()
    last = json.loads(out2.read_text().splitlines()[-1])
    assert last["type"] == "summary" and last["ended"] == "interrupted" and last["decisions"] >= 1


def test_torch_backend_streams_the_stateful_form_like_onnxruntime(stream_assets):
    video, bundle = stream_assets["video"], stream_assets["tsm_tinycnn"]
    ort_st = edgevt.stream(video, bundle, smooth="none")
    torch_st = edgevt.stream(video, bundle, backend="torch", form="stateful", smooth="none")
    a, b = _decisions(ort_st), _decisions(torch_st)
    assert ort_st.form_name == torch_st.form_name == "stateful" and len(a) == len(b) > 0
    np.testing.assert_allclose(np.stack([d[3] for d in a]), np.stack([d[3] for d in b]), atol=1e-4)


# -- reliability (issue 16) ---------------------------------------------------------------------------
def _as_live(monkeypatch):
    """Read the test file through the FFmpeg URL path as a live source: at its end it 'disconnects',
    and --reconnect reopens it from the start -- a restarted stream, with a gap in between."""
    import edgevt.stream.loop as loop_mod
    from edgevt.stream.sources import SourceInfo

    monkeypatch.setattr(loop_mod, "parse_source", lambda s: SourceInfo("url", str(s), True))


@pytest.mark.parametrize("bundle, form", [("tsn_tinycnn", "window"), ("tsn_tinycnn", "incremental"),
                                          ("tsm_tinycnn", "stateful")])
def test_a_reconnect_gap_starts_a_new_segment_in_every_form(stream_assets, tmp_path, monkeypatch, bundle, form):
    """After the gap no window, embedding history, stateful buffer or smoothed score reaches back
    before it: the restarted stream gives exactly the decisions of the first pass, and the JSONL
    records the gap before the first decision of the new segment."""
    _as_live(monkeypatch)
    out = tmp_path / "gap.jsonl"
    st = edgevt.stream(stream_assets["video"], stream_assets[bundle], form=form, drop="none", reconnect=True,
                       backoff=(0.01, 0.02), max_frames=90, sinks=[JsonlSink(out)])
    got = [(d.segment, d.frame, d.first_frame, d.probs, d.scores, d.gaps) for d in st]
    seg0 = [d for d in got if d[0] == 0]
    seg1 = [d for d in got if d[0] == 1]
    assert len(seg0) == len(seg1) == 45 - stream_assets["spec"].num_frames + 1
    assert seg1[0][5] and seg1[0][5][0].recovered and seg1[0][5][0].after_source_frame == 90
    assert min(d[2] for d in seg1) >= 90  # the first window after the gap starts after it
    np.testing.assert_allclose(np.stack([d[3] for d in seg1]), np.stack([d[3] for d in seg0]), atol=1e-5)
    np.testing.assert_allclose(np.stack([d[4] for d in seg1]), np.stack([d[4] for d in seg0]), atol=1e-5)
    recs = [json.loads(line) for line in out.read_text().splitlines()]  # every line parses
    kinds = [r["type"] for r in recs]
    gap_at = kinds.index("gap")
    assert kinds.count("gap") == 1 and recs[gap_at]["recovered"] and recs[gap_at]["after_source_frame"] == 90
    assert recs[gap_at + 1]["type"] != "decision" or recs[gap_at + 1]["segment"] == 1
    assert all(r["segment"] == 0 for r in recs[:gap_at] if r["type"] == "decision")
    assert recs[-1]["type"] == "summary" and recs[-1]["gaps"] == 1 and recs[-1]["ended"] == "max_frames"


def test_a_gap_under_drop_latest_also_restarts_the_window(stream_assets, monkeypatch):
    _as_live(monkeypatch)
    st = edgevt.stream(stream_assets["video"], stream_assets["tsn_tinycnn"], form="window", reconnect=True,
                       backoff=(0.01, 0.02), max_frames=90, realtime=False)
    got = [(d.segment, d.first_frame) for d in st]
    assert st.drop == "latest" and st.summary.gaps == 1
    assert all(f >= 90 for s, f in got if s == 1) and any(s == 1 for s, _ in got)


def test_a_source_that_ends_badly_is_not_a_clean_eof(stream_assets, tmp_path, monkeypatch, capsys):
    from edgevt.cli import main
    from edgevt.data.video import write_video

    # A file cut short: it ends before the frame count its header announces.
    frames = (np.random.default_rng(0).random((60, 32, 32, 3)) * 255).astype(np.uint8)
    write_video(tmp_path / "full.avi", frames)
    data = (tmp_path / "full.avi").read_bytes()
    (tmp_path / "cut.avi").write_bytes(data[:len(data) // 2])
    st = edgevt.stream(tmp_path / "cut.avi", stream_assets["tsn_tinycnn"])
    n = len(list(st))
    assert n > 0 and st.summary.ended == "truncated" and "60 frames" in st.summary.problem
    out = tmp_path / "cut.jsonl"
    with pytest.raises(SystemExit) as e:
        main(["run", str(stream_assets["tsn_tinycnn"]), str(tmp_path / "cut.avi"), "--jsonl", str(out), "--no-live"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "cut short" in err and "Traceback" not in err
    last = json.loads(out.read_text().splitlines()[-1])  # everything was still written
    assert last["type"] == "summary" and last["ended"] == "truncated" and last["decisions"] == n
    # A live source lost for good, without --reconnect: "source lost", with the way out.
    _as_live(monkeypatch)
    st = edgevt.stream(stream_assets["video"], stream_assets["tsn_tinycnn"])
    list(st)
    assert st.summary.ended == "source lost" and "--reconnect" in st.summary.problem


def test_reconnect_on_a_file_and_a_clip_shorter_than_t_say_so(stream_assets, tmp_path, capsys):
    from edgevt.cli import main
    from edgevt.data.video import write_video

    st = edgevt.stream(stream_assets["video"], stream_assets["tsn_tinycnn"], reconnect=True)
    assert any("--reconnect does nothing" in w for w in st.warnings)
    list(st)
    write_video(tmp_path / "short.avi", np.zeros((5, 32, 32, 3), np.uint8))  # 3 kept frames, T = 4
    with pytest.raises(SystemExit) as e:
        main(["run", str(stream_assets["tsn_tinycnn"]), str(tmp_path / "short.avi"), "--no-live"])
    err = capsys.readouterr().err
    assert e.value.code == 0 and "warning:" in err and "fewer than the 4 a decision needs" in err


class _FailingSink:
    needs_image = False

    def start(self, info):
        pass

    def decision(self, d):
        raise EdgevtError("sink failed")

    def event(self, e):
        pass

    def gap(self, g):
        pass

    def close(self, summary):
        pass


def test_a_failing_sink_leaves_a_summary_that_counts_what_was_written(stream_assets, tmp_path):
    out = tmp_path / "d.jsonl"
    st = edgevt.stream(stream_assets["video"], stream_assets["tsn_tinycnn"], sinks=[JsonlSink(out), _FailingSink()])
    with pytest.raises(EdgevtError, match="sink failed"):
        list(st)
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert recs[-1]["type"] == "summary"
    assert recs[-1]["decisions"] == sum(r["type"] == "decision" for r in recs) == 1


@pytest.mark.parametrize("args, message", [
    (["--video-out", "{tmp}/nodir/x.mp4"], "folder .*nodir does not exist"),
    (["--video-out", "{tmp}/x.xyz"], "--video-out needs one of"),
    (["--video-out", "{tmp}/x.mp4", "--video-fps", "0"], "--video-fps 0.0: must be > 0"),
    (["--jsonl", "{tmp}/nodir/x.jsonl"], "folder .*nodir does not exist"),
    (["--threads", "-1"], "--threads -1: must be >= 1"),
    (["--threads", "0"], "--threads 0: must be >= 1"),
    (["--max-frames", "0"], "--max-frames 0: must be >= 1"),
    (["--max-frames", "-5"], "--max-frames -5: must be >= 1"),
    (["--reconnect", "--max-gap", "0"], "--max-gap 0.0: must be > 0"),
    (["--precision", "int8"], "export with --precision int8 --calib"),
])
def test_cli_run_rejects_bad_values_in_one_line(stream_assets, tmp_path, capsys, args, message):
    from edgevt.cli import main

    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    with pytest.raises(SystemExit) as e:
        main(["run", str(stream_assets["tsn_tinycnn"]), str(stream_assets["video"]), "--no-live", *args])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    import re
    assert re.search(message, err), err
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_cli_run_on_a_bare_onnx_names_the_bundle(stream_assets, capsys):
    from edgevt.cli import main

    onnx_file = stream_assets["tsn_tinycnn"] / "model.onnx"
    with pytest.raises(SystemExit):
        main(["run", str(onnx_file), str(stream_assets["video"]), "--no-live"])
    err = capsys.readouterr().err
    assert "bare ONNX file" in err and str(stream_assets["tsn_tinycnn"]) in err and "Unpickling" not in err
