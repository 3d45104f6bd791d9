"""A small CycleGAN for frames, with CyCADA's semantic consistency and a warp-equivariance term.

Networks (CycleGAN's design, scaled down to train in minutes on 2 CPU cores at 32-64 px):
``ResnetGenerator`` (7x7 conv, two stride-2 downsamplings, ``blocks`` residual blocks, two
upsamplings, 7x7 conv, tanh; instance norm; no noise input, so the same frame always gives the
same output) and ``PatchDiscriminator`` (a PatchGAN with ``layers`` stride-2 convolutions).

``CycleGAN.step`` is one training step on a batch of source clips and a batch of target clips
(frames in [-1, 1], [N, T, 3, H, W]):

- LSGAN: generators push D(fake) to 1; discriminators push D(real) to 1 and D(fake) to 0 (fakes
  drawn from a 50-frame history pool);
- cycle ``lambda_cycle * |F(G(x)) - x|`` both ways; identity ``lambda_identity * lambda_cycle *
  |G(y) - y|`` both ways;
- semantic consistency (CyCADA): a frozen clip classifier ``f`` must give the translated clip the
  label it gives the original: ``CE(f(G(x_s)), argmax f(x_s)) + CE(f(F(x_t)), argmax f(x_t))``;
- warp equivariance (temporal consistency without optical flow): for a random sub-pixel shift
  ``w``, drawn once per clip, ``|G(w(x)) - w(G(x))|`` on the interior.

The identity and warp terms use the first frame of each clip (cheaper; the constraint is the same).
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class GanConfig:
    ngf: int = 16
    ndf: int = 16
    blocks: int = 3
    disc_layers: int = 2
    lr: float = 2e-4
    beta1: float = 0.5
    lambda_cycle: float = 10.0
    lambda_identity: float = 0.5  # times lambda_cycle, as in CycleGAN
    lambda_semantic: float = 1.0
    lambda_warp: float = 5.0
    max_shift: float = 2.0  # pixels, for the warp-equivariance term
    pool_size: int = 50


class ResidualBlock(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.body = nn.Sequential(nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3), nn.InstanceNorm2d(ch, affine=True),
                                  nn.ReLU(True), nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3),
                                  nn.InstanceNorm2d(ch, affine=True))

    def forward(self, x):
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """Frames [N, 3, H, W] in [-1, 1] -> frames in [-1, 1]; H and W multiples of 4."""

    def __init__(self, ngf: int = 16, blocks: int = 3):
        super().__init__()

        def norm(c):
            return nn.InstanceNorm2d(c, affine=True)

        layers = [nn.ReflectionPad2d(3), nn.Conv2d(3, ngf, 7), norm(ngf), nn.ReLU(True)]
        ch = ngf
        for _ in range(2):
            layers += [nn.Conv2d(ch, ch * 2, 3, stride=2, padding=1), norm(ch * 2), nn.ReLU(True)]
            ch *= 2
        layers += [ResidualBlock(ch) for _ in range(blocks)]
        for _ in range(2):  # upsample + conv: no checkerboard artefacts of transposed convolutions
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(ch, ch // 2, 3, padding=1),
                       norm(ch // 2), nn.ReLU(True)]
            ch //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ch, 3, 7), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


class PatchDiscriminator(nn.Module):
    """PatchGAN: a grid of real/fake scores, one per overlapping patch."""

    def __init__(self, ndf: int = 16, layers: int = 2):
        super().__init__()
        seq = [nn.Conv2d(3, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        ch = ndf
        for i in range(1, layers + 1):
            nxt = ndf * min(2 ** i, 8)
            seq += [nn.Conv2d(ch, nxt, 4, stride=2 if i < layers else 1, padding=1),
                    nn.InstanceNorm2d(nxt, affine=True), nn.LeakyReLU(0.2, True)]
            ch = nxt
        seq += [nn.Conv2d(ch, 1, 4, stride=1, padding=1)]
        self.net = nn.Sequential(*seq)

    def forward(self, x):
        return self.net(x)


class ImagePool:
    """CycleGAN's history of generated frames: the discriminator also sees older fakes."""

    def __init__(self, size: int, rng: random.Random):
        self.size, self.rng, self.frames = size, rng, []

    def query(self, frames: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return frames
        out = []
        for f in frames.detach():
            if len(self.frames) < self.size:
                self.frames.append(f.clone())
                out.append(f)
            elif self.rng.random() < 0.5:
                j = self.rng.randrange(self.size)
                out.append(self.frames[j].clone())
                self.frames[j] = f.clone()
            else:
                out.append(f)
        return torch.stack(out)


def shift_frames(x: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Translate frames [N, 3, H, W] by ``shifts`` [N, 2] pixels (dx, dy), bilinear, border padding."""
    n, _, h, w = x.shape
    theta = torch.zeros(n, 2, 3, dtype=x.dtype, device=x.device)
    theta[:, 0, 0] = 1
    theta[:, 1, 1] = 1
    theta[:, 0, 2] = -2 * shifts[:, 0] / w
    theta[:, 1, 2] = -2 * shifts[:, 1] / h
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def warp_error(gen: nn.Module, x: torch.Tensor, shifts: torch.Tensor, margin: int = 3) -> torch.Tensor:
    """Mean |G(warp(x)) - warp(G(x))| over the interior (the border is undefined after a shift)."""
    a = gen(shift_frames(x, shifts))
    b = shift_frames(gen(x), shifts)
    return (a - b)[..., margin:-margin, margin:-margin].abs().mean()


class CycleGAN(nn.Module):
    """The two generators (``g_st``: source -> target, ``g_ts``) and two discriminators."""

    def __init__(self, cfg: GanConfig):
        super().__init__()
        self.cfg = cfg
        self.g_st = ResnetGenerator(cfg.ngf, cfg.blocks)
        self.g_ts = ResnetGenerator(cfg.ngf, cfg.blocks)
        self.d_t = PatchDiscriminator(cfg.ndf, cfg.disc_layers)
        self.d_s = PatchDiscriminator(cfg.ndf, cfg.disc_layers)

    def optimizers(self) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer]:
        betas = (self.cfg.beta1, 0.999)
        opt_g = torch.optim.Adam(list(self.g_st.parameters()) + list(self.g_ts.parameters()), self.cfg.lr, betas=betas)
        opt_d = torch.optim.Adam(list(self.d_t.parameters()) + list(self.d_s.parameters()), self.cfg.lr, betas=betas)
        return opt_g, opt_d

    def step(self, xs: torch.Tensor, xt: torch.Tensor, opt_g, opt_d, pools: tuple[ImagePool, ImagePool],
             classify=None, gen: torch.Generator | None = None) -> dict[str, float]:
        """One update of G then D. ``xs``/``xt``: clips [B, T, 3, H, W] in [-1, 1]. ``classify``:
        frozen classifier taking clips in [-1, 1] [B, T, 3, H, W] -> logits (None: no semantic loss)."""
        c = self.cfg
        bs = xs.shape[0]
        fs, ft = xs.flatten(0, 1), xt.flatten(0, 1)
        for d in (self.d_t, self.d_s):
            d.requires_grad_(False)
        fake_t, fake_s = self.g_st(fs), self.g_ts(ft)
        p_t, p_s = self.d_t(fake_t), self.d_s(fake_s)
        loss_gan = F.mse_loss(p_t, torch.ones_like(p_t)) + F.mse_loss(p_s, torch.ones_like(p_s))
        loss_cycle = (self.g_ts(fake_t) - fs).abs().mean() + (self.g_st(fake_s) - ft).abs().mean()
        # identity and warp terms on the first frame of each clip: the same constraint at a quarter of the cost
        first_s, first_t = xs[:, 0], xt[:, 0]
        loss_idt = (self.g_st(first_t) - first_t).abs().mean() + (self.g_ts(first_s) - first_s).abs().mean()
        loss_sem = torch.zeros(())
        if classify is not None and c.lambda_semantic > 0:
            with torch.no_grad():
                ys, yt = classify(xs).argmax(1), classify(xt).argmax(1)
            loss_sem = (F.cross_entropy(classify(fake_t.view_as(xs)), ys)
                        + F.cross_entropy(classify(fake_s.view_as(xt)), yt))
        # one random shift per clip (shared by its frames: nothing random differs between frames of a clip)
        shifts = ((torch.rand(bs, 2, generator=gen) * 2 - 1) * c.max_shift).to(fs)
        warped = self.g_st(shift_frames(first_s, shifts))
        loss_warp = (warped - shift_frames(fake_t.view_as(xs)[:, 0], shifts))[..., 3:-3, 3:-3].abs().mean()
        loss_g = (loss_gan + c.lambda_cycle * loss_cycle + c.lambda_identity * c.lambda_cycle * loss_idt
                  + c.lambda_semantic * loss_sem + c.lambda_warp * loss_warp)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()

        for d in (self.d_t, self.d_s):
            d.requires_grad_(True)
        pool_t, pool_s = pools
        loss_d = 0.0
        for d, real, fake in ((self.d_t, ft, pool_t.query(fake_t)), (self.d_s, fs, pool_s.query(fake_s))):
            pr, pf = d(real), d(fake.detach())
            loss_d = loss_d + 0.5 * (F.mse_loss(pr, torch.ones_like(pr)) + F.mse_loss(pf, torch.zeros_like(pf)))
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        parts = {"g": loss_gan, "d": loss_d, "cyc": loss_cycle, "idt": loss_idt, "sem": loss_sem, "warp": loss_warp}
        return {k: float(v.detach()) for k, v in parts.items()}
