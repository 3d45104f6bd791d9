"""``edgevt bench --stream VIDEO BUNDLE``: the streaming loop timed end to end, stage by stage.

Runs ``edgevt.stream`` over a video file with ``drop="none"`` (every decision point is computed,
so the numbers describe the whole file) and reports, per decision: end-to-end latency (capture of
the newest frame -> decision ready, so it includes decode, queueing, inference and
post-processing), and the decode / preprocess / inference / post stages; plus frames/s and
decisions/s of the loop. When the video has a ``<name>.segments.json`` ground truth (as
``make_stream_video`` writes), the share of decisions whose label matches it is reported too.
"""
from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path


from edgevt.errors import EdgevtError
from edgevt.stats import LatencyStats

STAGES = ("decode", "preprocess", "inference", "post")


@dataclass
class StreamBench:
    video: str
    bundle: str
    backend: str
    precision: str
    form: str
    summary: dict  # StreamSummary.to_dict()
    latency: LatencyStats | None  # end to end per decision
    stages: dict  # stage -> LatencyStats
    ground_truth: dict | None = None  # {"decisions": n, "correct": k, "accuracy": %} on single-segment windows
    provenance: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["latency"] = self.latency.to_dict() if self.latency else None
        d["stages"] = {k: v.to_dict() for k, v in self.stages.items()}
        return {"format": "edgevt-bench-stream", "format_version": 1, **d}


def load_segments(video: Path) -> list[dict] | None:
    p = video.with_suffix(".segments.json")
    if not p.exists():
        return None
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError:
        raise EdgevtError(f"{p}: not valid JSON; delete it or regenerate the video") from None


def ground_truth_label(segments: list[dict], first: int, last: int) -> str | None:
    """The label when frames first..last all lie in one segment; None across a boundary."""
    for s in segments:
        if s["start"] <= first and last < s["end"]:
            return s["label"]
    return None


def bench_stream(bundle: str | Path, video: str | Path, *, backend: str | None = None, precision: str | None = None,
                 form: str | None = None, stride: int = 1, threads: int | None = None, sinks: list | None = None,
                 progress=None, console=None) -> StreamBench:
    """Stream ``video`` through the bundle's model; see the module docstring."""
    import edgevt.stream as es
    from edgevt.bench.suite import apply_threads
    from edgevt.env import environment

    video = Path(video)
    if not video.is_file():
        raise EdgevtError(f"{video}: no such video file (bench --stream times a file end to end)")
    backend = backend or "ort-cpu"
    precision = precision or "fp32"
    if "," in backend or "," in precision:
        raise EdgevtError("bench --stream times one configuration: give one --backend and one --precision")
    thread_info = apply_threads(threads)
    opts = {"threads": threads} if threads else {}
    segments = load_segments(video)
    lat: list[float] = []
    stage: dict[str, list[float]] = {k: [] for k in STAGES}
    judged = correct = 0
    s = es.stream(str(video), str(bundle), backend=backend, precision=precision, form=form, stride=stride,
                  drop="none", sinks=sinks, backend_options=opts)
    task = progress.add_task(f"stream {video.name}", total=None) if progress is not None else None
    for d in s:
        lat.append(d.latency)
        for k in STAGES:
            stage[k].append(d.stages.get(k, 0.0))
        if segments is not None:
            truth = ground_truth_label(segments, d.first_frame, d.frame)
            if truth is not None:
                judged += 1
                correct += truth == d.label
        if task is not None:
            progress.advance(task)
    summary = s.summary.to_dict()
    gt = None
    if segments is not None:
        gt = {"decisions": judged, "correct": correct, "accuracy": 100.0 * correct / judged if judged else None,
              "rule": "decisions whose window lies inside one ground-truth segment; smoothed label"}
    return StreamBench(video=str(video), bundle=str(bundle), backend=backend, precision=precision, form=s.form_name,
                       summary=summary, latency=LatencyStats.from_samples(lat, 1) if lat else None,
                       stages={k: LatencyStats.from_samples(v, 1) for k, v in stage.items() if v},
                       ground_truth=gt, provenance={"environment": environment(), "threads": thread_info,
                                                    "argv": sys.argv})


def stream_markdown(r: StreamBench) -> str:
    sm = r.summary
    lines = [f"# edgevt bench --stream: `{r.video}`", "",
             f"- model: `{r.bundle}` ({r.form} form, {r.backend} {r.precision}), stride {sm.get('stride')}, drop none",
             f"- {sm.get('frames')} frames, {sm.get('decisions')} decisions in {sm.get('wall_s', 0):.2f} s: "
             f"{sm.get('fps', 0):.1f} frames/s, {sm.get('decisions_per_s', 0):.1f} decisions/s",
             f"- threads: {r.provenance.get('threads', {}).get('torch_intra_op')} (torch intra-op), "
             f"requested {r.provenance.get('threads', {}).get('requested') or 'default'}", ""]
    lines += ["| per decision | p50 ms | p90 ms | p95 ms | p99 ms | mean ms | max ms | noise |",
              "|---|---|---|---|---|---|---|---|"]
    rows = ([("end to end (capture -> decision)", r.latency)] if r.latency else []) + list(r.stages.items())
    for name, st in rows:
        lines.append(f"| {name} | {st.p50_ms:.2f} | {st.p90_ms:.2f} | {st.p95_ms:.2f} | {st.p99_ms:.2f} | "
                     f"{st.mean_ms:.2f} | {st.max_ms:.2f} | {'NOISY ' + st.noise if st.noisy else 'ok'} |")
    if r.ground_truth and r.ground_truth.get("accuracy") is not None:
        g = r.ground_truth
        lines += ["", f"Decisions matching the ground truth: {g['accuracy']:.1f}% ({g['correct']}/{g['decisions']}; "
                      f"{g['rule']})."]
    return "\n".join(lines) + "\n"


def stream_table(r: StreamBench):
    from rich.table import Table

    t = Table(title=f"stream {Path(r.video).name}: {r.form} form, {r.backend} {r.precision}")
    for c in ("per decision", "p50 ms", "p95 ms", "p99 ms", "mean ms"):
        t.add_column(c, justify="left" if c == "per decision" else "right")
    rows = ([("end to end", r.latency)] if r.latency else []) + list(r.stages.items())
    for name, st in rows:
        t.add_row(name, f"{st.p50_ms:.2f}", f"{st.p95_ms:.2f}", f"{st.p99_ms:.2f}", f"{st.mean_ms:.2f}")
    return t


def write_stream_reports(r: StreamBench, out: str | Path, name: str = "bench_stream") -> dict[str, Path]:
    from edgevt.fileio import atomic_write_bytes

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / f"{name}.json", json.dumps(r.to_dict(), indent=1, default=str))
    atomic_write_bytes(out / f"{name}.md", stream_markdown(r))
    return {"json": out / f"{name}.json", "md": out / f"{name}.md"}
