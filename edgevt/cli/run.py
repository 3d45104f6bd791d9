"""edgevt run: stream a video source through a bundle (or checkpoint) and report decisions."""
from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import List, Optional

import typer


def _print_summary(s, console) -> None:
    from rich.table import Table

    t = Table(title=f"edgevt run: {s.source} ({s.form}, drop {s.drop}, stride {s.stride}) -- ended: {s.ended}")
    t.add_column("metric")
    t.add_column("value", justify="right")
    t.add_row("frames decoded", f"{s.frames} ({s.fps:.1f} fps)")
    t.add_row("decisions", f"{s.decisions} ({s.decisions_per_s:.1f}/s)")
    t.add_row("dropped decision points", str(s.dropped))
    t.add_row("skipped frames", str(s.skipped_frames))
    t.add_row("source gaps", str(s.gaps))
    if s.latency_ms:
        t.add_row("latency p50 / p95 / p99", "{p50:.1f} / {p95:.1f} / {p99:.1f} ms".format(**s.latency_ms))
    if s.stages_ms:
        t.add_row("stages (mean)", "  ".join(f"{k} {v:.2f} ms" for k, v in s.stages_ms.items()))
    console.print(t)


def _looks_like_model(path: str) -> bool:
    from edgevt.bundle import CHECKPOINT_SUFFIXES, MANIFEST

    p = Path(path)
    return (p / MANIFEST).is_file() or p.name == MANIFEST or (p.is_file() and p.suffix.lower() in CHECKPOINT_SUFFIXES)


