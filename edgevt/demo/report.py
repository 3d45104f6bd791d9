"""report.md from the step records, filled into templates: every number in it comes from the demo
folder's own runs. The prose lives in the templates below (one per section); the functions only
compute the values and tables they hold. Background that README already explains is linked, not
repeated."""
from __future__ import annotations

import time
from pathlib import Path
from string import Template

from edgevt.fileio import atomic_write_text

DOCUMENT = Template("""# edgevt demo report ($size)

Generated $when by `edgevt demo --out $out --$size` on $machine. Every number below was measured by
this run; rerun the command to regenerate it.

Steps: $steps

$sections""")

SECTIONS = {
    "data": Template("""## 1. Data: MotionDigits-DA

$n_classes motion classes ($classes); source = clean glyphs, target = the same motions seen by other
cameras (README, "The benchmark"). Target-train is split into target-adapt (unlabeled) and target-val
(labeled, for choices); target-test only reports.

$splits
Stream video: `$video` ($stream_frames frames, $stream_segments motion segments, ground truth beside it).
"""),
    "adapt": Template("""## 2. Adaptation

`$model` (weights: $weights; mode $mode; input $input; augmentation $augment), T=$t, ${size}x$size.
`--strategy auto --rungs $rungs` ($epochs source epochs; "the start" is the source-only or bn
candidate chosen on target-val; the unlabeled target clips are target-adapt):

$ladder

$runs
Exported: **$best** (chosen by $selection).

$per_class"""),
    "export": Template("""## 3. Export

Bundle `$bundle/` from `$checkpoint`; uint8 frames in, preprocessing in the graph; streaming forms:
$forms. INT8 (`--flavour auto`: both flavours, each kept only if its gate passes), calibrated on
$calib_clips target-adapt clips: $int8. Every form's parity and INT8 gate (top-1 drop and agreement
with FP32) are in the bundle manifest.

$artifacts
$gates
$warnings"""),
    "eval": Template("""## 4. Evaluation on target-test

$rows
$confusion"""),
    "bench": Template("""## 5. Latency (per batch, end to end around the backend)

$busy$rows
The INT8 row on ort-cpu is the CPU flavour (`int8-cpu`); the TensorRT flavour's CPU latency would say
nothing about a Jetson (README, "Precision"). Full table with p90/p95, min/max and provenance: `$md`, `$json`.

$plots"""),
    "stream": Template("""## 6. Streaming

$metrics
- decisions (JSON Lines): `$jsonl`
- annotated video: `$video`
- stage table: `$bench`

The file is read as fast as the loop goes (drop none), so the latency includes the time a frame waits
in the ring; README, "Streaming", explains the forms and drop policies.
"""),
}


def _pct(x) -> str:
    return "-" if x is None else f"{x:.1f}%"


def _ms(x) -> str:
    return "-" if x is None else f"{x:.2f}"


def _fmt(x) -> str:
    if x is None:
        return "-"
    return f"{x:.3g}" if isinstance(x, float) else str(x)


def percent(x):
    """A share in [0, 1] as percent (None stays None)."""
    return None if x is None else 100.0 * x


def table(header: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c).replace("|", "/") for c in r) + " |" for r in rows]
    return "\n".join(out) + "\n"


def _data(ctx, d: dict) -> dict:
    return {"n_classes": len(d["classes"]), "classes": ", ".join(d["classes"]),
            "splits": table(["split", "clips"], [[k, v] for k, v in d["splits"].items()]),
            "video": ctx.stream_video.relative_to(ctx.out), "stream_frames": d["stream_frames"],
            "stream_segments": d["stream_segments"]}


