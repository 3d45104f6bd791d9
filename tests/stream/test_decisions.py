import numpy as np
import pytest

from edgevt.errors import EdgevtError
from edgevt.stream.events import EventDetector
from edgevt.stream.smoothing import Smoother, softmax


def test_softmax_and_smoothers():
    p = softmax(np.array([1.0, 2.0, 3.0]))
    assert p.sum() == pytest.approx(1) and p.argmax() == 2
    ema = Smoother(2, "ema", alpha=0.5)
    np.testing.assert_allclose(ema.update([1, 0]), [1, 0])
    np.testing.assert_allclose(ema.update([0, 1]), [0.5, 0.5])
    np.testing.assert_allclose(ema.update([0, 1]), [0.25, 0.75])
    mean = Smoother(2, "mean", window=2)
    mean.update([1, 0])
    np.testing.assert_allclose(mean.update([0, 1]), [0.5, 0.5])
    np.testing.assert_allclose(mean.update([0, 1]), [0, 1])  # the first one left the window
    np.testing.assert_allclose(Smoother(2, "none").update([0.3, 0.7]), [0.3, 0.7])
    with pytest.raises(EdgevtError):
        Smoother(2, "median")


def _run(det, scores):
    out = []
    for f, s in enumerate(scores):
        out += det.update([s, 1 - s], frame=f, time=100.0 + f)
    return out + det.flush()


def test_hysteresis_gives_one_event_with_its_extent():
    det = EventDetector(["a", "b"], onset=0.6, offset=0.4, min_frames=3, ignore=("b",))
    # hovers around the onset (0.55-0.65) without dropping below the offset: one event, not three
    scores = [0.1, 0.7, 0.55, 0.65, 0.5, 0.62, 0.45, 0.3, 0.1]
    ev = _run(det, scores)
    assert [e.phase for e in ev] == ["start", "end"]
    end = ev[-1]
    assert (end.label, end.start_frame, end.end_frame) == ("a", 1, 6)
    assert end.start_time == 101.0 and end.end_time == 106.0 and end.peak_score == pytest.approx(0.7)


def test_short_activations_are_not_events_and_open_ones_end_at_flush():
    det = EventDetector(["a", "b"], onset=0.6, offset=0.4, min_frames=4, ignore=("b",))
    assert _run(det, [0.9, 0.9, 0.1, 0.1]) == []  # 2 frames < min_frames
    det = EventDetector(["a", "b"], onset=0.6, offset=0.4, min_frames=2, ignore=("b",))
    ev = _run(det, [0.1, 0.9, 0.9, 0.9])
    assert [e.phase for e in ev] == ["start", "end"] and ev[-1].end_frame == 3
    with pytest.raises(EdgevtError):
        EventDetector(["a"], onset=0.3, offset=0.5)
