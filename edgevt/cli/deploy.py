"""edgevt deploy: serve a bundle with Triton Inference Server or DeepStream (configs, thin over edgevt.deploy)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

deploy_app = typer.Typer(help="Configs to serve a bundle to many cameras: a Triton model repository, or "
                              "DeepStream nvinfer + nvdspreprocess configs.", no_args_is_help=True)


@deploy_app.command("triton")
def triton(
    bundle: Path = typer.Argument(..., help="Bundle folder written by `edgevt export`."),
    out: Path = typer.Option(..., "--out", "-o", help="Model repository folder to write (replaces only an "
                                                      "earlier edgevt repository)."),
    name: Optional[str] = typer.Option(None, help="Name of the python model (default: the bundle folder's name); "
                                                  "the platform models get _<form>_onnx / _<form>_plan suffixes."),
    form: Optional[str] = typer.Option(None, help="Streaming form the python model runs (default: the one "
                                                  "`edgevt run` picks for the bundle)."),
    precision: str = typer.Option("fp32", help="Artifact precision: fp32, fp16 or int8."),
    platform: str = typer.Option("python,onnxruntime_onnx,tensorrt_plan", help="Comma list of python, "
                                 "onnxruntime_onnx, tensorrt_plan."),
    max_streams: int = typer.Option(16, help="Python model: concurrent sequences (cameras) per instance."),
    instances: int = typer.Option(1, help="Model instances (python: processes; platform models: per GPU)."),
    threads: int = typer.Option(0, help="Python model: onnxruntime threads per instance (0: onnxruntime's default)."),
    max_batch: int = typer.Option(8, help="Platform models with a dynamic batch: max_batch_size."),
) -> None:
    """Write a Triton model repository: a python model that runs the bundle with one state per camera
    (what `edgevt run BUNDLE SOURCE --backend triton://HOST:PORT/NAME` streams to), and onnxruntime_onnx /
    tensorrt_plan configs for GPU servers (window form: dynamic batching; stateful form: sequence batching
    with the shift buffers as implicit state). REPO/README.md says how to start the server."""
    from edgevt.deploy.triton import write_triton_repository

    platforms = tuple(p.strip() for p in platform.split(",") if p.strip())
    repo = write_triton_repository(bundle, out, name=name, form=form, precision=precision, platforms=platforms,
                                   max_streams=max_streams, instances=instances, threads=threads, max_batch=max_batch)
    for m, v in repo.models.items():
        typer.echo(f"{m}: {v['platform']} ({v['form']} form{', ' + v['role'] if v.get('role') else ''})")
    typer.echo(f"repository: {repo.path} (start the server as in {repo.path / 'README.md'}; then "
               f"edgevt run {bundle} SOURCE --backend triton://127.0.0.1:8001/{repo.name})")


@deploy_app.command("deepstream")
def deepstream(
    bundle: Path = typer.Argument(..., help="Bundle folder written by `edgevt export`."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write the configs into (replaces only an "
                                                      "earlier edgevt DeepStream folder)."),
    precision: str = typer.Option("fp32", help="fp32, fp16 or int8: which ONNX / engine and network-mode."),
    batch: int = typer.Option(1, help="Streams batched by nvstreammux (nvinfer batch-size, the N of "
                                      "network-input-shape)."),
    sources: int = typer.Option(1, help="Source ids the preprocess group covers (src-ids 0..N-1)."),
    stride: int = typer.Option(1, help="A decision every N frames (nvdspreprocess stride)."),
    gie_id: int = typer.Option(1, help="nvinfer gie-unique-id (= nvdspreprocess target-unique-ids)."),
) -> None:
    """Write DeepStream configs for the bundle's window model: nvinfer (config_infer.txt) and
    nvdspreprocess for a clip sequence (config_preprocess.txt), labels and a README. They are checked
    for their keys here; they run only on a DeepStream machine."""
    from edgevt.deploy.deepstream import write_deepstream_configs

    res = write_deepstream_configs(bundle, out, precision=precision, batch=batch, sources=sources, stride=stride,
                                   gie_id=gie_id)
    for f in res.files:
        typer.echo(str(f))


def register(app: typer.Typer) -> None:
    app.add_typer(deploy_app, name="deploy")
