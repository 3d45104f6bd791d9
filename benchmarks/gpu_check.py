"""One script that checks the whole GPU path; run it on any machine with an NVIDIA GPU.

1. Exports a small model (default: TSM EfficientNet-Lite0 with its ImageNet weights, T=8, 112x112)
   to a bundle with FP32, FP16 and TensorRT-flavour INT8 (Q/DQ calibrated on MotionDigits-DA
   target clips).
2. Builds FP32/FP16/INT8 TensorRT engines with ``edgevt build`` where TensorRT is installed.
3. Parity: runs the same target clips through every GPU backend (torch-CUDA, ort-cuda, ort-trt,
   tensorrt) and compares with onnxruntime CPU on the same graph precision (max |logit diff| and
   top-1 agreement), and with the FP32 reference.
4. Timing: torch-CUDA, ort-cuda, ort-trt and TensorRT side by side at batch 1 and --batch, with
   p50/p90/p99, throughput and the host->device / compute / device->host split.

It also runs without a GPU: then it checks the CPU half (export, ort-cpu parity) and reports every
GPU step it could not run and why. Results: benchmarks/results/gpu_check.{md,json}; exit code 1 if
a parity check failed.

    python benchmarks/gpu_check.py [--arch tsm_efficientnet_lite0] [--size 112] [--batch 8]
    python benchmarks/gpu_check.py --quick      # tiny model, seconds (smoke run)
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import provenance, write_results  # noqa: E402

from edgevt.backends import available_backends, open_backend  # noqa: E402
from edgevt.errors import EdgevtError  # noqa: E402

# Parity thresholds against onnxruntime CPU on the same graph: (max |logit diff|, min top-1 agreement).
TOLERANCE = {"fp32": (1e-2, 1.0), "fp16": (5e-2, 0.97), "int8": (None, 0.95)}
GPU_BACKENDS = ("torch", "ort-cuda", "ort-trt", "tensorrt")


def make_model(work: Path, args) -> tuple[Path, Path]:
    """MotionDigits-DA target clips + a checkpoint of the chosen architecture (no training: parity and
    timing do not need a trained model)."""
    from edgevt.data.synth import SynthConfig, generate
    from edgevt.models.checkpoint import save_checkpoint
    from edgevt.models.zoo import create_model, model_info
    from edgevt.spec import ClipSpec

    root = work / "motiondigits"
    if not (root / "labels.txt").exists():
        generate(root, SynthConfig(split="unseen", size=args.size, frames=max(16, args.frames), seed=0,
                                   per_class={"source_train": 1, "source_test": 1,
                                              "target_train": args.calib_per_class, "target_test": args.test_per_class}))
    info = model_info(args.arch)
    labels = (root / "labels.txt").read_text().split()
    spec = ClipSpec(num_frames=args.frames, size=(args.size, args.size), labels=labels, mean=info.mean, std=info.std)
    ckpt = work / f"{args.arch}.pt"
    if not ckpt.exists():
        torch.manual_seed(0)
        weights = "pretrained" if "efficientnet" in args.arch else "none"
        model = create_model(args.arch, len(labels), num_frames=args.frames, weights=weights)
        save_checkpoint(ckpt, model.eval(), spec, arch=args.arch)
    return root, ckpt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="tsm_efficientnet_lite0")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--batch", type=int, default=8, help="the larger timed batch (also the profile max)")
    ap.add_argument("--calib-per-class", type=int, default=8)
    ap.add_argument("--test-per-class", type=int, default=6)
    ap.add_argument("--runs", type=int, default=200, help="timed runs per configuration")
    ap.add_argument("--warmup-s", type=float, default=2.0)
    ap.add_argument("--threads", type=int, default=None, help="CPU threads for torch/onnxruntime CPU")
    ap.add_argument("--quick", action="store_true", help="tsn_tinycnn at 32x32, T=4, few runs (smoke run)")
    ap.add_argument("--work", type=Path, default=None, help="keep data/checkpoint/bundle here (default: temp)")
    args = ap.parse_args()
    if args.quick:
        args.arch, args.size, args.frames, args.runs, args.warmup_s = "tsn_tinycnn", 32, 4, 20, 0.2
        args.calib_per_class, args.test_per_class = 3, 2
    if args.threads:
        torch.set_num_threads(args.threads)
    work = args.work or Path(tempfile.mkdtemp(prefix="edgevt-gpucheck-"))
    usable = {n: (ok, r) for n, ok, r in available_backends()}
    skipped: list[dict] = []
    failures: list[str] = []

    def skip(what: str, why: str) -> None:
        skipped.append({"what": what, "why": why})
        print(f"SKIP {what}: {why}", flush=True)

    # 1. model + bundle -------------------------------------------------------------------------
    from edgevt.data.datasets import load_clips
    from edgevt.export.exporter import ExportConfig, export_bundle

    root, ckpt = make_model(work, args)
    bundle = work / "bundle"
    if not bundle.exists():
        t0 = time.time()
        export_bundle(ckpt, bundle, ExportConfig(precisions=("fp32", "fp16", "int8"), calib=root / "target_train.txt",
                                                 calib_clips=64, max_batch=max(64, args.batch), threads=args.threads,
                                                 adaround_steps=0),  # nearest rounding: the device time is short
                      log=lambda m: print("  export:", m, flush=True))
        print(f"exported {args.arch} fp32/fp16/int8 in {time.time() - t0:.0f} s", flush=True)
    from edgevt.bundle import Bundle

    spec = Bundle.load(bundle).spec
    clips, _, _ = load_clips(root / "target_test.txt", spec, None, labeled=True, what="evaluation")
    print(f"{len(clips)} target clips, {args.arch} T={spec.num_frames} {spec.size[0]}x{spec.size[1]}", flush=True)

    # 2. engines ------------------------------------------------------------------------------------
    engines: dict = {}
    if usable["tensorrt"][0]:
        from edgevt.backends.trt_build import build_bundle

        for p in ("fp32", "fp16", "int8"):
            try:
                (r,) = build_bundle(bundle, precisions=[p], batch=(1, args.batch, args.batch), log=print)
                engines[p] = {"seconds": r.sidecar.build_seconds, "mib": round(r.size_bytes / 2**20, 2),
                              "strongly_typed": r.sidecar.strongly_typed, "flags": r.sidecar.flags}
            except EdgevtError as e:
                failures.append(f"tensorrt build {p}: {e}")
                skip(f"tensorrt build {p}", str(e))
    else:
        skip("tensorrt build fp32/fp16/int8", usable["tensorrt"][1])

    # 3. parity -------------------------------------------------------------------------------------
    def run_all(backend) -> np.ndarray:
        b = args.batch
        return np.concatenate([backend.run({"frames": clips[i:i + b]})["logits"] for i in range(0, len(clips), b)])

    cpu_ref = {}
    for p in ("fp32", "fp16", "int8"):
        with open_backend("ort-cpu", bundle, precision=p, threads=args.threads) as b:
            cpu_ref[p] = run_all(b)
    parity = []
    configs = [("torch", "fp32"), ("torch", "fp16")] + [(n, p) for n in GPU_BACKENDS[1:] for p in ("fp32", "fp16", "int8")]
    for name, p in configs:
        ok, why = usable[name]
        if name == "torch" and not torch.cuda.is_available():
            ok, why = False, "no CUDA device visible to torch"
        if not ok:
            skip(f"{name} {p}", why)
            continue
        if name == "tensorrt" and p not in engines:
            skip(f"{name} {p}", "engine was not built")
            continue
        try:
            opts = {"device": "cuda", "precision": p} if name == "torch" else {"precision": p}
            if name == "ort-trt":
                opts["batch"] = (1, args.batch, args.batch)
            t0 = time.time()
            with open_backend(name, ckpt if name == "torch" else bundle, **opts) as b:
                open_s = time.time() - t0
                out = run_all(b)
        except Exception as e:  # report and carry on: the point is to see everything that fails
            failures.append(f"{name} {p}: {type(e).__name__}: {e}")
            skip(f"{name} {p}", f"failed: {type(e).__name__}: {str(e).splitlines()[0]}")
            traceback.print_exc()
            continue
        ref = cpu_ref[p]
        diff = float(np.abs(out - ref).max())
        agree = float((out.argmax(1) == ref.argmax(1)).mean())
        agree_fp32 = float((out.argmax(1) == cpu_ref["fp32"].argmax(1)).mean())
        max_diff, min_agree = TOLERANCE[p]
        passed = agree >= min_agree and (max_diff is None or diff <= max_diff)
        if not passed:
            failures.append(f"parity {name} {p}: max diff {diff:.3g}, top-1 agreement {agree:.3f}")
        parity.append({"backend": name, "precision": p, "vs": f"ort-cpu {p}", "max_abs_diff": diff,
                       "top1_agreement": agree, "top1_agreement_vs_fp32": agree_fp32, "passed": passed,
                       "open_seconds": round(open_s, 2)})
        print(parity[-1], flush=True)

    # 4. timing ---------------------------------------------------------------------------------------
    from edgevt.bench.latency import time_backend

    timing = []
    timed = [("ort-cpu", p) for p in ("fp32", "int8")] + [(r["backend"], r["precision"]) for r in parity]
    for name, p in timed:
        for batch in sorted({1, args.batch}):
            opts = {"device": "cuda", "precision": p} if name == "torch" else {"precision": p}
            if name == "ort-trt":
                opts["batch"] = (1, args.batch, args.batch)
            if name == "ort-cpu":
                opts["threads"] = args.threads
            inputs = {"frames": np.ascontiguousarray(np.resize(clips, (batch, *clips.shape[1:])))}
            with open_backend(name, ckpt if name == "torch" else bundle, **opts) as b:
                stats, _ = time_backend(b, inputs, warmup_s=args.warmup_s, duration_s=None, runs=args.runs)
            row = {"backend": name, "precision": p, **stats.to_dict()}
            timing.append(row)
            print(f"{name:9s} {p} b{batch}: p50 {stats.p50_ms:.3f} ms, p99 {stats.p99_ms:.3f} ms, "
                  f"{stats.throughput:.0f} clips/s", flush=True)

    # report -------------------------------------------------------------------------------------------
    prov = provenance()
    device = ", ".join(prov["gpus"]) or "no GPU"
    md = [f"# GPU path check: {args.arch}, T={spec.num_frames}, {spec.size[0]}x{spec.size[1]}, on {device}", "",
          f"TensorRT: {prov.get('tensorrt') or 'not installed'}; onnxruntime providers: "
          f"{', '.join(prov['onnxruntime_providers'])}", ""]
    if engines:
        md += ["## Engines", "", "| precision | build s | MiB | strongly typed | flags |", "|---|---|---|---|---|"]
        md += [f"| {p} | {e['seconds']} | {e['mib']} | {e['strongly_typed']} | {'+'.join(e['flags']) or '-'} |"
               for p, e in engines.items()]
        md.append("")
    md += [f"## Parity against onnxruntime CPU ({len(clips)} MotionDigits-DA target clips)", ""]
    if parity:
        md += ["| backend | precision | max abs logit diff | top-1 agreement | vs FP32 | pass |", "|---|---|---|---|---|---|"]
        md += [f"| {r['backend']} | {r['precision']} | {r['max_abs_diff']:.2e} | {r['top1_agreement']:.3f} | "
               f"{r['top1_agreement_vs_fp32']:.3f} | {'yes' if r['passed'] else '**no**'} |" for r in parity]
    else:
        md.append("No GPU backend could run here.")
    md += ["", f"## Latency ({args.runs} runs after {args.warmup_s} s warm-up; ms per batch)", "",
           "| backend | precision | batch | p50 | p90 | p99 | clips/s | h2d | compute | d2h |",
           "|---|---|---|---|---|---|---|---|---|---|"]

    def f(x):
        return "-" if x is None else f"{x:.3f}"

    md += [f"| {r['backend']} | {r['precision']} | {r['batch']} | {f(r['p50_ms'])} | {f(r['p90_ms'])} | "
           f"{f(r['p99_ms'])} | {r['throughput']:.0f} | {f(r['h2d_ms'])} | {f(r['compute_ms'])} | {f(r['d2h_ms'])} |"
           for r in timing]
    md += ["", "Timing: each call is one `Backend.run` (uint8 frames from host memory to logits in host memory); "
               "h2d/compute/d2h come from CUDA events (torch, tensorrt) or wall clocks around IOBinding steps "
               "(ort-cuda, ort-trt); '-' where a backend cannot separate them."]
    if skipped:
        md += ["", "## Not run here", ""] + [f"- {s['what']}: {s['why']}" for s in skipped]
    if failures:
        md += ["", "## Failures", ""] + [f"- {x}" for x in failures]
    md += ["", f"Reproduce: `python benchmarks/gpu_check.py --arch {args.arch} --size {args.size} --frames {args.frames} "
               f"--batch {args.batch}{' --quick' if args.quick else ''}`"]
    name = "gpu_check" + ("_quick" if args.quick else "")
    path = write_results(name, "\n".join(md), {"args": {k: str(v) for k, v in vars(args).items()}, "engines": engines,
                                                "parity": parity, "timing": timing, "skipped": skipped,
                                                "failures": failures})
    print("\n".join(md))
    print(f"wrote {path}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
