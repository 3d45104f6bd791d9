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
