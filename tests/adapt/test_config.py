"""AdaptConfig and the ClipSpec: clip_spec() and its inverse clip_fields()."""
import pytest

from edgevt.adapt import AdaptConfig
from edgevt.errors import EdgevtError
from edgevt.spec import ClipSpec


def test_clip_fields_round_trip_through_clip_spec():
    spec = ClipSpec(num_frames=4, frame_stride=3, size=(48, 48), sampling="uniform")
    got = AdaptConfig(**AdaptConfig.clip_fields(spec)).clip_spec(["a", "b"], (0.5,) * 3, (0.25,) * 3)
    assert (got.num_frames, got.frame_stride, got.size, got.sampling) == (4, 3, (48, 48), "uniform")
    assert got.labels == ["a", "b"] and got.mean == (0.5,) * 3  # the model's normalisation, not the spec's


def test_clip_fields_refuses_a_clip_adapt_cannot_train():
    with pytest.raises(EdgevtError, match="square"):
        AdaptConfig.clip_fields(ClipSpec(size=(32, 64)))
