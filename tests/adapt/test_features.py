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


def test_cache_refused_where_not_exact():
    tsm = create_model("tsm_tinycnn", 6, 4)
    assert not can_cache(tsm, 1, augment=False, sampling="segment")[0]
    tsn = create_model("tsn_tinycnn", 6, 4)
    assert "augmentation" in can_cache(tsn, 1, augment=True)[1]
    assert not can_cache(tsn, 0, augment=False)[0]


def test_linear_mode_freezes_backbone():
    model = create_model("tsn_tinycnn", 6, 4, temporal="conv", temporal_dim=16)
    backbone, head, frozen = trainable_split(model, "linear", 0)
    assert backbone == [] and frozen == 3
    assert all(not p.requires_grad for p in model.encoder.parameters())
    assert all(p.requires_grad for p in head)
