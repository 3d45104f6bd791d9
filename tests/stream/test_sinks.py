"""Sinks, on hand-made decisions: JSON Lines records in stream order, the video only once complete,
clear errors for bad paths."""
import json

import numpy as np
import pytest

from edgevt.errors import EdgevtError
from edgevt.stream.events import Event
from edgevt.stream.loop import Decision, StreamSummary
from edgevt.stream.sinks import JsonlSink, VideoSink

LABELS = ["left", "right"]


def _decision(i: int, image=None) -> Decision:
    probs = np.array([0.25, 0.75], np.float32) if i % 2 else np.array([0.9, 0.1], np.float32)
    return Decision(index=i, frame=10 + i, first_frame=3 + i, capture_time=100.0 + i, decision_time=100.05 + i,
                    latency=0.05, media_time=i / 25, stages={"decode": 0.001, "preprocess": 0.0, "inference": 0.02,
                                                             "post": 0.0001},
                    probs=probs, scores=probs, label=LABELS[int(probs.argmax())], score=float(probs.max()),
                    image=image)


def test_jsonl_records_in_order_with_scores_and_summary(tmp_path):
    path = tmp_path / "d.jsonl"
    sink = JsonlSink(path)
    sink.start({"type": "start", "spec": {"labels": LABELS}})
    for i in range(3):
        sink.decision(_decision(i))
    sink.event(Event("right", "start", 11, 11, 101.0, 101.0, 0.04, 0.04, 0.75, 1))
    sink.close(StreamSummary("clip.mp4", "window", "none", 1, decisions=3))
    sink.close(StreamSummary("clip.mp4", "window", "none", 1))  # idempotent: one summary
    recs = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["type"] for r in recs] == ["start", "decision", "decision", "decision", "event", "summary"]
    assert [r["index"] for r in recs[1:4]] == [0, 1, 2]
    assert recs[2]["label"] == "right" and recs[2]["scores"] == {"left": 0.25, "right": 0.75}
    assert recs[1]["latency_ms"] == pytest.approx(50.0) and recs[-1]["decisions"] == 3


def test_jsonl_without_scores_and_bad_paths(tmp_path):
    sink = JsonlSink(tmp_path / "s.jsonl", scores=False)
    sink.start({"type": "start", "spec": {"labels": LABELS}})
    sink.decision(_decision(0))
    sink.close(StreamSummary("x", "window", "none", 1))
    rec = json.loads((tmp_path / "s.jsonl").read_text().splitlines()[1])
    assert "scores" not in rec and rec["label"] == "left"
    with pytest.raises(EdgevtError, match="does not exist"):
        JsonlSink(tmp_path / "nope" / "d.jsonl")
    with pytest.raises(EdgevtError, match="is a folder"):
        JsonlSink(tmp_path)


def test_video_sink_writes_the_file_only_when_closed(tmp_path):
    import cv2

    path = tmp_path / "a.avi"
    sink = VideoSink(path, fps=10, min_side=64)
    img = np.zeros((16, 16, 3), np.uint8)
    for i in range(4):
        sink.decision(_decision(i, image=img))
    assert not path.exists()  # still being written under a temporary name
    sink.close(StreamSummary("x", "window", "none", 1))
    cap = cv2.VideoCapture(str(path))
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    ok, frame = cap.read()
    cap.release()
    assert n == 4 and ok and frame.shape[:2] == (64, 64)  # upscaled to min_side
    with pytest.raises(EdgevtError, match="needs one of"):
        VideoSink(tmp_path / "a.gif")
    with pytest.raises(EdgevtError, match="must be > 0"):
        VideoSink(tmp_path / "b.mp4", fps=0)
