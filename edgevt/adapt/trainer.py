"""The one training loop every strategy runs through.

A strategy is a ``Task``: an ``nn.Module`` whose ``forward(batch, progress)`` returns the loss and
a dict of numbers to log, plus the list of batches of an epoch (computed from the seed and the
epoch alone, so a resumed run sees the same batches in the same order). The loop owns the
optimiser, the learning-rate schedule (a pure function of the step), AMP on CUDA, DDP, rank-0
progress bars and metrics, checkpoints every N steps and at each epoch end, ``--resume`` and early
stopping on a validation split.
"""
from __future__ import annotations

import abc

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data.distributed import DistributedSampler

from edgevt.adapt.config import AdaptConfig
from edgevt.errors import EdgevtError
from edgevt.fileio import atomic_write_text
from edgevt.models.checkpoint import load_checkpoint, save_checkpoint


# -- distributed ---------------------------------------------------------------------------------
@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str = "auto") -> DistInfo:
    """Join the process group when started by torchrun (gloo on CPU, nccl on CUDA)."""
    want_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return DistInfo(device=torch.device("cuda" if want_cuda else "cpu"))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if want_cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    if want_cuda:
        local = int(os.environ.get("LOCAL_RANK", rank))
        torch.cuda.set_device(local)
        return DistInfo(rank, world, torch.device("cuda", local))
    return DistInfo(rank, world, torch.device("cpu"))


def shard_batches(n: int, batch_size: int, seed: int, epoch: int, info: DistInfo, shuffle: bool = True,
                  drop_last: bool = False) -> list[list[int]]:
    """This rank's batches of an epoch: DistributedSampler's order (a function of seed and epoch)."""
    sampler = DistributedSampler(range(n), num_replicas=info.world, rank=info.rank, shuffle=shuffle, seed=seed)
    sampler.set_epoch(epoch)
    order = list(sampler)
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if drop_last and len(batches) > 1 and len(batches[-1]) < batch_size:
        batches.pop()
    return batches


def all_reduce_mean(values: dict, info: DistInfo) -> dict:
    if info.world == 1 or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    dist.all_reduce(t)
    return {k: float(v) / info.world for k, v in zip(keys, t)}


def sync_grads(params: list[nn.Parameter], info: DistInfo) -> None:
    """Average gradients over ranks for tasks that set ``.grad`` themselves (first-order meta
    updates bypass DDP's autograd hooks)."""
    if info.world == 1:
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad)
        p.grad /= info.world


# -- schedule ------------------------------------------------------------------------------------
def lr_factor(schedule: str, step: int, total: int, warmup: float) -> float:
    """Multiplier of the base learning rate at ``step`` of ``total``."""
    p = step / max(1, total)
    if schedule == "dann":  # Ganin & Lempitsky: lr0 / (1 + 10 p)^0.75
        return (1 + 10 * p) ** -0.75
    if schedule == "constant":
        return 1.0
    warm = int(round(warmup * total))
    if step < warm:
        return (step + 1) / warm
    return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


# -- the task protocol ---------------------------------------------------------------------------
class Task(nn.Module, metaclass=abc.ABCMeta):
    """A strategy. Subclasses define ``epoch_batches``, ``forward`` and optionally ``validate``."""

    manual_grads = False  # True: forward() fills .grad itself and returns loss=None

    @abc.abstractmethod
    def epoch_batches(self, epoch: int) -> list:
        """The batches of one epoch, in order (resume restarts mid-list)."""

    @abc.abstractmethod
    def forward(self, batch, progress: float) -> tuple[torch.Tensor | None, dict]:
        """Loss and logged metrics for one batch; ``progress`` runs from 0 to 1 over the run."""

    def train_mode(self) -> None:
        self.train()

    def validate(self) -> dict:
        """Metrics on the validation split; ``val_acc`` drives early stopping."""
        return {}

    def extra_state(self) -> dict:
        """State dicts of modules other than the model (discriminators) for checkpoints."""
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass


