"""Target-side losses, the collapse check, BatchNorm re-estimation, and the strategies that use them."""
import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from edgevt.adapt import adapt
from edgevt.adapt.auto import LADDER, choose, ladder_configs, one_se
from edgevt.adapt.selftrain import (ClassBalance, collapse, information_maximisation, mcc_loss, pseudo_label_loss,
                                    ramp, reestimate_batchnorm)
from edgevt.errors import EdgevtError


def test_pseudo_labels_only_where_confident_and_class_balanced():
    teacher = torch.tensor([[10.0, 0, 0], [0, 10.0, 0], [0.1, 0, 0], [10.0, 0, 0]])
    student = torch.zeros(4, 3, requires_grad=True)
    bal = ClassBalance(3, momentum=0.0)
    loss, logs = pseudo_label_loss(teacher, student, 0.8, bal)
    assert logs["pl_share"] == 0.75  # the third clip is not confident enough
    loss.backward()
    assert student.grad[2].abs().sum() == 0 and student.grad[0].abs().sum() > 0
    # class 0 had 2 of 3 pseudo-labels: it is weighted down, the rare class up
    w = bal.weights(torch.tensor([0, 1, 2]))
    assert w[0] < 1 and w[0] < w[1] < w[2]
    none, logs = pseudo_label_loss(torch.zeros(2, 3), torch.zeros(2, 3), 0.9, ClassBalance(3))
    assert none.item() == 0 and logs["pl_share"] == 0


def test_information_maximisation_prefers_confident_and_diverse():
    confident_diverse = torch.eye(3) * 20
    collapsed = torch.tensor([[20.0, 0, 0]] * 3)
    uncertain = torch.zeros(3, 3)
    im = [information_maximisation(x).item() for x in (confident_diverse, collapsed, uncertain)]
    assert im[0] < im[1] and im[0] < im[2]


def test_mcc_is_low_without_confusion():
    assert mcc_loss(torch.eye(4) * 30) < 0.01 < mcc_loss(torch.zeros(4, 4))


def test_ramp_and_collapse_check():
    assert ramp(0.0) < 0.01 and ramp(0.5) == 1.0 and ramp(1.0) == 1.0 and ramp(0.2) < ramp(0.4)
    assert collapse(torch.zeros(20, dtype=torch.long), 6)["collapsed"]
    ok = collapse(torch.arange(18) % 6, 6)
    assert not ok["collapsed"] and ok["classes_predicted"] == 6


def test_batchnorm_reestimation_sets_target_statistics():
    net = torch.nn.Sequential(torch.nn.Flatten(0, 1), torch.nn.BatchNorm1d(3)).eval()

    class Data:
        def __len__(self):
            return 8

        def __getitem__(self, i):
            return torch.full((1, 3), 5.0) + i % 2, 0

    assert reestimate_batchnorm(net, Data(), "cpu", batch_size=4) == 1
    assert torch.allclose(net[1].running_mean, torch.full((3,), 5.5)) and not net.training


def test_selftrain_runs_reports_target_predictions_and_checks(tiny_cfg, motiondigits, tmp_path):
    res = adapt(tiny_cfg(strategy="selftrain", epochs=2, pl_threshold=0.2, target_val=str(motiondigits / "target_test.txt")))
    h = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert all(math.isfinite(x["pl_loss"]) and 0 <= x["pl_share"] <= 1 and "im" in x for x in h)
    tp = res.report["target_predictions"]
    assert set(tp) >= {"collapsed", "largest_class_share", "im_score"}
    assert "target_val" in res.report["eval"]
    # combined with an alignment loss, with a few labeled target clips, and BatchNorm re-estimation
    res = adapt(tiny_cfg(strategy="dann", self_train=1.0, mcc_weight=0.1, consistency="crop", bn_adapt=True,
                         target_labeled=str(motiondigits / "target_train.txt"), out=str(tmp_path / "comb")))
    assert res.report["bn_layers_reestimated"] > 0
    with pytest.raises(EdgevtError, match="--strategy bn re-estimates BatchNorm of a trained model: pass --init"):
        adapt(tiny_cfg(strategy="bn"))
    with pytest.raises(EdgevtError, match="needs --target"):
        adapt(tiny_cfg(strategy="selftrain", target=None))
    with pytest.raises(EdgevtError, match="--pl-threshold must be in"):
        adapt(tiny_cfg(strategy="selftrain", pl_threshold=0))


