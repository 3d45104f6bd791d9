"""Adaptive rounding of the INT8 weights (``edgevt export``'s default for INT8; ``--adaround-steps N``, 0:
off): each convolution's weights rounded up or down, whichever reproduces its FP32 output best, instead of
to the nearest level.

Rounding every weight to its nearest int8 level is the best choice for each weight alone, not for what
the layer computes: the errors of a channel's weights add up over its kernel, and on the 224x224 TSM
Lite0 the nearest rounding of the BatchNorm-folded weights alone (activations left in float) moves the
logits by several percent. AdaRound (Nagel et al. 2020, "Up or Down? Adaptive Rounding for
Post-Training Quantization") learns, per weight, a soft choice h in [0, 1] between the level below and
the level above, to minimise the layer's output error on calibration data, with a regulariser that
drives every h to 0 or 1 by the end; then it rounds by that choice. Here:

- one convolution at a time, in the order the forward pass runs them; its input is what the device
  feeds it -- the earlier convolutions already rounded as chosen and every rounded activation rounded
  in the flavour's grid (``qat.rounding_taps``, ``qat.activation_grid``) -- and its target is the FP32
  model's output of the same convolution ("asymmetric reconstruction", so each layer also absorbs the
  error of the layers before it). All in one forward pass of the copy over the calibration clips at
  once: each convolution is rounded in a pre-hook on the input the pass brings it, and the layers after
  it see its rounded output; the FP32 model's outputs are captured in runs of consecutive layers, at
  most ``TARGET_BYTES`` at a time. (At first it ran two passes from the start per layer: the 224x224
  Lite0's 50 convolutions at 300 steps took 750 s, one pass 526 s, with the same roundings;
  ``benchmarks/results/int8_cpu_round1{6,8}_adaround_s2_intel.md``.) Memory: one pass's activations over
  ``AdaRoundConfig.clips`` clips (about 4 GB at 16 clips of that Lite0) plus the captured outputs;
- in the folded domain the device runs: the weight times the scale of the eval BatchNorm after it,
  per output channel, symmetric int8 with the quantizer's scale ``max|w| / 127`` (``tensorrt``: that
  scale rounded to FP16). Each channel's largest weight keeps its nearest level, so the scale the
  exporter's quantizer computes from the rounded weight is the one chosen here;
- the loss is the output's mean squared error relative to the target's mean square, plus
  ``reg`` x the mean of ``1 - |2h - 1|^beta`` (beta from 20 down to 2 after the first fifth of the
  steps, when the regulariser starts); Adam on the soft choices;
- a layer keeps the adaptive rounding only if it beats the nearest one on its calibration inputs.

Fully connected layers are not rounded (the cpu flavour keeps the classifier in float), nor, for the
tensorrt flavour, the 3-input-channel convolutions it keeps out of INT8. The tuned copy's
weights lie on the int8 grid, so the exporter's quantizer reproduces them exactly; the INT8 graphs are
exported from the copy, calibrated, bias-corrected and gated against the original FP32 graph.
"""
from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from edgevt.errors import EdgevtError
from edgevt.export.bias_correction import quantized_weight
from edgevt.export.qat import (CONVS, _bn_scale, activation_hooks, conv_batchnorm_pairs, observe_ranges,
                               rounding_taps, simulated_logit_error, start_tuning)

ZETA, GAMMA = 1.1, -0.1  # the rectified sigmoid's stretch (the paper's values)
# steps per convolution when INT8 is exported without saying (edgevt export --adaround-steps): on the TSM
# Lite0 it met 97% agreement on 3 of 3 seeds where nearest rounding met it on 1 (README, "AdaRound over
# three seeds"); per flavour about 12 s on the demo's 64x64 TinyCNN, about 9 minutes on a 224x224 Lite0 (2 cores)
DEFAULT_STEPS = 300
TARGET_BYTES = 1 << 30  # FP32 conv outputs held at once (the teacher's, captured in runs of layers up to this)


@dataclass
class AdaRoundConfig:
    steps: int = DEFAULT_STEPS  # Adam steps per convolution
    lr: float = 1e-2
    batch: int = 16  # frames (2D models) or clips per step
    clips: int = 16  # calibration clips whose layer inputs are kept (memory: one layer at a time)
    reg: float = 0.01  # weight of the rounding regulariser
    seed: int = 0

    def validate(self) -> None:
        for name, v in (("--adaround-steps", self.steps), ("--adaround-batch", self.batch),
                        ("--adaround-clips", self.clips)):
            if v < 1:
                raise EdgevtError(f"{name} must be >= 1, got {v}")
        if not self.lr > 0:
            raise EdgevtError(f"--adaround-lr must be > 0, got {self.lr}")
        if not self.reg >= 0:
            raise EdgevtError(f"adaround reg must be >= 0, got {self.reg}")


