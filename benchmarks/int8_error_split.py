"""Where a model's INT8 error comes from, and what bias correction takes away.

For one bundle's FP32 graph, on target-val windows: the logits of each graph below against FP32's
(relative L2 error, and the agreement of their top-1):

- ``weights only``: every conv the CPU flavour quantizes has its weights rounded as the quantizer
  rounds them (``edgevt.export.bias_correction.quantized_weight``), activations in float;
- ``weights only, bias-corrected``: the same after ``correct_biases``;
- ``cpu flavour`` and ``cpu flavour, bias-corrected``: the whole graph as ``edgevt export --flavour
  cpu`` quantizes it (input side and classifier in float), entropy calibration, no gate;
- ``tensorrt flavour`` (simulated on onnxruntime CPU, graph optimisation off) with and without the
  correction.

Usage:
    python benchmarks/int8_error_split.py --bundle /tmp/int8_all/lite0_tsm_so_s1.bundle \\
        --data /tmp/int8_all/lite0_data_60_s1/data --name int8_error_split_lite0_tsm_so_s1
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import write_results  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", type=Path, required=True, help="an edgevt bundle (its model.onnx is used)")
    ap.add_argument("--data", type=Path, required=True, help="folder with target_adapt.txt and target_val.txt")
    ap.add_argument("--calib-clips", type=int, default=60)
    ap.add_argument("--windows", type=int, default=4, help="windows per target-val clip")
    ap.add_argument("--max-windows", type=int, default=240, help="the first this many target-val windows")
    ap.add_argument("--method", default="entropy", help="calibration method")
    ap.add_argument("--name", default="int8_error_split")
    args = ap.parse_args()

    import onnx
    from onnx import numpy_helper

    from edgevt.bundle import Bundle
    from edgevt.data.datasets import load_clips
    from edgevt.export.bias_correction import correct_biases, correctable_convs, input_tap_means, quantized_weight
    from edgevt.export.calibration import ClipCalibrationReader
    from edgevt.export.onnx import ort_session, run_onnx
    from edgevt.export.precision import (input_side_nodes, output_side_nodes, preprocess_for_quantization,
                                         quantize_int8)

    bundle = Bundle.load(args.bundle, verify=False)
    calib = load_clips(args.data / "target_adapt.txt", bundle.spec, args.calib_clips)[0]
    val = load_clips(args.data / "target_val.txt", bundle.spec, labeled=True, what="evaluation",
                     windows=args.windows)[0][:args.max_windows]
    rows, t0 = [], time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="edgevt-split.") as tmp:
        tmp = Path(tmp)
        prep = tmp / "prepared.onnx"
        preprocess_for_quantization(args.bundle / "model.onnx", prep)
        model = onnx.load(str(prep))
        name = model.graph.input[0].name
        fp32 = run_onnx(ort_session(prep), val)

        def row(label: str, path: Path, optimization: str = "auto") -> None:
            z = run_onnx(ort_session(path, optimization=optimization), val)
            rows.append({"graph": label, "agreement": float((z.argmax(1) == fp32.argmax(1)).mean() * 100),
                         "logit_error": float(np.linalg.norm(z - fp32) / np.linalg.norm(fp32))})
            print(f"{label}: agreement {rows[-1]['agreement']:.1f}%, logits {100 * rows[-1]['logit_error']:.2f}% off",
                  flush=True)

        cpu_float = input_side_nodes(model) + output_side_nodes(model)
        means = input_tap_means(model, ClipCalibrationReader({name: calib}))

        def weights_rounded(m: onnx.ModelProto, skip: list[str]) -> onnx.ModelProto:
            out = onnx.ModelProto()
            out.CopyFrom(m)
            inits = {i.name: i for i in out.graph.initializer}
            for n in correctable_convs(out, set(skip)):
                w = numpy_helper.to_array(inits[n.input[1]])
                inits[n.input[1]].CopyFrom(numpy_helper.from_array(quantized_weight(w), n.input[1]))
            return out

        weights = {i.name: i for i in model.graph.initializer}
        first_convs = [n.name for n in correctable_convs(model) if weights[n.input[1]].dims[1] == 3]  # tensorrt keeps them
        for flavour, skip in (("cpu", cpu_float), ("tensorrt", first_convs)):
            fixed, _ = correct_biases(model, means, skip=set(skip), fp16_scale=flavour == "tensorrt")
            corrected = tmp / f"corrected.{flavour}.onnx"
            onnx.save_model(fixed, str(corrected))
            if flavour == "cpu":
                for label, m in (("weights only", model), ("weights only, bias-corrected", fixed)):
                    p = tmp / "weights.onnx"
                    onnx.save_model(weights_rounded(m, skip), str(p))
                    row(label, p)
            for label, src in ((f"{flavour} flavour", prep), (f"{flavour} flavour, bias-corrected", corrected)):
                q = tmp / f"{flavour}.onnx"
                quantize_int8(src, q, reader=ClipCalibrationReader({name: calib}), method=args.method, flavour=flavour,
                              nodes_to_exclude=skip, cache_path=tmp / f"ranges.{flavour}.json")
                row(label + (" (onnxruntime CPU, optimisation off)" if flavour == "tensorrt" else ""), q,
                    "none" if flavour == "tensorrt" else "all")
    md = [f"# Where the INT8 error of `{args.bundle.name}` comes from\n",
          f"{len(val)} target-val windows ({args.data / 'target_val.txt'}), {len(calib)} calibration clips "
          f"({args.method}); each graph's logits against FP32's.\n",
          "| graph | top-1 agreement with FP32 | logits off FP32's (relative L2) |", "|---|---:|---:|"]
    md += [f"| {r['graph']} | {r['agreement']:.1f}% | {100 * r['logit_error']:.2f}% |" for r in rows]
    md.append("\nThe ranges of each flavour are calibrated once, on the uncorrected graph, and shared by both of "
              "its rows (as `edgevt export` caches them).")
    data = {"bundle": str(args.bundle), "data": str(args.data), "windows": len(val), "calib_clips": len(calib),
            "method": args.method, "rows": rows, "seconds": round(time.perf_counter() - t0, 1),
            "command": " ".join(sys.argv)}
    print(write_results(args.name, "\n".join(md), data))


if __name__ == "__main__":
    main()
