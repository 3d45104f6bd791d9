import random

import numpy as np
import torch
from torch import nn

from edgevt.adapt.pixel.gan import CycleGAN, GanConfig, ImagePool, ResnetGenerator, shift_frames, warp_error
from edgevt.adapt.pixel.metrics import frame_change, temporal_consistency


def test_one_cyclegan_step_trains_every_loss():
    torch.manual_seed(0)
    model = CycleGAN(GanConfig(ngf=4, ndf=4, blocks=1))
    opt_g, opt_d = model.optimizers()
    pools = (ImagePool(4, random.Random(0)), ImagePool(4, random.Random(1)))
    xs, xt = torch.rand(2, 3, 3, 16, 16) * 2 - 1, torch.rand(2, 3, 3, 16, 16) * 2 - 1
    classifier = nn.Sequential(nn.Flatten(), nn.Linear(3 * 3 * 16 * 16, 4)).requires_grad_(False)
    frozen = [p.clone() for p in classifier.parameters()]
    before = [p.clone() for p in model.parameters()]
    losses = model.step(xs, xt, opt_g, opt_d, pools, classify=classifier, gen=torch.Generator().manual_seed(0))
    assert set(losses) == {"g", "d", "cyc", "idt", "sem", "warp"} and all(np.isfinite(v) for v in losses.values())
    assert losses["sem"] > 0
    assert all(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert all(torch.equal(a, b) for a, b in zip(frozen, classifier.parameters()))  # the classifier stays frozen


def test_generator_is_deterministic():
    g = ResnetGenerator(4, 1).eval()
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    assert torch.equal(g(x), g(x)) and g(x).shape == x.shape


def test_shift_and_warp_error():
    x = torch.rand(2, 3, 16, 16)
    one = shift_frames(x, torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    assert torch.allclose(one[0, :, :, 1:], x[0, :, :, :-1], atol=1e-5)  # 1 px right
    assert torch.allclose(one[1, :, 1:, :], x[1, :, :-1, :], atol=1e-5)  # 1 px down
    shifts = torch.tensor([[1.5, -0.7], [-2.0, 1.0]])
    assert float(warp_error(nn.Identity(), x, shifts)) < 1e-5  # a translation-equivariant "translator"
    pattern = torch.rand(1, 3, 16, 16)

    class Stamp(nn.Module):  # adds a fixed, position-bound texture: not equivariant
        def forward(self, f):
            return f + pattern

    assert float(warp_error(Stamp(), x, shifts)) > 0.05


def test_frame_change_catches_flicker():
    rng = np.random.default_rng(0)
    steady = [np.repeat(rng.integers(0, 255, (1, 8, 8, 3), dtype=np.uint8), 6, 0) + np.arange(6)[:, None, None, None].astype(np.uint8)]
    flicker = [np.clip(v.astype(int) + rng.integers(-40, 40, v.shape), 0, 255).astype(np.uint8) for v in steady]
    assert frame_change(steady) < frame_change(flicker)
    tc = temporal_consistency(steady, flicker)
    assert tc["ratio"] > 5 and temporal_consistency(steady, steady)["ratio"] == 1.0
