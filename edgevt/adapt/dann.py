"""Unsupervised domain adaptation: labeled source + unlabeled target clips in every step.

- ``dann`` (Ganin & Lempitsky 2015): a domain discriminator on clip features behind a gradient
  reversal layer whose strength follows lambda = 2 / (1 + exp(-10 p)) - 1 over the run (p: share
  of steps done). Discriminator accuracy near 50% means the domains look alike to it.
- ``cdan`` (Long et al. 2018): the discriminator sees features conditioned on the class
  prediction (their outer product), aligning class-conditional distributions.
- ``mmd`` (multi-kernel Gaussian MMD) and ``coral`` (covariance alignment): non-adversarial,
  steadier alternatives with no discriminator.
- ``importance_weighting``: source samples weighted by the discriminator's density-ratio estimate
  p(target | f) / p(source | f), normalised to mean 1 (a covariate-shift correction).

The same task adds the target-side losses of ``edgevt.adapt.selftrain`` (pseudo-labels on a second
view, information maximisation, MCC) to any of these, or alone (``selftrain``).
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from edgevt.adapt.data import collate
from edgevt.adapt.features import ClipNet, set_train_mode
from edgevt.adapt.finetune import accuracy
from edgevt.adapt.selftrain import (ClassBalance, information_maximisation, mcc_loss, pseudo_label_loss, ramp,
                                    second_view)
from edgevt.adapt.trainer import DistInfo, Task, shard_batches


ALIGN_METHODS = ("dann", "cdan", "mmd", "coral")


def grl_lambda(progress: float) -> float:
    return 2.0 / (1.0 + math.exp(-10.0 * progress)) - 1.0


class GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, lam):
        ctx.lam = lam
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.lam * grad, None


def grad_reverse(x: torch.Tensor, lam: float) -> torch.Tensor:
    return GradReverse.apply(x, lam)


class Discriminator(nn.Module):
    def __init__(self, dim: int, hidden: int = 256):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Dropout(0.5),
                                 nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(0.5), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


def mmd_loss(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared MMD with a sum of Gaussian kernels at bandwidths around the median distance."""
    x = torch.cat([a, b])
    d2 = torch.cdist(x, x).pow(2)
    base = d2.detach().median().clamp_min(1e-6)
    k = sum(torch.exp(-d2 / (base * s)) for s in (0.25, 0.5, 1.0, 2.0, 4.0))
    n = len(a)
    return k[:n, :n].mean() + k[n:, n:].mean() - 2 * k[:n, n:].mean()


