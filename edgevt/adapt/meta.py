"""Episodic meta-learning (MAML, first-order MAML, Reptile) and few-shot adaptation.

An episode is an N-way K-shot task: N classes drawn from one labeled domain (tasks come from
every domain given), K support and Q query clips per class. The inner loop adapts the trainable
parameters with plain gradient steps through ``torch.func.functional_call``; the outer update
makes that adaptation work well on the query clips:

- ``maml``: differentiates through the inner loop (second order; fine for heads and small models)
- ``fomaml``: uses the query gradient at the adapted parameters (first order; large models)
- ``reptile``: moves the initialisation towards the adapted parameters (first order)

Episodes use the model's own classifier rows for the episode's classes (logits restricted to
them), so the meta-learned initialisation is an ordinary checkpoint for the same label set; the
held-out tasks are episodes from another domain. ``fewshot_adapt`` adapts such a checkpoint with K
labeled target clips per class, by the same inner loop or by class prototypes (nearest centroid,
written back as the linear classifier).
"""
from __future__ import annotations

import numpy as np
import torch
from torch.func import functional_call
from torch.nn import functional as F

from edgevt.adapt.data import collate
from edgevt.adapt.features import ClipNet, set_train_mode
from edgevt.adapt.trainer import DistInfo, Task
from edgevt.errors import EdgevtError


class EpisodeSampler:
    """N-way (K+Q)-shot episodes from labeled datasets, a pure function of (seed, episode number)."""

    def __init__(self, datasets: list, names: list[str], ways: int, shots: int, queries: int, seed: int):
        self.datasets, self.ways, self.shots, self.queries, self.seed = datasets, ways, shots, queries, seed
        self.pools = []
        for ds, name in zip(datasets, names):
            labels = np.asarray(ds.labels)
            by_class = {int(c): np.flatnonzero(labels == c) for c in np.unique(labels) if c >= 0}
            usable = [c for c, idx in by_class.items() if len(idx) >= shots + queries]
            if len(usable) < ways:
                counts = sorted(len(v) for v in by_class.values())
                raise EdgevtError(
                    f"{name}: {len(usable)} classes have >= {shots + queries} clips (--shots {shots} + --queries "
                    f"{queries}) but --ways {ways} needs {ways} such classes (clips per class: min {counts[0] if counts else 0}, "
                    f"{len(by_class)} classes); lower --ways/--shots/--queries or add clips")
            self.pools.append({c: by_class[c] for c in usable})

    def episode(self, number: int) -> tuple[int, list[int], list[int], list[int], list[int]]:
        """(domain, classes, support indices, query indices, per-query class) of episode ``number``."""
        rng = np.random.default_rng((self.seed, 7, number))
        d = int(rng.integers(len(self.pools)))
        pool = self.pools[d]
        classes = sorted(int(c) for c in rng.choice(sorted(pool), self.ways, replace=False))
        support, query = [], []
        for c in classes:
            pick = rng.choice(pool[c], self.shots + self.queries, replace=False)
            support += pick[:self.shots].tolist()
            query += pick[self.shots:].tolist()
        return d, classes, support, query


def episode_loss(net: ClipNet, params: dict, x: torch.Tensor, y: torch.Tensor, classes: list[int]) -> torch.Tensor:
    """Cross-entropy over the episode's classes only (labels ``y`` are the real class indices)."""
    logits = functional_call(net, params, (x,))[:, classes]
    remap = {c: i for i, c in enumerate(classes)}
    target = torch.tensor([remap[int(v)] for v in y], device=logits.device)
    return F.cross_entropy(logits, target)


def inner_adapt(net: ClipNet, params: dict, x, y, classes, steps: int, lr: float, create_graph: bool) -> dict:
    """``steps`` gradient steps on the support set; differentiable when ``create_graph``."""
    for _ in range(steps):
        loss = episode_loss(net, params, x, y, classes)
        grads = torch.autograd.grad(loss, list(params.values()), create_graph=create_graph)
        params = {n: p - lr * g for (n, p), g in zip(params.items(), grads)}
    return params


def trainable_params(net: ClipNet) -> dict:
    return {n: p for n, p in net.named_parameters() if p.requires_grad}


