"""``edgevt demo``: the whole path on the built-in benchmark, in one command, offline, on a laptop CPU.

A sequence of step functions over the library APIs of each stage::

    data -> adapt (auto: source-only, then self-training/alignment rungs, chosen on target-val) -> export (FP32/FP16/INT8, calibrated on target clips)
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

from edgevt.errors import EdgevtError
from edgevt.data.splits import split_target_train  # noqa: F401  (the demo's split; public there)
from edgevt.fileio import atomic_write_text


@dataclass(frozen=True)
class DemoSize:
    """How big each step is. ``quick`` is the README's default; ``tiny`` is for tests."""

    name: str
    # TSM-TinyCNN from scratch on frame differences (motion, not the scene: what carries to a new
    # camera), with appearance augmentation of the source clips (domain randomisation), then
    # `--strategy auto`: self-training / alignment rungs chosen on labeled target-val clips.
    # benchmarks/demo_recipe.py measures this recipe over 3 seeds, with its target-trained oracle.
    model: str = "tsm_tinycnn"
    weights: str = "none"
    input: str = "diff"
    augment: str = "appearance"
    frame_size: int = 32  # synthetic video frames (square); 32 keeps the quick demo at a few minutes on 2 cores
    video_frames: int = 16
    train_per_class: int = 20
    test_per_class: int = 10
    num_frames: int = 8  # T of the clip model
    frame_stride: int = 1
    epochs: int = 12  # source-only training; the adaptation rungs train half as many
    # the auto candidates: both source looks (with and without appearance augmentation), BatchNorm
    # re-estimation of each, and self-training from the best of those four on target-val
    # (benchmarks/adapt_shifts.py measures the whole ladder; dann+selftrain is left out to save time)
    rungs: str = "source_only,source_only_plain,bn,bn_plain,selftrain"
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


SIZES = {
    "tiny": DemoSize("tiny", frame_size=32, video_frames=12,
                     train_per_class=3, test_per_class=2, num_frames=4, frame_stride=2, epochs=1,
                     batch_size=8,
                     calib_clips=8, stream_frames=60, bench_batches=(1,), bench_warmup_s=0.1,
                     bench_duration_s=0.3),
    "quick": DemoSize("quick"),
    "full": DemoSize("full", video_frames=24, train_per_class=60, test_per_class=25, epochs=30,
                     calib_clips=200, stream_frames=2000, bench_warmup_s=2.0, bench_duration_s=10.0),
}


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


# -- 1. data ----------------------------------------------------------------------------------------
def step_data(ctx: DemoContext):
    from edgevt.data.synth import SynthConfig, generate, make_stream_video

    s = ctx.size
    cfg = SynthConfig(size=s.frame_size, frames=s.video_frames, seed=s.seed,
                      per_class={"source_train": s.train_per_class, "source_test": s.test_per_class,
                                 "target_train": s.train_per_class, "target_test": s.test_per_class})
    meta = generate(ctx.data, cfg, progress=ctx.progress)
    segments = make_stream_video(ctx.stream_video, "target", s.stream_frames, s.frame_size, s.seed, config=cfg)
    adapt_list, val_list = split_target_train(ctx.data, seed=s.seed)
    return [ctx.data / "meta.json", ctx.stream_video, adapt_list, val_list], {"classes": meta["classes"], "splits": meta["splits"],
                                                        "stream_frames": s.stream_frames,
                                                        "stream_segments": len(segments)}


def _data_settings(ctx: DemoContext) -> dict:
    s = ctx.size
    return {k: getattr(s, k) for k in ("frame_size", "video_frames", "train_per_class", "test_per_class",
                                       "stream_frames", "seed")}


# -- 2. adapt ---------------------------------------------------------------------------------------
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
                       num_frames=s.num_frames, frame_stride=s.frame_stride, size=s.frame_size, mode=adapt_mode(s),
                       epochs=s.epochs, batch_size=s.batch_size, lr=s.lr, seed=s.seed, rungs=s.rungs,
                       progress=progress)


