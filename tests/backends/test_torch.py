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


def test_incremental_roles_with_a_temporal_conv_head(tmp_path, tiny_spec, clips):
    """The head takes per-frame embeddings of the encoder's width, not the (wider) conv head's."""
    from edgevt.models.checkpoint import save_checkpoint
    from edgevt.models.preprocess import FramesClassifier
    from edgevt.models.zoo import create_model

    torch.manual_seed(0)
    model = create_model("tsn_tinycnn", tiny_spec.num_classes, num_frames=tiny_spec.num_frames, temporal="conv",
                         temporal_dim=24).eval()
    ckpt = tmp_path / "conv.pt"
    save_checkpoint(ckpt, model, tiny_spec, arch="tsn_tinycnn", model_kwargs={"temporal": "conv", "temporal_dim": 24})
    enc = open_backend("torch", ckpt, role="encoder", device="cpu")
    head = open_backend("torch", ckpt, role="head", device="cpu")
    n, t = clips.shape[:2]
    emb = enc.run({"frames": clips.reshape(n * t, *clips.shape[2:])})["embedding"]
    logits = head.run({"embeddings": emb.reshape(n, t, -1)})["logits"]
    with torch.no_grad():
        ref = FramesClassifier(model, tiny_spec)(torch.from_numpy(clips)).numpy()
    np.testing.assert_allclose(logits, ref, atol=1e-5, rtol=1e-5)


def test_stateful_role_streams_like_the_exported_stateful_graph(tmp_path, tiny_spec):
    """torch's stateful role (one frame + shift buffers) gives the same embeddings and buffers as the
    causal reference, frame after frame, feeding its outputs back as edgevt.stream does."""
    from edgevt.models.forms import causal_clip_embeddings
    from edgevt.models.checkpoint import save_checkpoint
    from edgevt.models.zoo import create_model

    torch.manual_seed(0)
    model = create_model("tsm_tinycnn", tiny_spec.num_classes, num_frames=tiny_spec.num_frames,
                         shift_direction="causal").eval()
    ckpt = tmp_path / "tsm.pt"
    save_checkpoint(ckpt, model, tiny_spec, arch="tsm_tinycnn", model_kwargs={"shift_direction": "causal"})
    b = open_backend("torch", ckpt, role="stateful", device="cpu")
    assert b.state == {"shift_in_0": "shift_out_0", "shift_in_1": "shift_out_1"}
    frames = torch.randint(0, 256, (7, *tiny_spec.size, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    state = {t.name: np.zeros(t.shape, np.float32) for t in b.inputs if t.name in b.state}
    got = []
    for f in frames:
        out = b.run({"frames": f[None].numpy(), **state})
        state = {k: out[v] for k, v in b.state.items()}
        got.append(out["embedding"][0])
    np.testing.assert_allclose(np.stack(got), causal_clip_embeddings(model, tiny_spec, frames).numpy(), atol=1e-5)


def test_torch_refusals(tmp_path, tiny_spec, tiny_ckpt):
    from edgevt.models.checkpoint import save_checkpoint
    from edgevt.models.zoo import create_model

    tsm = tmp_path / "tsm.pt"
    save_checkpoint(tsm, create_model("tsm_tinycnn", tiny_spec.num_classes, num_frames=tiny_spec.num_frames),
                    tiny_spec, arch="tsm_tinycnn")
    with pytest.raises(EdgevtError, match="incremental form needs a TSN model"):  # the same refusal as export
        open_backend("torch", tsm, role="encoder", device="cpu")
    with pytest.raises(EdgevtError, match="temporal-shift"):
        open_backend("torch", tiny_ckpt, role="stateful", device="cpu")  # a TSN model has no shifts
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
