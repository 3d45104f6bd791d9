import pytest

from edgevt.errors import EdgevtError
from edgevt.spec import ClipSpec


def test_roundtrip_json(tmp_path):
    spec = ClipSpec(num_frames=16, frame_stride=2, size=(112, 96), labels=["a", "b"], streaming="incremental")
    assert ClipSpec.from_json(spec.to_json()) == spec
    spec.save(tmp_path / "spec.json")
    assert ClipSpec.load(tmp_path / "spec.json") == spec
    assert spec.span == 31 and spec.num_classes == 2


@pytest.mark.parametrize("bad", [
    {"num_frames": 0}, {"frame_stride": 0}, {"size": (4, 4)}, {"std": (0, 1, 1)}, {"sampling": "random"},
    {"pixel_format": "YUV"}, {"labels": ["a", "a"]}, {"version": 99}, {"streaming": "magic"},
])
def test_rejects_nonsense(bad):
    with pytest.raises(EdgevtError, match="invalid ClipSpec"):
        ClipSpec(**bad)


def test_unknown_field_and_bad_json():
    with pytest.raises(EdgevtError, match="unknown fields"):
        ClipSpec.from_dict({"frames": 8})
    with pytest.raises(EdgevtError, match="JSON"):
        ClipSpec.from_json("{nope")


def test_replace_validates():
    spec = ClipSpec()
    assert spec.replace(num_frames=4).num_frames == 4
    with pytest.raises(EdgevtError):
        spec.replace(num_frames=-1)