def step_adapt(ctx: DemoContext):
    from edgevt.adapt import adapt

    cfg = adapt_config(ctx.data, ctx.models / "auto", ctx.size)
    task = ctx.progress.add_task("adapt (auto: source-only, then the adaptation rungs)", total=None) \
        if ctx.progress is not None else None
    t0 = time.perf_counter()
    res = adapt(cfg, console=ctx.console)
    if task is not None:
        ctx.progress.update(task, total=1, completed=1, description="adapt: done")
    rep = res.report
    runs = {}
    for name, c in rep["candidates"].items():
        runs[name] = {"checkpoint": str((Path(c["out"]) / "model.pt").relative_to(ctx.out)),
                      "seconds": c.get("seconds") or 0, "source_top1": _percent(c.get("source_test")),
                      "target_val_top1": _percent(c.get("target_val")), "target_top1": _percent(c.get("target_test")),
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


def _percent(x):
    return None if x is None else 100.0 * x


def _lines(path: Path) -> list[str]:
    return [ln for ln in path.read_text().splitlines() if ln.strip()]


def _adapt_settings(ctx: DemoContext) -> dict:
    s = ctx.size
    return {k: getattr(s, k) for k in ("model", "weights", "input", "augment", "num_frames", "frame_stride", "epochs",
                                       "batch_size", "adapt_mode", "lr", "seed", "rungs")} | {"recipe": "auto-v2"}


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
    from edgevt.export.exporter import ExportConfig, export_bundle

    s = ctx.size
    ckpt = ctx.out / ctx.summary("adapt")["best_checkpoint"]
    forms = _stream_forms(ckpt)
    cfg = ExportConfig(precisions=("fp32", "fp16", "int8"), calib=str(ctx.data / "target_adapt.txt"),
                       calib_clips=s.calib_clips, eval=str(ctx.data / "target_val.txt"), flavour="tensorrt",
                       threads=ctx.threads, forms=forms)
    task = ctx.progress.add_task("export + calibrate", total=None) if ctx.progress is not None else None

    def log(msg: str) -> None:
        if task is not None:
            ctx.progress.update(task, description=f"export: {msg[:60]}")

    bundle = export_bundle(ckpt, ctx.bundle, cfg, log=log)
    if task is not None:
        ctx.progress.update(task, total=1, completed=1, description="export done")
    checks = bundle.manifest.get("checks", {})
    return [ctx.bundle / "edgevt.json"], {
        "checkpoint": str(ckpt.relative_to(ctx.out)), "artifacts": sorted(bundle.artifacts),
        "sizes_kb": {k: round((bundle.path / a["file"]).stat().st_size / 1024, 1) for k, a in bundle.artifacts.items()},
        "parity": {k.split(".", 1)[1]: {m: checks[k].get(m) for m in ("max_abs_diff", "mean_abs_diff", "top1_agreement",
                                                                     "clips")}
                   for k in checks if k.startswith("parity.")},
        "gate": checks.get("gate"), "accuracy": checks.get("accuracy"), "forms": forms,
        "warnings": bundle.manifest.get("warnings", [])}


def _stream_forms(ckpt: Path) -> list[str]:
    """The streaming forms the exporter can add for this model (incremental for TSN, stateful for TSM)."""
    try:
        from edgevt.export import exporter, streaming
        from edgevt.models.checkpoint import model_from_checkpoint

        model, _ = model_from_checkpoint(ckpt)
        return [f for f in streaming.stream_forms_for(model) if f in exporter._FORMS]
    except (ImportError, AttributeError):
        return []


def _export_settings(ctx: DemoContext) -> dict:
    return {"calib_clips": ctx.size.calib_clips, "precisions": ["fp32", "fp16", "int8"]}


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


# -- 7. report --------------------------------------------------------------------------------------
def _pct(x) -> str:
    return "-" if x is None else f"{x:.1f}%"


def _ms(x) -> str:
    return "-" if x is None else f"{x:.2f}"


def _table(header: list[str], rows: list[list]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c).replace("|", "/") for c in r) + " |" for r in rows]
    return out + [""]


