"""The demo's steps over one shared run cache: each step runs a recipe (edgevt.demo.recipes) through
the library API of its stage, and the report (edgevt.demo.report) is written from their records::

    data -> adapt (auto: source-only and its BatchNorm re-estimation on the target, chosen on target-val) -> export (FP32/FP16/INT8, calibrated on target clips)
         -> eval (every artifact on target-test) -> bench (every usable backend x precision)
         -> stream (a target-domain video through the streaming loop) -> report.md

Each step records what it produced in ``<out>/.demo/<step>.json`` together with a key of the
settings it ran with; on a rerun a step whose record matches and whose outputs still exist is
reused instead of recomputed (``force=True`` reruns everything).
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable

from edgevt.data.splits import split_target_train
from edgevt.demo.recipes import SIZES, DemoSize, adapt_config, export_config, synth_config
from edgevt.errors import EdgevtError
from edgevt.fileio import atomic_write_text
from edgevt.demo.report import percent, write_report


@dataclass
class DemoContext:
    out: Path
    size: DemoSize
    threads: int | None = None
    force: bool = False
    console: object = None
    progress: object = None  # rich Progress shared by every step
    records: dict = field(default_factory=dict)  # step name -> its record (key, outputs, summary)

    # -- layout -----------------------------------------------------------------------------------
    @property
    def data(self) -> Path:
        return self.out / "data"

    @property
    def stream_video(self) -> Path:
        return self.data / "target" / "stream.mp4"

    @property
    def models(self) -> Path:
        return self.out / "models"

    @property
    def bundle(self) -> Path:
        return self.out / "bundle"

    def log(self, msg: str) -> None:
        if self.console is not None:
            self.console.log(msg)

    def summary(self, step: str) -> dict:
        return self.records.get(step, {}).get("summary", {})


@dataclass
class Step:
    name: str
    title: str
    run: Callable[[DemoContext], tuple[list[Path], dict]]  # -> (outputs, summary)
    settings: Callable[[DemoContext], dict]  # what the outputs depend on (besides earlier steps)
    needs: tuple = ()


# -- step records -----------------------------------------------------------------------------------
def _record_path(ctx: DemoContext, name: str) -> Path:
    return ctx.out / ".demo" / f"{name}.json"


def _step_key(ctx: DemoContext, step: Step) -> str:
    # An upstream step that ran again (new run id) invalidates this one, even with the same settings.
    upstream = {n: [ctx.records.get(n, {}).get(k) for k in ("key", "run")] for n in step.needs}
    blob = json.dumps({"settings": step.settings(ctx), "upstream": upstream}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _reusable(ctx: DemoContext, step: Step, key: str) -> dict | None:
    p = _record_path(ctx, step.name)
    if ctx.force or not p.exists():
        return None
    try:
        rec = json.loads(p.read_text())
    except json.JSONDecodeError:
        return None
    if rec.get("key") != key or not all((ctx.out / o).exists() for o in rec.get("outputs", [])):
        return None
    return rec


def run_step(ctx: DemoContext, step: Step) -> dict:
    key = _step_key(ctx, step)
    rec = _reusable(ctx, step, key)
    if rec is not None:
        ctx.records[step.name] = {**rec, "reused": True}
        ctx.log(f"[green]reused[/] {step.title} (outputs of an earlier run are still valid)")
        return rec
    t0 = time.perf_counter()
    outputs, summary = step.run(ctx)
    rec = {"step": step.name, "key": key, "run": f"{time.time_ns():x}", "seconds": round(time.perf_counter() - t0, 1),
           "outputs": [str(Path(o).relative_to(ctx.out)) for o in outputs], "summary": summary}
    p = _record_path(ctx, step.name)
    p.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(p, json.dumps(rec, indent=1, default=str))
    ctx.records[step.name] = rec
    ctx.log(f"[green]done[/] {step.title} in {rec['seconds']:.1f} s")
    return rec


def run_cached(ctx: DemoContext, name: str, settings: dict, run: Callable[[], tuple[list[Path], dict]],
               needs: tuple = ()) -> dict:
    """Any computation as a step of ``ctx``'s run cache (benchmarks keep their own runs in it):
    ``run()`` -> (outputs under ``ctx.out``, summary) runs unless an earlier run with the same
    ``settings`` (and the same upstream steps ``needs``) left its record and outputs. Returns the
    record (``ctx.records[name]``; ``reused`` is set when nothing ran)."""
    run_step(ctx, Step(name, name, lambda _ctx: run(), lambda _ctx: settings, needs))
    return ctx.records[name]


def cached_adapt(ctx: DemoContext, name: str, cfg, needs: tuple = (), **adapt_kw) -> tuple[Path, dict, bool]:
    """``edgevt.adapt.adapt(cfg, **adapt_kw)`` through the run cache, keyed by the whole config and
    the steps in ``needs`` (e.g. its data; ``cfg.out`` must lie under ``ctx.out``). Returns (model.pt,
    the run's report.json, reused)."""
    from edgevt.adapt import adapt

    out = Path(cfg.out)

    def run():
        res = adapt(cfg, **adapt_kw)
        return [Path(res.checkpoint), out / "report.json"], {"checkpoint": str(Path(res.checkpoint).relative_to(ctx.out))}

    rec = run_cached(ctx, name, cfg.to_dict(), run, needs)
    return ctx.out / rec["summary"]["checkpoint"], json.loads((out / "report.json").read_text()), bool(rec.get("reused"))


def cached_data(ctx: DemoContext, name: str, root: Path, cfg) -> Path:
    """A MotionDigits-DA data set (``edgevt.data.synth.generate(root, cfg)``) through the run cache."""
    from dataclasses import asdict

    from edgevt.data.synth import generate

    def run():
        meta = generate(root, cfg)
        return [root / "meta.json"], {"splits": meta["splits"]}

    run_cached(ctx, name, asdict(cfg), run)
    return root


# -- 1. data ----------------------------------------------------------------------------------------
def step_data(ctx: DemoContext):
    from edgevt.data.synth import generate, make_stream_video

    s = ctx.size
    cfg = synth_config(s)
    meta = generate(ctx.data, cfg, progress=ctx.progress)
    segments = make_stream_video(ctx.stream_video, "target", s.stream_frames, s.frame_size, s.seed, config=cfg)
    adapt_list, val_list = split_target_train(ctx.data, val_share=s.val_share, seed=s.seed)
    return [ctx.data / "meta.json", ctx.stream_video, adapt_list, val_list], {"classes": meta["classes"], "splits": meta["splits"],
                                                        "stream_frames": s.stream_frames,
                                                        "stream_segments": len(segments)}


def _data_settings(ctx: DemoContext) -> dict:
    s = ctx.size
    return {k: getattr(s, k) for k in ("frame_size", "video_frames", "train_per_class", "test_per_class",
                                       "stream_frames", "seed", "val_share")}


# -- 2. adapt ---------------------------------------------------------------------------------------
def step_adapt(ctx: DemoContext):
    from edgevt.adapt import adapt

    cfg = adapt_config(ctx.data, ctx.models / "auto", ctx.size)
    task = ctx.progress.add_task("adapt (auto: source-only, then BatchNorm re-estimation)", total=None) \
        if ctx.progress is not None else None
    t0 = time.perf_counter()
    res = adapt(cfg, console=ctx.console)
    if task is not None:
        ctx.progress.update(task, total=1, completed=1, description="adapt: done")
    rep = res.report
    runs = {}
    for name, c in rep["candidates"].items():
        runs[name] = {"checkpoint": str((Path(c["out"]) / "model.pt").relative_to(ctx.out)),
                      "seconds": c.get("seconds") or 0, "source_top1": percent(c.get("source_test")),
                      "target_val_top1": percent(c.get("target_val")), "target_top1": percent(c.get("target_test")),
                      "largest_target_class": (c.get("target_predictions") or {}).get("largest_class_share")}
    ckpt = Path(res.checkpoint)
    best = rep["chosen"]
    per_class = rep["eval"].get("target_test", {}).get("per_class")
    so_per_class = None
    so_report = Path(rep["candidates"]["source_only"]["out"]) / "report.json"
    if so_report.exists():
        so_per_class = json.loads(so_report.read_text())["eval"].get("target_test", {}).get("per_class")
    return [ckpt], {"runs": runs, "best": best, "best_checkpoint": str(ckpt.relative_to(ctx.out)),
                    "seconds": round(time.perf_counter() - t0, 1),
                    "per_class": {"adapted": per_class, "source_only": so_per_class},
                    "selection": f"{rep['criterion']} on {len(_lines(ctx.data / 'target_val.txt'))} labeled target-val "
                                 "clips held out of target-train (target-test is never used to choose)"}


def _lines(path: Path) -> list[str]:
    return [ln for ln in path.read_text().splitlines() if ln.strip()]


def _adapt_settings(ctx: DemoContext) -> dict:
    s = ctx.size
    return {k: getattr(s, k) for k in ("model", "weights", "input", "augment", "epochs",
                                       "batch_size", "adapt_mode", "lr", "seed", "rungs")} | {
        "num_frames": s.clip.num_frames, "frame_stride": s.clip.frame_stride, "recipe": "auto-v3"}


# -- 5. bench ---------------------------------------------------------------------------------------
def step_bench(ctx: DemoContext):
    from edgevt.bench.report import write_reports
    from edgevt.bench.suite import machine_busy, run_bench

    s = ctx.size
    result = run_bench(ctx.bundle, "auto", "auto", s.bench_batches, warmup_s=s.bench_warmup_s,
                       duration_s=s.bench_duration_s, threads=ctx.threads, clips=ctx.data / "target_test.txt",
                       progress=ctx.progress)
    files = write_reports(result, ctx.out / "bench", "bench")
    rows = [{"backend": r.backend, "precision": r.precision, "batch": r.batch, "status": r.status,
             "reason": r.reason, "p50_ms": r.stats.p50_ms if r.stats else None,
             "p99_ms": r.stats.p99_ms if r.stats else None, "throughput": r.stats.throughput if r.stats else None,
             "speedup": r.speedup, "noisy": r.stats.noisy if r.stats else None, "baseline": r.baseline}
            for r in result.rows]
    return list(files.values()), {"rows": rows, "files": {k: str(v.relative_to(ctx.out)) for k, v in files.items()},
                                  "busy": machine_busy(result.provenance)}


def _bench_settings(ctx: DemoContext) -> dict:
    s = ctx.size
    return {"batches": list(s.bench_batches), "warmup": s.bench_warmup_s, "duration": s.bench_duration_s,
            "threads": ctx.threads}


# -- 3. export --------------------------------------------------------------------------------------
def step_export(ctx: DemoContext):
    from edgevt.export.exporter import export_bundle

    ckpt = ctx.out / ctx.summary("adapt")["best_checkpoint"]
    cfg = export_config(ctx.data, ctx.size, ctx.threads)
    task = ctx.progress.add_task("export + calibrate", total=None) if ctx.progress is not None else None

    def log(msg: str) -> None:
        if task is not None:
            ctx.progress.update(task, description=f"export: {msg[:60]}")

    bundle = export_bundle(ckpt, ctx.bundle, cfg, log=log)
    if task is not None:
        ctx.progress.update(task, total=1, completed=1, description="export done")
    checks = bundle.manifest.get("checks", {})
    flavours = bundle.int8_flavours()
    return [ctx.bundle / "edgevt.json"], {
        "checkpoint": str(ckpt.relative_to(ctx.out)), "artifacts": sorted(bundle.artifacts),
        "sizes_kb": {k: round((bundle.path / a["file"]).stat().st_size / 1024, 1) for k, a in bundle.artifacts.items()},
        "parity": {k: {m: (a.get("parity") or {}).get(m) for m in ("max_abs_diff", "top1_agreement", "clips")}
                   for k, a in bundle.artifacts.items()},
        "gate": checks.get("gate"), "gates": {k: v for k, v in checks.items() if k.startswith("gate.")},
        "accuracy": checks.get("accuracy"),
        "forms": sorted({a["form"] for a in bundle.artifacts.values() if a.get("form") not in (None, "window")}),
        "warnings": bundle.manifest.get("warnings", []), "int8_refused": bundle.manifest.get("int8_refused", {}),
        "int8_flavours": flavours,
        # adaptive rounding of each INT8 flavour's weights (edgevt export's default; export.adaround)
        "rounding": {fl: {k: checks[stored]["adaround"].get(k) for k in _ROUNDING_FIELDS}
                     for fl, stored in flavours.items() if "adaround" in checks.get(stored, {})}}


# what the demo's summary and report keep of each flavour's AdaRound record (checks.<int8 key>.adaround)
_ROUNDING_FIELDS = ("steps", "convolutions", "kept", "simulated_logit_error_before", "simulated_logit_error_after",
                    "seconds")


def _export_settings(ctx: DemoContext) -> dict:
    cfg = export_config(ctx.data, ctx.size, ctx.threads)
    return {"calib_clips": ctx.size.calib_clips, "precisions": ["fp32", "fp16", "int8"], "flavour": "auto",
            "forms": ["stream"], "gate": "drop+agreement", "adaround_steps": cfg.adaround_steps_used()}


# -- 4. eval ----------------------------------------------------------------------------------------
def step_eval(ctx: DemoContext):
    """Every model.<precision> of the bundle (onnxruntime CPU) and the source checkpoint (PyTorch) on the
    same target-test clips; results also land in the bundle manifest's eval section (bench reads it)."""
    from edgevt.eval.evaluate import evaluate_all

    out = ctx.out / "eval"
    task = ctx.progress.add_task("evaluate on target-test", total=None) if ctx.progress is not None else None

    def progress(n: int) -> None:
        if task is not None:
            ctx.progress.advance(task, n)

    results = evaluate_all(ctx.bundle, str(ctx.data / "target_test.txt"), backend="ort-cpu", out_dir=out,
                           threads=ctx.threads, include_checkpoint=True, progress=progress)
    atomic_write_text(out / "eval.json", json.dumps([r.to_dict() for r in results], indent=1, default=str))
    rows = [{"artifact": "checkpoint" if r.backend == "torch" else f"model.{r.precision}", "backend": r.backend,
             "precision": r.precision, "top1": r.top1, "top5": r.top5, "clips": r.clips,
             "agreement_fp32": r.agreement_with.get("fp32"),
             "latency_p50_ms": (r.latency or {}).get("p50_ms"), "batch_size": r.batch_size} for r in results]
    confusion = {f"{r.backend} {r.precision}": str(Path(r.confusion_png).relative_to(ctx.out))
                 for r in results if r.confusion_png}
    return [out / "eval.json"], {"rows": rows, "confusion": confusion}


# -- 6. stream --------------------------------------------------------------------------------------
def step_stream(ctx: DemoContext):
    """The target-domain stream video through ``edgevt.stream`` (the bundle's streaming form), writing
    decisions and events as JSON Lines and an annotated video; timed with its stage breakdown."""
    from edgevt.bench.streaming import bench_stream, write_stream_reports
    from edgevt.stream.sinks import JsonlSink, VideoSink

    out = ctx.out / "stream"
    out.mkdir(parents=True, exist_ok=True)
    jsonl, video = out / "decisions.jsonl", out / "annotated.mp4"
    r = bench_stream(ctx.bundle, ctx.stream_video, backend="ort-cpu", precision="fp32", threads=ctx.threads,
                     sinks=[JsonlSink(jsonl), VideoSink(video)], progress=ctx.progress)
    files = write_stream_reports(r, out, "stream_bench")
    sm = r.summary
    metrics = {"form": f"{r.form} ({r.backend} {r.precision})", "frames": sm.get("frames"),
               "decisions": sm.get("decisions"), "frames/s": round(sm.get("fps", 0), 1),
               "decisions/s": round(sm.get("decisions_per_s", 0), 1)}
    if r.latency:
        metrics["latency p50 / p95 / p99 ms"] = f"{r.latency.p50_ms:.2f} / {r.latency.p95_ms:.2f} / {r.latency.p99_ms:.2f}"
    metrics["mean stage ms (decode / preprocess / inference / post)"] = " / ".join(
        f"{r.stages[k].mean_ms:.2f}" for k in ("decode", "preprocess", "inference", "post") if k in r.stages)
    if r.ground_truth and r.ground_truth.get("accuracy") is not None:
        g = r.ground_truth
        metrics["decisions matching ground truth"] = f"{g['accuracy']:.1f}% ({g['correct']}/{g['decisions']})"
    def rel(q: Path) -> str:
        return str(q.relative_to(ctx.out))

    return [jsonl, video, files["json"]], {"metrics": metrics, "jsonl": rel(jsonl), "video": rel(video),
                                           "bench": rel(files["md"])}


def _stream_settings(ctx: DemoContext) -> dict:
    return {"threads": ctx.threads, "precision": "fp32", "backend": "ort-cpu"}


# -- the sequence -----------------------------------------------------------------------------------
def steps() -> list[Step]:
    return [
        Step("data", "1/7 generate MotionDigits-DA", step_data, _data_settings),
        Step("adapt", "2/7 adapt: source-only, then its BatchNorm re-estimated on the target (auto)", step_adapt, _adapt_settings, needs=("data",)),
        Step("export", "3/7 export FP32/FP16/INT8 + parity", step_export, _export_settings, needs=("adapt",)),
        Step("eval", "4/7 evaluate every artifact on target-test", step_eval, lambda ctx: {}, needs=("export",)),
        Step("bench", "5/7 bench every usable backend x precision", step_bench, _bench_settings,
             needs=("export", "eval")),
        Step("stream", "6/7 stream a target-domain video", step_stream, _stream_settings, needs=("export",)),
    ]


@dataclass
class DemoResult:
    out: Path
    report: Path
    records: dict


def run_demo(out: str | Path = "demo", size: str | DemoSize = "quick", *, threads: int | None = None,
             force: bool = False, console=None, until: str | None = None) -> DemoResult:
    """Run (or reuse) every step and write ``<out>/report.md``. ``until``: stop after this step
    (e.g. ``"export"`` to get the adapted bundle for a benchmark script)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    if isinstance(size, str):
        if size not in SIZES:
            raise EdgevtError(f"unknown demo size {size!r}; choose from {', '.join(SIZES)}")
        size = SIZES[size]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if threads is not None:
        import torch

        if threads < 1:
            raise EdgevtError(f"--threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    ctx = DemoContext(out.resolve(), size, threads=threads, force=force, console=console)
    todo = steps()
    if until is not None:
        names = [st.name for st in todo]
        if until not in names:
            raise EdgevtError(f"unknown demo step {until!r}; choose from {', '.join(names)}")
        todo = todo[:names.index(until) + 1]
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=False) as progress:
        ctx.progress = progress
        overall = progress.add_task("edgevt demo", total=len(todo) + 1)
        for step in todo:
            progress.update(overall, description=f"edgevt demo: {step.title}")
            run_step(ctx, step)
            progress.advance(overall)
        progress.update(overall, description="edgevt demo: 7/7 report")
        report = write_report(ctx)
        progress.advance(overall)
    return DemoResult(ctx.out, report, ctx.records)
