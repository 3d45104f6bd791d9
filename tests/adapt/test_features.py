import pytest
import torch

from edgevt.adapt.data import open_labeled
from edgevt.adapt.features import CachedClips, ClipNet, FeatureCache, can_cache, trainable_split
from edgevt.data.datasets import LabelMap
from edgevt.models.zoo import create_model


@pytest.mark.parametrize("arch", ["tsn_tinycnn", "tsm_tinycnn"])
def test_cached_features_equal_pixel_path(motiondigits, tiny_spec, arch):
    """Training on the cache is exact: cached-prefix logits == pixel logits, same clips sampled
    (per frame for TSN, per clip window for TSM whose shifts mix frames)."""
    torch.manual_seed(0)
    model = create_model(arch, 6, 4, temporal="conv", temporal_dim=16)
    _, _, frozen = trainable_split(model, "partial", 1)
    assert frozen == 2 and can_cache(model, frozen, augment=False)[0]
    ds = open_labeled(str(motiondigits / "source_train.txt"), tiny_spec, LabelMap(tiny_spec.labels), train=True, seed=3)
    cache = FeatureCache()
    videos, hit = cache.get(ds, model, tiny_spec, frozen, torch.device("cpu"))
    assert not hit and cache.get(ds, model, tiny_spec, frozen, torch.device("cpu"))[1]  # second call: cache hit
    cached = CachedClips(ds, videos)
    cached.set_epoch(2)
    model.eval()
    pixel_net, cache_net = ClipNet(model, tiny_spec), ClipNet(model, tiny_spec, cached_stages=frozen)
    for i in (0, 5, 11):
        (x, y), (f, y2) = ds[i], cached[i]  # same epoch, same random temporal offset
        assert y == y2
        with torch.no_grad():
            torch.testing.assert_close(pixel_net(x[None]), cache_net(f[None].float()), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("input", ["diff", "edgediff"])
@pytest.mark.parametrize("arch", ["tsn_tinycnn", "tsm_tinycnn"])
def test_frame_difference_models_train_on_the_cache_exactly(motiondigits, tiny_spec, arch, input):
    """input=diff: the cache holds each frame pair's difference (TSN) or each window's differences
    (TSM), and the cached path equals the pixel path on the same sampled clips. Before, a
    frame-difference model always trained from pixels, every frozen stage recomputed every step.
    input=edgediff: the differences of the frames' local-contrast maps, the same way."""
    torch.manual_seed(0)
    model = create_model(arch, 6, 4, temporal="conv", temporal_dim=16, input=input)
    _, _, frozen = trainable_split(model, "partial", 1)
    ok, why = can_cache(model, frozen, augment=False)
    assert ok, why
    ds = open_labeled(str(motiondigits / "source_train.txt"), tiny_spec, LabelMap(tiny_spec.labels), train=True, seed=3)
    videos, _ = FeatureCache().get(ds, model, tiny_spec, frozen, torch.device("cpu"))
    assert ("windows" if arch.startswith("tsm") else "diffs") in videos[0]
    cached = CachedClips(ds, videos)
    cached.set_epoch(1)
    model.eval()
    pixel_net, cache_net = ClipNet(model, tiny_spec), ClipNet(model, tiny_spec, cached_stages=frozen)
    for i in (0, 5, 11):
        (x, _), (f, _) = ds[i], cached[i]
        with torch.no_grad():
            torch.testing.assert_close(pixel_net(x[None]), cache_net(f[None].float()), rtol=1e-4, atol=1e-4)
    assert "segment" in can_cache(model, frozen, augment=False, sampling="segment")[1]


def test_the_cache_tells_rgb_and_difference_prefixes_apart():
    """The same frozen weights compute a different function on differences: never one cache entry."""
    from edgevt.adapt.features import prefix_key

    torch.manual_seed(0)
    rgb = create_model("tsn_tinycnn", 6, 4)
    diff = create_model("tsn_tinycnn", 6, 4, input="diff")
    diff.load_state_dict(rgb.state_dict())
    assert prefix_key(rgb, 2) != prefix_key(diff, 2)


def test_cache_refused_where_not_exact():
    tsm = create_model("tsm_tinycnn", 6, 4)
    assert not can_cache(tsm, 2, augment=False, sampling="segment")[0]  # block 1 shifts: windows
    assert can_cache(tsm, 1, augment=False, sampling="segment")[0]  # the stem alone has no shift: frames
    tsn = create_model("tsn_tinycnn", 6, 4)
    assert "augmentation" in can_cache(tsn, 1, augment=True)[1]
    assert not can_cache(tsn, 0, augment=False)[0]


def test_linear_mode_freezes_backbone():
    model = create_model("tsn_tinycnn", 6, 4, temporal="conv", temporal_dim=16)
    backbone, head, frozen = trainable_split(model, "linear", 0)
    assert backbone == [] and frozen == 3
    assert all(not p.requires_grad for p in model.encoder.parameters())
    assert all(p.requires_grad for p in head)


def test_new_stages_on_a_pretrained_prefix_train_in_linear_mode():
    """Lite0-S4: linear mode freezes the pretrained stem/stages 1-2 only; the new blocks train at the
    full learning rate (head group) and their BatchNorm stays in train mode under freeze_bn."""
    from edgevt.adapt.features import frame_stages, set_train_mode

    model = create_model("tsm_efficientnet_lite0_s4", 6, 4, weights="pretrained", temporal="conv", temporal_dim=16)
    stages = frame_stages(model)
    backbone, head, frozen = trainable_split(model, "linear", 0)
    assert backbone == [] and frozen == len(stages) - 3 == 3
    assert all(not p.requires_grad for s in stages[:frozen] for p in s.parameters())
    new_ids = {id(p) for s in stages[frozen:] for p in s.parameters()}
    assert new_ids <= {id(p) for p in head}
    set_train_mode(model, frozen, freeze_bn=True)
    bns = lambda mods: [m for s in mods for m in s.modules() if isinstance(m, torch.nn.BatchNorm2d)]  # noqa: E731
    assert all(not m.training for m in bns(stages[:frozen])) and all(m.training for m in bns(stages[frozen:]))
    # partial: the new stages plus the top `unfreeze` pretrained ones
    model = create_model("tsm_efficientnet_lite0_s4", 6, 4, weights="pretrained")
    backbone, head, frozen = trainable_split(model, "partial", 1)
    assert frozen == 2 and {id(p) for p in backbone} == {id(p) for p in frame_stages(model)[2].parameters()}


def test_per_frame_cache_when_the_shifts_are_above_the_frozen_prefix(motiondigits, tiny_spec):
    """TSM on Lite0-S4 shifts only in the new blocks, so its frozen prefix is cached per frame (not
    per clip window) and the cached path still equals the pixel path."""
    from edgevt.adapt.features import prefix_has_shift

    torch.manual_seed(0)
    spec = tiny_spec.replace(mean=[0.5] * 3, std=[0.5] * 3)
    model = create_model("tsm_efficientnet_lite0_s4", 6, 4, weights="pretrained", temporal="conv", temporal_dim=16)
    _, _, frozen = trainable_split(model, "linear", 0)
    assert not prefix_has_shift(model, frozen) and prefix_has_shift(model, frozen + 3)
    assert can_cache(model, frozen, augment=False, sampling="segment")[0]
    ds = open_labeled(str(motiondigits / "source_train.txt"), spec, LabelMap(spec.labels), train=True, seed=3)
    videos, _ = FeatureCache().get(ds, model, spec, frozen, torch.device("cpu"))
    assert "frames" in videos[0]
    cached = CachedClips(ds, videos)
    model.eval()
    pixel_net, cache_net = ClipNet(model, spec), ClipNet(model, spec, cached_stages=frozen)
    for i in (0, 7):
        (x, _), (f, _) = ds[i], cached[i]
        with torch.no_grad():
            torch.testing.assert_close(pixel_net(x[None]), cache_net(f[None].float()), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("arch", ["tsn_mobilenet_v3_small", "tsn_efficientnet_b0", "tsn_resnet18"])
def test_torchvision_backbones_say_their_stages(arch):
    """MobileNet and EfficientNet-B0 list their stages too (they matched no guess before): partial
    trains exactly the last stage and the stages compute the encoder."""
    from edgevt.adapt.features import frame_stages

    torch.manual_seed(0)
    model = create_model(arch, 3, num_frames=2).eval()
    stages = frame_stages(model)
    assert stages and len(stages) >= 4
    x = torch.randn(2, 3, 32, 32)
    h = x
    with torch.no_grad():
        for s in stages:
            h = s(h)
        torch.testing.assert_close(h.mean(dim=(2, 3)), model.encode_frames(x))
    backbone, _, frozen = trainable_split(model, "partial", 1)
    assert frozen == len(stages) - 1
    assert {id(p) for p in backbone} == {id(p) for p in stages[-1].parameters()}


def test_partial_is_refused_where_a_model_has_no_stages(monkeypatch):
    from edgevt.errors import EdgevtError

    model = create_model("tsn_tinycnn", 3, num_frames=2)
    monkeypatch.setattr(type(model), "stages", lambda self: None)  # as MViT: no stages to cut
    with pytest.raises(EdgevtError, match="--mode partial: .* has no stages"):
        trainable_split(model, "partial", 1)
    assert trainable_split(model, "full", 0)[2] is None  # linear/full still work
