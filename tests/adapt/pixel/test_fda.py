import numpy as np

from edgevt.adapt.pixel.fda import fda_clip, hist_match_clip, low_frequency_amplitude


def _clip(seed=0, t=4, size=32):
    rng = np.random.default_rng(seed)
    base = np.zeros((t, size, size, 3), np.uint8)
    for i in range(t):  # a bright square moving right over black: the source look
        base[i, 10:18, 4 + 3 * i:12 + 3 * i] = 220
    return np.clip(base.astype(int) + rng.integers(0, 10, base.shape), 0, 255).astype(np.uint8)


def _target_frame(size=32):
    y, x = np.mgrid[:size, :size]
    frame = np.stack([150 + 60 * np.sin(x / 6), 90 + 40 * np.cos(y / 5), 40 + 0 * x], -1)
    return np.clip(frame, 0, 255).astype(np.uint8)


def test_fda_keeps_shape_and_moves_low_frequencies_to_the_target():
    clip, tgt = _clip(), _target_frame()
    out = fda_clip(clip, tgt, beta=0.09)
    assert out.shape == clip.shape and out.dtype == np.uint8
    before = np.abs(low_frequency_amplitude(clip) - low_frequency_amplitude(tgt)).mean()
    after = np.abs(low_frequency_amplitude(out) - low_frequency_amplitude(tgt)).mean()
    assert after < 0.2 * before
    # the colour moves to the target's (mean = DC amplitude), the content (phase) stays: the square still moves
    assert np.abs(out.mean((0, 1, 2)) - tgt.mean((0, 1))).max() < 12
    col = [int(np.argmax(f[14].astype(int).sum(-1)[:])) for f in out]
    assert col[0] < col[-1]


def test_fda_one_target_frame_per_clip_does_not_flicker():
    still = np.repeat(_clip(t=1), 5, axis=0)
    out = fda_clip(still, _target_frame())
    assert all(np.array_equal(out[0], f) for f in out[1:])


def test_histogram_matching_takes_the_target_colours_with_one_monotone_map():
    clip, tgt = _clip(), _target_frame()
    out = hist_match_clip(clip, tgt)
    assert out.shape == clip.shape
    assert np.abs(out.mean((0, 1, 2)) - tgt.mean((0, 1))).max() < 15
    for c in range(3):  # monotone: brighter source pixels never get darker values
        order = np.argsort(clip[..., c].ravel(), kind="stable")
        assert np.all(np.diff(out[..., c].ravel()[order].astype(int)) >= 0)
