import numpy as np
import pytest

from edgevt.data.sampling import sample_indices
from edgevt.spec import ClipSpec


def test_dense_eval_is_centred_and_strided():
    spec = ClipSpec(num_frames=4, frame_stride=2, sampling="dense")
    idx = sample_indices(20, spec)
    assert list(np.diff(idx)) == [2, 2, 2]
    assert idx[0] == (20 - 7) // 2


def test_dense_train_jitters_within_video():
    spec = ClipSpec(num_frames=4, frame_stride=2)
    rng = np.random.default_rng(0)
    starts = {int(sample_indices(20, spec, train=True, rng=rng)[0]) for _ in range(50)}
    assert len(starts) > 3 and min(starts) >= 0 and max(starts) <= 20 - 7


def test_segment_one_per_segment():
    spec = ClipSpec(num_frames=4, sampling="segment")
    idx = sample_indices(40, spec)
    assert [i // 10 for i in idx] == [0, 1, 2, 3]
    rng = np.random.default_rng(1)
    for _ in range(20):
        assert [i // 10 for i in sample_indices(40, spec, train=True, rng=rng)] == [0, 1, 2, 3]


def test_uniform_covers_video():
    idx = sample_indices(100, ClipSpec(num_frames=5, sampling="uniform"))
    assert idx[0] == 0 and idx[-1] == 99


@pytest.mark.parametrize("sampling", ["dense", "segment", "uniform"])
def test_short_video_loop_and_pad(sampling):
    loop = sample_indices(3, ClipSpec(num_frames=8, sampling=sampling, short_clip="loop"))
    pad = sample_indices(3, ClipSpec(num_frames=8, sampling=sampling, short_clip="pad"))
    assert len(loop) == len(pad) == 8
    assert loop.max() <= 2 and pad.max() <= 2
    assert pad[-1] == 2
    if sampling != "segment":
        assert list(loop[:4]) == [0, 1, 2, 0] or sampling == "uniform"


def test_window_indices_spread_evenly_and_fall_back_to_one():
    from edgevt.data.sampling import window_indices

    spec = ClipSpec(num_frames=8, frame_stride=1)
    w = window_indices(16, spec, 4)
    assert [int(i[0]) for i in w] == [0, 3, 5, 8] and all(list(i) == list(range(i[0], i[0] + 8)) for i in w)
    assert [int(i[0]) for i in window_indices(16, spec, 20)] == list(range(9))  # each start once
    assert len(window_indices(16, spec, 1)) == 1 and list(window_indices(16, spec, 1)[0]) == list(sample_indices(16, spec))
    assert len(window_indices(8, spec, 4)) == 1  # one full window only
    assert len(window_indices(40, ClipSpec(num_frames=8, sampling="segment"), 4)) == 1
    with pytest.raises(Exception, match="windows per clip"):
        window_indices(16, spec, 0)
