"""Target-side losses that carry in hard shifts, combinable with every alignment loss.

Each works on the unlabeled target clips of a step:

- **self-training** (pseudo-labels): the model's prediction on one view of a target clip, where
  it is confident (max probability >= ``pl_threshold``), is the label for a second view of the same
  clip. Class-balanced: each class's pseudo-labels are weighted by the inverse of its share among
  recent pseudo-labels, so a class the model over-predicts cannot take over. The weight ramps in
  (sigmoid ramp-up over the first half of the run) so the warm-started model is trusted gradually.
- **temporal consistency**: the second view is the same clip at another playback speed
  (``speed``: twice the frame stride, or a second window when the video is too short) or another
  temporal crop (``crop``); with ``none`` it is the same clip. Agreement across views is what
  self-training enforces, so the model must recognise the motion however fast it is played.
- **information maximisation** (SHOT): low entropy per clip, high entropy of the batch-mean
  prediction: confident *and* using every class, the guard against collapse onto one class.
- **MCC** (minimum class confusion): the off-diagonal mass of the temperature-scaled,
  certainty-weighted class-correlation matrix of target predictions.

``collapse(...)`` flags a run whose target predictions fall onto few classes.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn import functional as F

from edgevt.data.sampling import sample_indices

CONSISTENCY = ("speed", "crop", "none")


def ramp(progress: float, length: float = 0.5) -> float:
    """Sigmoid ramp-up exp(-5 (1 - p/length)^2), 1 after ``length`` of the run."""
    p = min(1.0, progress / length) if length > 0 else 1.0
    return float(math.exp(-5.0 * (1.0 - p) ** 2))


def second_view(dataset, indices, kind: str, seed: int, step: int, transform=None) -> torch.Tensor | None:
    """Another view of each target clip in ``indices`` (uint8 [N, T, H, W, 3]), or None for ``none``.

    ``speed``: the clip at twice the frame stride (frames further apart, the same motion played
    faster); where the video is too short for that, a different window. ``crop``: another random
    window at the clip's own stride. ``transform`` (the training augmentation) is applied to it,
    so the pseudo-label also has to survive an appearance change.
    """
    if kind == "none":
        return None
    spec = dataset.spec
    rng = np.random.default_rng((seed, 5, step))
    fast = spec.replace(frame_stride=2 * spec.frame_stride)
    views = []
    for i in indices:
        frames = dataset.video(i)
        use = fast if kind == "speed" and len(frames) >= fast.span else spec
        idx = sample_indices(len(frames), use, train=True, rng=rng, sampling="dense")
        clip = frames[idx]
        if transform is not None:
            clip = transform(clip, rng)
        views.append(torch.from_numpy(np.ascontiguousarray(clip)))
    return torch.stack(views)


class ClassBalance:
    """Running share of each class among confident pseudo-labels (an exponential average)."""

    def __init__(self, num_classes: int, momentum: float = 0.9):
        self.share = torch.full((num_classes,), 1.0 / num_classes)
        self.momentum = momentum

    def update(self, labels: torch.Tensor) -> None:
        if len(labels):
            counts = torch.bincount(labels.cpu(), minlength=len(self.share)).float()
            self.share = self.momentum * self.share + (1 - self.momentum) * counts / counts.sum()

    def weights(self, labels: torch.Tensor) -> torch.Tensor:
        w = (1.0 / (len(self.share) * self.share.clamp_min(1e-3))).clamp(max=5.0)
        return w.to(labels.device)[labels]


def pseudo_label_loss(teacher_logits: torch.Tensor, student_logits: torch.Tensor, threshold: float,
                      balance: ClassBalance) -> tuple[torch.Tensor, dict]:
    """Cross-entropy of the student view on the teacher view's confident labels."""
    probs = teacher_logits.detach().softmax(1)
    conf, labels = probs.max(1)
    mask = conf >= threshold
    balance.update(labels[mask])
    if not mask.any():
        return student_logits.sum() * 0.0, {"pl_share": 0.0}
    w = balance.weights(labels[mask])
    loss = (F.cross_entropy(student_logits[mask], labels[mask], reduction="none") * w).sum() / len(labels)
    return loss, {"pl_share": float(mask.float().mean())}


def information_maximisation(logits: torch.Tensor) -> torch.Tensor:
    """Mean per-clip entropy minus the entropy of the mean prediction (SHOT's IM loss)."""
    p = logits.softmax(1)
    ent = -(p * torch.log(p + 1e-6)).sum(1).mean()
    mean = p.mean(0)
    div = -(mean * torch.log(mean + 1e-6)).sum()
    return ent - div


def mcc_loss(logits: torch.Tensor, temperature: float = 2.5) -> torch.Tensor:
    """Minimum class confusion (Jin et al. 2020)."""
    n, c = logits.shape
    p = (logits / temperature).softmax(1)
    ent = -(p * torch.log(p + 1e-5)).sum(1).detach()
    w = 1 + torch.exp(-ent)
    w = n * w / w.sum()
    cc = (p * w.unsqueeze(1)).T @ p
    cc = cc / cc.sum(1, keepdim=True)
    return (cc.sum() - cc.trace()) / c


@torch.no_grad()
def target_scores(net, dataset, device, batch_size: int = 64) -> dict:
    """Unsupervised scores of a model on unlabeled target clips: the collapse check, the mean
    confidence and the information-maximisation score H(mean p) - mean H(p) (higher: confident
    predictions that still use every class), the criterion ``auto`` selects by without labels."""
    from edgevt.adapt.data import collate

    was = net.training
    net.eval()
    probs = []
    for i in range(0, len(dataset), batch_size):
        x, _ = collate(dataset, range(i, min(i + batch_size, len(dataset))), device)
        probs.append(net(x).softmax(1).cpu())
    net.train(was)
    p = torch.cat(probs)
    ent = -(p * torch.log(p + 1e-6)).sum(1).mean()
    mean = p.mean(0)
    div = -(mean * torch.log(mean + 1e-6)).sum()
    return {**collapse(p.argmax(1), p.shape[1]), "mean_confidence": round(float(p.max(1).values.mean()), 4),
            "im_score": round(float(div - ent), 4)}


def collapse(preds: torch.Tensor, num_classes: int, max_share: float | None = None) -> dict:
    """Whether target predictions fell onto few classes: the largest class's share of the
    predictions (collapsed when above ``max_share``, default 2.5x a uniform share, at most 0.9)."""
    counts = torch.bincount(preds.cpu(), minlength=num_classes).float()
    share = counts / counts.sum().clamp_min(1)
    limit = max_share if max_share is not None else min(0.9, 2.5 / num_classes)
    return {"largest_class_share": round(float(share.max()), 3), "classes_predicted": int((counts > 0).sum()),
            "collapsed": bool(share.max() > limit), "limit": round(limit, 3)}


@torch.no_grad()
def reestimate_batchnorm(net, dataset, device, batch_size: int = 32) -> int:
    """Test-time BatchNorm re-estimation (AdaBN): recompute every BatchNorm's running statistics
    on ``dataset`` (the target clips) with the weights unchanged. Returns how many layers."""
    from edgevt.adapt.data import collate

    bns = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return 0
    was = net.training
    net.eval()
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over all batches
        m.train()
    for i in range(0, len(dataset), batch_size):
        x, _ = collate(dataset, range(i, min(i + batch_size, len(dataset))), device)
        net(x)
    for m, mom in zip(bns, saved):
        m.momentum = mom
    net.train(was)  # back to the caller's mode (BatchNorm layers too)
    return len(bns)
