"""edgevt translate: render labeled source clips as target-domain clips (thin over edgevt.adapt.pixel)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def translate(
    source: str = typer.Option(..., "--source", "-s", help="Labeled source clips: <root>/<class>/<video> or a 'path label' list."),
    target: str = typer.Option(..., "--target", "-t", help="Target-domain clips (any layout; labels, if any, are not used). "
                               "gan needs at least 4, fda/hist at least 1."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (replaced only if it is an earlier translation): "
                             "source.txt + labels.txt + source/<class>/*.mp4, translator.pt, grids/*.png, translate.json."),
    method: str = typer.Option("gan", help="gan (CycleGAN + semantic + warp consistency, trained here), fda (Fourier "
                               "domain adaptation: low-frequency amplitude of one target frame per clip; no training) "
                               "or hist (colour-histogram matching to one target frame per clip; no training)."),
    size: int = typer.Option(64, help="Frame height and width (both sets are resampled to it); gan: divisible by 4."),
    frames: int = typer.Option(8, help="Frames per training clip (T) for the GAN and its semantic classifier."),
    stride: int = typer.Option(2, help="Take every k-th source frame in training clips."),
    steps: int = typer.Option(300, help="gan: training steps (each: --batch-size clips per domain)."),
    batch_size: int = typer.Option(2, help="gan: clips per domain per step."),
    ngf: int = typer.Option(16, help="gan: generator width (CycleGAN uses 64; 16 trains in minutes on 2 cores)."),
    blocks: int = typer.Option(3, help="gan: residual blocks per generator."),
    lambda_cycle: float = typer.Option(10.0, help="gan: weight of the cycle loss."),
    lambda_identity: float = typer.Option(0.5, help="gan: weight of the identity loss, times --lambda-cycle."),
    lambda_semantic: float = typer.Option(1.0, help="gan: weight of semantic consistency (the frozen source classifier "
                                          "must give translated clips the label it gives the originals)."),
    lambda_warp: float = typer.Option(5.0, help="gan: weight of warp equivariance, G(shift(x)) = shift(G(x)) for a "
                                      "random small shift per clip (keeps video from flickering)."),
    classifier: Optional[str] = typer.Option(None, help="gan: edgevt checkpoint for the semantic loss (same --frames and "
                                             "--size); default: a small one trained here on the source clips."),
    beta: float = typer.Option(0.09, help="fda: the low-frequency band, as a share of the frame side."),
    translator: Optional[str] = typer.Option(None, help="Apply this saved translator.pt instead of making one."),
    grid_every: int = typer.Option(100, help="gan: write grids/step_N.png every N steps."),
    checkpoint_every: int = typer.Option(100, help="gan: write the training checkpoint every N steps."),
    resume: bool = typer.Option(False, help="gan: continue an interrupted run (or a finished one, to more --steps)."),
    seed: int = typer.Option(0, help="Deterministic per seed."),
    device: str = typer.Option("auto", help="auto, cpu or cuda."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip unreadable videos instead of stopping."),
) -> None:
    """Pixel-level adaptation: write the labeled source clips as if filmed by the target camera.

    The output's source.txt is a labeled 'path label' list for `edgevt adapt --source` (any
    strategy); `edgevt adapt --pixel gan|fda|hist` does both steps in one go.

    Example: edgevt translate -s data/md/source_train.txt -t data/md/target_adapt.txt -o runs/fda --method fda
    """
    from edgevt.adapt.pixel import TranslateConfig, translate as run_translate
    from edgevt.adapt.pixel.gan import GanConfig

    gan = GanConfig(ngf=ngf, blocks=blocks, lambda_cycle=lambda_cycle, lambda_identity=lambda_identity,
                    lambda_semantic=lambda_semantic, lambda_warp=lambda_warp)
    cfg = TranslateConfig(source=source, target=target, out=str(out), method=method, size=size, num_frames=frames,
                          frame_stride=stride, steps=steps, batch_size=batch_size, gan=gan, classifier=classifier,
                          grid_every=grid_every, checkpoint_every=checkpoint_every, resume=resume,
                          translator=translator, beta=beta, seed=seed, device=device, skip_bad=skip_bad)
    r = run_translate(cfg)
    typer.echo(f"translated source list: {r.list} (use it as --source of edgevt adapt)")


def register(app: typer.Typer) -> None:
    app.command()(translate)
