"""edgevt adapt: fine-tune, domain-adapt or meta-train a video classifier (thin over edgevt.adapt)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from edgevt.adapt.config import AUTO_RUNGS, STRATEGIES


def adapt(
    source: Optional[str] = typer.Option(None, "--source", "-s", help="Labeled training clips: <root>/<class>/<video> or a 'path label' list."),
    target: Optional[str] = typer.Option(None, "--target", "-t", help="Target-domain clips: unlabeled for dann/cdan/mmd/coral, labeled for fewshot."),
    out: Path = typer.Option(Path("runs/adapt"), "--out", "-o", help="Output folder: model.pt, last.pt, metrics.json, report.json/md."),
    strategy: str = typer.Option("finetune", help=f"One of: {', '.join(STRATEGIES)}."),
    source_test: Optional[str] = typer.Option(None, help="Labeled source test clips for the report."),
    target_test: Optional[str] = typer.Option(None, help="Labeled target test clips for the report."),
    extra_domain: list[str] = typer.Option([], help="More labeled domains for meta-training episodes (repeatable)."),
    model: Optional[str] = typer.Option(None, help="Registry model (`edgevt models`); default tsn_tinycnn, or the --init checkpoint's."),
    weights: str = typer.Option("none", help="none | pretrained | torchvision weight name | path."),
    init: Optional[str] = typer.Option(None, help="Start from this edgevt checkpoint (same architecture and labels)."),
    temporal: str = typer.Option("conv", help="TSN/TSM temporal head: avg (order-blind) or conv (order-aware)."),
    shift_direction: str = typer.Option("bidirectional", help="TSM: bidirectional (offline TSM) or causal (no "
                                        "channels from future frames; `edgevt run` streams it with no offline/online gap)."),
    frames: int = typer.Option(8, help="Frames per clip (T)."),
    stride: int = typer.Option(2, help="Take every k-th source frame."),
    size: Optional[int] = typer.Option(None, help="Frame height and width (default 64, or the --init checkpoint's). "
                                       "With --init, another size fine-tunes that model at it: train at 112, then "
                                       "finish at 224 for a fraction of the cost (progressive resizing)."),
    mean: Optional[str] = typer.Option(None, help="Normalisation mean 'r,g,b' (default: the model's)."),
    std: Optional[str] = typer.Option(None, help="Normalisation std 'r,g,b' (default: the model's)."),
    mode: str = typer.Option("partial", help="linear (frozen backbone), partial (train the last --unfreeze stages) or full."),
    unfreeze: int = typer.Option(2, help="partial: backbone stages trained, counted from the top."),
    freeze_bn: str = typer.Option("auto", help="Keep BatchNorm statistics fixed: auto (small batches or pretrained), always, never."),
    cache_features: str = typer.Option("auto", help="Train on cached frozen-stage features when exact: auto, on, off."),
    augment: str = typer.Option("none", help="Training augmentation: none, basic (crop + colour jitter), "
                                "appearance (domain randomisation: random background textures, colour, light, blur, "
                                "sensor noise; what makes a model carry to a new camera) or invert (each clip's negative half the "
                                "time, so a bright-on-dark source does not teach the sign of motion from polarity; "
                                "for TSM/3D models); several joined by '+' apply in turn (appearance+invert). Disables the feature cache."),
    input: str = typer.Option("rgb", "--input", help="What a TSN/TSM frame encoder sees: rgb, diff (differences "
                              "of consecutive clip frames: motion without the static scene) or edgediff (the "
                              "differences of each frame's local contrast |frame - blur|: the same for a scene and "
                              "its negative, so dark-on-light and light-on-dark motion look alike). diff and "
                              "edgediff stream as window."),
    limit_per_class: Optional[int] = typer.Option(None, help="Use only this many labeled training clips per class."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip unreadable, truncated or empty videos (and list "
                                                             "them) instead of stopping at the first one."),
    val_split: float = typer.Option(0.0, help="Share of labeled clips held out for validation / early stopping."),
    epochs: int = typer.Option(10, help="Passes over the training clips (meta: episodes-per-epoch / meta-batch steps)."),
    batch_size: int = typer.Option(32, help="Clips per step (per process under torchrun)."),
    lr: float = typer.Option(1e-3, help="Learning rate of new layers (AdamW)."),
    backbone_lr_mult: float = typer.Option(0.1, help="Pretrained layers learn this much slower."),
    weight_decay: float = typer.Option(1e-2),
    schedule: str = typer.Option("cosine", help="cosine (with warm-up), dann (lr0/(1+10p)^0.75) or constant."),
    warmup: float = typer.Option(0.05, help="Share of steps spent warming up (cosine)."),
    label_smoothing: float = typer.Option(0.0),
    patience: int = typer.Option(0, help="Early stopping after this many epochs without validation gain (0: off)."),
    amp: bool = typer.Option(True, help="Mixed precision (CUDA only)."),
    adv_weight: float = typer.Option(1.0, help="Weight of the alignment loss."),
    importance_weighting: bool = typer.Option(False, help="Weight source clips by the discriminator's density ratio."),
    self_train: Optional[float] = typer.Option(None, help="Weight of self-training on target clips (confident, "
                                               "class-balanced pseudo-labels on a second view; default 1 for "
                                               "--strategy selftrain, else 0). Combines with any strategy."),
    pl_threshold: float = typer.Option(0.8, help="Self-training: confidence a pseudo-label needs."),
    consistency: str = typer.Option("speed", help="Self-training's second view of a target clip: speed (twice the "
                                    "frame stride: temporal consistency), crop (another window) or none."),
    im_weight: Optional[float] = typer.Option(None, help="Information maximisation on target predictions (confident, "
                                              "every class used; default 0.3 for selftrain, else 0)."),
    mcc_weight: float = typer.Option(0.0, help="Minimum class confusion on target predictions."),
    target_labeled: Optional[str] = typer.Option(None, help="A few labeled target clips mixed into training "
                                                 "(semi-supervised)."),
    target_val: Optional[str] = typer.Option(None, help="Labeled target clips for choosing recipes (--strategy auto) "
                                             "and early stopping; never pass a test split."),
    bn_adapt: bool = typer.Option(False, help="Re-estimate BatchNorm statistics on the target clips at the end."),
    bn_source: bool = typer.Option(False, help="Before training, re-estimate BatchNorm statistics on the source "
                                   "clips: for a pretrained backbone on another input than it learned (--input diff)."),
    pixel: str = typer.Option("none", help="Pixel-level adaptation first: gan, fda or hist translates the --source "
                              "clips towards --target (as `edgevt translate`, into --out/pixel_<method>) and "
                              "the strategy trains on them; none: off."),
    budget: float = typer.Option(1.0, help="--strategy auto: scales the epochs of every recipe in the ladder."),
    rungs: str = typer.Option("all", help="--strategy auto: the candidates to run, comma-separated, from "
                              f"{', '.join(AUTO_RUNGS)}; or all."),
    ways: int = typer.Option(5, help="Meta/few-shot: classes per task (N-way)."),
    shots: int = typer.Option(1, help="Meta/few-shot: labeled clips per class (K-shot)."),
    queries: int = typer.Option(5, help="Meta: query clips per class per task."),
    inner_steps: int = typer.Option(5, help="Meta/few-shot: inner-loop gradient steps."),
    inner_lr: float = typer.Option(0.1, help="Meta/few-shot: inner-loop learning rate (SGD)."),
    meta_batch: int = typer.Option(4, help="Meta: tasks per outer step."),
    episodes: int = typer.Option(50, help="Meta: tasks per epoch."),
    fewshot_method: str = typer.Option("finetune", help="fewshot: finetune (the inner loop) or prototype (nearest centroid)."),
    seed: int = typer.Option(0, help="Runs are deterministic per seed."),
    checkpoint_every: int = typer.Option(0, help="Also write last.pt every N steps (0: at epoch ends)."),
    resume: bool = typer.Option(False, help="Continue exactly from --out/last.pt."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
) -> None:
    """Adapt a video classifier: fine-tune, align domains (DANN, CDAN, MMD, CORAL), self-train on
    target clips (selftrain), re-estimate BatchNorm on them (bn), meta-train (MAML, FOMAML,
    Reptile), adapt from a few labeled target clips (fewshot), or let `--strategy auto --target-val V`
    run a short ladder of recipes and keep the best on V.

    Multi-GPU / multi-process: torchrun --nproc_per_node N -m edgevt adapt ...
    """
    from edgevt.adapt import AdaptConfig, adapt as run_adapt
    from edgevt.errors import EdgevtError

    def triple(text, name):
        if text is None:
            return None
        try:
            vals = tuple(float(v) for v in text.split(","))
        except ValueError:
            vals = ()
        if len(vals) != 3:
            raise EdgevtError(f"--{name} must be three comma-separated numbers, got {text!r}")
        return vals

    cfg = AdaptConfig(
        source=source, out=str(out), strategy=strategy, target=target, source_test=source_test,
        target_test=target_test, extra_domains=list(extra_domain), model=model, weights=weights, init=init,
        temporal=temporal, shift_direction=shift_direction, num_frames=frames, frame_stride=stride, size=size, mean=triple(mean, "mean"),
        std=triple(std, "std"), mode=mode, unfreeze=unfreeze, freeze_bn=freeze_bn, cache_features=cache_features,
        augment=augment, input=input, limit_per_class=limit_per_class, skip_bad=skip_bad, val_split=val_split, epochs=epochs, batch_size=batch_size,
        lr=lr, backbone_lr_mult=backbone_lr_mult, weight_decay=weight_decay, schedule=schedule, warmup=warmup,
        label_smoothing=label_smoothing, patience=patience, amp=amp, adv_weight=adv_weight,
        importance_weighting=importance_weighting, self_train=self_train, pl_threshold=pl_threshold,
        consistency=consistency, im_weight=im_weight, mcc_weight=mcc_weight, target_labeled=target_labeled,
        target_val=target_val, bn_adapt=bn_adapt, bn_source=bn_source, pixel=pixel, budget=budget, rungs=rungs, ways=ways, shots=shots, queries=queries, inner_steps=inner_steps,
        inner_lr=inner_lr, meta_batch=meta_batch, episodes_per_epoch=episodes, fewshot_method=fewshot_method,
        seed=seed, checkpoint_every=checkpoint_every, resume=resume, device=device)
    run_adapt(cfg)


def register(app: typer.Typer) -> None:
    app.command()(adapt)
