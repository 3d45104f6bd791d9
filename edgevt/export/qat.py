"""Quantization-aware fine-tuning: weights for the INT8 graph, tuned so that their INT8 rounding lands
on the FP32 model's logits (``edgevt export --qat-steps N``).

Post-training INT8 rounds every weight and activation of the given model; on the 224x224 TSM Lite0 the
rounding moved its logits 3.8% (bias-corrected) and changed 3% of its decisions. Here a copy of the
model is fine-tuned with that rounding simulated in the forward pass (fake quantization, with
straight-through gradients: ``torch.fake_quantize_per_*_affine``) to reproduce the FP32 model's logits
on the calibration clips -- distillation, so no labels are needed, and the clips are the target-domain
ones INT8 is calibrated on (each also mirrored left-right: the teacher's logits on a mirrored clip are as
good a target as on the clip). The loss is the mean squared difference of the logits. The bundle's FP32
graph stays the model as given; the INT8 graphs are exported from the tuned copy, then calibrated,
bias-corrected and gated as usual -- against the original FP32 logits.

What the forward pass simulates (the two flavours of ``edgevt.export.precision``):

- weights: each convolution's weight as the device runs it, with the BatchNorm that follows it folded
  in (its eval statistics, as ``quant_pre_process`` folds them), rounded per output channel,
  symmetric, to [-127, 127] (``bias_correction.quantized_weight``); fully connected layers are not
  rounded (the cpu flavour keeps the classifier in float);
- activations: each convolution's input, and each BatchNorm output that no activation follows (the
  projections a residual adds), rounded per tensor to 256 levels over its range on the calibration
  clips (``cpu``: uint8 with zero exact, ``tensorrt``: symmetric int8). The ranges are the mean of each
  clip's minimum and maximum in the FP32 model (as torch's moving-average observers estimate them);
  the export calibrates its own ranges afterwards.

Only the convolutions' and linear layers' weights and biases are trained; BatchNorm stays frozen
(its statistics are what the fold uses), dropout off.
"""
from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from edgevt.errors import EdgevtError

CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.SiLU, nn.Hardswish, nn.GELU, nn.Sigmoid)
QAT_FLAVOURS = ("cpu", "tensorrt")


@dataclass
class QATConfig:
    steps: int = 200  # optimizer steps
    lr: float = 1e-5  # Adam: warm-up over the first tenth of the steps, then cosine-decayed to 0
    batch: int = 4  # clips per step
    seed: int = 0

    def validate(self) -> None:
        if self.steps < 1:
            raise EdgevtError(f"--qat-steps must be >= 1, got {self.steps}")
        if not self.lr > 0:
            raise EdgevtError(f"--qat-lr must be > 0, got {self.lr}")
        if self.batch < 1:
            raise EdgevtError(f"--qat-batch must be >= 1, got {self.batch}")


# -- where the device rounds ----------------------------------------------------------------------
def conv_batchnorm_pairs(net: nn.Module, example: torch.Tensor) -> tuple[dict, set]:
    """One forward pass: {conv: the BatchNorm applied to its output}, and the BatchNorms whose output
    goes straight into an activation module (those need no rounding of their own: the next
    convolution rounds the activation's output)."""
    made: dict[int, tuple[torch.Tensor, nn.Module]] = {}  # id(output) -> (output, its conv)
    bn_out: dict[int, tuple[torch.Tensor, nn.Module]] = {}
    pairs, activated = {}, set()

    def conv_out(m, _inp, out):
        made[id(out)] = (out, m)

    def bn_in(m, inp):
        hit = made.get(id(inp[0]))
        if hit is not None and hit[0] is inp[0]:
            pairs.setdefault(hit[1], m)

    def bn_outh(m, _inp, out):
        bn_out[id(out)] = (out, m)

    def act_in(_m, inp):
        hit = bn_out.get(id(inp[0]))
        if hit is not None and hit[0] is inp[0]:
            activated.add(hit[1])

    hooks = []
    for m in net.modules():
        if isinstance(m, CONVS):
            hooks.append(m.register_forward_hook(conv_out))
        elif isinstance(m, BATCHNORMS):
            hooks += [m.register_forward_pre_hook(bn_in), m.register_forward_hook(bn_outh)]
        elif isinstance(m, ACTIVATIONS):
            hooks.append(m.register_forward_pre_hook(act_in))
    try:
        with torch.no_grad():
            net(example)
    finally:
        for h in hooks:
            h.remove()
    return pairs, activated


