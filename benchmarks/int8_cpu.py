"""Is the CPU INT8 flavour fast where it runs? ort-cpu INT8 (``--flavour cpu``) vs FP32, side by side.

Each model exported by ``edgevt.export.export_bundle`` with ``precisions=(fp32, int8),
flavour="cpu"`` (the accuracy gate on: top-1 drop and agreement with FP32 on target-val):

- ``demo``: the demo's adapted model (``edgevt demo --size quick`` recipe: TSM-TinyCNN on frame
  differences, 64x64, T=8, chosen by ``--strategy auto``). ``--demo DIR`` reuses a demo folder
  (``run_demo(DIR, "quick", until="adapt")`` makes one when it has no ``models/auto/model.pt``).
- ``tsm_causal``: TSM-TinyCNN on RGB frames with a causal shift, 64x64, T=8 -- the demo's model has
  no stateful form (frame-difference input needs whole clips), so this is the subject of the stateful
  per-frame latency: random-init backbone, classifier fitted by least squares on source-train.
- ``lite0``: ``tsn_efficientnet_lite0`` at 224x224, T=8, adapted by ``edgevt adapt`` (``LITE0_RECIPE``:
  the bundled ImageNet backbone on frame differences, top stages + head trained on cached frozen
  features, ``--strategy auto`` over source-only and BatchNorm re-estimation, chosen on target-val)
  on its own MotionDigits-DA set, the demo's recipe with ``--lite0-per-class`` (60) source and
  target-train clips per class (half of target-train held out as target-val: 180 clips for the gate;
  64x64 videos, upscaled to 224). Made once under ``--work`` and reused.
- ``lite0_tsm``, ``lite0_tsm_inv`` (``LITE0_VARIANTS``): ``tsm_efficientnet_lite0`` with the same recipe,
  and with the source clips each also inverted (the polarity shortcut removed; the accurate one,
  ``benchmarks/lite0_target.py``); ``lite0_tsm_so``, ``lite0_tsm_invaug``, ``lite0_tsm_inv_bn`` and
  ``lite0_tsm_inv_prog``: the recipes ``lite0_target.py`` compares (see ``LITE0_VARIANTS``);
  ``lite0_edge`` and ``lite0_tsm_edge``: the TSN and the TSM on ``--input edgediff`` (frame differences
  that are the same for a clip and its negative), source-only.
- ``lite0_fitted``: the earlier speed subject -- the same architecture with only its classifier
  fitted by least squares on the demo's source-train clips (near chance: not an accurate model).

Accuracy: top-1 of FP32 and INT8 on each model's target-test clips (the centred window, as ``edgevt
eval``) and INT8's agreement with FP32, also on every full window of each clip (more decisions).
A data set's own target-test is 10 clips per class (60: one changed decision is 1.7 points of agreement);
``--test-per-class N`` measures the same again on N per class, made from the set's own config
(``more_test_clips``: its own clips first, the rest new clips from the same target cameras).
Calibration: ``--calib-method`` (default auto: of the methods the gate passes on target-val, the
export keeps the one whose logits are closest to FP32's: ``edgevt.export.gate.best_calibration``).
Speed: ort-cpu, ``--threads`` intra-op threads, batch 1 and 4, every row timed in interleaved rounds
(``edgevt.bench.rounds.run_rounds``): the speed-up INT8 vs FP32 is computed per round from the
round's mean call times, as ``edgevt bench`` does (median ± IQR over the rounds), on wall time and on process CPU time (which load from other processes does not
inflate). Stateful INT8: per-frame latency (shift-buffer step + head over the last T embeddings, a
decision every frame) vs the INT8 window latency / T, per round. The CPU's INT8 instructions (VNNI,
AVX-512) and the load average are recorded.

    python benchmarks/int8_cpu.py --demo /tmp/demo [--rounds 10] [--threads 1]
    python benchmarks/int8_cpu.py --demo /tmp/demo --models lite0_tsm_so --lite0-seeds 0,1,2  # a row per seed
    python benchmarks/int8_cpu.py --demo /tmp/demo --models demo --test-per-class 60  # and on 360 test clips
    python benchmarks/int8_cpu.py --render benchmarks/results/int8_cpu_round10_intel.json  # its markdown again

Writes benchmarks/results/<--name>.{md,json} (default int8_cpu).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import fmt_mean_std, provenance_line, write_results  # noqa: E402

GOAL_SPEEDUP, GOAL_DROP, GOAL_AGREEMENT, GOAL_STATEFUL = 1.8, 1.0, 97.0, 1.3  # issue 14
INT8_FLAGS = ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8")


def cpu_int8_flags() -> dict:
    try:
        flags = set(next(ln for ln in Path("/proc/cpuinfo").read_text().splitlines()
                         if ln.startswith("flags")).split(":", 1)[1].split())
    except (OSError, StopIteration):
        return {}
    return {f: f in flags for f in INT8_FLAGS}


def demo_checkpoint(demo: Path) -> Path:
    ckpt = demo / "models" / "auto" / "model.pt"
    if not ckpt.exists():
        from edgevt.demo.steps import run_demo

        print(f"no adapted model in {demo}: running the demo recipe up to adapt", flush=True)
        run_demo(demo, "quick", until="adapt")
    return ckpt


def fitted_checkpoint(arch: str, data: Path, out: Path, weights: str, size: int, **kwargs) -> tuple[Path, str]:
    """``arch`` at ``size`` (T=8) with its classifier fitted on source-train features."""
    import torch

    from edgevt.data.datasets import LabelMap, load_dataset
    from edgevt.models.checkpoint import save_checkpoint
    from edgevt.models.preprocess import FramePreprocess
    from edgevt.models.zoo import create_model, model_info
    from edgevt.spec import ClipSpec

    torch.manual_seed(0)
    info = model_info(arch)
    labels = LabelMap.load(data / "labels.txt").names
    spec = ClipSpec(num_frames=8, frame_stride=1, size=(size, size), mean=info.mean, std=info.std, labels=labels)
    model = create_model(arch, len(labels), num_frames=spec.num_frames, weights=weights, **kwargs).eval()
    ds = load_dataset(data / "source_train.txt", spec, LabelMap(labels), cache=False)
    pre = FramePreprocess(spec)
    feats, ys = [], []
    with torch.no_grad():
        for i in range(len(ds)):
            x, y = ds[i]
            feats.append(model.clip_features(pre(x[None])))
            ys.append(y)
        f, y = torch.cat(feats), torch.as_tensor(ys)
        a = torch.cat([f, torch.ones(len(f), 1)], 1)
        sol = torch.linalg.lstsq(a, torch.nn.functional.one_hot(y, len(labels)).float() * 10, driver="gelsd").solution
        model.fc.weight.copy_(sol[:-1].T)
        model.fc.bias.copy_(sol[-1])
    how = (f"{'ImageNet' if weights == 'pretrained' else 'random-init'} backbone, classifier fitted by least "
           f"squares on {len(ds)} source-train clips")
    save_checkpoint(out, model, spec, arch=arch, model_kwargs={"num_frames": spec.num_frames, **kwargs}, strategy=how)
    return out, how


# unfreeze 6 (of 9) over 3: target-val peaked at 55% vs 47% on 20 clips per class (ad-hoc runs); 8 epochs
# on 60 clips per class are 184 steps, about twice the 96 of 12 epochs on 20 per class
LITE0_RECIPE = dict(strategy="auto", rungs="source_only,bn", model="tsn_efficientnet_lite0", weights="pretrained",
                    input="diff", num_frames=8, frame_stride=1, mode="partial", unfreeze=6, epochs=8,
                    batch_size=16, lr=3e-3)


def inverted_source(data: Path, split: str = "source_train") -> Path:
    """A ``split`` list (default source-train) with every clip twice: as filmed and inverted (255 -
    pixel: dark ink on a light scene), same label. Inversion keeps the motion and flips the sign of
    every frame difference, so the ink's polarity no longer tells the direction
    (benchmarks/lite0_target.py; ``split="target_train"``: the copies for that model's oracle)."""
    from edgevt.data.transforms import PolarityInvert
    from edgevt.data.video import read_frames, write_video
    from edgevt.fileio import atomic_write_text

    out = data / f"{split}_inverted.txt"
    if out.exists():
        return out
    invert, rng = PolarityInvert(p=1.0), np.random.default_rng(0)  # the --augment invert transform, always on
    lines = [ln.split() for ln in (data / f"{split}.txt").read_text().splitlines() if ln.strip()]
    rows = []
    for rel, label in lines:
        top = Path(rel).parts[0]  # source/ or target/
        inv = Path(f"{top}_inverted") / Path(rel).relative_to(top)
        (data / inv).parent.mkdir(parents=True, exist_ok=True)
        write_video(data / inv, invert(read_frames(data / rel), rng))
        rows += [f"{rel} {label}", f"{inv} {label}"]
    atomic_write_text(out, "\n".join(rows) + "\n")
    return out


def adapted_lite0(work: Path, size: int, per_class: int, seed: int = 0, arch: str = "tsn_efficientnet_lite0",
                  invert: bool = False, train: bool = True, **recipe) -> tuple[Path, str, Path]:
    """``tsn_efficientnet_lite0`` at ``size`` adapted by ``edgevt adapt`` (``LITE0_RECIPE``: the
    bundled ImageNet backbone on frame differences, its top stages + head trained on cached frozen
    features, then ``--strategy auto`` over source-only and BatchNorm re-estimation, chosen on
    target-val) on a MotionDigits-DA set like the demo's with ``per_class`` source clips per class.
    ``arch="tsm_efficientnet_lite0"``: the same backbone with TSM's temporal shifts (``lite0_tsm``).
    ``invert``: train on ``inverted_source`` (each source clip as filmed and inverted); ``recipe``
    overrides ``LITE0_RECIPE`` fields, and ``train_size``/``finish_epochs``/``finish_lr``
    (``PROGRESSIVE``) make it progressive: the run at ``train_size``, then that model fine-tuned at
    ``size`` (``finish_config``). ``train=False``: return the run folder's checkpoint path (made or
    not) without training; ``how`` is then None.
    Returns the checkpoint, how it was made and its data folder."""
    from dataclasses import replace

    from edgevt.adapt import AdaptConfig, adapt
    from edgevt.demo.recipes import SIZES
    from edgevt.demo.steps import run_demo

    root = work / f"lite0_data_{per_class}_s{seed}"
    data = root / "data"
    if not (data / "target_val.txt").exists():
        run_demo(root, replace(SIZES["quick"], name="lite0", train_per_class=per_class, seed=seed), until="data")
    tag = ("" if arch == "tsn_efficientnet_lite0" else "_" + arch.split("_")[0]) + ("_inv" if invert else "")
    tag += "".join(f"_{k}{v}" for k, v in sorted(recipe.items()))
    out = work / f"lite0{tag}_adapt_{size}_{per_class}_s{seed}"
    progressive = {k: recipe.pop(k) for k in PROGRESSIVE if k in recipe}
    source = inverted_source(data) if invert else data / "source_train.txt"
    cfg = AdaptConfig(source=str(source), target=str(data / "target_adapt.txt"),
                      target_val=str(data / "target_val.txt"), target_test=str(data / "target_test.txt"),
                      source_test=str(data / "source_test.txt"), out=str(out), size=size, seed=seed,
                      **{**LITE0_RECIPE, "model": arch, **recipe})
    ckpt = out / "model.pt"
    if not train:
        return ckpt, None, data
    n_src = per_class * 6 * (2 if invert else 1)
    what = (f"the last {cfg.unfreeze} of its 9 stages + the head trained on {n_src} source clips"
            f"{', each also inverted' if invert else ''}")
    tsm = "TSM: " if "tsm" in arch else ""
    if progressive:  # the auto run at train_size, then its model finished at size
        small, _, _ = adapted_lite0(work, progressive["train_size"], per_class, seed, arch, invert, train, **recipe)
        if not ckpt.exists():
            print(f"finishing {arch} at {size}x{size} from {small} into {out}", flush=True)
            adapt(finish_config(cfg, small, **progressive))
        t = progressive["train_size"]
        return ckpt, (f"{tsm}ImageNet backbone on frame differences, source-only ({what}): {cfg.epochs} epochs at "
                      f"{t}x{t}, then {progressive['finish_epochs']} at {size}x{size} (edgevt adapt --init "
                      f"--size)"), data
    if not ckpt.exists():
        print(f"adapting {arch} at {size}x{size} into {out}", flush=True)
        adapt(cfg)
    rep = json.loads((out / "report.json").read_text())
    return ckpt, (f"{tsm}ImageNet backbone on frame differences, adapted: --strategy auto chose {rep['chosen']} "
                  f"({what})"), data


def only_candidate(work: Path, size: int, per_class: int, seed: int, arch: str, change: dict) -> tuple:
    """A one-rung recipe's auto run that did not write its ``model.pt`` (killed after its one candidate,
    as the plain TSM's seed 0 was) delivers that candidate: (its checkpoint, how, data folder), or
    (None, None, None) when the run finished or its candidate did not."""
    rungs = change.get("rungs", LITE0_RECIPE["rungs"]).split(",")
    ckpt, _, data = adapted_lite0(work, size, per_class, seed, arch, train=False, **change)
    cand = ckpt.parent / "candidates" / rungs[0] / "model.pt"
    if ckpt.exists() or len(rungs) != 1 or not cand.exists() or any(k in change for k in PROGRESSIVE):
        return None, None, None
    tsm = "TSM: " if "tsm" in arch else ""
    return cand, (f"{tsm}ImageNet backbone on frame differences, {rungs[0]} (the one-rung auto run's only "
                  f"candidate; the run stopped before writing its model.pt)"), data


def variant_checkpoint(work: Path, size: int, per_class: int, seed: int, model: str) -> tuple:
    """A ``LITE0_VARIANTS`` model's (checkpoint, how it was made, data folder): a stopped one-rung run's
    candidate (``only_candidate``), else ``adapted_lite0``'s (trained under ``work`` once, then reused)."""
    arch, change = LITE0_VARIANTS[model]
    ckpt, how, data = only_candidate(work, size, per_class, seed, arch, change)
    if ckpt is None:
        ckpt, how, data = adapted_lite0(work, size, per_class, seed, arch=arch, **change)
    return ckpt, how, data


# a variant's recipe fields for progressive resizing (not AdaptConfig's): the run at train_size with the
# recipe's epochs, then that model fine-tuned at the benchmark's size for finish_epochs at finish_lr
PROGRESSIVE = ("train_size", "finish_epochs", "finish_lr")


def finish_config(cfg, small: Path, train_size: int, finish_epochs: int, finish_lr: float):
    """Progressive resizing's second stage: ``small`` (trained at ``train_size``) fine-tuned at
    ``cfg.size`` on the same clips and stages, ``finish_epochs`` at ``finish_lr``: ``edgevt adapt
    --strategy finetune --init SMALL --size N``."""
    from dataclasses import replace

    return replace(cfg, strategy="finetune", rungs="all", init=str(small), model=None, epochs=finish_epochs,
                   lr=finish_lr)


# --models name -> (architecture, what changes from LITE0_RECIPE; benchmarks/lite0_target.py measures
# why): lite0_tsm_inv is TSM trained on the source clips each also inverted (the ink's polarity then
# no longer predicts the direction of motion), the source-only rung for 4 epochs over twice the clips,
# without the frozen-feature cache (TSM's window cache at 224 does not fit in 24 GiB for that many videos)
_APPINV = dict(augment="appearance+invert", rungs="source_only", epochs=6)  # lite0_tsm_appinv's, and the base of appinv12
LITE0_VARIANTS = {
    "lite0": ("tsn_efficientnet_lite0", {}),
    "lite0_tsm": ("tsm_efficientnet_lite0", {}),
    # lite0_tsm_inv's plain baseline: the same TSM, source-only, without the inverted copies (8 epochs over
    # 360 clips: as many steps as 4 over 720), without the bn rung (at 224 it ran out of memory in 24 GiB)
    "lite0_tsm_so": ("tsm_efficientnet_lite0", dict(rungs="source_only")),
    "lite0_tsm_inv": ("tsm_efficientnet_lite0", dict(invert=True, rungs="source_only", epochs=4, cache_features="off")),
    # the same idea on the fly: edgevt adapt --augment invert (each clip inverted with p=0.5), 6 epochs
    "lite0_tsm_invaug": ("tsm_efficientnet_lite0", dict(augment="invert", rungs="source_only", epochs=6)),
    # progressive resizing: lite0_tsm_inv's clips, 12 epochs at 112x112 (a quarter of the cost per step),
    # then 2 epochs at 224 from that model (edgevt adapt --init --size 224)
    "lite0_tsm_inv_prog": ("tsm_efficientnet_lite0", dict(invert=True, rungs="source_only", epochs=12,
                                                          cache_features="off", train_size=112, finish_epochs=2,
                                                          finish_lr=1e-3)),
    # the demo's recipe on lite0_tsm_inv: BatchNorm statistics estimated on the source clips before training
    # (not ImageNet's: the input is frame differences), so that re-estimating them on the target (the bn
    # rung, AdaBN) changes only the domain; auto chooses source-only or bn on target-val
    "lite0_tsm_inv_bn": ("tsm_efficientnet_lite0", dict(invert=True, rungs="source_only,bn", epochs=4,
                                                        cache_features="off", bn_source=True)),
    # domain randomisation against the target's look (photo backgrounds, colour cast, sensor noise: what a
    # frame difference does not remove) and the polarity shortcut at once: edgevt adapt --augment
    # appearance+invert, source-only, 6 epochs over the 360 clips (as lite0_tsm_invaug)
    "lite0_tsm_appinv": ("tsm_efficientnet_lite0", _APPINV),
    # lite0_tsm_appinv trained 6 epochs more (edgevt adapt --init, the same size, lr restarted at 3e-3):
    # after 6 it was right on 55% of its own source-test clips
    "lite0_tsm_appinv12": ("tsm_efficientnet_lite0", dict(_APPINV, train_size=224, finish_epochs=6, finish_lr=3e-3)),
    # the TSN on edgevt adapt --input edgediff (differences of each frame's local contrast, the
    # same for a clip and its negative: the polarity shortcut removed from the input, not the data),
    # source-only, the recipe's 8 epochs over the 360 clips with the frozen-prefix cache
    "lite0_edge": ("tsn_efficientnet_lite0", dict(input="edgediff", rungs="source_only")),
    # the same input on the TSM (lite0_tsm_so with --input edgediff: its plain baseline's recipe). Without
    # the bn rung: AdaBN collapsed lite0_edge's predictions (33% target-val), as it did lite0's
    "lite0_tsm_edge": ("tsm_efficientnet_lite0", dict(input="edgediff", rungs="source_only")),
}


def export(ckpt: Path, out: Path, data: Path, args, forms: list, calib_clips: int, flavour: str = "cpu") -> tuple:
    """The ``flavour`` bundle (the CPU one here) with the gate on; if the gate refuses INT8, the graph
    without the gate (so that its speed is still measured) and the refusal."""
    from edgevt.export.exporter import ExportConfig, export_bundle
    from edgevt.export.gate import GateRefused

    cfg = dict(precisions=("fp32", "int8"), flavour=flavour, calib=str(data / "target_adapt.txt"),
               calib_clips=calib_clips, forms=forms, calib_cache=out.parent / "calib-cache",
               min_agreement=args.min_agreement, max_drop=args.max_drop, calib_method=args.calib_method,
               bias_correction=args.bias_correction, qat_steps=args.qat_steps, qat_lr=args.qat_lr,
               qat_batch=args.qat_batch, adaround_steps=args.adaround_steps, adaround_lr=args.adaround_lr,
               adaround_clips=args.adaround_clips)
    t0 = time.perf_counter()
    try:
        b = export_bundle(ckpt, out, ExportConfig(eval=str(data / "target_val.txt"), **cfg),
                          log=lambda m: print(f"  [{out.name}] {m}", flush=True))
        refused = None
    except GateRefused as e:
        refused = str(e)
        print(f"  [{out.name}] gate refused INT8: {e}; exporting without the gate to time it", flush=True)
        b = export_bundle(ckpt, out, ExportConfig(**cfg))
    return b, refused, round(time.perf_counter() - t0, 1)


def accuracy(bundle, data: Path, threads: int, more: Path | None = None) -> dict:
    """Target-test top-1 and agreement: the data set's own clips (centred windows, via ``edgevt eval``; and
    every window); with ``more`` (a longer target-test list, ``more_test_clips``) the same on it."""
    from edgevt.eval.evaluate import evaluate_all

    res = evaluate_all(bundle, str(data / "target_test.txt"), precisions=["fp32", "int8"], threads=threads,
                       save=False)
    fp32, int8 = res
    return {"clips": fp32.clips, "fp32_top1": fp32.top1, "int8_top1": int8.top1, "int8_precision": int8.precision,
            "int8_key": int8.device.get("key"), "drop": fp32.top1 - int8.top1,
            "agreement": int8.agreement_with["fp32"], **every_window(bundle, data / "target_test.txt", threads),
            **({"more": {"centred": decisions(bundle, more, threads, windows=1),
                         "windows": decisions(bundle, more, threads, windows=10_000)}} if more else {})}


def every_window(bundle, data: Path, threads: int | None) -> dict:
    """FP32 vs INT8 on every full window of every target-test clip (stride 1): several decisions
    per clip, as the stream loop makes them, so agreement is measured to finer than 1 clip in 60."""
    d = decisions(bundle, data, threads, windows=10_000)
    return {"windows": d["rows"], "window_clips": d["clips"], "fp32_top1_windows": d["fp32_top1"],
            "int8_top1_windows": d["int8_top1"], "agreement_windows": d["agreement"]}


def window_logits(bundle, data: Path, threads: int | None, windows: int, chunk: int = 30) -> tuple:
    """(FP32 logits, INT8 logits, labels, paths) on up to ``windows`` windows of every clip of a list (1: the
    centred one, as ``edgevt eval``); INT8 is the flavour ort-cpu runs. Loads ``chunk`` clips at a time
    (every window of 360 clips at 224x224 is 3.9 GB of uint8)."""
    import tempfile

    from edgevt.backends import open_backend
    from edgevt.data.datasets import load_clips

    lines = [ln for ln in Path(data).read_text().splitlines() if ln.strip()]
    be = {p: open_backend("ort-cpu", bundle, precision=p, threads=threads) for p in ("fp32", "int8")}
    out: dict = {"fp32": [], "int8": []}
    labels, paths = [], []
    try:
        for i in range(0, len(lines), chunk):
            with tempfile.TemporaryDirectory() as tmp:
                part = Path(tmp) / "part.txt"  # the list's relative paths resolve against its folder
                part.write_text("\n".join(str(Path(data).parent / ln) for ln in lines[i:i + chunk]) + "\n")
                clips, lab, pth = load_clips(part, bundle.spec, labeled=True, windows=windows)
            labels.append(lab)
            paths += pth
            for p, b in be.items():
                name = b.input_names[0]
                out[p] += [b.run({name: clips[j:j + 8]})[b.output_names[0]] for j in range(0, len(clips), 8)]
    finally:
        for b in be.values():
            b.close()
    return np.concatenate(out["fp32"]), np.concatenate(out["int8"]), np.concatenate(labels), paths


def decisions(bundle, data: Path, threads: int | None, windows: int) -> dict:
    """FP32 and INT8 top-1 and their agreement on up to ``windows`` windows of every clip of a list."""
    f, q, y, paths = window_logits(bundle, data, threads, windows)
    f, q = f.argmax(1), q.argmax(1)
    return {"rows": int(len(y)), "clips": len(set(paths)), "fp32_top1": float((f == y).mean() * 100),
            "int8_top1": float((q == y).mean() * 100), "agreement": float((f == q).mean() * 100)}


def more_test_clips(data: Path, per_class: int) -> Path:
    """A target-test list of ``per_class`` clips per class from the same generated data set: its config
    again (seed, cameras, shifts) with only target-test, ``per_class`` clips per class. Each clip's random
    stream is keyed by (seed, split, class, index) and the cameras by (seed, domain), so the first clips
    are the set's own target-test clips (checked) and the rest are new clips from the same target cameras,
    never seen by training or the gate. Made once, beside ``data``."""
    from edgevt.data.synth import SPLITS, SynthConfig, generate

    meta = json.loads((data / "meta.json").read_text())
    cfg = dict(meta["config"])
    own = cfg["per_class"]["target_test"]
    out = data.parent / f"{data.name}.test{per_class}"
    if not (out / "target_test.txt").exists():
        cfg["per_class"] = {s: (per_class if s == "target_test" else 0) for s in SPLITS}
        cfg["shifts"] = tuple(cfg["shifts"])
        print(f"[data] {per_class} target-test clips per class from {data}'s config -> {out}", flush=True)
        generate(out, SynthConfig(**cfg))
    theirs = [ln for ln in (out / "target_test.txt").read_text().splitlines() if ln.strip()]
    mine = [ln for ln in (data / "target_test.txt").read_text().splitlines() if ln.strip()]
    same = [ln for ln in theirs if int(Path(ln.split()[0]).stem.rsplit("_", 1)[1]) < own]
    if sorted(same) != sorted(mine) or any((out / ln.split()[0]).read_bytes() != (data / ln.split()[0]).read_bytes()
                                             for ln in mine):
        raise SystemExit(f"{out}: its first {own} clips per class are not {data}'s target-test clips")
    return out / "target_test.txt"


def time_rows(bundle, clips: np.ndarray, args, stateful: bool) -> dict:
    """Interleaved rounds over fp32/int8 x batch 1/4 (+ the stateful INT8 per-frame step)."""
    from edgevt.backends import open_backend
    from edgevt.bench.rounds import ratio_spread, round_means, round_medians, run_rounds, warm_up

    rows: dict = {}
    opened = []
    for p in ("fp32", "int8"):
        be = open_backend("ort-cpu", bundle, precision=p, threads=args.threads)
        opened.append(be)
        for batch in (1, 4):
            x = {be.input_names[0]: np.ascontiguousarray(clips[:batch])}
            rows[f"{p} b{batch}"] = (lambda be=be, x=x: be.run(x))
    if stateful:
        from edgevt.stream.loop import StatefulForm, open_model

        backends, spec, _ = open_model(bundle, form="stateful", precision="int8", threads=args.threads)
        opened += list(backends.values())
        form = StatefulForm(backends, spec)
        frames = np.ascontiguousarray(clips.reshape(-1, *clips.shape[2:]))
        k = [0]

        def step() -> None:  # one frame in, one decision out (stride 1)
            i = k[0]
            form.encode(i, frames[i % len(frames)][None])
            if i >= spec.num_frames - 1:
                form.decide([i])
            k[0] += 1

        def encode_only() -> None:  # the shift-buffer step without the head (where the per-frame time goes)
            i = k[0]
            form.encode(i, frames[i % len(frames)][None])
            k[0] += 1

        for _ in range(spec.num_frames):
            step()
        rows["stateful int8 per frame"] = step
        rows["stateful int8 step only"] = encode_only
    names = list(rows)
    for n in names:
        warm_up(rows[n], args.warmup_s)
    wall, _, cpu = run_rounds([rows[n] for n in names], args.rounds, slice_s=args.slice_s, min_per_slice=3)
    # Ratios from each round's mean call time, as `edgevt bench` computes them: a time-sliced load
    # leaves a short call's median alone but lands on a long call's, so medians skew a ratio.
    mean = {n: round_means(wall[i]) for i, n in enumerate(names)}
    cpu_mean = {n: round_means(cpu[i]) for i, n in enumerate(names)}
    out: dict = {"ratio_from": "per-round mean call time",
                 "rows": {n: {"p50_ms_per_round": round_medians(wall[i]), "mean_ms_per_round": mean[n],
                              "p50_ms": float(np.median(np.concatenate([np.asarray(s) for s in wall[i] if s]))) * 1e3,
                              "mean_ms": float(np.mean([v for v in mean[n] if v])),
                              "runs": sum(len(s) for s in wall[i])} for i, n in enumerate(names)}}
    for batch in (1, 4):
        a, b = f"fp32 b{batch}", f"int8 b{batch}"
        out[f"speedup_b{batch}"] = ratio_spread(mean[a], mean[b]).to_dict()
        out[f"cpu_speedup_b{batch}"] = ratio_spread(cpu_mean[a], cpu_mean[b]).to_dict()
    if stateful:
        t = bundle.spec.num_frames
        per_frame = [v * t if v is not None else None for v in mean["stateful int8 per frame"]]
        # per round: per-frame latency / (INT8 window latency / T)
        out["stateful_vs_window_over_T"] = ratio_spread(per_frame, mean["int8 b1"]).to_dict()
        out["stateful_vs_fp32_window_over_T"] = ratio_spread(per_frame, mean["fp32 b1"]).to_dict()
    for be in opened:
        be.close()
    return out


def _calibration(cal: dict) -> str:
    """The method the export used, and what auto measured for each on target-val."""
    tried = cal.get("tried") or {}
    def one(m: str, t: dict) -> str:
        err = t.get("logit_error")
        return f"{m} {t['agreement']:.1f}%" + (f" / {100 * err:.2f}% off" if err is not None else "")
    return cal.get("method", "?") + (" (auto, agreement / logits off FP32's: "
                                     + ", ".join(one(m, t) for m, t in tried.items()) + ")" if tried else "")


def wilson(share: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval (percent) of a share (percent) measured on n decisions: how
    finely n clips can resolve an agreement goal (60 clips: one changed decision is 1.7 points)."""
    p = share / 100.0
    c = (p + z * z / (2 * n)) / (1 + z * z / n)
    h = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
    return 100 * (c - h), 100 * (c + h)


def _spread(s: dict) -> str:
    return f"{s['median']:.2f}x ± {s['iqr'] / 2:.2f} (IQR {s['p25']:.2f}-{s['p75']:.2f}, {s['rounds']} rounds)"


def seeds_table(models: dict) -> list[str]:
    """Mean ± std over the seeds of each model run with several (rows <model> and <model>_s<seed>), and
    the agreement pooled over all their windows."""
    import re

    groups: dict = {}
    for name, m in models.items():
        groups.setdefault(re.sub(r"_s\d+$", "", name), []).append(m)
    groups = {k: v for k, v in groups.items() if len(v) > 1}
    if not groups:
        return []
    ms = lambda vals: fmt_mean_std(vals, scale=1, ddof=1)  # noqa: E731
    out = ["", "Over the seeds (mean ± std; each seed its own data set, training and export):", "",
           "| model | seeds | FP32 top-1 | INT8 top-1 | drop | agreement, centred windows | agreement, every window "
           "| every window, pooled | speed-up b1 / b4 (wall) |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for k, ms_ in groups.items():
        a = [m["accuracy"] for m in ms_]
        agree = sum(round(x["agreement_windows"] * x["windows"] / 100) for x in a)
        total = sum(x["windows"] for x in a)
        b1 = [m["timing"]["speedup_b1"]["median"] for m in ms_]
        b4 = [m["timing"]["speedup_b4"]["median"] for m in ms_]
        out.append(f"| {k} | {len(ms_)} | {ms([x['fp32_top1'] for x in a])} | {ms([x['int8_top1'] for x in a])} | "
                   f"{ms([x['drop'] for x in a])} | {ms([x['agreement'] for x in a])} | "
                   f"{ms([x['agreement_windows'] for x in a])} | {100 * agree / total:.1f}% ({total - agree} of {total} "
                   f"changed) | {min(b1):.2f}-{max(b1):.2f}x / {min(b4):.2f}-{max(b4):.2f}x |")
    return out


def more_table(models: dict) -> list[str]:
    """The rows on the longer target-test lists (``--test-per-class``), and their mean ± std over seeds."""
    import re

    have = {k: m["accuracy"]["more"] for k, m in models.items() if m["accuracy"].get("more")}
    if not have:
        return []
    out = ["", "On the longer target-test lists (`--test-per-class`: each set's own clips and new ones from the same "
           "target cameras; never seen by training or the gate):", "",
           "| model | clips | FP32 / INT8 top-1 (drop), centred | agreement, centred (95% Wilson) | "
           "FP32 / INT8 top-1 (drop), every window | agreement, every window |", "|---|---:|---|---|---|---|"]
    for k, m in have.items():
        c, w = m["centred"], m["windows"]
        lo, hi = wilson(c["agreement"], c["clips"])
        out.append(f"| {k} | {c['clips']} | {c['fp32_top1']:.1f} / {c['int8_top1']:.1f} ({c['fp32_top1'] - c['int8_top1']:+.1f}) | "
                   f"{c['agreement']:.1f}% ({lo:.1f}-{hi:.1f}) | {w['fp32_top1']:.1f} / {w['int8_top1']:.1f} "
                   f"({w['fp32_top1'] - w['int8_top1']:+.1f}) | {w['agreement']:.1f}% ({w['rows']} windows) |")
    groups: dict = {}
    for k, m in have.items():
        groups.setdefault(re.sub(r"_s\d+$", "", k), []).append(m)
    ms = lambda vals: fmt_mean_std(vals, scale=1, ddof=1)  # noqa: E731
    rows = [(k, v) for k, v in groups.items() if len(v) > 1]
    if rows:
        out += ["", "| model | seeds | drop, centred | agreement, centred | centred, pooled | drop, every window | "
                "agreement, every window |", "|---|---:|---:|---:|---:|---:|---:|"]
        for k, v in rows:
            c = [x["centred"] for x in v]
            w = [x["windows"] for x in v]
            agree = sum(round(x["agreement"] * x["clips"] / 100) for x in c)
            total = sum(x["clips"] for x in c)
            out.append(f"| {k} | {len(v)} | {ms([x['fp32_top1'] - x['int8_top1'] for x in c])} | "
                       f"{ms([x['agreement'] for x in c])} | {100 * agree / total:.1f}% ({total - agree} of {total} changed) | "
                       f"{ms([x['fp32_top1'] - x['int8_top1'] for x in w])} | {ms([x['agreement'] for x in w])} |")
    return out


def more_goals(name: str, more: dict | None) -> list[str]:
    """The accuracy goals judged again on the longer target-test list."""
    if not more:
        return []
    c, w = more["centred"], more["windows"]
    drop = c["fp32_top1"] - c["int8_top1"]
    out = [f"- {name}: top-1 drop on {c['clips']} clips {drop:+.1f} points (goal <= {GOAL_DROP}): "
           + ("met" if drop <= GOAL_DROP else f"missed by {drop - GOAL_DROP:.1f} points")]
    for what, v in ((f"{c['clips']} clips, centred windows", c["agreement"]),
                    (f"every window of {w['clips']} clips, {w['rows']} decisions", w["agreement"])):
        out.append(f"- {name}: agreement ({what}) {v:.1f}% (goal >= {GOAL_AGREEMENT}%): "
                   + ("met" if v >= GOAL_AGREEMENT else f"missed by {GOAL_AGREEMENT - v:.1f} points"))
    return out


def markdown(res: dict, args) -> str:
    flags = res["cpu_int8_flags"]
    qat = (res.get("args") or {}).get("qat_steps")
    ada = (res.get("args") or {}).get("adaround_steps")
    out = ["# INT8 on onnxruntime CPU: the CPU flavour vs FP32", "",
           (f"INT8 graphs from a quantization-aware fine-tuned copy of each model (edgevt export --qat-steps {qat} "
            f"--qat-lr {res['args'].get('qat_lr')} --qat-batch {res['args'].get('qat_batch')}), against the model's "
            "own FP32 graph. " if qat else "")
           + (f"INT8 graphs from a copy of each model with its convolutions' weights adaptively rounded (edgevt "
              f"export --adaround-steps {ada} --adaround-lr {res['args'].get('adaround_lr')} --adaround-clips "
              f"{res['args'].get('adaround_clips')}), against the model's own FP32 graph. " if ada else "")
           + f"Calibration: {args.calib_method}. ort-cpu, {args.threads} thread(s), interleaved rounds ({args.rounds} rounds, {args.slice_s}s slices). "
           f"CPU: {res['cpu']}; INT8 instructions: "
           + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in flags.items())
           + f". Load average before / after: {res['load_before']} / {res['load_after']} (a shared 2-core machine: "
             "read the CPU-time speed-ups beside the wall ones).", "",
           "| model | weights | FP32 top-1 | INT8 top-1 (drop) | agreement w/ FP32 | agreement, every window | gate | "
           "calibration | FP32 ms b1 / b4 | INT8 ms b1 / b4 | speed-up b1 (wall) | speed-up b4 (wall) | "
           "CPU-time speed-up b1 / b4 |",
           "|" + "---|" * 13]
    for name, m in res["models"].items():
        a, t = m["accuracy"], m["timing"]
        r = t["rows"]
        g = m.get("gate") or {}
        gate = ("refused: " + m["gate_refused"][:90]) if m.get("gate_refused") else (
            f"passed on {g.get('clips')} clips ({g.get('decisions') or g.get('clips')} decisions), "
            f"agreement {g.get('agreement', 0):.1f}%"
            + ("" if g.get("enough_clips", True) else " (too few clips)")
            + f", {len(g.get('kept_high_precision') or [])} kept"
            + (f", first {m['int8']['float_prefix_layers']} layers float" if (m.get("int8") or {}).get("float_prefix_layers") else "")
            + (f" of {g['layers']} (mostly float)" if g.get("mostly_float") else ""))
        out.append(f"| {name} | {m['weights']} | {a['fp32_top1']:.1f} | {a['int8_top1']:.1f} ({a['drop']:+.1f}) | "
                   f"{a['agreement']:.1f}% ({a['clips']} clips) | {a['agreement_windows']:.1f}% ({a['windows']} windows) | "
                   f"{gate} | {m.get('calibration', '')} | {r['fp32 b1']['p50_ms']:.2f} / "
                   f"{r['fp32 b4']['p50_ms']:.2f} | {r['int8 b1']['p50_ms']:.2f} / {r['int8 b4']['p50_ms']:.2f} | "
                   f"{_spread(t['speedup_b1'])} | {_spread(t['speedup_b4'])} | "
                   f"{t['cpu_speedup_b1']['median']:.2f}x / {t['cpu_speedup_b4']['median']:.2f}x |")
    out += seeds_table(res["models"])
    out += more_table(res["models"])
    out += ["", "## Goals (issue 14)", ""]
    for name, m in res["models"].items():
        a, t = m["accuracy"], m["timing"]
        for batch in (1, 4):
            s = t[f"speedup_b{batch}"]["median"]
            out.append(f"- {name} b{batch}: speed-up {s:.2f}x (goal >= {GOAL_SPEEDUP}x): "
                       + ("met" if s >= GOAL_SPEEDUP else f"missed by {GOAL_SPEEDUP - s:.2f}x"))
        out.append(f"- {name}: top-1 drop {a['drop']:+.1f} points (goal <= {GOAL_DROP}): "
                   + ("met" if a["drop"] <= GOAL_DROP else f"missed by {a['drop'] - GOAL_DROP:.1f} points"))
        for what, v in ((f"{a['clips']} clips, centred windows", a["agreement"]),
                        (f"every window, {a['windows']} decisions", a["agreement_windows"])):
            out.append(f"- {name}: agreement ({what}) {v:.1f}% (goal >= {GOAL_AGREEMENT}%): "
                       + ("met" if v >= GOAL_AGREEMENT else f"missed by {GOAL_AGREEMENT - v:.1f} points"))
        q = (m.get("int8") or {}).get("qat")
        if q:
            out.append(f"- {name}: quantization-aware fine-tuning, {q['steps']} steps of {q['batch']} on {q['clips']} "
                       f"calibration clips (each also mirrored), {q['seconds']:.0f} s: simulated INT8 logits "
                       f"{100 * q['simulated_logit_error_before']:.2f}% -> {100 * q['simulated_logit_error_after']:.2f}% "
                       "off FP32's on those clips")
        d = (m.get("int8") or {}).get("adaround")
        if d:
            out.append(f"- {name}: adaptive rounding of {d['kept']} of {d['convolutions']} convolutions, {d['steps']} "
                       f"steps each on {d['clips']} calibration clips, {d['seconds']:.0f} s: simulated INT8 logits "
                       f"{100 * d['simulated_logit_error_before']:.2f}% (nearest rounding) -> "
                       f"{100 * d['simulated_logit_error_after']:.2f}% off FP32's on those clips")
        lo, hi = wilson(a["agreement"], a["clips"])
        out.append(f"  - on {a['clips']} clips, {round(a['agreement'] * a['clips'] / 100)} agreeing: 95% Wilson "
                   f"interval {lo:.1f}-{hi:.1f}% (windows of one clip are not independent: no interval for them)")
        out += more_goals(name, a.get("more"))
        if "stateful_vs_window_over_T" in t:
            s = t["stateful_vs_window_over_T"]
            per = t["rows"]["stateful int8 per frame"]["p50_ms"]
            enc = t["rows"]["stateful int8 step only"]["p50_ms"]
            out.append(f"- {name}: stateful INT8 per-frame {per:.2f} ms (shift-buffer step {enc:.2f} ms + head) = "
                       f"{_spread(s)} the INT8 window latency / T "
                       f"(goal <= {GOAL_STATEFUL}x): "
                       + ("met" if s["median"] <= GOAL_STATEFUL else f"missed by {s['median'] - GOAL_STATEFUL:.2f}x")
                       + f"; vs the FP32 window / T: {t['stateful_vs_fp32_window_over_T']['median']:.2f}x")
    out += ["", "- Accuracy: each model's target-test clips (never used by the gate, which judged target-val); "
            "lite0's are its own MotionDigits-DA set's, 64x64 videos upscaled to 224x224.",
            "- Speed-ups: per round, from the round's mean call times (as `edgevt bench`); median ± half the IQR "
            "over the rounds.",
            "- CPU flavour: QDQ, uint8 activations (asymmetric), int8 per-channel symmetric weights, onnxruntime's "
            "full optimisation (it fuses Q/DQ groups into QLinearConv / integer kernels)."]
    if res.get("note"):
        out += ["", res["note"]]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--demo", type=Path, default=Path("demo"), help="demo folder (the adapted model and its data)")
    ap.add_argument("--work", type=Path, default=None, help="folder for the bundles (default: <demo>/int8_cpu)")
    ap.add_argument("--models", default="demo,tsm_causal,lite0")
    ap.add_argument("--lite0-weights", default="pretrained", choices=("pretrained", "none"))
    ap.add_argument("--lite0-size", type=int, default=224)
    ap.add_argument("--lite0-per-class", type=int, default=60, help="lite0's source-train (and target-train) clips per class")
    ap.add_argument("--lite0-seeds", default="0",
                    help="seeds of each lite0 model (each its own data set and training; a row per seed, "
                         "named <model>_s<seed> when not 0)")
    ap.add_argument("--lite0-calib-clips", type=int, default=60, help="lite0's calibration clips (of its target-adapt set)")
    ap.add_argument("--test-per-class", type=int, default=0,
                    help="also measure accuracy and agreement on this many target-test clips per class of each "
                         "model's data set (generated once: the set's own clips plus new ones from the same target "
                         "cameras, more_test_clips); 0: only the set's own (10 per class)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--slice-s", type=float, default=0.5, help="seconds per row per round")
    ap.add_argument("--warmup-s", type=float, default=1.0)
    ap.add_argument("--calib-method", default="auto", help="INT8 calibration (edgevt export --calib-method)")
    ap.add_argument("--no-bias-correction", dest="bias_correction", action="store_false",
                    help="export INT8 without bias correction (edgevt export --no-bias-correction), as before the eleventh session")
    ap.add_argument("--qat-steps", type=int, default=0,
                    help="INT8 from a quantization-aware fine-tuned copy (edgevt export --qat-steps); the bundles "
                         "are then named <model>_qat.bundle, beside the post-training ones")
    ap.add_argument("--qat-lr", type=float, default=1e-5, help="edgevt export --qat-lr")
    ap.add_argument("--qat-batch", type=int, default=4, help="edgevt export --qat-batch")
    ap.add_argument("--adaround-steps", type=int, default=0,
                    help="INT8 from a copy with adaptively rounded weights (edgevt export --adaround-steps; 300 is "
                         "edgevt export's default); the bundles are then named <model>_adaround.bundle, beside the "
                         "post-training ones. 0 (this script's default, so that its earlier commands still measure "
                         "what they did): nearest rounding, edgevt export --adaround-steps 0")
    ap.add_argument("--adaround-lr", type=float, default=1e-2, help="edgevt export --adaround-lr")
    ap.add_argument("--adaround-clips", type=int, default=16, help="edgevt export --adaround-clips")
    ap.add_argument("--min-agreement", type=float, default=GOAL_AGREEMENT)
    ap.add_argument("--max-drop", type=float, default=GOAL_DROP)
    ap.add_argument("--note", default="")
    ap.add_argument("--name", default="int8_cpu")
    ap.add_argument("--render", type=Path, default=None,
                    help="only rewrite a results JSON's markdown beside it (with its own provenance), e.g. after "
                         "the tables changed")
    args = ap.parse_args()
    if args.render:
        return render(args.render)

    from edgevt.env import cpu_name
    from edgevt.bench.latency import sample_clips

    seeds = [int(x) for x in args.lite0_seeds.split(",") if x.strip()]
    models = [(f"{m}_s{seed}" if seed else m, m, seed) for m in (m.strip() for m in args.models.split(","))
              if m for seed in (seeds if m in LITE0_VARIANTS else [0])]
    data = args.demo / "data"
    work = args.work or (args.demo / "int8_cpu")
    work.mkdir(parents=True, exist_ok=True)
    res: dict = {"cpu": cpu_name(), "cpu_int8_flags": cpu_int8_flags(), "threads": args.threads,
                 "rounds": args.rounds, "slice_s": args.slice_s, "load_before": [round(x, 2) for x in os.getloadavg()],
                 "models": {}, "note": args.note, "command": " ".join(sys.argv),
                 "args": {"calib_method": args.calib_method, "bias_correction": args.bias_correction,
                          "min_agreement": args.min_agreement, "max_drop": args.max_drop,
                          "test_per_class": args.test_per_class, "qat_steps": args.qat_steps, "qat_lr": args.qat_lr,
                          "qat_batch": args.qat_batch, "adaround_steps": args.adaround_steps,
                          "adaround_lr": args.adaround_lr, "adaround_clips": args.adaround_clips}}
    for name, model, seed in models:
        t0 = time.perf_counter()
        model_data = data  # lite0 has its own data set
        if model == "demo":
            ckpt, weights, forms, calib_clips = demo_checkpoint(args.demo), "demo recipe (adapted)", [], 60
        elif model == "tsm_causal":
            ckpt, weights = fitted_checkpoint("tsm_tinycnn", data, work / "tsm_causal.pt", "none", 64,
                                              shift_direction="causal")
            forms, calib_clips = ["stateful"], 60
        elif model in LITE0_VARIANTS:
            ckpt, weights, model_data = variant_checkpoint(work, args.lite0_size, args.lite0_per_class, seed, model)
            forms, calib_clips = [], args.lite0_calib_clips
        elif model == "lite0_fitted":
            ckpt, weights = fitted_checkpoint("tsn_efficientnet_lite0", data, work / "lite0.pt", args.lite0_weights,
                                              args.lite0_size)
            forms, calib_clips = [], 32
        else:
            raise SystemExit(f"unknown model {model!r}; choose from demo, tsm_causal, lite0_fitted, " + ", ".join(LITE0_VARIANTS))
        # beside the post-training bundle
        bundle_name = f"{name}_qat" if args.qat_steps else f"{name}_adaround" if args.adaround_steps else name
        b, refused, export_s = export(ckpt, work / f"{bundle_name}.bundle", model_data, args, forms, calib_clips)
        print(f"[{name}] exported in {export_s}s; evaluating", flush=True)
        more = more_test_clips(model_data, args.test_per_class) if args.test_per_class else None
        acc = accuracy(b, model_data, threads=None, more=more)
        clips = sample_clips(model_data / "target_test.txt", b.spec, 4)
        print(f"[{name}] {acc}; timing", flush=True)
        timing = time_rows(b, clips, args, stateful=b.has_form("stateful", "int8-cpu"))
        checks = b.manifest["checks"]
        res["models"][name] = {
            "seed": seed if model in LITE0_VARIANTS else None, "checkpoint": str(ckpt), "weights": weights, "data": str(model_data), "bundle": str(b.path), "spec_size": list(b.spec.size),
            "export_s": export_s, "gate_refused": refused, "gate": checks.get("gate.int8-cpu"),
            "gates": {k: v for k, v in checks.items() if k.startswith("gate")},
            "calibration": _calibration(checks["int8-cpu"].get("calibration") or {}),
            "int8": {k: checks["int8-cpu"].get(k)
                     for k in ("activation_type", "weight_type", "per_channel", "qdq_nodes", "kept_high_precision",
                               "float_prefix_layers", "bias_correction", "qat", "adaround")},
            "accuracy": acc, "timing": timing, "seconds": round(time.perf_counter() - t0, 1)}
        print(f"[{name}] speed-up b1 {timing['speedup_b1']['median']:.2f}x b4 {timing['speedup_b4']['median']:.2f}x "
              f"(cpu {timing['cpu_speedup_b1']['median']:.2f}x / {timing['cpu_speedup_b4']['median']:.2f}x)",
              flush=True)
    res["load_after"] = [round(x, 2) for x in os.getloadavg()]
    path = write_results(args.name, markdown(res, args), res)
    print(path.read_text())


def render(path: Path) -> None:
    """The markdown of a results JSON again, from this script's tables and the run's own arguments and
    provenance (nothing re-measured)."""
    res = json.loads(path.read_text())
    args = argparse.Namespace(calib_method=res.get("args", {}).get("calib_method", "auto"), threads=res["threads"],
                              rounds=res["rounds"], slice_s=res["slice_s"])
    md = markdown(res, args).rstrip() + provenance_line(res["provenance"])
    path.with_suffix(".md").write_text(md)
    print(path.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
