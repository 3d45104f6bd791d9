import numpy as np
import pytest

from edgevt.data.transforms import AppearanceAugment, ClipAugment, Compose, PolarityInvert, make_augment, random_texture
from edgevt.errors import EdgevtError


def test_appearance_augment_changes_the_look_not_the_motion():
    clip = np.zeros((4, 32, 32, 3), np.uint8)
    for t in range(4):
        clip[t, 10:16, 4 + 4 * t:10 + 4 * t] = 230  # a bright square moving right on black
    aug = AppearanceAugment(crop=ClipAugment(crop_scale=(1.0, 1.0), brightness=0, contrast=0, saturation=0))
    out = aug(clip, np.random.default_rng(0))
    assert out.shape == clip.shape and out.dtype == np.uint8 and not np.array_equal(out, clip)
    # the moving square stays the brightest thing where it is in each frame
    lum = out.astype(float).mean(-1)
    assert all(lum[t, 12, 7 + 4 * t] > np.median(lum[t]) for t in range(4))
    tex = random_texture(32, 32, np.random.default_rng(1))
    assert tex.shape == (32, 32, 3) and tex.std() > 5


def test_make_augment_names():
    assert make_augment("none") is None and make_augment(False) is None
    assert make_augment(True) is not None and isinstance(make_augment("appearance"), AppearanceAugment)
    with pytest.raises(EdgevtError, match="unknown --augment 'strong'"):
        make_augment("strong")


def test_invert_augment_flips_the_whole_clip_half_the_time_and_keeps_the_motion():
    clip = np.zeros((4, 16, 16, 3), np.uint8)
    for t in range(4):
        clip[t, 4:8, 2 + 3 * t:6 + 3 * t] = 230  # a bright square moving right
    aug = make_augment("invert")
    assert isinstance(aug, PolarityInvert)
    rng = np.random.default_rng(0)
    outs = [aug(clip, rng) for _ in range(200)]
    flipped = [not np.array_equal(o, clip) for o in outs]
    assert 0.35 < np.mean(flipped) < 0.65  # p = 0.5
    for o, f in zip(outs, flipped):
        assert o.dtype == np.uint8 and o.shape == clip.shape
        if f:  # every frame inverted alike: the frame differences are negated, the motion is the same
            assert np.array_equal(o, 255 - clip)
            d, d0 = np.diff(o.astype(int), axis=0), np.diff(clip.astype(int), axis=0)
            assert np.array_equal(d, -d0)


def test_adapt_config_accepts_invert():
    from edgevt.adapt import AdaptConfig

    AdaptConfig(source="s", out="o", augment="invert").validate()


def test_augmentations_joined_by_plus_apply_in_turn():
    aug = make_augment("appearance+invert")
    assert isinstance(aug, Compose) and [type(s) for s in aug.steps] == [AppearanceAugment, PolarityInvert]
    clip = np.zeros((4, 16, 16, 3), np.uint8)
    clip[:, 4:8, 4:8] = 230
    outs = [aug(clip, np.random.default_rng(i)) for i in range(40)]
    # the randomised look is kept half the time and inverted the other half: the square is then darker
    # than the scene around it
    dark = [o[0, 5, 5].mean() < np.median(o[0]) for o in outs]
    assert 0.2 < np.mean(dark) < 0.8
    for name in ("appearance+strong", "invert+invert", "none+invert", "appearance+"):
        with pytest.raises(EdgevtError, match="--augment"):
            make_augment(name)


def test_adapt_config_accepts_joined_augmentations_and_names_a_bad_one():
    from edgevt.adapt import AdaptConfig

    AdaptConfig(source="s", out="o", augment="appearance+invert").validate()
    with pytest.raises(EdgevtError, match="unknown --augment 'appearance\\+strong'"):
        AdaptConfig(source="s", out="o", augment="appearance+strong").validate()