def _bn_scale(bn: nn.Module | None, channels: int) -> torch.Tensor:
    """Per output channel, the factor eval-mode BatchNorm multiplies a conv's output by."""
    if bn is None:
        return torch.ones(channels)
    gamma = bn.weight.detach() if bn.weight is not None else torch.ones(channels)
    return gamma / torch.sqrt(bn.running_var + bn.eps)


class FoldedWeightQuant(nn.Module):
    """Parametrization of a conv's weight, trained in the folded domain: the stored tensor is the
    BatchNorm-folded weight (``right_inverse``), which the forward pass rounds per output channel to
    symmetric int8 and unfolds again (the BatchNorm still multiplies by the same factor afterwards).
    Training the folded weight keeps each step in proportion to the rounding step: a BatchNorm with a
    tiny variance multiplies its conv's raw weight by hundreds."""

    def __init__(self, fold: torch.Tensor):
        super().__init__()
        self.register_buffer("fold", fold.detach().clone())

    def _shape(self, w: torch.Tensor) -> tuple:
        return (-1,) + (1,) * (w.dim() - 1)

    def _safe(self) -> torch.Tensor:
        return torch.where(self.fold != 0, self.fold, torch.ones_like(self.fold))

    def right_inverse(self, w: torch.Tensor) -> torch.Tensor:
        return w * self._safe().view(self._shape(w))

    def forward(self, folded: torch.Tensor) -> torch.Tensor:
        scale = folded.detach().abs().flatten(1).amax(dim=1) / 127.0
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        q = torch.fake_quantize_per_channel_affine(folded, scale, torch.zeros_like(scale, dtype=torch.int32), 0,
                                                   -127, 127)
        return q / self._safe().view(self._shape(folded))


def activation_grid(lo: float, hi: float, flavour: str) -> tuple[float, int, int, int]:
    """(scale, zero point, qmin, qmax) of a tensor with range [lo, hi] in a flavour's activations."""
    if flavour == "cpu":  # uint8, asymmetric, 0 exactly representable
        lo, hi = min(lo, 0.0), max(hi, 0.0)
        scale = (hi - lo) / 255.0 or 1.0
        return scale, int(np.clip(round(-lo / scale), 0, 255)), 0, 255
    if flavour == "tensorrt":  # int8, symmetric
        a = max(abs(lo), abs(hi))
        return (a / 127.0) or 1.0, 0, -128, 127
    raise EdgevtError(f"unknown INT8 flavour {flavour!r} for quantization-aware fine-tuning; choose from "
                      f"{', '.join(QAT_FLAVOURS)}")


def _fake_quant(x: torch.Tensor, grid: tuple) -> torch.Tensor:
    scale, zp, qmin, qmax = grid
    return torch.fake_quantize_per_tensor_affine(x, scale, zp, qmin, qmax)


def observe_ranges(net: nn.Module, taps: dict, batches) -> dict:
    """Mean over ``batches`` of each tap's minimum and maximum. taps: {name: (module, "in"|"out")}."""
    sums: dict[str, np.ndarray] = {}
    count = 0
    hooks = []

    def recorder(name, where):
        def rec(_m, inp, out=None):
            t = (inp[0] if where == "in" else out).detach()
            v = np.array([float(t.min()), float(t.max())])
            sums[name] = sums.get(name, 0) + v
        return rec

    for name, (m, where) in taps.items():
        hooks.append(m.register_forward_pre_hook(recorder(name, where)) if where == "in"
                     else m.register_forward_hook(recorder(name, where)))
    try:
        with torch.no_grad():
            for x in batches:
                net(x)
                count += 1
    finally:
        for h in hooks:
            h.remove()
    return {k: tuple(v / max(count, 1)) for k, v in sums.items()}