class _Stop(Exception):
    """Raised by a capture hook: the rest of the forward pass is not needed."""


def conv_order(net: nn.Module, example: torch.Tensor) -> list[nn.Module]:
    """The convolutions in the order one forward pass runs them (each once)."""
    order: list[nn.Module] = []
    hooks = [m.register_forward_pre_hook(lambda m, _i: order.append(m) if m not in order else None)
             for m in net.modules() if isinstance(m, CONVS)]
    try:
        with torch.no_grad():
            net(example)
    finally:
        for h in hooks:
            h.remove()
    return order


def _output_sizes(net: nn.Module, convs: list[nn.Module], example: torch.Tensor) -> dict:
    """Elements of each of ``convs``' outputs per clip of ``example`` (one clip)."""
    sizes: dict = {}

    def size(m, _inp, out):  # a forward hook that returns None leaves the output alone
        sizes.setdefault(m, out.numel())

    hooks = [c.register_forward_hook(size) for c in convs]
    try:
        with torch.no_grad():
            net(example)
    finally:
        for h in hooks:
            h.remove()
    return sizes


def _outputs(net: nn.Module, convs: list[nn.Module], x: torch.Tensor, chunk: int) -> dict:
    """The outputs of ``convs`` (consecutive in forward order) over ``x``, in one chunked pass stopped
    after the last of them."""
    got: dict = {c: [] for c in convs}
    last = convs[-1]

    def keep(m, _inp, out):
        got[m].append(out.detach().clone())
        if m is last:
            raise _Stop

    hooks = [c.register_forward_hook(keep) for c in convs]
    try:
        with torch.no_grad():
            for i in range(0, len(x), chunk):
                try:
                    net(x[i:i + chunk])
                except _Stop:
                    pass
    finally:
        for h in hooks:
            h.remove()
    return {c: torch.cat(v) for c, v in got.items()}


def _groups(sizes: list[int], budget: int) -> list[range]:
    """Consecutive runs of layers whose sizes add up to at most ``budget`` (each run at least one)."""
    runs, start, total = [], 0, 0
    for k, n in enumerate(sizes):
        if k > start and total + n > budget:
            runs.append(range(start, k))
            start, total = k, 0
        total += n
    if sizes:
        runs.append(range(start, len(sizes)))
    return runs


def weight_grid(folded: torch.Tensor, flavour: str) -> torch.Tensor:
    """Per output channel, the int8 step of a folded weight (``bias_correction.quantized_weight``)."""
    scale = folded.abs().flatten(1).amax(dim=1) / 127.0
    if flavour == "tensorrt":
        scale = scale.half().float()
    return torch.where(scale > 0, scale, torch.ones_like(scale))


def _h(v: torch.Tensor) -> torch.Tensor:
    return torch.clamp(torch.sigmoid(v) * (ZETA - GAMMA) + GAMMA, 0, 1)


