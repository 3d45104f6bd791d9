import pytest
import torch

from edgevt.data.datasets import load_dataset
from edgevt.errors import EdgevtError
from edgevt.models.preprocess import FramesClassifier
from edgevt.models.zoo import create_model, list_models, model_info

SMALL = [m.name for m in list_models() if m.fixed_input is None]


@pytest.mark.parametrize("name", SMALL)
def test_every_registry_model_runs_on_a_motiondigits_clip(name, motiondigits, tiny_spec):
    info = model_info(name)
    t = max(info.min_frames, tiny_spec.num_frames)
    spec = tiny_spec.replace(num_frames=t, frame_stride=1, mean=list(info.mean), std=list(info.std))
    ds = load_dataset(motiondigits / "target_test.txt", spec)
    frames = torch.stack([ds[0][0], ds[1][0]])
    model = FramesClassifier(create_model(name, spec.num_classes, num_frames=t), spec).eval()
    with torch.no_grad():
        logits = model(frames)
    assert logits.shape == (2, 6) and torch.isfinite(logits).all()
    assert model.model.clip_features(model.preprocess(frames)).shape == (2, model.model.feature_dim)


@pytest.mark.slow
def test_mvit_runs_at_its_fixed_size(motiondigits, tiny_spec):
    spec = tiny_spec.replace(num_frames=16, frame_stride=1, size=[224, 224])
    ds = load_dataset(motiondigits / "target_test.txt", spec)
    model = FramesClassifier(create_model("mvit_v2_s", 6, num_frames=16), spec).eval()
    with torch.no_grad():
        assert model(ds[0][0][None]).shape == (1, 6)


def test_2d_models_split_into_encoder_and_head():
    model = create_model("tsn_tinycnn", 5, num_frames=4).eval()
    x = torch.randn(3, 4, 3, 32, 32)
    emb = model.encode_frames(x.flatten(0, 1)).reshape(3, 4, -1)
    torch.testing.assert_close(model.temporal_head(emb), model(x))


def test_bad_requests():
    with pytest.raises(EdgevtError, match="unknown model"):
        create_model("tsn_nope", 3)
    with pytest.raises(EdgevtError, match="16 frames"):
        create_model("mvit_v2_s", 3, num_frames=8)
    with pytest.raises(EdgevtError, match="at least 8 frames"):
        create_model("s3d", 3, num_frames=4)
    with pytest.raises(EdgevtError, match="no such weights file"):
        create_model("tsn_tinycnn", 3, weights="missing.pt")
    with pytest.raises(EdgevtError, match="unknown torchvision weights"):
        create_model("tsn_resnet18", 3, weights="NoSuch_Weights.V1")


def test_weights_from_a_state_dict_file(tmp_path):
    a = create_model("tsn_tinycnn", 4, num_frames=4)
    torch.save(a.state_dict(), tmp_path / "w.pth")
    b = create_model("tsn_tinycnn", 7, num_frames=4, weights=str(tmp_path / "w.pth"))
    torch.testing.assert_close(a.encoder.net.stem[0].weight, b.encoder.net.stem[0].weight)
    assert b.fc.out_features == 7  # a head of another size is left fresh
    torch.save({"x": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(EdgevtError, match="another architecture"):
        create_model("tsn_tinycnn", 4, weights=str(tmp_path / "other.pth"))


def test_torchvision_download_offline_says_what_to_do():
    # Here there is no internet: the error must say so and name the alternatives. On a machine
    # with the weights cached or online, the model simply loads.
    try:
        model = create_model("tsn_mobilenet_v3_small", 3, weights="pretrained")
    except EdgevtError as e:
        assert "--weights none" in str(e) and "could not download" in str(e)
    else:
        assert model.fc.out_features == 3


def test_lite0_s4_keeps_imagenet_weights_and_shifts_only_new_blocks():
    """The S4 cut reuses the bundled ImageNet Lite0 stem and stages 1-2 unchanged (same outputs as the
    full network's first layers) and TSM shifts sit only in its two new residual blocks."""
    from edgevt.models.efficientnet_lite import efficientnet_lite0
    from edgevt.models.temporal import TemporalShift

    full = efficientnet_lite0(pretrained=True).eval()
    model = create_model("tsm_efficientnet_lite0_s4", 6, num_frames=4, weights="pretrained").eval()
    net = model.encoder.net
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = full._blocks[:3](full.act(full._bn0(full._conv_stem(x))))
        torch.testing.assert_close(net.stage2(net.stage1(net.stem(x))), ref)
    shifts = [n for n, m in model.named_modules() if isinstance(m, TemporalShift)]
    assert len(shifts) == 2 and all(n.startswith("encoder.net.blocks.") for n in shifts)
    assert model_info("tsm_efficientnet_lite0_s4").mean == (0.5, 0.5, 0.5)
    with pytest.raises(EdgevtError, match="efficientnet_lite0_s4"):
        create_model("tsm_efficientnet_lite0_s4", 6, weights="ResNet18_Weights.IMAGENET1K_V1")


def test_frame_difference_input_ignores_a_static_scene():
    """input diff: a constant background added to every frame changes nothing but the first frame's
    zeros (which stay zero), so the logits are the same."""
    import torch

    from edgevt.models.zoo import create_model

    torch.manual_seed(0)
    m = create_model("tsm_tinycnn", 6, num_frames=4, input="diff", temporal="conv", temporal_dim=16).eval()
    x = torch.randn(2, 4, 3, 32, 32)
    scene = torch.randn(1, 1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(m(x), m(x + scene), atol=1e-5)
        rgb = create_model("tsm_tinycnn", 6, num_frames=4, temporal="conv", temporal_dim=16).eval()
        assert not torch.allclose(rgb(x), rgb(x + scene), atol=1e-3)


def test_edgediff_input_is_the_same_for_a_clip_and_its_negative():
    """input edgediff: a clip and its negative (255 - pixel: dark ink on a light scene instead of light
    on dark) give the same logits, while the plain frame differences flip sign and change them; the
    order of the frames still matters (a motion and its reversal are told apart)."""
    import torch

    from edgevt.models.zoo import create_model, local_contrast

    torch.manual_seed(0)
    x = torch.rand(2, 4, 3, 32, 32)
    neg = 1.0 - x
    with torch.no_grad():
        assert torch.allclose(local_contrast(x.flatten(0, 1)), local_contrast(neg.flatten(0, 1)), atol=1e-6)
        m = create_model("tsm_tinycnn", 6, num_frames=4, input="edgediff").eval()
        assert torch.allclose(m(x), m(neg), atol=1e-5)
        assert not torch.allclose(m(x), m(x.flip(1)), atol=1e-3)
        d = create_model("tsm_tinycnn", 6, num_frames=4, input="diff").eval()
        assert not torch.allclose(d(x), d(neg), atol=1e-3)


def test_frame_difference_models_stream_as_window_only():
    import pytest

    from edgevt.errors import EdgevtError
    from edgevt.models.forms import stream_forms_for
    from edgevt.models.zoo import create_model

    for input in ("diff", "edgediff"):
        assert stream_forms_for(create_model("tsn_tinycnn", 6, num_frames=4, input=input)) == []
    with pytest.raises(EdgevtError, match="unknown model input"):
        create_model("tsn_tinycnn", 6, input="flow")
