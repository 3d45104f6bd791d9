"""edgevt demo: data -> adapt -> export -> eval -> bench -> stream -> report.md, offline on a CPU."""
from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from edgevt.errors import EdgevtError


def demo(
    out: Path = typer.Option(Path("demo"), "--out", "-o", help="Folder for everything the demo writes."),
    quick: bool = typer.Option(False, "--quick", help="Small sizes: a few minutes on 2 CPU cores (default)."),
    full: bool = typer.Option(False, "--full", help="Larger data set, longer training and timing."),
    tiny: bool = typer.Option(False, "--tiny", help="Smallest plumbing check: the default model on a few tiny "
                                                   "clips (for tests; its accuracy means nothing).", hidden=True),
    model: str = typer.Option(None, "--model", help="Registry model to adapt (default: the size's; "
                                                     "`edgevt models` lists them)."),
    weights: str = typer.Option(None, "--weights", help="pretrained (ImageNet, Lite0 models only: they ship "
                                                         "offline) or none (random init, trains every layer); "
                                                         "default: none (the demo's model trains from scratch; "
                                                         "--model with a Lite0 model defaults to pretrained)."),
    epochs: int = typer.Option(None, "--epochs", help="Source-only training epochs; each adaptation rung, which "
                                                       "starts from the source-only model, trains half as many "
                                                       "(default: the size's, 20 quick, 30 full)."),
    threads: int = typer.Option(None, "--threads", help="CPU threads for torch and onnxruntime (default: all)."),
    force: bool = typer.Option(False, "--force", help="Recompute every step instead of reusing earlier outputs."),
) -> None:
    """The whole path on the built-in MotionDigits-DA benchmark: generate source + target data, adapt a
    temporal-shift model (tsm_tinycnn on frame differences, appearance-augmented source clips) with
    `--strategy auto` (source-only, then BatchNorm re-estimation, self-training and DANN + self-training
    rungs, chosen on labeled target-val clips; --model picks another registry model, pretrained where
    its weights ship offline), export the chosen one with FP16
    and INT8 calibrated on target clips (parity checked), evaluate every artifact on target-test, bench
    every usable backend and precision, stream a target-domain video, and write report.md.
    Rerunning reuses every step whose outputs are still valid."""
    from dataclasses import replace

    from edgevt.demo import SIZES, run_demo
    from edgevt.models.zoo import has_offline_weights

    chosen = [name for name, flag in (("quick", quick), ("full", full), ("tiny", tiny)) if flag]
    if len(chosen) > 1:
        raise EdgevtError(f"choose one size, not {' and '.join('--' + c for c in chosen)}")
    size = SIZES[chosen[0] if chosen else "quick"]
    if model is not None:
        # (an unknown name is a one-line error from the registry)
        size = replace(size, model=model, weights="pretrained" if has_offline_weights(model) else "none")
    if weights is not None:
        if weights not in ("pretrained", "none"):
            raise EdgevtError(f"--weights {weights!r}: use pretrained or none")
        if weights == "pretrained" and not has_offline_weights(size.model):
            raise EdgevtError(f"--weights pretrained: {size.model} has no weights that ship offline; "
                              "use an efficientnet_lite0 model or --weights none")
        size = replace(size, weights=weights)
    if epochs is not None:
        if epochs < 1:
            raise EdgevtError(f"--epochs must be >= 1, got {epochs}")
        size = replace(size, epochs=epochs)
    console = Console()
    result = run_demo(out, size, threads=threads, force=force, console=console)
    console.rule("edgevt demo: done")
    console.print(f"report:        {result.report}")
    where = {"data": result.out / "data", "checkpoints": result.out / "models", "bundle": result.out / "bundle",
             "bench": result.out / "bench", "stream": result.out / "stream"}
    for name, path in where.items():
        if path.exists():
            console.print(f"{name + ':':<15}{path}")


def register(app: typer.Typer) -> None:
    app.command()(demo)