def write_report(ctx: DemoContext) -> Path:
    """report.md from the step records: every number in it comes from this demo folder's runs."""
    from edgevt.env import environment

    env = environment()
    s = ctx.size
    L = [f"# edgevt demo report ({s.name})", "",
         f"Generated {time.strftime('%Y-%m-%d %H:%M:%S %Z')} by `edgevt demo --out {ctx.out} --{s.name}` on "
         f"{env['cpu']} (torch {env['torch']}, {env['torch_threads']} threads; onnxruntime {env['onnxruntime']}"
         f"{'; GPUs: ' + ', '.join(env['gpus']) if env['gpus'] else '; no GPU'}). "
         "Every number below was measured by this run; rerun the command to regenerate it.", ""]
    L += ["Steps: " + ", ".join(f"{n} ({r['seconds']:.0f} s{', reused' if r.get('reused') else ''})"
                                for n, r in ctx.records.items() if "seconds" in r), ""]

    d = ctx.summary("data")
    if d:
        L += ["## 1. Data: MotionDigits-DA", "",
              f"{len(d['classes'])} motion classes ({', '.join(d['classes'])}); a digit's motion is the label, so "
              "one frame says nothing. Source = clean glyphs on black; target = the same motions filmed by a few "
              "other cameras over hazy real photos, with colour cast and noise. Target-train (split into "
              "target-adapt, unlabeled, and target-val, labeled) and target-test are clips of the same target "
              "cameras at other moments: the camera the model is deployed on.", ""]
        L += _table(["split", "clips"], [[k, v] for k, v in d["splits"].items()])
        L += [f"Stream video: `{ctx.stream_video.relative_to(ctx.out)}` ({d['stream_frames']} frames, "
              f"{d['stream_segments']} motion segments, ground truth beside it).", ""]

    a = ctx.summary("adapt")
    if a:
        L += ["## 2. Adaptation", "",
              f"`{s.model}` (weights: {s.weights}; mode {adapt_mode(s)}; input {s.input}"
              f"{': differences of consecutive frames, so the static scene cancels' if s.input == 'diff' else ''}; "
              f"augmentation {s.augment}), T={s.num_frames}, {s.frame_size}x{s.frame_size}. `--strategy auto --rungs "
              f"{s.rungs}`: source-only trains {s.epochs} epochs on labeled source clips, with appearance augmentation "
              "and without (plain); bn re-estimates each one's BatchNorm statistics on the *unlabeled* target-adapt "
              "clips (no training); selftrain starts from the best of those four on target-val and trains "
              f"{max(1, round(s.epochs / 2))} more epochs that also see the unlabeled target-adapt clips.", ""]
        L += _table(["candidate", "source-test top-1", "target-val top-1", "target-test top-1",
                     "largest target class", "seconds"],
                    [[k + (" (chosen)" if k == a["best"] else ""), _pct(v.get("source_top1")),
                      _pct(v.get("target_val_top1")), _pct(v.get("target_top1")),
                      "-" if v.get("largest_target_class") is None else f"{100 * v['largest_target_class']:.0f}%",
                      f"{v.get('seconds') or 0:.0f}"] for k, v in a["runs"].items()])
        L += [f"Exported: **{a['best']}** (chosen by {a['selection']}).", ""]
        pc = a.get("per_class") or {}
        if pc.get("adapted"):
            names = list(pc["adapted"])
            so = pc.get("source_only") or {}
            L += ["Per-class top-1 on target-test:", ""]
            L += _table(["class", "source-only", a["best"]],
                        [[n, _pct(_percent(so.get(n))), _pct(_percent(pc["adapted"][n]))] for n in names])

    e = ctx.summary("export")
    if e:
        L += ["## 3. Export", "", f"Bundle `{ctx.bundle.relative_to(ctx.out)}/` from `{e['checkpoint']}`; "
              "uint8 frames in, preprocessing in the graph. INT8: Q/DQ (TensorRT rules) calibrated on "
              f"{s.calib_clips} target-train clips.", ""]
        rows = []
        for key in e["artifacts"]:
            p = key.split(".")[-1]
            par = e["parity"].get(p, {}) if key.startswith("model.") else {}
            agree = par.get("top1_agreement")
            rows.append([key, e["sizes_kb"].get(key, "-"), _fmt(par.get("max_abs_diff")),
                         "-" if agree is None else f"{100 * agree:.1f}%", par.get("clips", "-")])
        L += _table(["artifact", "size (KiB)", "max abs logit diff vs PyTorch", "top-1 agreement", "parity clips"],
                    rows)
        g = e.get("gate")
        if g:
            L += [f"INT8 accuracy gate ({g.get('clips')} labeled target-val clips): FP32 {_pct(g.get('fp32'))}, INT8 "
                  f"{_pct(g.get('int8'))}, drop {g.get('drop', 0):.2f} points (limit {g.get('max_drop')}), "
                  f"{'passed' if g.get('passed') else 'FAILED'}; {len(g.get('kept_high_precision') or [])} layers kept "
                  "in higher precision.", ""]
        for w in e.get("warnings") or []:
            L += [f"> warning: {w}", ""]

    v = ctx.summary("eval")
    if v:
        L += ["## 4. Evaluation on target-test", ""]
        L += _table(["artifact", "backend", "top-1", "top-5", "clips"],
                    [[r["artifact"], r["backend"], _pct(r.get("top1")), _pct(r.get("top5")), r.get("clips")]
                     for r in v["rows"]])
        conf = v.get("confusion", {})
        # The PyTorch model and the INT8 graph: the two ends of the path (every PNG is in eval/).
        for name in [n for n in ("torch fp32", "ort-cpu int8") if n in conf] or list(conf)[:1]:
            L += [f"![confusion matrix {name}]({conf[name]})", ""]

    b = ctx.summary("bench")
    if b:
        L += ["## 5. Latency (per batch, end to end around the backend)", ""]
        if b.get("busy"):
            L += [f"**Warning: {b['busy']}.**", ""]
        L += _table(["backend", "precision", "batch", "p50 ms", "p99 ms", "clips/s", "vs PyTorch eager", "note"],
                    [[r["backend"] + (" (baseline)" if r["baseline"] else ""), r["precision"], r["batch"],
                      _ms(r["p50_ms"]), _ms(r["p99_ms"]), "-" if r["throughput"] is None else f"{r['throughput']:.1f}",
                      "-" if r["speedup"] is None else f"{r['speedup']:.2f}x",
                      r["reason"] if r["status"] != "ok" else ("noisy" if r["noisy"] else "")] for r in b["rows"]])
        if any(r["precision"] == "int8" and r["backend"] == "ort-cpu" for r in b["rows"]):
            L += ["The INT8 graph is the TensorRT flavour (symmetric Q/DQ placed for TensorRT); onnxruntime on an "
                  "x86 CPU runs such graphs without its fastest kernels, so its CPU latency says nothing about a "
                  "Jetson. `edgevt export --flavour cpu` makes the graph for CPU targets.", ""]
        files = b.get("files", {})
        L += [f"Full table with p90/p95, min/max and provenance: `{files.get('md')}`, `{files.get('json')}`.", ""]
        if files.get("png"):
            L += [f"![latency]({files['png']})", ""]
        if files.get("accuracy_png"):
            L += [f"![accuracy vs latency]({files['accuracy_png']})", ""]

    st = ctx.summary("stream")
    if st:
        L += ["## 6. Streaming", ""]
        L += [f"- {k}: {val}" for k, val in st.get("metrics", {}).items()]
        L += [f"- decisions (JSON Lines): `{st.get('jsonl')}`", f"- annotated video: `{st.get('video')}`",
              f"- stage table: `{st.get('bench')}`", "",
              "The file is read as fast as the loop goes (drop none), so the capture -> decision latency includes "
              "the time a frame waits in the ring behind earlier ones; a live camera with `--drop latest` sees "
              "about decode + inference + post.", ""]
        if str(st.get("metrics", {}).get("form", "")).startswith("window") and \
                "stateful.fp32" in ctx.summary("export").get("artifacts", []):
            L += ["The bundle also holds the stateful (TSM online) form, one frame per call. It is causal (no "
                  "channels shift in from future frames), so for this bidirectionally trained model it is a "
                  "different model and the loop streams the window form by default; `edgevt run --form stateful` "
                  "uses it, and `edgevt adapt --shift-direction causal` trains a model whose stateful form is "
                  "exact (`benchmarks/stream_forms.py` compares the forms).", ""]

    path = ctx.out / "report.md"
    atomic_write_text(path, "\n".join(L) + "\n")
    return path


def _fmt(x) -> str:
    if x is None:
        return "-"
    return f"{x:.3g}" if isinstance(x, float) else str(x)


# -- the sequence -----------------------------------------------------------------------------------
def steps() -> list[Step]:
    return [
        Step("data", "1/7 generate MotionDigits-DA", step_data, _data_settings),
        Step("adapt", "2/7 adapt: source-only, then self-training / alignment (auto)", step_adapt, _adapt_settings, needs=("data",)),
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
