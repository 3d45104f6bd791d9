import json
import math

import torch

from edgevt.adapt import adapt
from edgevt.adapt.dann import coral_loss, grad_reverse, grl_lambda, mmd_loss


def test_lambda_schedule_and_gradient_reversal():
    assert grl_lambda(0.0) == 0.0
    assert math.isclose(grl_lambda(1.0), 2 / (1 + math.exp(-10)) - 1)
    assert grl_lambda(0.1) < grl_lambda(0.5) < grl_lambda(0.9) < 1
    x = torch.ones(3, requires_grad=True)
    grad_reverse(x, 0.5).sum().backward()
    assert torch.equal(x.grad, torch.full((3,), -0.5))


def test_alignment_losses_vanish_for_identical_domains():
    torch.manual_seed(0)
    a = torch.randn(64, 8)
    assert mmd_loss(a, a.clone()).abs() < 1e-6 and coral_loss(a, a.clone()) < 1e-9
    b = torch.randn(64, 8) * 3 + 2
    assert mmd_loss(a, b) > 0.1 and coral_loss(a, b) > 1e-3


def test_dann_logs_lambda_and_discriminator_accuracy(tiny_cfg, tmp_path):
    res = adapt(tiny_cfg(strategy="dann", mode="linear", epochs=2, importance_weighting=True))
    history = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert all(0 <= h["disc_acc"] <= 1 and 0 <= h["lambda"] <= 1 for h in history)
    assert history[0]["lambda"] < history[1]["lambda"]
    ckpt = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert "discriminator" in ckpt["train_state"]["extra"]
    assert res.report["eval"]["target_test"]["clips"] == 12


def test_cdan_mmd_coral_run(tiny_cfg, tmp_path):
    for method in ("cdan", "mmd", "coral"):
        res = adapt(tiny_cfg(strategy=method, mode="linear", out=str(tmp_path / method), source_test=None))
        assert res.report["strategy"] == method and math.isfinite(res.report["train"]["history"][0]["align"])
