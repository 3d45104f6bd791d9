"""MotionDigits-DA honesty checks and data-pipeline throughput.

1. A per-frame model cannot beat chance: a classifier that sees one frame per clip (T=1) is
   trained on source-train and tested on source-test; a temporal model (TSM, T=8) trained the same
   way is the control that shows the labels are learnable from motion.
2. Decoding must not dominate training: clips/s of the data pipeline (decode + sample + augment,
   from disk and from the in-memory cache, with 0 and 2 DataLoader workers) next to the clips/s of a
   training step of the demo's model (TSM EfficientNet-Lite0, 64x64, T=8).

    python benchmarks/motiondigits_checks.py [--quick]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_results  # noqa: E402

from edgevt.data.datasets import LabelMap, load_dataset  # noqa: E402
from edgevt.data.synth import SynthConfig, generate  # noqa: E402
from edgevt.data.transforms import ClipAugment  # noqa: E402
from edgevt.models.preprocess import FramesClassifier  # noqa: E402
from edgevt.models.zoo import create_model  # noqa: E402
from edgevt.spec import ClipSpec  # noqa: E402


def train_and_test(root: Path, arch: str, num_frames: int, epochs: int, seed: int) -> float:
    torch.manual_seed(seed)
    labels = LabelMap.load(root / "labels.txt")
    spec = ClipSpec(num_frames=num_frames, frame_stride=1, size=(64, 64), labels=labels.names)
    train = load_dataset(root / "source_train.txt", spec, labels, train=True, cache=True, seed=seed)
    test = load_dataset(root / "source_test.txt", spec, labels, cache=True)
    model = FramesClassifier(create_model(arch, len(labels), num_frames=num_frames), spec)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    loader = DataLoader(train, batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(seed))
    for epoch in range(epochs):
        train.set_epoch(epoch)
        model.train()
        for x, y in loader:
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    correct = 0
    with torch.no_grad():
        for x, y in DataLoader(test, batch_size=32):
            correct += (model(x).argmax(-1) == y).sum().item()
    return correct / len(test)


def pipeline_clips_per_s(root: Path, workers: int, cache: bool, seconds: float = 5.0) -> float:
    labels = LabelMap.load(root / "labels.txt")
    spec = ClipSpec(num_frames=8, size=(64, 64), labels=labels.names)
    ds = load_dataset(root / "source_train.txt", spec, labels, train=True, transform=ClipAugment(), cache=cache)
    if cache:
        for i in range(len(ds)):
            ds.video(i)  # fill the cache first: steady state of epoch >= 2
    loader = DataLoader(ds, batch_size=16, shuffle=True, num_workers=workers, persistent_workers=workers > 0)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for x, _ in loader:
            n += len(x)
            if time.perf_counter() - start >= seconds:
                break
    return n / (time.perf_counter() - start)


def train_step_clips_per_s(seconds: float = 8.0) -> float:
    spec = ClipSpec(num_frames=8, size=(64, 64), mean=(0.5,) * 3, std=(0.5,) * 3, labels=[str(i) for i in range(6)])
    model = FramesClassifier(create_model("tsm_efficientnet_lite0", 6, num_frames=8, weights="pretrained"), spec)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randint(0, 256, (16, 8, 64, 64, 3), dtype=torch.uint8)
    y = torch.randint(0, 6, (16,))
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        n += len(x)
    return n / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer clips, epochs and seeds")
    ap.add_argument("--data", type=Path, help="existing MotionDigits-DA folder (default: generate one)")
    args = ap.parse_args()
    per_class = 20 if args.quick else 40
    epochs = 6 if args.quick else 12
    seeds = [0] if args.quick else [0, 1, 2]
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data or Path(tmp) / "md"
        if args.data is None:
            generate(root, SynthConfig(split="unseen", per_class={"source_train": per_class, "source_test": 15,
                                                  "target_train": 1, "target_test": 1}))
        chance = 1 / len(LabelMap.load(root / "labels.txt"))
        rows = {}
        for name, arch, t in [("per-frame (T=1)", "tsn_tinycnn", 1), ("temporal TSM (T=8)", "tsm_tinycnn", 8)]:
            accs = [train_and_test(root, arch, t, epochs, s) for s in seeds]
            rows[name] = (float(np.mean(accs)), float(np.std(accs)))
            print(name, rows[name], flush=True)
        pipe = {f"{'cached' if c else 'from disk'}, {w} workers": pipeline_clips_per_s(root, w, c)
                for c in (False, True) for w in (0, 2)}
        print(pipe, flush=True)
        step = train_step_clips_per_s()
    md = ["## MotionDigits-DA checks", "",
          f"Source-test top-1 after training on source-train ({len(seeds)} seed(s), {epochs} epochs, "
          f"{per_class} clips/class, tinycnn, 64x64). Chance = {chance:.1%}.", "",
          "| model | top-1 (mean ± std) |", "|---|---|"]
    md += [f"| {k} | {m:.1%} ± {s:.1%} |" for k, (m, s) in rows.items()]
    md += ["", "Data pipeline (decode + dense sampling + augmentation, batch 16, 8x64x64 clips) vs one "
           "training step of TSM EfficientNet-Lite0 (forward + backward, batch 16):", "",
           "| stage | clips/s |", "|---|---|"]
    md += [f"| data: {k} | {v:.0f} |" for k, v in pipe.items()]
    md += [f"| train step: tsm_efficientnet_lite0 | {step:.0f} |"]
    write_results("motiondigits_checks", "\n".join(md),
                  {"chance": chance, "accuracy": rows, "pipeline_clips_per_s": pipe, "train_clips_per_s": step,
                   "epochs": epochs, "seeds": seeds, "per_class": per_class})
    print("\n".join(md))


if __name__ == "__main__":
    main()