def activation_hooks(net: nn.Module, taps: dict, ranges: dict, flavour: str) -> list:
    """Hooks on ``net`` that round each tap's tensor in the flavour's grid over its range. Taps are
    found in ``net`` by name ({"conv name:in" | "bn name:out": ...}), so they apply to a copy too.
    Returns the hooks (``h.remove()`` each to undo)."""
    mods = dict(net.named_modules())
    hooks = []
    for name, (_m, where) in taps.items():
        if name not in ranges:  # never ran on these inputs
            continue
        m = mods[name.rsplit(":", 1)[0]]
        grid = activation_grid(*ranges[name], flavour)
        if where == "in":
            hooks.append(m.register_forward_pre_hook(lambda _m, inp, g=grid: (_fake_quant(inp[0], g), *inp[1:])))
        else:
            hooks.append(m.register_forward_hook(lambda _m, _i, out, g=grid: _fake_quant(out, g)))
    return hooks


def simulated_logit_error(net: nn.Module, ref: torch.Tensor, x: torch.Tensor, taps: dict, ranges: dict,
                          flavour: str, chunk: int = 4) -> float:
    """Relative L2 distance of ``net``'s logits on ``x``, its activations rounded as the device would
    (its weights as they are), from ``ref``."""
    hooks = activation_hooks(net, taps, ranges, flavour)
    try:
        with torch.no_grad():
            got = torch.cat([net(x[i:i + chunk]) for i in range(0, len(x), chunk)])
    finally:
        for h in hooks:
            h.remove()
    return float((got - ref).norm() / ref.norm().clamp_min(1e-12))


class _Simulated:
    """``net`` with the flavour's rounding simulated: weight parametrizations and activation hooks.
    ``remove()`` leaves the plain modules with their tuned float weights."""

    def __init__(self, net: nn.Module, pairs: dict, taps: dict, ranges: dict, flavour: str):
        self.net, self.hooks, self.convs = net, [], []
        for m in net.modules():
            if isinstance(m, CONVS):
                parametrize.register_parametrization(m, "weight", FoldedWeightQuant(
                    _bn_scale(pairs.get(m), m.weight.shape[0])))
                self.convs.append(m)
        self.hooks = activation_hooks(net, taps, ranges, flavour)

    def remove(self) -> None:
        for h in self.hooks:
            h.remove()
        for m in self.convs:  # the tuned weight as rounded (on the int8 grid the export rounds it to again)
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)


def rounding_taps(net: nn.Module, activated: set) -> dict:
    """The tensors the device rounds: every conv's input, every BatchNorm output no activation takes."""
    names = {m: n for n, m in net.named_modules()}
    taps = {}
    for m in net.modules():
        if isinstance(m, CONVS):
            taps[f"{names[m]}:in"] = (m, "in")
        elif isinstance(m, BATCHNORMS) and m not in activated:
            taps[f"{names[m]}:out"] = (m, "out")
    return taps


def _mirrored(x: torch.Tensor, float_input: bool) -> torch.Tensor:
    """Clips mirrored left-right: uint8 [..., H, W, 3] (W next to last) or float [..., 3, H, W] (W last)."""
    return x.flip(-1 if float_input else -2)


def start_tuning(deploy: nn.Module, clips: np.ndarray, flavour: str, config, what: str) -> tuple:
    """What tuning a copy of ``deploy`` for ``flavour``'s INT8 starts from (``finetune_for_int8``,
    ``adaround.adaround_for_int8``): the settings, flavour and clips checked (one-line errors naming
    ``what``), then (the teacher: ``deploy`` in eval mode, the student: its copy, the clips as a tensor,
    a generator seeded with ``config.seed``)."""
    config.validate()
    if flavour not in QAT_FLAVOURS:
        activation_grid(0.0, 1.0, flavour)  # the one-line error
    if len(clips) < 1:
        raise EdgevtError(f"{what} needs calibration clips")
    return (deploy.eval(), copy.deepcopy(deploy).eval(), torch.from_numpy(np.ascontiguousarray(clips)),
            torch.Generator().manual_seed(config.seed))