def test_target_labeled_with_foreign_labels_is_a_one_line_error(tiny_cfg, tmp_path, motiondigits):
    lst = tmp_path / "few.txt"
    first = (motiondigits / "target_train.txt").read_text().splitlines()[0].rsplit(maxsplit=1)[0]
    lst.write_text(f"{motiondigits / first} jumping\n")
    with pytest.raises(EdgevtError, match="label"):
        adapt(tiny_cfg(strategy="selftrain", target_labeled=str(lst)))


def test_auto_chooses_on_target_val_and_without_it_by_an_unsupervised_score():
    def rep(val, im, collapsed=False, clips=18):
        return {"eval": {"target_val": {"accuracy": val, "clips": clips}} if val is not None else {},
                "target_predictions": {"im_score": im, "collapsed": collapsed}}

    # one-standard-error rule: 1 SE of 0.6 on 18 clips is 11.5 points, so bn_plain (preferred) wins
    # over a selftrain that is 1 clip (5.6 points) better on val ...
    reports = {"source_only": rep(0.5, 0.1), "bn_plain": rep(0.6 - 1 / 18, 0.2), "selftrain": rep(0.6, 0.9)}
    winner, why = choose(reports)
    assert winner == "bn_plain" and "one-standard-error" in why and "18 clips" in why
    # ... but not over one that is clearly better (4 clips), nor when val has many clips
    reports["selftrain"] = rep(0.6 - 1 / 18 + 4 / 18, 0.9)
    assert choose(reports)[0] == "selftrain"
    big = {k: rep(v, 0.1, clips=2000) for k, v in {"source_only": 0.5, "bn_plain": 0.6, "selftrain": 0.63}.items()}
    assert choose(big)[0] == "selftrain"
    assert one_se(0.5, 100) == pytest.approx(0.05)
    # a name outside the preference order comes after it
    assert choose({"x": rep(0.6, 0.1), "source_only": rep(0.6, 0.1)})[0] == "source_only"
    reports = {"source_only": rep(None, 0.1), "bn": rep(None, 0.2), "selftrain": rep(None, 0.9, collapsed=True)}
    winner, why = choose(reports)
    assert winner == "bn" and "information-maximisation" in why


def test_auto_end_to_end_writes_every_candidate(tiny_cfg, motiondigits, tmp_path):
    res = adapt(tiny_cfg(strategy="auto", augment="appearance", target_val=str(motiondigits / "target_test.txt"), epochs=2))
    assert res.report["chosen"] in res.report["candidates"]
    # both source looks, their bn, two rungs from the start (labeled needs --target-labeled, pixel --pixel)
    assert set(res.report["candidates"]) == set(LADDER) - {"labeled", "pixel"}
    start = res.report["start"]
    assert start in ("source_only", "source_only_plain", "bn", "bn_plain")
    rung = json.loads((Path(res.report["candidates"]["selftrain"]["out"]) / "report.json").read_text())
    assert rung["provenance"]["paths"]["init"] == str(Path(res.report["candidates"][start]["out"]) / "model.pt")
    assert (tmp_path / "run" / "model.pt").exists() and "chosen" in (tmp_path / "run" / "report.md").read_text().lower()


def test_auto_ladder_looks_and_budget(tiny_cfg, motiondigits):
    cfg = tiny_cfg(strategy="auto", augment="appearance", epochs=6, lr=3e-3)
    sources = ladder_configs(cfg)
    assert {k: c.augment for k, c in sources.items()} == {"source_only": "appearance", "source_only_plain": "none"}
    assert set(ladder_configs(replace(cfg, augment="none"))) == {"source_only"}  # no second look to try
    rungs = ladder_configs(cfg, "start.pt")
    assert all(c.init == "start.pt" and c.epochs == 3 and c.lr == pytest.approx(1e-3) for c in rungs.values())
    assert "labeled" not in rungs
    few = str(motiondigits / "target_test.txt")
    labeled = ladder_configs(replace(cfg, target_labeled=few), "start.pt", plain=True)
    # a few labeled target clips to learn the target's look from: the full schedule for the target rungs
    assert all(labeled[k].epochs == 6 and labeled[k].lr == pytest.approx(3e-3) for k in ("selftrain", "dann+selftrain"))
    # the labeled rung: a gentle fine-tune on source + the labeled clips in the start's look, then bn
    lab = labeled["labeled"]
    assert (lab.epochs, lab.target_labeled, lab.bn_adapt, lab.augment, lab.strategy) == (3, few, True, "none", "finetune")
    assert ladder_configs(replace(cfg, target_labeled=few), "start.pt")["labeled"].augment == "appearance"


