import json
import math

import pytest
import torch

from edgevt.adapt import adapt
from edgevt.adapt.trainer import lr_factor
from edgevt.models.checkpoint import load_checkpoint, model_from_checkpoint


class Killed(Exception):
    pass


def _weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def test_schedules():
    total = 100
    assert lr_factor("cosine", 0, total, 0.1) == pytest.approx(0.1)  # warm-up starts small
    assert lr_factor("cosine", 10, total, 0.1) == pytest.approx(1.0)
    assert lr_factor("cosine", 99, total, 0.1) < 0.01
    assert lr_factor("dann", 50, total, 0.0) == pytest.approx((1 + 5) ** -0.75)
    assert lr_factor("constant", 70, total, 0.0) == 1.0


def test_killed_and_resumed_run_ends_with_identical_weights(tiny_cfg, tmp_path):
    """Pixel path with dropout and BatchNorm updates: model, optimiser, schedule, sampler, RNG."""
    cfg = dict(epochs=2, checkpoint_every=2, mode="full", source_test=None, target_test=None)
    straight = adapt(tiny_cfg(out=str(tmp_path / "straight"), **cfg))

    def kill_at_step_7(step):
        if step == 7:  # mid-epoch, one step after the step-6 checkpoint
            raise Killed

    with pytest.raises(Killed):
        adapt(tiny_cfg(out=str(tmp_path / "resumed"), **cfg), on_step=kill_at_step_7)
    state = load_checkpoint(tmp_path / "resumed" / "last.pt")["train_state"]
    assert (state["step"], state["epoch"], state["batch"]) == (6, 1, 1)
    resumed = adapt(tiny_cfg(out=str(tmp_path / "resumed"), resume=True, **cfg))
    a, b = _weights(straight.checkpoint), _weights(resumed.checkpoint)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    hist_a = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    hist_b = json.loads((tmp_path / "resumed" / "metrics.json").read_text())
    assert [h["loss"] for h in hist_a] == pytest.approx([h["loss"] for h in hist_b])


