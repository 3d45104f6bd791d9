import pytest
import torch

from edgevt.adapt import adapt
from edgevt.adapt.data import open_labeled
from edgevt.adapt.features import ClipNet
from edgevt.adapt.meta import EpisodeSampler, evaluate_episodes
from edgevt.data.datasets import LabelMap
from edgevt.errors import EdgevtError
from edgevt.models.zoo import create_model


def test_episodes_are_deterministic_and_well_formed(motiondigits, tiny_spec):
    ds = open_labeled(str(motiondigits / "source_train.txt"), tiny_spec, LabelMap(tiny_spec.labels), train=True, seed=0)
    sampler = EpisodeSampler([ds], ["src"], ways=3, shots=1, queries=2, seed=0)
    d, classes, sup, qry = sampler.episode(4)
    assert (d, classes, sup, qry) == sampler.episode(4)
    assert len(set(classes)) == 3 and len(sup) == 3 and len(qry) == 6 and not set(sup) & set(qry)
    assert sorted(ds.labels[sup].tolist()) == classes
    with pytest.raises(EdgevtError, match="--ways 7"):
        EpisodeSampler([ds], ["src"], ways=7, shots=1, queries=1, seed=0)
    with pytest.raises(EdgevtError, match="--shots 3"):
        EpisodeSampler([ds], ["src"], ways=2, shots=3, queries=1, seed=0)


@pytest.mark.parametrize("strategy", ["maml", "fomaml", "reptile"])
def test_meta_strategies_train(tiny_cfg, tmp_path, strategy):
    res = adapt(tiny_cfg(strategy=strategy, mode="linear", source_test=None, target_test=None,
                         extra_domains=[str(tiny_cfg().target_test)]))
    hist = res.report["train"]["history"]
    assert res.report["train"]["steps"] == 2 and 0 <= hist[0]["acc"] <= 1
    before = create_model("tsn_tinycnn", 6, 4, temporal="conv", temporal_dim=16)
    after = torch.load(res.checkpoint, weights_only=True)["state_dict"]
    assert after["fc.weight"].shape == before.fc.weight.shape


def test_fewshot_from_init_and_prototype_baseline(tiny_cfg, tmp_path, motiondigits, tiny_spec):
    meta = adapt(tiny_cfg(strategy="fomaml", mode="linear", out=str(tmp_path / "meta")))
    for method in ("finetune", "prototype"):
        res = adapt(tiny_cfg(strategy="fewshot", source=None, init=meta.checkpoint, model=None, mode="linear",
                             target=str(motiondigits / "target_train.txt"), shots=2, fewshot_method=method,
                             out=str(tmp_path / method)))
        assert res.report["fewshot"]["support_clips"] == 12
        assert res.report["eval"]["target_test"]["clips"] == 12
    model = create_model("tsn_tinycnn", 6, 4, temporal="conv", temporal_dim=16).eval()
    ds = open_labeled(str(motiondigits / "target_test.txt"), tiny_spec, LabelMap(tiny_spec.labels), train=False, seed=0)
    r = evaluate_episodes(ClipNet(model, tiny_spec), ds, 2, 1, 1, 3, "prototype", 1, 0.1, 0, torch.device("cpu"))
    assert r["episodes"] == 3 and 0 <= r["accuracy"] <= 1