def coral_loss(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Deep CORAL: squared Frobenius distance of the feature covariances / (4 d^2)."""
    def cov(x):
        x = x - x.mean(0, keepdim=True)
        return x.T @ x / max(1, len(x) - 1)

    d = a.shape[1]
    return (cov(a) - cov(b)).pow(2).sum() / (4 * d * d)


class AlignTask(Task):
    def __init__(self, net: ClipNet, source, target, cfg, info: DistInfo, frozen_stages: int | None,
                 freeze_bn: bool, num_classes: int, val_set=None, augment=None):
        super().__init__()
        self.augment = augment  # the training augmentation, also applied to the second target view
        self.balance = ClassBalance(num_classes)
        self.net = net
        self.source, self.target, self.val_set = source, target, val_set
        self.cfg, self.info = cfg, info
        self.frozen_stages, self.freeze_bn = frozen_stages, freeze_bn
        self.method = cfg.strategy
        dim = net.model.feature_dim
        self.disc = None
        if self.method in ("dann", "cdan") or cfg.importance_weighting:
            self.disc = Discriminator(dim * num_classes if self.method == "cdan" else dim)

    def epoch_batches(self, epoch: int) -> list:
        self.source.set_epoch(epoch)
        self.target.set_epoch(epoch)
        src = shard_batches(len(self.source), self.cfg.batch_size, self.cfg.seed, epoch, self.info, drop_last=True)
        # Target batches cycle through their own shuffled order as long as the source epoch lasts.
        tgt: list[list[int]] = []
        cycle = 0
        while len(tgt) < len(src):
            tgt += shard_batches(len(self.target), self.cfg.batch_size, self.cfg.seed + 1,
                                 epoch * 1000 + cycle, self.info, drop_last=True)
            cycle += 1
        return list(zip(src, tgt[:len(src)]))

    def train_mode(self) -> None:
        self.train()
        set_train_mode(self.net.model, self.frozen_stages, self.freeze_bn)

    def extra_state(self) -> dict:
        return {"discriminator": self.disc.state_dict()} if self.disc is not None else {}

    def load_extra_state(self, state: dict) -> None:
        if self.disc is not None:
            self.disc.load_state_dict(state["discriminator"])

    def forward(self, batch, progress: float):
        (xs, ys), (xt, _) = (collate(self.source, batch[0], self.info.device),
                             collate(self.target, batch[1], self.info.device))
        cfg = self.cfg
        xt2 = None
        if cfg.self_train_weight > 0 and hasattr(self.target, "video"):  # cached features have no second view
            # randomness from the run's progress (a function of the step): a resumed run draws the same views
            xt2 = second_view(self.target, batch[1], cfg.consistency, cfg.seed, int(progress * 1e9), self.augment)
        ns, nt = len(xs), len(xt)
        all_feats = self.net.features(torch.cat([xs, xt] + ([xt2.to(xs.device)] if xt2 is not None else [])))
        all_logits = self.net.classify(all_feats)
        feats, logits = all_feats[:ns + nt], all_logits[:ns + nt]
        fs, ft = feats[:ns], feats[ns:]
        ls, lt = logits[:ns], logits[ns:]
        lam = grl_lambda(progress)
        logs = {}
        align = torch.zeros((), device=feats.device)
        weights = torch.ones(len(xs), device=feats.device)
        if self.disc is not None:
            if self.method == "cdan":
                probs = logits.softmax(1).detach()
                disc_in = torch.bmm(probs.unsqueeze(2), feats.unsqueeze(1)).flatten(1)
            else:
                disc_in = feats
            d_logits = self.disc(grad_reverse(disc_in, lam if self.method in ("dann", "cdan") else 0.0))
            domain = torch.cat([torch.zeros(len(xs)), torch.ones(len(xt))]).to(feats.device)
            d_loss = F.binary_cross_entropy_with_logits(d_logits, domain)
            logs["disc_acc"] = ((d_logits > 0).float() == domain).float().mean().item()
            if self.cfg.importance_weighting:
                # density ratio p(t|f)/p(s|f) = exp(logit); clipped and normalised to mean 1
                w = torch.exp(d_logits[:len(xs)].detach().clamp(-3, 3))
                weights = w / w.mean()
            align = d_loss
        disc_only = torch.zeros((), device=feats.device)  # discriminator for weighting only
        if self.method in ("mmd", "coral"):
            disc_only = align
            align = mmd_loss(fs, ft) if self.method == "mmd" else coral_loss(fs, ft)
        ce = (F.cross_entropy(ls, ys, reduction="none", label_smoothing=self.cfg.label_smoothing) * weights).mean()
        # adversarial losses are scaled by the reversal layer; mmd/coral ramp in with the same schedule
        scale = self.cfg.adv_weight * (1.0 if self.method in ("dann", "cdan") else lam)
        if self.method not in ALIGN_METHODS:
            scale = 0.0
        loss = ce + scale * align + disc_only
        if cfg.self_train_weight > 0:
            student = all_logits[ns + nt:] if xt2 is not None else lt
            pl, pl_logs = pseudo_label_loss(lt, student, cfg.pl_threshold, self.balance)
            loss = loss + cfg.self_train_weight * ramp(progress) * pl
            logs.update(pl_logs, pl_loss=pl.item())
        if cfg.im > 0:
            im = information_maximisation(lt)
            loss = loss + cfg.im * im
            logs["im"] = im.item()
        if cfg.mcc_weight > 0:
            mcc = mcc_loss(lt)
            loss = loss + cfg.mcc_weight * mcc
            logs["mcc"] = mcc.item()
        share = torch.bincount(lt.argmax(1), minlength=lt.shape[1]).max().item() / max(1, nt)
        logs = {"loss": loss.item(), "acc": (ls.argmax(1) == ys).float().mean().item(), "lambda": lam,
                "align": align.item(), "target_top_class": share, **logs}
        return loss, logs

    def validate(self) -> dict:
        if self.val_set is None:
            return {}
        return {"val_acc": accuracy(self.net, self.val_set, self.info.device)}