def test_same_seed_same_weights(tiny_cfg, tmp_path):
    a = adapt(tiny_cfg(out=str(tmp_path / "a"), mode="linear", source_test=None, target_test=None))
    b = adapt(tiny_cfg(out=str(tmp_path / "b"), mode="linear", source_test=None, target_test=None))
    wa, wb = _weights(a.checkpoint), _weights(b.checkpoint)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_checkpoint_report_and_metrics(tiny_cfg, tmp_path, tiny_spec):
    res = adapt(tiny_cfg(epochs=2, val_split=0.3, patience=5, label_smoothing=0.1))
    out = tmp_path / "run"
    ckpt = torch.load(res.checkpoint, map_location="cpu", weights_only=True)  # plain data only
    assert ckpt["strategy"] == "finetune"
    assert ckpt["spec"]["labels"] == tiny_spec.labels
    assert ckpt["provenance"]["data"]["source"]["clips"] + ckpt["provenance"]["data"]["validation"]["clips"] == 18
    assert set(ckpt["metrics"]) >= {"source_test", "target_test", "val_acc"}
    model, spec = model_from_checkpoint(res.checkpoint)
    assert model(torch.zeros(1, 4, 3, 32, 32)).shape == (1, 6)
    history = json.loads((out / "metrics.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2] and all("val_acc" in h and "loss" in h for h in history)
    report = json.loads((out / "report.json").read_text())
    conf = report["eval"]["target_test"]["confusion"]
    assert len(conf) == 6 and sum(map(sum, conf)) == 12
    acc = report["eval"]["target_test"]["accuracy"]
    assert math.isclose(acc, sum(conf[i][i] for i in range(6)) / 12)
    assert "confusion" in (out / "report.md").read_text()


def test_partial_mode_trains_only_the_top(tiny_cfg, tmp_path):
    from edgevt.models.zoo import create_model

    res = adapt(tiny_cfg(mode="partial", unfreeze=1, epochs=1, weights="none"))
    torch.manual_seed(0)
    before = create_model("tsn_tinycnn", 6, 4, temporal="conv", temporal_dim=16)
    after = _weights(res.checkpoint)
    stem = "encoder.net.stem.0.weight"
    assert torch.equal(before.state_dict()[stem], after[stem])  # frozen
    top = "encoder.net.blocks.1.conv1.weight"
    assert not torch.equal(before.state_dict()[top], after[top])  # trained
    assert res.report["feature_cache"].startswith("on")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: AMP is only used on CUDA")
def test_cuda_amp_run(tiny_cfg):
    res = adapt(tiny_cfg(device="cuda", amp=True, epochs=1))
    assert res.report["eval"]["target_test"]["clips"] == 12
    assert math.isfinite(res.report["train"]["history"][0]["loss"])


def test_invert_augment_trains_on_both_polarities_and_turns_the_cache_off(tiny_cfg, tmp_path, monkeypatch):
    """--augment invert reaches the training clips (some arrive inverted) and, as a pixel
    augmentation, disables the frozen-feature cache."""
    from edgevt.data import transforms

    seen = []
    real = transforms.PolarityInvert.__call__

    def spy(self, clip, rng):
        out = real(self, clip, rng)
        seen.append(out is not clip)
        return out

    monkeypatch.setattr(transforms.PolarityInvert, "__call__", spy)
    res = adapt(tiny_cfg(augment="invert", mode="partial", unfreeze=1, out=str(tmp_path / "inv")))
    assert seen and any(seen) and not all(seen)
    rep = json.loads((tmp_path / "inv" / "report.json").read_text())
    assert rep["feature_cache"].startswith("off")
    assert res.checkpoint


def test_init_with_another_size_fine_tunes_at_that_size_and_without_keeps_the_checkpoints(tiny_cfg, tmp_path,
                                                                                          monkeypatch):
    """Progressive resizing: a model trained at 32x32 finished at 48x48 trains and saves a 48x48 clip
    (before, --size was silently ignored with --init); without --size the checkpoint's size stays."""
    from edgevt.adapt import api
    from edgevt.adapt.data import open_labeled

    small = adapt(tiny_cfg(model="tsm_tinycnn", out=str(tmp_path / "small"), source_test=None, target_test=None))
    assert load_checkpoint(small.checkpoint)["spec"]["size"] == [32, 32]
    seen = []
    monkeypatch.setattr(api, "open_labeled", lambda path, spec, *a, **k: seen.append(tuple(spec.size))
                        or open_labeled(path, spec, *a, **k))
    big = adapt(tiny_cfg(model=None, size=48, init=small.checkpoint, out=str(tmp_path / "big"), source_test=None,
                         target_test=None))
    assert seen and set(seen) == {(48, 48)}  # the training clips were read at the new size
    assert load_checkpoint(big.checkpoint)["spec"]["size"] == [48, 48]
    model, spec = model_from_checkpoint(big.checkpoint)
    assert model(torch.zeros(1, 4, 3, 48, 48)).shape == (1, 6)
    kept = adapt(tiny_cfg(model=None, size=None, init=small.checkpoint, out=str(tmp_path / "kept"), source_test=None,
                          target_test=None))
    assert load_checkpoint(kept.checkpoint)["spec"]["size"] == [32, 32]


def test_size_must_be_a_real_frame_size(tiny_cfg):
    from edgevt.errors import EdgevtError

    with pytest.raises(EdgevtError, match="--size must be >= 16 pixels, got 4"):
        adapt(tiny_cfg(size=4))


def test_joined_augmentations_reach_the_training_clips(tiny_cfg, monkeypatch):
    """--augment appearance+invert: the source loader gets both transforms, in that order."""
    from edgevt.adapt import api
    from edgevt.adapt.data import open_labeled
    from edgevt.data.transforms import AppearanceAugment, Compose, PolarityInvert

    seen = []
    monkeypatch.setattr(api, "open_labeled", lambda path, spec, *a, **k: seen.append(k.get("transform"))
                        or open_labeled(path, spec, *a, **k))
    res = adapt(tiny_cfg(augment="appearance+invert", source_test=None, target_test=None))
    assert res.checkpoint
    aug = seen[0]
    assert isinstance(aug, Compose) and [type(s) for s in aug.steps] == [AppearanceAugment, PolarityInvert]
