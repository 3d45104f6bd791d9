"""Supervised fine-tuning: labeled clips, cross-entropy with optional label smoothing."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from edgevt.adapt.data import collate
from edgevt.adapt.features import ClipNet, set_train_mode
from edgevt.adapt.trainer import DistInfo, Task, shard_batches


@torch.no_grad()
def predict(net: ClipNet, dataset, device, batch_size: int = 64, clip_fn=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(predicted class, true label) for every clip; ``clip_fn`` transforms input batches
    (time reversal, single frame) for sanity checks."""
    was_training = net.training
    net.eval()
    preds, labels = [], []
    for i in range(0, len(dataset), batch_size):
        x, y = collate(dataset, range(i, min(i + batch_size, len(dataset))), device)
        if clip_fn is not None:
            x = clip_fn(x)
        preds.append(net(x).argmax(1).cpu())
        labels.append(y.cpu())
    net.train(was_training)
    return torch.cat(preds), torch.cat(labels)


def accuracy(net: ClipNet, dataset, device) -> float:
    p, y = predict(net, dataset, device)
    return float((p == y).float().mean())


class FinetuneTask(Task):
    def __init__(self, net: ClipNet, train_set, cfg, info: DistInfo, frozen_stages: int | None, freeze_bn: bool,
                 val_set=None):
        super().__init__()
        self.net = net
        self.train_set = train_set
        self.val_set = val_set
        self.cfg = cfg
        self.info = info
        self.frozen_stages = frozen_stages
        self.freeze_bn = freeze_bn

    def epoch_batches(self, epoch: int) -> list:
        self.train_set.set_epoch(epoch)
        return shard_batches(len(self.train_set), self.cfg.batch_size, self.cfg.seed, epoch, self.info)

    def train_mode(self) -> None:
        self.train()
        set_train_mode(self.net.model, self.frozen_stages, self.freeze_bn)

    def forward(self, batch, progress: float):
        x, y = collate(self.train_set, batch, self.info.device)
        logits = self.net(x)
        loss = F.cross_entropy(logits, y, label_smoothing=self.cfg.label_smoothing)
        acc = (logits.argmax(1) == y).float().mean()
        return loss, {"loss": loss.item(), "acc": acc.item()}

    def validate(self) -> dict:
        if self.val_set is None:
            return {}
        return {"val_acc": accuracy(self.net, self.val_set, self.info.device)}
