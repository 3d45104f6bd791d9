import pytest
import torch

from edgevt.errors import EdgevtError
from edgevt.models.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from edgevt.models.zoo import create_model
from edgevt.spec import ClipSpec


def test_roundtrip_weights_only(tmp_path):
    spec = ClipSpec(num_frames=4, size=(32, 32), labels=["a", "b", "c"])
    model = create_model("tsm_tinycnn", 3, num_frames=4).eval()
    save_checkpoint(tmp_path / "m.pt", model, spec, strategy="finetune", metrics={"top1": 0.5})
    raw = torch.load(tmp_path / "m.pt", weights_only=True)  # no arbitrary pickles inside
    assert raw["strategy"] == "finetune"
    back, spec2 = model_from_checkpoint(tmp_path / "m.pt")
    assert spec2 == spec and back.arch == "tsm_tinycnn"
    x = torch.randn(2, 4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(back(x), model(x))
    assert not list(tmp_path.glob(".m.pt.*"))  # no temporary left behind


def test_rejects_foreign_files(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    with pytest.raises(EdgevtError, match="not an edgevt checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(EdgevtError, match="junk.pt: not an edgevt checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(EdgevtError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")


def _damaged(tmp_path, name, edit):
    spec = ClipSpec(num_frames=4, size=(32, 32), labels=["a", "b", "c"])
    save_checkpoint(tmp_path / "ok.pt", create_model("tsn_tinycnn", 3, num_frames=4), spec)
    ckpt = torch.load(tmp_path / "ok.pt", weights_only=True)
    edit(ckpt)
    torch.save(ckpt, tmp_path / name)
    return tmp_path / name


@pytest.mark.parametrize("name, edit, message", [
    ("nospec.pt", lambda c: c.pop("spec"), "missing 'spec'"),
    ("noweights.pt", lambda c: c.pop("state_dict"), "missing 'state_dict'"),
    ("noarch.pt", lambda c: c.pop("arch"), "missing 'arch'"),
    ("badspec.pt", lambda c: c["spec"].update(num_frames="x"), "its ClipSpec"),
    ("oddspec.pt", lambda c: c["spec"].update(colour=1), "unknown fields"),
    ("listweights.pt", lambda c: c.update(state_dict=[1, 2]), "'state_dict' is not a mapping"),
])
def test_a_damaged_checkpoint_with_the_marker_is_a_one_line_error(tmp_path, name, edit, message):
    """The marker is there but a field is missing or malformed: EdgevtError naming the file, not a KeyError."""
    path = _damaged(tmp_path, name, edit)
    with pytest.raises(EdgevtError, match=f"{name}: damaged edgevt checkpoint.*{message}"):
        load_checkpoint(path)


def test_weights_that_do_not_fit_the_arch_are_a_one_line_error(tmp_path):
    path = _damaged(tmp_path, "wrong.pt", lambda c: c.update(state_dict={"x": torch.zeros(1)}))
    with pytest.raises(EdgevtError, match="wrong.pt: damaged edgevt checkpoint .*weights do not fit tsn_tinycnn") as e:
        model_from_checkpoint(path)
    assert "\n" not in str(e.value)
    path = _damaged(tmp_path, "kw.pt", lambda c: c.update(model_kwargs={"bogus": 1}))
    with pytest.raises(EdgevtError, match="kw.pt: damaged edgevt checkpoint .*model_kwargs"):
        model_from_checkpoint(path)