def finetune_for_int8(deploy: nn.Module, clips: np.ndarray, flavour: str, config: QATConfig | None = None, *,
                      float_input: bool = False, log: Callable[[str], None] | None = None) -> tuple[nn.Module, dict]:
    """A copy of ``deploy`` (the module the window graph is exported from: uint8 clips in, logits out)
    whose weights are tuned for ``flavour``'s INT8 rounding on ``clips`` (what the window graph takes).
    Returns (the tuned copy, plain float modules in eval mode; a record for the manifest)."""
    config = config or QATConfig()
    log = log or (lambda msg: None)
    t0 = time.perf_counter()
    teacher, student, x, g = start_tuning(deploy, clips, flavour, config, "quantization-aware fine-tuning")
    pool = torch.cat([x, _mirrored(x, float_input)])  # every clip as filmed and mirrored
    chunk = max(1, config.batch)
    with torch.no_grad():
        targets = torch.cat([teacher(pool[i:i + chunk]) for i in range(0, len(pool), chunk)])
    pairs, activated = conv_batchnorm_pairs(student, pool[:1])
    if not any(isinstance(m, CONVS) for m in student.modules()):
        raise EdgevtError("quantization-aware fine-tuning: this model has no convolutions to tune")
    taps = rounding_taps(student, activated)
    ranges = observe_ranges(student, taps, (pool[i:i + chunk] for i in range(0, len(x), chunk)))
    sim = _Simulated(student, pairs, taps, ranges, flavour)
    params = [p for m in student.modules() if isinstance(m, CONVS + (nn.Linear,))
              for p in m.parameters(recurse=True) if p.dtype.is_floating_point]
    for p in student.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=config.lr)
    # linear warm-up over the first tenth, then cosine to 0: Adam's first steps move every weight by
    # about lr at once, in one direction, which threw the simulated logits further off before they came back
    warm = max(1, config.steps // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: (k + 1) / warm if k < warm else
                                              0.5 * (1 + np.cos(np.pi * (k - warm) / max(1, config.steps - warm))))

    def simulated_error() -> float:  # relative L2 of the simulated INT8 logits against FP32's, all samples
        with torch.no_grad():
            got = torch.cat([student(pool[i:i + chunk]) for i in range(0, len(pool), chunk)])
        return float((got - targets).norm() / targets.norm().clamp_min(1e-12))

    before = simulated_error()
    log(f"quantization-aware fine-tuning ({flavour}): {len(params)} tensors, {config.steps} steps of "
        f"{config.batch} clips from {len(pool)} ({len(x)} calibration clips, each also mirrored); simulated INT8 "
        f"logits {100 * before:.2f}% off FP32's")
    order = torch.randperm(len(pool), generator=g)
    at, losses = 0, []
    try:
        for step in range(config.steps):
            if at + config.batch > len(pool):
                order, at = torch.randperm(len(pool), generator=g), 0
            idx = order[at:at + config.batch]
            at += config.batch
            loss = torch.nn.functional.mse_loss(student(pool[idx]), targets[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            if (step + 1) % max(1, config.steps // 4) == 0 or step + 1 == config.steps:
                log(f"  step {step + 1}/{config.steps}: loss {np.mean(losses[-max(1, config.steps // 4):]):.4g}")
        after = simulated_error()
    finally:
        sim.remove()
    for p in student.parameters():
        p.requires_grad_(False)
    log(f"quantization-aware fine-tuning ({flavour}): simulated INT8 logits {100 * after:.2f}% off FP32's "
        f"(from {100 * before:.2f}%) in {time.perf_counter() - t0:.0f} s")
    record = {**asdict(config), "flavour": flavour, "clips": len(x), "samples": len(pool), "tensors": len(params),
              "rounded_activations": len(ranges), "folded_batchnorms": len(pairs),
              "simulated_logit_error_before": round(before, 6), "simulated_logit_error_after": round(after, 6),
              "seconds": round(time.perf_counter() - t0, 1)}
    return student.eval(), record
