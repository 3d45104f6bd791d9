"""Does adaptive rounding (AdaRound, ``edgevt export``'s INT8 default) help the TensorRT flavour too?

``benchmarks/int8_cpu.py`` measured AdaRound on the CPU flavour. Since the nineteenth session the
export rounds *each* INT8 flavour adaptively by default, so the TensorRT flavour (symmetric int8 Q/DQ,
per-channel weights; ``model.int8.onnx``) of a 224x224 Lite0 gets it too. This script measures that
flavour with nearest rounding and with AdaRound, side by side, on the same checkpoint:

- each ``--adaround-steps`` value (default ``0,300``) exports the model with ``precisions=(fp32, int8),
  flavour="tensorrt"``, the gate on (top-1 drop and agreement with FP32 on the model's target-val
  clips), calibration ``--calib-method`` (default entropy, the same for every row, so the rows differ
  only in the rounding);
- accuracy: FP32 and INT8 top-1 and their agreement on ``--test-per-class`` target-test clips per class
  (``int8_cpu.more_test_clips``: the set's own clips, then new ones from the same target cameras, never
  seen by training or the gate), centred windows, and with ``--every-window`` on every full window.

The INT8 graph runs on onnxruntime's CPU provider, which executes the TensorRT flavour's Q/DQ pairs
as written (quantize, dequantize, float kernels), so the decisions are those of the graph TensorRT
would build from. TensorRT fuses and picks its own kernels, so its logits can differ in the last bits,
and no speed is measured here: the CPU says nothing about TensorRT's (see ``benchmarks/gpu_check.py``).

Models: ``demo`` (the demo's adapted model: ``--demo DIR`` holds it) and the ``int8_cpu.LITE0_VARIANTS``
(``lite0_tsm_so``: the plain TSM Lite0; made once under ``--work`` by ``int8_cpu.adapted_lite0``, about
an hour per seed on 2 cores, and reused).

    python benchmarks/int8_tensorrt_rounding.py --work /tmp/int8_all --models lite0_tsm_so --lite0-seeds 1
    python benchmarks/int8_tensorrt_rounding.py --demo /tmp/demo --models demo

Writes benchmarks/results/<--name>.{md,json} (default int8_tensorrt_rounding).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import write_results  # noqa: E402
from int8_cpu import (GOAL_AGREEMENT, GOAL_DROP, LITE0_VARIANTS, decisions, demo_checkpoint, export,  # noqa: E402
                      more_test_clips, variant_checkpoint, wilson)


def export_args(args, steps: int) -> argparse.Namespace:
    """The fields ``int8_cpu.export`` reads, for one rounding."""
    return argparse.Namespace(min_agreement=args.min_agreement, max_drop=args.max_drop, calib_method=args.calib_method,
                              bias_correction=True, qat_steps=0, qat_lr=1e-5, qat_batch=4, adaround_steps=steps,
                              adaround_lr=args.adaround_lr, adaround_clips=args.adaround_clips)


def checkpoint(name: str, seed: int, args) -> tuple:
    """(checkpoint, how it was made, its data folder, calibration clips)."""
    if name == "demo":
        return demo_checkpoint(args.demo), "demo recipe (adapted)", args.demo / "data", 60
    if name not in LITE0_VARIANTS:
        raise SystemExit(f"unknown model {name!r}; choose from demo, " + ", ".join(LITE0_VARIANTS))
    return (*variant_checkpoint(args.work, 224, 60, seed, name), 60)


def measure(name: str, seed: int, steps: int, args) -> dict:
    from edgevt.bundle import INT8_STORED, check_key

    ckpt, how, data, calib_clips = checkpoint(name, seed, args)
    tag = f"{name}_s{seed}" if name != "demo" else name
    out = args.work / f"{tag}_trt_round{steps}.bundle"
    b, refused, export_s = export(ckpt, out, data, export_args(args, steps), [], calib_clips, flavour="tensorrt")
    assert set(b.int8_flavours()) == {"tensorrt"}, b.int8_flavours()
    checks = b.manifest["checks"]
    int8 = INT8_STORED["tensorrt"]  # the flavour's check keys: int8, gate
    test = more_test_clips(data, args.test_per_class)
    t0 = time.perf_counter()
    acc = {"centred": decisions(b, test, None, windows=1)}
    if args.every_window:
        acc["windows"] = decisions(b, test, None, windows=10_000)
    eval_s = round(time.perf_counter() - t0, 1)
    res = {"model": name, "seed": seed, "steps": steps, "checkpoint": str(ckpt), "weights": how, "bundle": str(b.path),
           "export_s": export_s, "eval_s": eval_s, "gate_refused": refused, "gate": checks.get(check_key("gate")),
           "calibration": (checks[int8].get("calibration") or {}).get("method"),
           "adaround": checks[int8].get("adaround"), "kept_high_precision": checks[int8].get("kept_high_precision"),
           "accuracy": acc}
    c = acc["centred"]
    print(f"[{tag} steps {steps}] exported in {export_s}s, evaluated in {eval_s}s: FP32 {c['fp32_top1']:.1f} "
          f"INT8 {c['int8_top1']:.1f} agreement {c['agreement']:.1f}% on {c['clips']} clips", flush=True)
    return res


def markdown(res: dict) -> str:
    out = ["# The TensorRT INT8 flavour: nearest rounding vs AdaRound", "",
           f"Same checkpoint per model, `flavour=tensorrt`, calibration {res['args']['calib_method']}, gate on "
           f"(drop <= {res['args']['max_drop']}, agreement >= {res['args']['min_agreement']}% on target-val). The INT8 "
           "graph runs on onnxruntime's CPU provider (its Q/DQ as written); no speed is measured. "
           f"CPU: {res['cpu']}. Load average before / after: {res['load_before']} / {res['load_after']}.", "",
           "| model | rounding | simulated logits off FP32's (calib clips) | gate, target-val: agreement (decisions) "
           "| FP32 / INT8 top-1, centred (drop) | agreement, centred (95% Wilson) | every window | export s |",
           "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in res["rows"]:
        d, g, c = r.get("adaround") or {}, r.get("gate") or {}, r["accuracy"]["centred"]
        lo, hi = wilson(c["agreement"], c["clips"])
        changed = c["clips"] - round(c["agreement"] * c["clips"] / 100)
        rounding = (f"AdaRound, {d['steps']} steps ({d['seconds']:.0f} s; {d['kept']} of {d['convolutions']} "
                    "convolutions kept it)" if d else "nearest")
        sim = (f"{100 * d['simulated_logit_error_before']:.2f}% -> {100 * d['simulated_logit_error_after']:.2f}%"
               if d else "—")
        gate = ("refused" if r.get("gate_refused") else
                f"{g.get('agreement', 0):.1f}% ({g.get('decisions') or g.get('clips')})"
                + (f", {len(r['kept_high_precision'])} kept in float" if r.get("kept_high_precision") else ""))
        w = r["accuracy"].get("windows")
        name = r["model"] + (f", seed {r['seed']}" if r["model"] != "demo" else "")
        out.append(f"| {name} | {rounding} | {sim} | {gate} | {c['fp32_top1']:.1f} / {c['int8_top1']:.1f} "
                   f"({c['fp32_top1'] - c['int8_top1']:+.1f}) | {c['agreement']:.1f}% ({lo:.1f}-{hi:.1f}), {changed} "
                   f"changed of {c['clips']} | " + (f"{w['agreement']:.1f}% ({w['rows']})" if w else "—")
                   + f" | {r['export_s']:.0f} |")
    out += ["", "## Goals (issue 14's, on the TensorRT flavour's decisions)", ""]
    for r in res["rows"]:
        c = r["accuracy"]["centred"]
        drop = c["fp32_top1"] - c["int8_top1"]
        what = f"{r['model']}" + (f" seed {r['seed']}" if r["model"] != "demo" else "") + f", {r['steps']} steps"
        out.append(f"- {what}: drop {drop:+.1f} (goal <= {GOAL_DROP}): "
                   + ("met" if drop <= GOAL_DROP else f"missed by {drop - GOAL_DROP:.1f}")
                   + f"; agreement {c['agreement']:.1f}% on {c['clips']} centred clips (goal >= {GOAL_AGREEMENT}%): "
                   + ("met" if c["agreement"] >= GOAL_AGREEMENT else f"missed by {GOAL_AGREEMENT - c['agreement']:.1f}"))
    out += ["", f"Command: `{res['command']}`"]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--demo", type=Path, default=Path("demo"), help="demo folder (for --models demo)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/int8_all"), help="folder of the Lite0 runs and bundles")
    ap.add_argument("--models", default="lite0_tsm_so")
    ap.add_argument("--lite0-seeds", default="1")
    ap.add_argument("--adaround-steps", default="0,300", help="comma list: 0 is nearest rounding")
    ap.add_argument("--adaround-lr", type=float, default=1e-2)
    ap.add_argument("--adaround-clips", type=int, default=16)
    ap.add_argument("--calib-method", default="entropy")
    ap.add_argument("--min-agreement", type=float, default=GOAL_AGREEMENT)
    ap.add_argument("--max-drop", type=float, default=GOAL_DROP)
    ap.add_argument("--test-per-class", type=int, default=60)
    ap.add_argument("--every-window", action="store_true", help="also every full window of every test clip")
    ap.add_argument("--name", default="int8_tensorrt_rounding")
    args = ap.parse_args()

    from edgevt.env import cpu_name

    args.work.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in args.lite0_seeds.split(",") if s.strip()]
    res: dict = {"cpu": cpu_name(), "command": " ".join(["python", *sys.argv]),
                 "load_before": [round(x, 2) for x in os.getloadavg()], "rows": [],
                 "args": {k: v for k, v in vars(args).items() if k not in ("demo", "work")}}
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        for seed in (seeds if name != "demo" else [0]):
            for steps in [int(s) for s in args.adaround_steps.split(",")]:
                res["rows"].append(measure(name, seed, steps, args))
                # after every row, so that a run stopped part-way keeps the rows it finished
                res["load_after"] = [round(x, 2) for x in os.getloadavg()]
                path = write_results(args.name, markdown(res), res)
    print(path.read_text())


if __name__ == "__main__":
    main()
