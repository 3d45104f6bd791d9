"""The demo's recipes, as plain public functions: what each step runs, at each size.

``benchmarks/`` import these (``SIZES``, ``with_clip``, ``adapt_config``, ``export_config``,
``synth_config``) to measure exactly what ``edgevt demo`` runs; the steps (edgevt.demo.steps) only
call them.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from edgevt.spec import ClipSpec


@dataclass(frozen=True)
class DemoSize:
    """How big each step is. ``quick`` is the README's default; ``tiny`` is for tests."""

    name: str
    # TSM-TinyCNN from scratch on frame differences (motion, not the scene: what carries to a new
    # camera), then `--strategy auto` over the recipe benchmarks/adapt_shifts.py proved best: the plain
    # (unaugmented) source-only model and its BatchNorm statistics re-estimated on the unlabeled target
    # clips (bn), chosen on labeled target-val clips. bn closed 97% (seeds 0-2) and 123% (fresh seeds
    # 3-5) of the source-only -> oracle gap over 8 shifts, more than any trained rung.
    # benchmarks/demo_recipe.py measures this recipe over 3 seeds, with its target-trained oracle.
    model: str = "tsm_tinycnn"
    weights: str = "none"
    input: str = "diff"
    augment: str = "none"
    # The clip the model takes: T, frame stride and (square) size are defined here only; adapt, the
    # synthetic videos (drawn at the clip size) and the report read them from it. The model fills in
    # the normalisation, the data the labels. At 32x32 the quick demo ran in 6 min but its stream
    # decisions matched 50%.
    clip: ClipSpec = field(default_factory=lambda: ClipSpec(num_frames=8, frame_stride=1, size=(64, 64)))
    video_frames: int = 16
    train_per_class: int = 20
    test_per_class: int = 10
    # share of target-train held out as labeled target-val (choices and the INT8 gate; the rest is the
    # unlabeled target-adapt set): quick holds out half, 60 clips, so the gate judges >= 50 clips
    val_share: float = 0.25
    epochs: int = 12  # source-only training; the adaptation rungs train half as many
    # the auto candidates (edgevt.adapt.auto); "all" would add the augmented look and the trained rungs
    rungs: str = "source_only,bn"
    batch_size: int = 16
    lr: float = 3e-3
    # auto: linear (frozen pretrained backbone, its features cached once) for pretrained weights,
    # full for a model trained from scratch
    adapt_mode: str = "auto"
    calib_clips: int = 60
    stream_frames: int = 600
    bench_batches: tuple = (1, 4)
    bench_warmup_s: float = 1.0
    bench_duration_s: float = 3.0
    seed: int = 0

    @property
    def frame_size(self) -> int:
        """Side of the synthetic video frames: the clip's size."""
        return self.clip.size[0]


def with_clip(s: DemoSize, **changes) -> DemoSize:
    """``s`` with its clip changed, e.g. ``with_clip(SIZES["quick"], size=(32, 32))``."""
    return replace(s, clip=replace(s.clip, **changes))


SIZES = {
    "tiny": DemoSize("tiny", clip=ClipSpec(num_frames=4, frame_stride=2, size=(32, 32)), video_frames=12,
                     train_per_class=3, test_per_class=2, epochs=1,
                     batch_size=8,
                     calib_clips=8, stream_frames=60, bench_batches=(1,), bench_warmup_s=0.1,
                     bench_duration_s=0.3),
    "quick": DemoSize("quick", val_share=0.5),
    "full": DemoSize("full", video_frames=24, train_per_class=60, test_per_class=25, epochs=30,
                     calib_clips=200, stream_frames=2000, bench_warmup_s=2.0, bench_duration_s=10.0),
}


def adapt_mode(s: DemoSize) -> str:
    if s.adapt_mode != "auto":
        return s.adapt_mode
    return "full" if s.weights in ("none", "", None) else "linear"


def adapt_config(data: Path, out: Path, s: DemoSize, progress: bool = False):
    """The demo's recipe as an AdaptConfig (public: benchmarks/demo_recipe.py runs exactly this):
    ``--strategy auto`` over labeled source clips, unlabeled target-adapt clips and labeled
    target-val clips (for the choice; target-test only reports)."""
    from edgevt.adapt import AdaptConfig

    return AdaptConfig(source=str(data / "source_train.txt"), out=str(out), strategy="auto",
                       target=str(data / "target_adapt.txt"), target_val=str(data / "target_val.txt"),
                       source_test=str(data / "source_test.txt"), target_test=str(data / "target_test.txt"),
                       model=s.model, weights=s.weights, input=s.input, augment=s.augment,
                       **AdaptConfig.clip_fields(s.clip), mode=adapt_mode(s),
                       epochs=s.epochs, batch_size=s.batch_size, lr=s.lr, seed=s.seed, rungs=s.rungs,
                       progress=progress)


def synth_config(s: DemoSize):
    """The MotionDigits-DA data the demo generates (edgevt.data.synth)."""
    from edgevt.data.synth import SynthConfig

    return SynthConfig(size=s.frame_size, frames=s.video_frames, seed=s.seed,
                       per_class={"source_train": s.train_per_class, "source_test": s.test_per_class,
                                  "target_train": s.train_per_class, "target_test": s.test_per_class})


def export_config(data: Path, s: DemoSize, threads: int | None = None):
    """FP32/FP16/INT8 in both flavours (TensorRT Q/DQ and the CPU one), calibrated on the unlabeled
    target-adapt clips and gated on the labeled target-val clips (never target-test), with whichever
    streaming form the model has."""
    from edgevt.export.exporter import ExportConfig

    return ExportConfig(precisions=("fp32", "fp16", "int8"), calib=str(data / "target_adapt.txt"),
                        calib_clips=s.calib_clips, eval=str(data / "target_val.txt"), flavour="auto",
                        threads=threads, forms=["stream"])