def run(
    model: Path = typer.Argument(..., help="Bundle folder from `edgevt export`, or a .pt checkpoint (torch backend)."),
    source: str = typer.Argument(..., help="Video file, camera index (0), rtsp://... / http://... URL, or a "
                                           "GStreamer pipeline ending in appsink (needs OpenCV with GStreamer)."),
    backend: Optional[str] = typer.Option(None, "--backend", "-b", help="ort-cpu, ort-cuda, ort-trt, torch, ... "
                                          "(`edgevt info` lists them), or triton://HOST:PORT/MODEL for a model "
                                          "served by `edgevt deploy triton` (gRPC port). Default: ort-cpu for a "
                                          "bundle, torch for a checkpoint."),
    form: Optional[str] = typer.Option(None, help="window | incremental | stateful. Default: the bundle's "
                                                  "ClipSpec streaming form when its artifacts exist, else window (stateful is "
                                                  "the default only for TSM trained with --shift-direction causal)."),
    precision: str = typer.Option("fp32", help="Artifact precision to run: fp32, fp16, int8 (the INT8 flavour "
                                               "that fits the backend: cpu on ort-cpu, tensorrt on GPU backends) "
                                               "or int8-cpu / int8-tensorrt to run a flavour by name."),
    stride: int = typer.Option(1, help="A decision every N frames (frames after the ClipSpec's frame_stride)."),
    drop: Optional[str] = typer.Option(None, help="latest: skip to the newest window when behind (live sources' "
                                                  "default); none: process every window (files' default)."),
    jsonl: Optional[Path] = typer.Option(None, help="Write one JSON line per decision/event/gap (+ summary)."),
    video_out: Optional[Path] = typer.Option(None, help="Write an annotated video (label, score, latency)."),
    video_fps: float = typer.Option(25.0, help="Frame rate of --video-out."),
    smooth: str = typer.Option("ema", help="Score smoothing: ema, mean or none."),
    smooth_alpha: float = typer.Option(0.5, help="EMA weight of the newest decision."),
    smooth_window: int = typer.Option(5, help="Moving-average length, in decisions."),
    onset: float = typer.Option(0.6, help="Smoothed score at which an event starts."),
    offset: float = typer.Option(0.4, help="Smoothed score below which an event ends (hysteresis)."),
    min_event_frames: int = typer.Option(8, help="Shortest event reported, in source frames."),
    ignore_label: Optional[List[str]] = typer.Option(None, help="Labels that never raise events (repeatable)."),
    realtime: bool = typer.Option(False, help="Replay a file at its own frame rate, like a camera."),
    reconnect: bool = typer.Option(False, help="Reopen a live source that stalls/disconnects, with backoff."),
    max_gap: Optional[float] = typer.Option(None, help="With --reconnect: give up after this many seconds."),
    max_frames: Optional[int] = typer.Option(None, help="Stop after this many decoded frames."),
    encode_batch: int = typer.Option(0, help="Per-frame forms: encode up to N waiting frames in one call "
                                             "(0: up to T; 1: strictly one frame per call)."),
    threads: Optional[int] = typer.Option(None, help="Inference threads (onnxruntime intra-op / torch)."),
    live: Optional[bool] = typer.Option(None, "--live/--no-live", help="Live terminal panel (default: when "
                                                                       "stderr is a terminal)."),
) -> None:
    """Run the classifier MODEL (a bundle, or a checkpoint) on the stream SOURCE: decisions with
    latency, smoothed scores, events. The artifact comes first, as in every verb.

    Ctrl-C or SIGTERM stops cleanly: every sink is flushed and the summary printed (exit 0). A
    source that ends badly -- a file cut short, a live source lost (without --reconnect) or not
    back within --max-gap -- also flushes everything, then exits 2 with a one-line error."""
    from rich.console import Console
    from rich.markup import escape

    from edgevt.cli._options import threads as check_threads
    from edgevt.errors import EdgevtError
    from edgevt.stream.loop import Stream
    from edgevt.stream.sinks import JsonlSink, LiveSummary, VideoSink

    console = Console(stderr=True)
    if not _looks_like_model(str(model)) and _looks_like_model(source):
        raise EdgevtError(f"edgevt run takes the bundle first, then the source: edgevt run {source} {model}")
    check_threads(threads)
    if not (video_fps > 0):
        raise EdgevtError(f"--video-fps {video_fps}: must be > 0")
    if backend is None:
        from edgevt.bundle import artifact_kind

        backend = "torch" if model.exists() and artifact_kind(model) == "checkpoint" else "ort-cpu"
    options = {"threads": threads} if threads is not None else {}
    st = Stream(source, model, form=form, backend=backend, precision=precision, stride=stride, drop=drop,
                smooth=smooth, smooth_alpha=smooth_alpha, smooth_window=smooth_window, onset=onset,
                offset=offset, min_event_frames=min_event_frames, ignore_labels=tuple(ignore_label or ()),
                realtime=realtime, reconnect=reconnect, max_gap=max_gap, max_frames=max_frames,
                encode_batch=encode_batch or None, backend_options=options)
    # Sinks after the stream opened: a bad source or bundle leaves no empty output files behind.
    try:
        if jsonl is not None:
            st.sinks.append(JsonlSink(jsonl))
        if video_out is not None:
            st.sinks.append(VideoSink(video_out, fps=video_fps))
    except BaseException:
        st.close()
        raise
    if live if live is not None else sys.stderr.isatty():
        st.sinks.append(LiveSummary(st, console=console))
    shown = len(st.warnings)
    for w in st.warnings:
        console.print(f"[yellow]warning:[/] {escape(w)}", highlight=False, soft_wrap=True)

    def on_sigterm(signum, frame):  # handled like Ctrl-C: stop, flush, summary, exit 0
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        for _ in st:
            pass
    except KeyboardInterrupt:
        st.close(reason="interrupted")
    finally:
        st.close()
        signal.signal(signal.SIGTERM, previous)
    _print_summary(st.summary, console)
    for w in st.summary.warnings[shown:]:
        console.print(f"[yellow]warning:[/] {escape(w)}", highlight=False, soft_wrap=True)
    if jsonl is not None:
        console.print(f"decisions: {jsonl}")
    if video_out is not None and video_out.exists():
        console.print(f"annotated video: {video_out}")
    if st.summary.problem:  # everything is written; the exit code says the source ended badly
        raise EdgevtError(st.summary.problem)


def register(app: typer.Typer) -> None:
    app.command()(run)
