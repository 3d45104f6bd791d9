import numpy as np
import pytest
import torch

from edgevt.backends import open_backend
from edgevt.errors import EdgevtError


def test_torch_from_checkpoint_matches_eager(tiny_ckpt, clips, torch_logits, tiny_spec):
    with open_backend("torch", tiny_ckpt, device="cpu") as b:
        assert [(t.name, t.shape, t.dtype) for t in b.inputs] == [
            ("frames", ("batch", tiny_spec.num_frames, *tiny_spec.size, 3), "uint8")]
        assert [(t.name, t.dtype) for t in b.outputs] == [("logits", "float32")]
        out = b.run({"frames": clips})["logits"]
        np.testing.assert_array_equal(out, torch_logits(clips))
        assert b.last_timing.compute > 0
        d = b.describe()
        assert d["device"] == "cpu" and d["checkpoint"] == str(tiny_ckpt) and d["precision"] == "fp32"


def test_torch_from_bundle_and_from_module(tiny_bundle, tiny_ckpt, clips, torch_logits):
    ref = torch_logits(clips)
    with open_backend("torch", tiny_bundle, device="cpu") as b:
        np.testing.assert_array_equal(b.run({"frames": clips})["logits"], ref)
    from edgevt.models.checkpoint import model_from_checkpoint

    model, spec = model_from_checkpoint(tiny_ckpt)
    with open_backend("torch", model, spec=spec, device="cpu") as b:
        np.testing.assert_array_equal(b.run({"frames": clips})["logits"], ref)
    with pytest.raises(EdgevtError, match="spec="):
        open_backend("torch", model)


def test_encoder_and_head_compose_to_the_model(tiny_ckpt, clips, torch_logits, tiny_spec):
    enc = open_backend("torch", tiny_ckpt, role="encoder", device="cpu")
    head = open_backend("torch", tiny_ckpt, role="head", device="cpu")
    n, t = clips.shape[:2]
    emb = enc.run({"frames": clips.reshape(n * t, *clips.shape[2:])})["embedding"]
    assert emb.shape == (n * t, enc.outputs[0].shape[1])
    logits = head.run({"embeddings": emb.reshape(n, t, -1)})["logits"]
    np.testing.assert_allclose(logits, torch_logits(clips), atol=1e-5, rtol=1e-5)


def test_torch_refusals(tmp_path, tiny_spec, tiny_ckpt):
    from edgevt.models.checkpoint import save_checkpoint
    from edgevt.models.zoo import create_model

    tsm = tmp_path / "tsm.pt"
    save_checkpoint(tsm, create_model("tsm_tinycnn", tiny_spec.num_classes, num_frames=tiny_spec.num_frames),
                    tiny_spec, arch="tsm_tinycnn")
    with pytest.raises(EdgevtError, match="TSN-style"):
        open_backend("torch", tsm, role="encoder", device="cpu")
    with pytest.raises(EdgevtError, match="int8"):
        open_backend("torch", tiny_ckpt, precision="int8", device="cpu")
    if not torch.cuda.is_available():
        with pytest.raises(EdgevtError, match="fp16 needs a CUDA"):
            open_backend("torch", tiny_ckpt, precision="fp16", device="cpu")
        with pytest.raises(EdgevtError, match="no CUDA device"):
            open_backend("torch", tiny_ckpt, device="cuda")
    with pytest.raises(EdgevtError, match="not an edgevt checkpoint"):
        bad = tmp_path / "bad.pt"
        bad.write_bytes(b"junk")
        open_backend("torch", bad)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_torch_cuda_timing_and_fp16(tiny_ckpt, clips, torch_logits):
    with open_backend("torch", tiny_ckpt, device="cuda") as b:
        out = b.run({"frames": clips})["logits"]
        np.testing.assert_allclose(out, torch_logits(clips), atol=1e-3, rtol=1e-3)
        t = b.last_timing
        assert t.h2d > 0 and t.compute > 0 and t.d2h > 0
        b.run({"frames": clips})
        assert len(b._buffers) == 1
    with open_backend("torch", tiny_ckpt, device="cuda", precision="fp16") as b:
        out = b.run({"frames": clips})["logits"]
        np.testing.assert_allclose(out, torch_logits(clips), atol=5e-2, rtol=5e-2)
