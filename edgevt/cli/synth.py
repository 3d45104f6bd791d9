"""edgevt synth: write the MotionDigits-DA benchmark."""
from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from edgevt.errors import EdgevtError


def synth(
    out: Path = typer.Option(Path("data/motiondigits"), "--out", "-o", help="Output folder (replaced atomically)."),
    train_per_class: int = typer.Option(40, help="Clips per class in source-train and target-train."),
    test_per_class: int = typer.Option(15, help="Clips per class in source-test and target-test."),
    frames: int = typer.Option(16, help="Frames per video."),
    size: int = typer.Option(64, help="Frame height and width in pixels."),
    zoom: bool = typer.Option(False, help="Add the zoom_in / zoom_out classes (8 classes instead of 6)."),
    seed: int = typer.Option(0, help="Generation is deterministic per seed."),
    shift: str = typer.Option("photo", help="The target's deployment shift(s), comma-separated: photo (hazy photo "
                              "scenes, colour cast, noise), clutter, night, rain, blur, angle, codec; e.g. night,rain."),
    split: str = typer.Option("cameras", help="cameras: target-train and target-test filmed by the same few target "
                              "cameras at other moments (adapting to the camera you deploy on); unseen: disjoint "
                              "photos (generalising to cameras nobody adapted to)."),
    source_style: str = typer.Option("clean", help="clean: source glyphs on black; photo: a realistic source, "
                                     "filmed over daytime photos (none of them a target photo)."),
    stream_frames: int = typer.Option(0, help="Also write target/stream.mp4 with this many frames of "
                                              "consecutive motions (0: none)."),
) -> None:
    """Generate MotionDigits-DA: motions of handwritten digits; source = clean on black (or over
    daytime photos), target = the same motions filmed by a few other cameras with a deployment shift
    (default: photo scenes with colour cast and noise)."""
    from edgevt.data.synth import SynthConfig, generate, make_stream_video

    if min(train_per_class, test_per_class) < 1 or frames < 2 or size < 16:
        raise EdgevtError("need --train-per-class/--test-per-class >= 1, --frames >= 2 and --size >= 16")
    cfg = SynthConfig(size=size, frames=frames, zoom=zoom, seed=seed, shifts=shift, split=split,
                      source_style=source_style,
                      per_class={"source_train": train_per_class, "source_test": test_per_class,
                                 "target_train": train_per_class, "target_test": test_per_class})
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()) as p:
        meta = generate(out, cfg, progress=p)
    from edgevt.data.splits import split_target_train

    adapt_list, val_list = split_target_train(out, seed=seed)
    if stream_frames:
        make_stream_video(out / "target" / "stream.mp4", "target", stream_frames, size, seed, zoom, config=cfg)
    typer.echo(f"wrote {sum(meta['splits'].values())} clips ({len(meta['classes'])} classes) to {out}")
    for part, n in meta["splits"].items():
        typer.echo(f"  {part}: {n} clips, list {out / (part + '.txt')}")
    typer.echo(f"  target_train split for adaptation: {adapt_list} (unlabeled use) + {val_list} (labeled, for "
               "choosing; never test on it)")


def register(app: typer.Typer) -> None:
    app.command()(synth)
