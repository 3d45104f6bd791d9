import json

import pytest

from edgevt.bench.streaming import bench_stream, ground_truth_label, stream_markdown, write_stream_reports


@pytest.fixture(scope="module")
def stream_video(tmp_path_factory):
    from edgevt.data.synth import make_stream_video

    path = tmp_path_factory.mktemp("sv") / "stream.mp4"
    make_stream_video(path, "target", num_frames=50, size=32, seed=0, segment_frames=(20, 30))
    return path


def test_ground_truth_label_inside_one_segment_only():
    segs = [{"label": "a", "start": 0, "end": 10}, {"label": "b", "start": 10, "end": 20}]
    assert ground_truth_label(segs, 2, 9) == "a"
    assert ground_truth_label(segs, 8, 12) is None
    assert ground_truth_label(segs, 10, 19) == "b"


def test_bench_stream_stage_breakdown(bench_bundle, stream_video, tmp_path):
    r = bench_stream(bench_bundle, stream_video, backend="ort-cpu", precision="fp32", threads=1)
    sm = r.summary
    assert r.form == "window" and sm["frames"] == 25  # frame_stride 2 keeps every other frame
    assert sm["decisions"] == r.latency.runs == 25 - 4 + 1  # T=4, stride 1, drop none: every window
    assert set(r.stages) == {"decode", "preprocess", "inference", "post"}
    assert r.latency.p50_ms >= r.stages["inference"].p50_ms  # end to end includes inference
    assert r.ground_truth["decisions"] > 0 and 0 <= r.ground_truth["accuracy"] <= 100
    files = write_stream_reports(r, tmp_path)
    assert json.loads(files["json"].read_text())["summary"]["decisions"] == sm["decisions"]
    assert "end to end" in stream_markdown(r)


def test_cli_bench_stream(bench_bundle, stream_video, tmp_path):
    from typer.testing import CliRunner

    from edgevt.cli import app

    res = CliRunner().invoke(app, ["bench", str(bench_bundle), "--stream", str(stream_video), "--backend", "ort-cpu",
                                   "--threads", "1", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "bench_stream.json").exists() and (tmp_path / "bench_stream.md").exists()


def test_bench_stream_bad_video(bench_bundle, tmp_path):
    from edgevt.errors import EdgevtError

    with pytest.raises(EdgevtError, match="no such video"):
        bench_stream(bench_bundle, tmp_path / "missing.mp4")