# -- the loop --------------------------------------------------------------------------------------
@dataclass
class TrainOutcome:
    history: list[dict]
    steps: int
    stopped_early: bool
    seconds: float


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def train(task: Task, model: nn.Module, spec, cfg: AdaptConfig, param_groups: list[dict], info: DistInfo,
          out: Path, ckpt_meta: dict, progress=None, on_step=None) -> TrainOutcome:
    """Run ``cfg.epochs`` epochs of ``task``; checkpoint to ``out/last.pt``; returns the history.

    ``on_step(step)`` is called after every optimiser step (tests use it to kill a run mid-way).
    """
    t0 = time.perf_counter()
    for g in param_groups:
        g["base_lr"] = g["lr"]
    opt = torch.optim.AdamW(param_groups, weight_decay=cfg.weight_decay)
    use_amp = cfg.amp and info.device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    trainable = [p for g in param_groups for p in g["params"]]
    runner: nn.Module = task
    if info.world > 1 and not task.manual_grads:
        runner = nn.parallel.DistributedDataParallel(task, device_ids=[info.device.index] if info.device.type == "cuda" else None)

    steps_per_epoch = len(task.epoch_batches(0))
    total = steps_per_epoch * cfg.epochs
    epoch, batch_pos, step = 0, 0, 0
    sums: dict[str, float] = {}  # running sums of this epoch's logs (part of the resumable state)
    count = 0
    history: list[dict] = []
    best = {"val_acc": -1.0, "epoch": -1, "state": None}
    last = out / "last.pt"
    if cfg.resume:
        if not last.exists():
            raise EdgevtError(f"{last}: nothing to resume; run without --resume first (same --out)")
        ckpt = load_checkpoint(last)
        if ckpt["arch"] != model.arch:
            raise EdgevtError(f"{last}: checkpoint is for {ckpt['arch']}, not --model {model.arch}; "
                              f"pass --model {ckpt['arch']} or a fresh --out")
        state = ckpt["train_state"]
        if state.get("strategy") != cfg.strategy:
            raise EdgevtError(f"{last}: was trained with --strategy {state.get('strategy')}, not {cfg.strategy}")
        model.load_state_dict(ckpt["state_dict"])
        task.load_extra_state(state["extra"])
        opt.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"]) if use_amp and state.get("scaler") else None
        epoch, batch_pos, step = state["epoch"], state["batch"], state["step"]
        sums, count = dict(state["epoch_sums"]), state["epoch_count"]
        history = list(state["history"])
        best = {"val_acc": state["best_val_acc"], "epoch": state["best_epoch"], "state": state.get("best_state")}
        _set_rng_state(state["rng"])

    def save_state(epoch_: int, batch_: int) -> None:
        if not info.main:
            return
        train_state = {"strategy": cfg.strategy, "epoch": epoch_, "batch": batch_, "step": step,
                       "optimizer": opt.state_dict(), "scaler": scaler.state_dict() if use_amp else None,
                       "extra": task.extra_state(), "history": history, "rng": _rng_state(),
                       "epoch_sums": sums if batch_ else {}, "epoch_count": count if batch_ else 0,
                       "best_val_acc": best["val_acc"], "best_epoch": best["epoch"], "best_state": best["state"]}
        save_checkpoint(last, model, spec, train_state=train_state, **ckpt_meta)

    bar = None
    if progress is not None and info.main:
        bar = progress.add_task(f"{cfg.strategy}", total=total, completed=step, info="")
    stopped_early = False
    while epoch < cfg.epochs:
        batches = task.epoch_batches(epoch)
        task.train_mode()
        for b in range(batch_pos, len(batches)):
            for g in opt.param_groups:
                g["lr"] = g["base_lr"] * lr_factor(cfg.schedule, step, total, cfg.warmup)
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cuda", enabled=use_amp):
                loss, logs = runner(batches[b], step / max(1, total))
            if loss is not None:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            else:  # the task filled .grad itself, unscaled
                sync_grads(trainable, info)
                opt.step()
            step += 1
            count += 1
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            if bar is not None:
                progress.update(bar, advance=1, info=" ".join(f"{k} {v:.3g}" for k, v in logs.items()))
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                save_state(epoch, b + 1)
            if on_step is not None:
                on_step(step)
        record = {"epoch": epoch + 1, "step": step, "lr": opt.param_groups[0]["lr"]}
        record.update(all_reduce_mean({k: v / max(1, count) for k, v in sums.items()}, info))
        val = task.validate()
        record.update(val)
        record["seconds"] = round(time.perf_counter() - t0, 2)
        history.append(record)
        epoch, batch_pos, sums, count = epoch + 1, 0, {}, 0
        if "val_acc" in val and cfg.patience:
            if val["val_acc"] > best["val_acc"]:
                best = {"val_acc": val["val_acc"], "epoch": epoch,
                        "state": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
            elif epoch - best["epoch"] >= cfg.patience:
                stopped_early = True
        if info.main:
            atomic_write_text(out / "metrics.json", json.dumps(history, indent=1))
        if stopped_early:
            break
        save_state(epoch, 0)
    if best["state"] is not None:  # early stopping keeps the best validation epoch's weights
        model.load_state_dict(best["state"])
    if bar is not None:
        progress.remove_task(bar)
    return TrainOutcome(history, step, stopped_early, time.perf_counter() - t0)


__all__ = ["DistInfo", "Task", "TrainOutcome", "all_reduce_mean", "lr_factor",
           "setup_distributed", "shard_batches", "sync_grads", "train"]