def _adapt(ctx, a: dict) -> dict:
    from edgevt.adapt.auto import DESCRIBE
    from edgevt.demo.recipes import adapt_mode

    s = ctx.size
    ladder = "\n".join(f"- `{k}`: {DESCRIBE.get(k, '')}" for k in a["runs"])
    runs = table(["candidate", "source-test top-1", "target-val top-1", "target-test top-1", "largest target class",
                  "seconds"],
                 [[k + (" (chosen)" if k == a["best"] else ""), _pct(v.get("source_top1")),
                   _pct(v.get("target_val_top1")), _pct(v.get("target_top1")),
                   "-" if v.get("largest_target_class") is None else f"{100 * v['largest_target_class']:.0f}%",
                   f"{v.get('seconds') or 0:.0f}"] for k, v in a["runs"].items()])
    pc = a.get("per_class") or {}
    per_class = ""
    if pc.get("adapted"):
        so = pc.get("source_only") or {}
        per_class = "Per-class top-1 on target-test:\n\n" + table(
            ["class", "source-only", a["best"]],
            [[n, _pct(percent(so.get(n))), _pct(percent(v))] for n, v in pc["adapted"].items()])
    return {"model": s.model, "weights": s.weights, "mode": adapt_mode(s), "input": s.input, "augment": s.augment,
            "t": s.clip.num_frames, "size": s.frame_size, "epochs": s.epochs, "rungs": s.rungs,
            "ladder": ladder, "runs": runs, "best": a["best"],
            "selection": a["selection"], "per_class": per_class}


INT8_LOOK = {"tensorrt": "Q/DQ by TensorRT's rules, for TensorRT / ort-trt",
             "cpu": "uint8 activations, for onnxruntime CPU"}


def _int8_line(e: dict) -> str:
    """Which INT8 graphs the bundle holds (step_export's ``int8_flavours``), and which the gate refused."""
    have = e.get("int8_flavours") or {}
    written = " and ".join(f"`*.{stored}` ({INT8_LOOK[fl]})" for fl, stored in have.items()) or "none written"
    refused = ", ".join(f"{k.split('.', 1)[1]} ({k.split('.', 1)[0]} form)" for k in e.get("int8_refused", {}))
    line = written + (f"; refused by its gate: the {refused} flavour (below)" if refused else "")
    rounding = e.get("rounding") or {}
    if rounding:
        line += ". Weights rounded adaptively (AdaRound, `--adaround-steps`), each flavour on its own: " + "; ".join(
            f"{fl}: {r.get('steps')} steps for each of {r.get('convolutions')} convolutions, simulated INT8 logits "
            f"{100 * r['simulated_logit_error_before']:.2f}% off FP32's with nearest rounding, "
            f"{100 * r['simulated_logit_error_after']:.2f}% after ({r.get('seconds')} s)"
            for fl, r in rounding.items())
    return line


def _export(ctx, e: dict) -> dict:
    rows = []
    for key in e["artifacts"]:
        par = e["parity"].get(key) or {}
        agree = par.get("top1_agreement")
        rows.append([key, e["sizes_kb"].get(key, "-"), _fmt(par.get("max_abs_diff")),
                     "-" if agree is None else f"{agree:.1f}%", par.get("clips", "-")])
    gates = []
    for key, g in [("gate", e.get("gate"))] + list((e.get("gates") or {}).items()):
        if g:
            name = g.get("form") or key.partition(".")[2] or "window"
            few = "" if g.get("enough_clips", True) else " **(too few clips for a firm verdict)**"
            gates.append(f"INT8 accuracy gate, {name} form, {g.get('flavour') or 'tensorrt'} flavour "
                         f"({g.get('clips')} labeled target-val clips"
                         + (f", {g['decisions']} decisions" if g.get("decisions") not in (None, g.get("clips")) else "")
                         + f"{few}): FP32 {_pct(g.get('fp32'))}, INT8 "
                         f"{_pct(g.get('int8'))}, drop {g.get('drop', 0):.2f} points (limit {g.get('max_drop')}), "
                         f"agreement with FP32 {_pct(g.get('agreement'))} (min {g.get('min_agreement', '-')}), "
                         f"{'passed' if g.get('passed') else 'FAILED'}; "
                         f"{len(g.get('kept_high_precision') or [])} layers kept in higher precision.\n")
    return {"bundle": ctx.bundle.relative_to(ctx.out), "checkpoint": e["checkpoint"],
            "forms": ", ".join(["window", *e.get("forms", [])]), "calib_clips": ctx.size.calib_clips,
            "int8": _int8_line(e),
            "artifacts": table(["artifact", "size (KiB)", "max abs logit diff vs PyTorch", "top-1 agreement",
                                "parity clips"], rows),
            "gates": "\n".join(gates), "warnings": "".join(f"> warning: {w}\n\n" for w in e.get("warnings") or [])}