def test_auto_rungs_runs_a_subset_and_refuses_a_ladder_without_its_start(tiny_cfg, motiondigits):
    res = adapt(tiny_cfg(strategy="auto", augment="appearance", rungs="source_only,dann+selftrain",
                         target_val=str(motiondigits / "target_test.txt"), epochs=1))
    assert set(res.report["candidates"]) == {"source_only", "dann+selftrain"} and res.report["start"] == "source_only"
    with pytest.raises(EdgevtError, match="needs a source-only candidate"):
        tiny_cfg(strategy="auto", rungs="bn,selftrain").validate()
    with pytest.raises(EdgevtError, match="bn_plain re-estimates BatchNorm of source_only_plain"):
        tiny_cfg(strategy="auto", rungs="source_only,bn_plain").validate()
    with pytest.raises(EdgevtError, match="--rungs labeled fine-tunes on a few labeled target clips"):
        tiny_cfg(strategy="auto", rungs="source_only,labeled").validate()
    with pytest.raises(EdgevtError, match="unknown --rungs coral"):
        tiny_cfg(strategy="auto", rungs="source_only,coral").validate()


def _bn_means(ckpt) -> list[torch.Tensor]:
    state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    return [v for k, v in state.items() if k.endswith("running_mean")]


def _first_bn_mean(ckpt) -> torch.Tensor:
    return _bn_means(ckpt)[0]  # the stem's: a frozen stage under --mode partial


def test_bn_reestimates_the_frozen_stages_too(tiny_cfg, tmp_path):
    """--strategy bn (and --bn-adapt) on a partially frozen model re-estimate every BatchNorm. Before,
    the frozen-feature cache served the frozen stages, so only the trained stages' statistics moved
    and the stem kept the source ones."""
    src = adapt(tiny_cfg(mode="partial", unfreeze=1, out=str(tmp_path / "src")))
    assert "on:" in src.report["feature_cache"]
    bn = adapt(tiny_cfg(strategy="bn", init=src.checkpoint, model=None, mode="partial", unfreeze=1,
                        out=str(tmp_path / "bn")))
    assert not torch.allclose(_first_bn_mean(src.checkpoint), _first_bn_mean(bn.checkpoint))
    # trained on the cache, then --bn-adapt: the frozen stem's statistics move too, and the report's
    # accuracies are those of the saved model (from pixels, not the stale cache)
    ft = adapt(tiny_cfg(mode="partial", unfreeze=1, bn_adapt=True, out=str(tmp_path / "ft")))
    assert "on:" in ft.report["feature_cache"]
    assert not torch.allclose(_first_bn_mean(src.checkpoint), _first_bn_mean(ft.checkpoint))
    again = adapt(tiny_cfg(strategy="bn", init=ft.checkpoint, model=None, mode="full", out=str(tmp_path / "again")))
    for name in ("source_test", "target_test"):  # re-estimating the same statistics again changes nothing
        assert again.report["eval"][name]["accuracy"] == pytest.approx(ft.report["eval"][name]["accuracy"])


def test_bn_source_sets_source_statistics_before_training(tiny_cfg, tmp_path):
    """--bn-source: every BatchNorm's statistics come from the source clips before training (a
    pretrained backbone on another input); the frozen stem keeps them through training."""
    plain = adapt(tiny_cfg(mode="partial", unfreeze=1, out=str(tmp_path / "plain")))
    src = adapt(tiny_cfg(mode="partial", unfreeze=1, bn_source=True, out=str(tmp_path / "bnsrc")))
    assert not torch.allclose(_first_bn_mean(plain.checkpoint), _first_bn_mean(src.checkpoint))
    assert float(_first_bn_mean(plain.checkpoint).abs().sum()) == 0  # a fresh model's zero means, frozen
    assert float(_first_bn_mean(src.checkpoint).abs().sum()) > 0
    # auto's warm rungs start from the checkpoint's statistics; they do not re-estimate them on the source
    from edgevt.adapt.auto import bn_config

    assert not bn_config(tiny_cfg(bn_source=True), src.checkpoint).bn_source
