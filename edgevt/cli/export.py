"""edgevt export: checkpoint -> deploy bundle (ONNX with uint8 frames in, FP16, INT8 Q/DQ)."""
from __future__ import annotations

from pathlib import Path

import typer


def _split(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def export(
    checkpoint: Path = typer.Argument(..., help="edgevt checkpoint (.pt) from `edgevt adapt`."),
    out: Path = typer.Option(..., "--out", "-o", help="Bundle folder to write (replaced atomically)."),
    precision: str = typer.Option("fp32", help="Comma-separated subset of fp32,fp16,int8 (fp32 is always "
                                               "exported: it is the reference)."),
    calib: str = typer.Option(None, help="Target-domain clips for INT8 calibration: a folder of videos "
                                         "(labels ignored) or a .txt/.csv list."),
    calib_clips: int = typer.Option(256, help="Calibration clips to use (spread over the source)."),
    calib_method: str = typer.Option("auto", help="Calibration: auto (calibrate with entropy, percentile and "
                                                  "minmax, measure each on the --eval clips and keep, of "
                                                  "those the gate passes, the one whose logits are closest "
                                                  "to FP32's; entropy without --eval), entropy, minmax or "
                                                  "percentile."),
    calib_cache: Path = typer.Option(None, help="Folder for cached calibration ranges "
                                                "(default ~/.cache/edgevt/calibration)."),
    flavour: str = typer.Option("auto", help="INT8 graph flavour, by target: tensorrt (symmetric int8 Q/DQ, "
                                             "per-channel weights, FP16 scales: TensorRT, ort-trt), cpu (uint8 "
                                             "activations, int8 weights, the input side and the classifier in float: fastest on "
                                             "onnxruntime CPU), or auto "
                                             "(both, for a target not known yet; eval/bench/run pick the one that "
                                             "fits their backend)."),
    bias_correction: bool = typer.Option(True, "--bias-correction/--no-bias-correction",
                                         help="INT8: fold the mean output shift that rounding each convolution's "
                                              "weights to int8 causes (measured on the --calib clips) into its "
                                              "bias (Nagel et al. 2019). On by default."),
    qat_steps: int = typer.Option(0, help="INT8: quantization-aware fine-tuning, this many steps (0: off). A copy "
                                          "of the model is tuned, with INT8's rounding simulated, to reproduce "
                                          "the FP32 model's logits on the --calib clips (no labels needed); the "
                                          "INT8 graphs are made from it, the FP32 graph stays the checkpoint. "
                                          "Each step is a forward and backward pass on --qat-batch clips."),
    qat_lr: float = typer.Option(1e-5, help="Learning rate of --qat-steps (Adam; warm-up, then cosine)."),
    qat_batch: int = typer.Option(4, help="Clips per --qat-steps step."),
    adaround_steps: int = typer.Option(None, help="INT8: adaptive rounding (AdaRound), this many steps per "
                                                  "convolution (default: 300 with int8, unless --qat-steps; 0: off, "
                                                  "post-training rounding to the nearest level). Each convolution's "
                                                  "int8 weights are rounded up or down, whichever reproduces its "
                                                  "FP32 output on the --calib clips best; the INT8 graphs are made "
                                                  "from that copy, the FP32 graph stays the checkpoint. Cost per "
                                                  "INT8 flavour: about 12 s on the demo's 64x64 model, about 9 minutes on "
                                                  "a 224x224 EfficientNet-Lite0 on 2 CPU cores; --adaround-steps 0 "
                                                  "skips it."),
    adaround_lr: float = typer.Option(1e-2, help="Learning rate of --adaround-steps (Adam on the rounding choices)."),
    adaround_clips: int = typer.Option(16, help="Calibration clips whose layer inputs --adaround-steps fits on "
                                                "(all in memory at once: about 4 GB at 16 clips of a 224x224 Lite0)."),
    adaround_batch: int = typer.Option(16, help="Samples (frames of a 2D backbone) per --adaround-steps step."),
    eval_data: str = typer.Option(None, "--eval", help="Target clips for the accuracy gate: labeled (class "
                                                       "folders or list) gives top-1; unlabeled gives agreement."),
    eval_clips: int = typer.Option(None, help="Use at most this many --eval clips."),
    eval_windows: int = typer.Option(4, help="Windows per --eval clip the gate judges (evenly spread over "
                                             "the video; 1: the centred window only): more decisions than "
                                             "clips, so the agreement means more."),
    max_drop: float = typer.Option(1.0, help="INT8 accuracy gate: max top-1 drop (or disagreement) in points; "
                                             "sensitive layers are kept in higher precision to meet it."),
    min_agreement: float = typer.Option(None, help="INT8 accuracy gate: min % of --eval decisions whose INT8 top-1 "
                                                   "equals FP32's, judged as well as the drop (default 97)."),
    gate_min_clips: int = typer.Option(None, help="Fewer --eval clips than this and the gate's verdict is flagged "
                                                  "as judged on too few clips, in a warning and the manifest "
                                                  "(default 50)."),
    float_input: bool = typer.Option(False, "--float-input", help="Take normalised float [N,T,3,H,W] instead "
                                                                  "of uint8 frames [N,T,H,W,3]."),
    opset: int = typer.Option(20, help="ONNX opset (>= 19 for the tensorrt INT8 flavour)."),
    exporter: str = typer.Option("auto", help="auto (dynamo, falling back to the TorchScript exporter), "
                                              "dynamo or legacy."),
    tolerance: str = typer.Option(None, help="Parity tolerance on max abs logit diff relative to the logit "
                                             "scale, e.g. 'fp32=1e-3,fp16=3e-2'."),
    forms: str = typer.Option("", help="Extra artifact forms, comma-separated: stream (whatever the model "
                                       "supports), incremental, stateful."),
    threads: int = typer.Option(None, help="onnxruntime threads for the checks (default: all cores)."),
    skip_bad: bool = typer.Option(True, "--skip-bad/--no-skip-bad",
                                  help="Skip unreadable --calib/--eval videos with a warning that lists them "
                                       "(default), or stop at the first one with --no-skip-bad."),
) -> None:
    """Export CHECKPOINT to a bundle: model.onnx (+ model.fp16.onnx, model.int8.onnx) and edgevt.json
    with the ClipSpec, I/O, hashes and every check (parity, INT8 calibration, accuracy gate)."""
    from rich.console import Console

    from edgevt.export.exporter import ExportConfig, export_bundle, parse_tolerance

    from edgevt.cli._options import at_least, threads as check_threads

    check_threads(threads)
    at_least("--calib-clips", calib_clips, 1)
    at_least("--eval-clips", eval_clips, 1, "omit it to use every --eval clip")
    at_least("--eval-windows", eval_windows, 1)
    precisions = _split(precision)
    if "fp32" not in precisions:
        precisions.insert(0, "fp32")
    cfg = ExportConfig(precisions=tuple(precisions), calib=calib, calib_clips=calib_clips,
                       calib_method=calib_method, calib_cache=calib_cache, flavour=flavour, eval=eval_data,
                       eval_clips=eval_clips, eval_windows=eval_windows, max_drop=max_drop, float_input=float_input, opset=opset,
                       exporter=exporter, tolerance=parse_tolerance(tolerance), forms=_split(forms), threads=threads,
                       skip_bad=skip_bad, bias_correction=bias_correction, qat_steps=qat_steps, qat_lr=qat_lr,
                       qat_batch=qat_batch, adaround_steps=adaround_steps, adaround_lr=adaround_lr,
                       adaround_clips=adaround_clips, adaround_batch=adaround_batch)
    if min_agreement is not None:  # (defaults: edgevt.export.gate)
        cfg.min_agreement = min_agreement
    if gate_min_clips is not None:
        cfg.gate_min_clips = gate_min_clips
    console = Console(stderr=True)
    with console.status("exporting") as status:
        def log(msg: str) -> None:
            if msg.startswith("warning:"):
                console.print(f"[yellow]{msg}[/]", highlight=False)
            else:
                status.update(msg)
                console.print(f"[dim]{msg}[/]", highlight=False)

        bundle = export_bundle(checkpoint, out, cfg, log=log)
    print_summary(bundle)


def print_summary(bundle) -> None:
    from rich.console import Console
    from rich.table import Table

    from edgevt.bundle import FORMS, INT8_STORED, check_key

    checks = bundle.manifest["checks"]
    t = Table(title=f"bundle {bundle.path}")
    for col in ("artifact", "file", "parity max|diff|", "top-1 agree", "eval top-1"):
        t.add_column(col)
    acc = checks.get("accuracy", {})
    for key, a in bundle.artifacts.items():
        par = a.get("parity") or {}  # the same schema for every form's artifacts
        e = acc.get(key.split(".", 1)[1], {}) if key.startswith("model.") else {}  # by stored precision
        top1 = e.get("top1")
        t.add_row(key, a["file"], f"{par['max_abs_diff']:.2e}" if par else "",
                  f"{par['top1_agreement']:.1f}%" if par else "",
                  f"{top1:.2f}" if top1 is not None else (f"agree {e['agreement_with_fp32']:.1f}%" if e else ""))
    Console().print(t)
    for form in FORMS:  # every INT8 graph, with or without a gate
        for flavour, stored in INT8_STORED.items():
            qat = checks.get(check_key(stored, form), {}).get("qat")
            if qat:
                typer.echo(f"INT8 ({form}, {flavour}): quantization-aware fine-tuning, {qat['steps']} steps on "
                           f"{qat['clips']} calibration clips: simulated INT8 logits "
                           f"{100 * qat['simulated_logit_error_before']:.2f}% -> "
                           f"{100 * qat['simulated_logit_error_after']:.2f}% off FP32's")
            ada = checks.get(check_key(stored, form), {}).get("adaround")
            if ada:
                typer.echo(f"INT8 ({form}, {flavour}): adaptive rounding of {ada['kept']} of {ada['convolutions']} "
                           f"convolutions ({ada['steps']} steps each, {ada['clips']} calibration clips): simulated "
                           f"INT8 logits {100 * ada['simulated_logit_error_before']:.2f}% -> "
                           f"{100 * ada['simulated_logit_error_after']:.2f}% off FP32's")
            bc = checks.get(check_key(stored, form), {}).get("bias_correction")
            if bc:
                fc = f" and {bc['gemms']} fully connected" if bc.get("gemms") else ""
                typer.echo(f"INT8 ({form}, {flavour}): bias correction on {bc['convs']} convolutions{fc} "
                           f"(largest shift {bc['largest_shift']:.3g})")
    for key in [k for k in checks if k == "gate" or k.startswith("gate.")]:
        g = checks[key]
        kept = len(g["kept_high_precision"])
        form = g.get("form") or key.partition(".")[2] or "window"  # older bundles: the form is in the key
        flavour = g.get("flavour") or "tensorrt"
        agree = f", agreement {g['agreement']:.1f}% (min {g['min_agreement']})" if "min_agreement" in g else ""
        stored = INT8_STORED.get(flavour, "int8")
        cal = checks.get(check_key(stored, form), {}).get("calibration", {})
        if cal.get("tried"):
            typer.echo(f"INT8 calibration ({form}, {flavour}): {cal['method']} (auto: of those the gate passes, the "
                       "closest to FP32's logits; on the eval clips: " + ", ".join(
                           f"{m} {t['agreement']:.1f}% agreement" + (f", {100 * t['logit_error']:.2f}% off"
                                                                     if t.get("logit_error") is not None else "")
                           for m, t in cal["tried"].items()) + ")")
        k = checks.get(check_key(stored, form), {}).get("float_prefix_layers")
        if k:
            typer.echo(f"INT8 ({form}, {flavour}): the first {k} weighted layers kept in float with their activations")
        on = f"{g['clips']} clips" + (f" ({g['decisions']} decisions)" if g.get("decisions") not in (None, g["clips"]) else "")
        typer.echo(f"INT8 gate ({form}, {flavour}) on {on}: drop {g['drop']:.2f} points "
                   f"(max {g['max_drop']}){agree}, {kept} layer(s) kept in higher precision -> "
                   f"{'passed' if g['passed'] else 'FAILED'}" + ("" if g.get("enough_clips", True) else
                                                                 " [too few clips to mean much]")
                   + (f" [mostly float: {kept} of {g['layers']} layers, expect little speed-up]"
                      if g.get("mostly_float") else ""))


def register(app: typer.Typer) -> None:
    app.command()(export)