class MetaTask(Task):
    manual_grads = True

    def __init__(self, net: ClipNet, sampler: EpisodeSampler, cfg, info: DistInfo, frozen_stages, freeze_bn: bool):
        super().__init__()
        self.net, self.sampler, self.cfg, self.info = net, sampler, cfg, info
        self.frozen_stages, self.freeze_bn = frozen_stages, freeze_bn

    def epoch_batches(self, epoch: int) -> list:
        # one step = meta_batch episodes; ranks take disjoint episodes of the same step
        per_step = self.cfg.meta_batch * self.info.world
        steps = max(1, self.cfg.episodes_per_epoch // self.cfg.meta_batch)
        first = epoch * steps * per_step
        return [[first + s * per_step + self.info.rank * self.cfg.meta_batch + k for k in range(self.cfg.meta_batch)]
                for s in range(steps)]

    def train_mode(self) -> None:
        self.train()
        set_train_mode(self.net.model, self.frozen_stages, self.freeze_bn)

    def forward(self, batch, progress: float):
        params = trainable_params(self.net)
        total = {n: torch.zeros_like(p) for n, p in params.items()}
        losses, accs = [], []
        for number in batch:
            d, classes, sup, qry = self.sampler.episode(number)
            ds = self.sampler.datasets[d]
            xs, ys = collate(ds, sup, self.info.device)
            xq, yq = collate(ds, qry, self.info.device)
            method = self.cfg.strategy
            if method == "reptile":
                x, y = torch.cat([xs, xq]), torch.cat([ys, yq])
                adapted = inner_adapt(self.net, params, x, y, classes, self.cfg.inner_steps, self.cfg.inner_lr, False)
                for n in params:
                    total[n] += (params[n] - adapted[n]).detach()  # Reptile: grad = theta - phi
                with torch.no_grad():
                    q_logits = functional_call(self.net, adapted, (xq,))[:, classes]
                    loss = episode_loss(self.net, adapted, xq, yq, classes)
            else:
                second = method == "maml"
                start = params if second else {n: p.detach().requires_grad_() for n, p in params.items()}
                adapted = inner_adapt(self.net, start, xs, ys, classes, self.cfg.inner_steps, self.cfg.inner_lr, second)
                loss = episode_loss(self.net, adapted, xq, yq, classes)
                wrt = list(params.values()) if second else list(adapted.values())
                grads = torch.autograd.grad(loss, wrt, allow_unused=True)
                for n, g in zip(params, grads):
                    if g is not None:
                        total[n] += g.detach()
                with torch.no_grad():
                    q_logits = functional_call(self.net, adapted, (xq,))[:, classes]
            remap = torch.tensor(classes, device=yq.device)
            accs.append((remap[q_logits.argmax(1)] == yq).float().mean().item())
            losses.append(loss.item())
        for n, p in params.items():
            p.grad = total[n] / len(batch)
        return None, {"loss": float(np.mean(losses)), "acc": float(np.mean(accs))}


# -- fast adaptation and evaluation on held-out tasks ------------------------------------------------
@torch.no_grad()
def prototypes(net: ClipNet, x: torch.Tensor, y: torch.Tensor, classes: list[int]) -> torch.Tensor:
    feats = net.features(x)
    return torch.stack([feats[y == c].mean(0) for c in classes])


def fewshot_adapt(net: ClipNet, x: torch.Tensor, y: torch.Tensor, classes: list[int], method: str, steps: int,
                  lr: float) -> None:
    """Adapt ``net`` in place to the labeled support clips (x, y) of ``classes``."""
    if method == "prototype":
        was = net.training
        net.eval()
        protos = prototypes(net, x, y, classes)
        net.train(was)
        fc = net.model.fc
        with torch.no_grad():  # nearest centroid as a linear layer: 2 mu.f - |mu|^2
            for i, c in enumerate(classes):
                fc.weight[c] = 2 * protos[i]
                fc.bias[c] = -protos[i].pow(2).sum()
        return
    params = {n: p.detach().requires_grad_() for n, p in trainable_params(net).items()}
    adapted = inner_adapt(net, params, x, y, classes, steps, lr, create_graph=False)
    with torch.no_grad():
        for n, p in net.named_parameters():
            if n in adapted:
                p.copy_(adapted[n])


def evaluate_episodes(net: ClipNet, dataset, ways: int, shots: int, queries: int, episodes: int, method: str,
                      steps: int, lr: float, seed: int, device, name: str = "target") -> dict:
    """Mean query accuracy (and 95% interval) over held-out N-way K-shot episodes from ``dataset``;
    the network's weights are restored after each episode."""
    sampler = EpisodeSampler([dataset], [name], ways, shots, queries, seed + 10_000)
    original = {k: v.detach().clone() for k, v in net.state_dict().items()}
    net.eval()  # deterministic adaptation: no dropout, BatchNorm statistics fixed
    accs = []
    for e in range(episodes):
        _, classes, sup, qry = sampler.episode(e)
        xs, ys = collate(dataset, sup, device)
        xq, yq = collate(dataset, qry, device)
        with torch.enable_grad():
            fewshot_adapt(net, xs, ys, classes, method, steps, lr)
        with torch.no_grad():
            logits = net(xq)[:, classes]
        pred = torch.tensor(classes, device=yq.device)[logits.argmax(1)]
        accs.append((pred == yq).float().mean().item())
        net.load_state_dict(original)
    a = np.array(accs)
    return {"accuracy": float(a.mean()), "ci95": float(1.96 * a.std(ddof=1) / np.sqrt(len(a))) if len(a) > 1 else 0.0,
            "episodes": episodes, "ways": ways, "shots": shots, "method": method}