def round_layer(conv: nn.Module, fold: torch.Tensor, inputs: torch.Tensor, target: torch.Tensor, flavour: str,
                config: AdaRoundConfig, g: torch.Generator) -> dict:
    """Choose the rounding of ``conv``'s folded weight on (inputs, target: its FP32 output without the
    bias, folded); write the rounded weight (unfolded) into ``conv``. Returns the layer's record."""
    w = conv.weight.detach()
    shape = (-1,) + (1,) * (w.dim() - 1)
    fold_v = fold.view(shape)
    safe = torch.where(fold_v != 0, fold_v, torch.ones_like(fold_v))
    wf = w * fold_v
    s = weight_grid(wf, flavour).view(shape)
    ratio = wf / s
    nearest = torch.clamp(torch.round(ratio), -127, 127)
    low = torch.floor(ratio)
    frac = (ratio - low).clamp(0, 1)
    # each channel's largest |w| keeps its nearest level: the scale the exporter recomputes stays s
    peak = ratio.abs().flatten(1).argmax(dim=1)
    fixed = torch.zeros_like(ratio, dtype=torch.bool).flatten(1)
    fixed[torch.arange(len(fixed)), peak] = True
    fixed = fixed.view_as(ratio)
    p = ((frac - GAMMA) / (ZETA - GAMMA)).clamp(1e-4, 1 - 1e-4)
    v = torch.log(p / (1 - p)).requires_grad_(True)  # h(v) = frac: the soft weight starts equal to the float one
    folded_target = target * fold.view((1, -1) + (1,) * (target.dim() - 2))
    power = folded_target.pow(2).mean().clamp_min(1e-20)

    def weight(hard: bool | None) -> torch.Tensor:
        if hard is None:
            q = nearest
        else:
            h = (v >= 0).float() if hard else _h(v)  # h(v) >= 0.5 exactly where v >= 0
            q = torch.where(fixed, nearest, torch.clamp(low + h, -127, 127))
        return q * s  # folded

    def error(wq: torch.Tensor, idx=None) -> torch.Tensor:
        xb = inputs if idx is None else inputs[idx]
        tb = folded_target if idx is None else folded_target[idx]
        return (conv._conv_forward(xb, wq, None) - tb).pow(2).mean()

    def full_error(wq: torch.Tensor) -> float:
        with torch.no_grad():
            return float(sum(error(wq, slice(i, i + 64)) * len(inputs[i:i + 64]) for i in range(0, len(inputs), 64))
                         / len(inputs) / power)

    opt = torch.optim.Adam([v], lr=config.lr)
    warm = config.steps // 5
    for step in range(config.steps):
        idx = torch.randint(0, len(inputs), (min(config.batch, len(inputs)),), generator=g)
        loss = error(weight(False), idx) / power
        if step >= warm:
            beta = 20 + (2 - 20) * (step - warm) / max(1, config.steps - warm - 1)
            loss = loss + config.reg * (1 - (2 * _h(v) - 1).abs().pow(beta)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    near_err, ada_err = full_error(weight(None)), full_error(weight(True))
    chosen = weight(True) if ada_err < near_err else weight(None)
    with torch.no_grad():
        conv.weight.copy_(chosen / safe)
    changed = float((weight(True) != weight(None)).float().mean())
    return {"nearest": near_err, "adaptive": ada_err, "kept": bool(ada_err < near_err), "changed": changed}


def adaround_for_int8(deploy: nn.Module, clips: np.ndarray, flavour: str, config: AdaRoundConfig | None = None, *,
                      log: Callable[[str], None] | None = None, keep_rgb_convs: bool = False) -> tuple[nn.Module, dict]:
    """A copy of ``deploy`` (the window graph's module) whose convolutions' weights are rounded for
    ``flavour``'s INT8 by AdaRound on ``clips`` (what the window graph takes). Returns (the copy, plain
    float modules in eval mode, every rounded conv weight on its int8 grid; a record for the manifest).
    ``keep_rgb_convs``: convolutions with 3 input channels (per group) keep their float weights, as the
    tensorrt flavour keeps them out of INT8 (``ExportConfig.keep_first_conv``)."""
    config = config or AdaRoundConfig()
    log = log or (lambda msg: None)
    t0 = time.perf_counter()
    teacher, student, x_all, g = start_tuning(deploy, clips, flavour, config, "adaptive rounding")
    x = x_all[np.linspace(0, len(x_all) - 1, min(config.clips, len(x_all))).round().astype(int)]
    chunk = 4
    order = [m for m in conv_order(student, x[:1]) if not (keep_rgb_convs and m.weight.shape[1] == 3)]
    if not order:
        raise EdgevtError("adaptive rounding: this model has no convolutions to round")
    pairs, activated = conv_batchnorm_pairs(student, x[:1])
    taps = rounding_taps(student, activated)
    ranges = observe_ranges(student, taps, (x_all[i:i + chunk] for i in range(0, len(x_all), chunk)))
    names = {m: n for n, m in student.named_modules()}
    twin = dict(teacher.named_modules())
    with torch.no_grad():
        ref = torch.cat([teacher(x[i:i + chunk]) for i in range(0, len(x), chunk)])
    for p in student.parameters():
        p.requires_grad_(False)

    nearest = copy.deepcopy(student)  # every conv rounded to nearest: where adaptive rounding starts from
    round_nearest(nearest, conv_batchnorm_pairs(nearest, x[:1])[0], flavour, keep_rgb_convs)
    before = simulated_logit_error(nearest, ref, x, taps, ranges, flavour, chunk)
    del nearest
    tconvs = [twin[names[c]] for c in order]
    per_clip = _output_sizes(teacher, tconvs, x[:1])
    groups = _groups([per_clip[t] * len(x) * 4 for t in tconvs], TARGET_BYTES)
    group_of = {k: gi for gi, run in enumerate(groups) for k in run}
    index = {c: k for k, c in enumerate(order)}
    held: dict = {"group": None, "out": {}}
    layers: dict = {}
    log(f"adaptive rounding ({flavour}): {len(order)} convolutions, {config.steps} steps each, on {len(x)} "
        f"calibration clips; simulated INT8 logits {100 * before:.2f}% off FP32's with nearest rounding "
        f"(--adaround-steps 0 skips this)")

    def round_here(conv, inp):
        """Round ``conv`` on its input as the device computes it (the convolutions before it already
        rounded, the activations rounded), against the FP32 model's output of the same convolution."""
        k = index.get(conv)
        if k is None or names[conv] in layers:
            return None
        if held["group"] != group_of[k]:  # the teacher's outputs of the next run of convolutions
            held["out"] = {}
            held["out"] = _outputs(teacher, [tconvs[j] for j in groups[group_of[k]]], x, chunk)
            held["group"] = group_of[k]
        tconv = tconvs[k]
        target = held["out"].pop(tconv)
        if tconv.bias is not None:
            target = target - tconv.bias.detach().view((1, -1) + (1,) * (target.dim() - 2))
        fold = _bn_scale(pairs.get(conv), conv.weight.shape[0])
        with torch.enable_grad():
            layers[names[conv]] = round_layer(conv, fold, inp[0].detach(), target, flavour, config, g)
        del target
        if (k + 1) % 10 == 0 and k + 1 < len(order):
            log(f"adaptive rounding: {k + 1} of {len(order)} convolutions")
        if k + 1 == len(order):
            raise _Stop  # the rest of the forward pass is not needed
        return None

    # One forward pass of the student over all the calibration clips at once: each convolution is
    # rounded in its pre-hook (registered after the activation-rounding hooks, so it sees the input the
    # device computes), and the layers after it see its rounded output.
    hooks = activation_hooks(student, taps, ranges, flavour)
    hooks += [c.register_forward_pre_hook(round_here) for c in order]
    try:
        with torch.no_grad():
            try:
                student(x)
            except _Stop:
                pass
    finally:
        for h in hooks:
            h.remove()
        held.clear()
    if len(layers) != len(order):
        raise EdgevtError(f"adaptive rounding: the forward pass reached {len(layers)} of {len(order)} convolutions")
    after = simulated_logit_error(student, ref, x, taps, ranges, flavour, chunk)
    kept = sum(r["kept"] for r in layers.values())
    log(f"adaptive rounding ({flavour}): simulated INT8 logits {100 * after:.2f}% off FP32's (nearest: "
        f"{100 * before:.2f}%); {kept} of {len(layers)} convolutions kept it, in {time.perf_counter() - t0:.0f} s")
    record = {**asdict(config), "method": "adaround", "flavour": flavour, "clips": len(x),
              "convolutions": len(layers), "kept": kept, "rgb_convs_left_float": keep_rgb_convs, "folded_batchnorms": len(pairs),
              "rounded_activations": len(ranges),
              "simulated_logit_error_before": round(before, 6), "simulated_logit_error_after": round(after, 6),
              "layer_error": {n: {k: (round(v, 8) if isinstance(v, float) else v) for k, v in r.items()}
                              for n, r in layers.items()},
              "seconds": round(time.perf_counter() - t0, 1)}
    return student.eval(), record


def round_nearest(net: nn.Module, pairs: dict, flavour: str, keep_rgb_convs: bool = False) -> None:
    """Every conv weight of ``net`` rounded, in the folded domain, to its nearest int8 level as the
    exporter's quantizer rounds it (``bias_correction.quantized_weight``), in place; ``keep_rgb_convs``:
    not those with 3 input channels."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, CONVS) and not (keep_rgb_convs and m.weight.shape[1] == 3):
                f = _bn_scale(pairs.get(m), m.weight.shape[0]).view((-1,) + (1,) * (m.weight.dim() - 1))
                q = quantized_weight((m.weight * f).numpy(), fp16_scale=flavour == "tensorrt")
                m.weight.copy_(torch.from_numpy(q) / torch.where(f != 0, f, torch.ones_like(f)))