def _eval(ctx, v: dict) -> dict:
    conf = v.get("confusion", {})
    # The PyTorch model and the INT8 graph: the two ends of the path (every PNG is in eval/).
    names = [n for n in conf if n == "torch fp32" or n.startswith("ort-cpu int8")] or list(conf)[:1]
    return {"rows": table(["artifact", "backend", "top-1", "top-5", "clips"],
                          [[r["artifact"], r["backend"], _pct(r.get("top1")), _pct(r.get("top5")), r.get("clips")]
                           for r in v["rows"]]),
            "confusion": "".join(f"![confusion matrix {n}]({conf[n]})\n\n" for n in names)}


def _bench(ctx, b: dict) -> dict:
    rows = table(["backend", "precision", "batch", "p50 ms", "p99 ms", "clips/s", "vs PyTorch eager", "note"],
                 [[r["backend"] + (" (baseline)" if r["baseline"] else ""), r["precision"], r["batch"],
                   _ms(r["p50_ms"]), _ms(r["p99_ms"]), "-" if r["throughput"] is None else f"{r['throughput']:.1f}",
                   "-" if r["speedup"] is None else f"{r['speedup']:.2f}x",
                   r["reason"] if r["status"] != "ok" else ("noisy" if r["noisy"] else "")] for r in b["rows"]])
    files = b.get("files", {})
    plots = "".join(f"![{alt}]({files[k]})\n\n" for k, alt in (("png", "latency"), ("accuracy_png", "accuracy vs latency"))
                    if files.get(k))
    return {"busy": f"**Warning: {b['busy']}.**\n\n" if b.get("busy") else "", "rows": rows,
            "md": files.get("md"), "json": files.get("json"), "plots": plots}


def _stream(ctx, st: dict) -> dict:
    return {"metrics": "\n".join(f"- {k}: {val}" for k, val in st.get("metrics", {}).items()),
            "jsonl": st.get("jsonl"), "video": st.get("video"), "bench": st.get("bench")}


FILL = {"data": _data, "adapt": _adapt, "export": _export, "eval": _eval, "bench": _bench, "stream": _stream}


def write_report(ctx) -> Path:
    """``<out>/report.md`` from ``ctx.records`` (the steps that ran; the others are left out)."""
    from edgevt.env import environment

    env = environment()
    machine = (f"{env['cpu']} (torch {env['torch']}, {env['torch_threads']} threads; onnxruntime {env['onnxruntime']}"
               f"{'; GPUs: ' + ', '.join(env['gpus']) if env['gpus'] else '; no GPU'})")
    steps = ", ".join(f"{n} ({r['seconds']:.0f} s{', reused' if r.get('reused') else ''})"
                      for n, r in ctx.records.items() if "seconds" in r)
    sections = [SECTIONS[name].substitute(FILL[name](ctx, ctx.summary(name)))
                for name in SECTIONS if ctx.summary(name)]
    text = DOCUMENT.substitute(size=ctx.size.name, when=time.strftime("%Y-%m-%d %H:%M:%S %Z"), out=ctx.out,
                               machine=machine, steps=steps, sections="\n".join(sections))
    path = ctx.out / "report.md"
    atomic_write_text(path, text.rstrip() + "\n")
    return path
