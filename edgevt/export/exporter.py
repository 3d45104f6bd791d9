"""``export_bundle``: checkpoint -> bundle with a parity-checked FP32 ONNX, FP16 and INT8 graphs.

Steps (each records its result in the manifest's ``checks``):

1. load the checkpoint (EdgevtError if it is not ours), export ``model.onnx`` (uint8 frames in),
   onnx checker + shape inference, parity PyTorch vs onnxruntime on real clips;
2. ``fp16``: FP16 graph with FP32 I/O, parity vs PyTorch on onnxruntime CPU;
3. ``int8``: calibrate on target clips (same ClipSpec sampling as inference; ranges cached),
   quantize (flavour ``tensorrt`` or ``cpu``), accuracy gate on ``eval`` clips with per-layer
   exclusion until within ``max_drop``; the delivered INT8 file is the one measured;
4. extra *forms* (streaming artifacts): every builder in ``config.forms`` is called with the
   ``ExportContext`` (staged bundle, model, spec, clips) before the commit, so it can write files
   into ``ctx.bundle.path`` and ``ctx.bundle.add_artifact(...)`` them (see ``register_form``);
5. commit: the bundle is assembled in a staging folder beside ``<out>`` and renamed into place only when every
   step passed; a failure removes the staging folder (nothing half-written looks valid).
"""
from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from edgevt.errors import EdgevtError
from edgevt.fileio import check_replaceable
from edgevt.export import gate as gate_mod
from edgevt.export.bundle import Bundle, is_bundle
from edgevt.export.calibration import (MIN_SENSIBLE_CLIPS, ClipCalibrationReader, as_model_input, cache_path,
                                       data_hash, load_clips)
from edgevt.export.onnx import (DEFAULT_OPSET, EXPORTERS, compare_logits, deploy_module, example_input,
                                export_onnx, ort_session, run_onnx, run_torch)
from edgevt.export.precision import CALIB_METHODS, FLAVOURS, convert_fp16, preprocess_for_quantization, \
    quantize_int8
from edgevt.models.checkpoint import file_sha256, load_checkpoint, model_from_checkpoint
from edgevt.spec import ClipSpec

PRECISIONS = ("fp32", "fp16", "int8")
FILES = {"fp32": "model.onnx", "fp16": "model.fp16.onnx", "int8": "model.int8.onnx"}
# Max abs logit difference allowed, relative to max(1, max |FP32 logit|).
DEFAULT_TOLERANCE = {"fp32": 1e-3, "fp16": 3e-2}


@dataclass
class ExportConfig:
    precisions: tuple = ("fp32",)
    calib: str | Path | list | None = None  # target-domain clips (folder, list file, or list of paths)
    calib_clips: int = 256
    calib_method: str = "entropy"
    flavour: str = "tensorrt"  # INT8 flavour: tensorrt | cpu
    eval: str | Path | list | None = None  # labeled (or unlabeled) target clips for the accuracy gate
    eval_clips: int | None = None  # at most this many eval clips (None: all)
    max_drop: float = 1.0  # INT8 accuracy gate, points
    float_input: bool = False
    opset: int = DEFAULT_OPSET
    exporter: str = "auto"  # auto (dynamo, then TorchScript fallback) | dynamo | legacy
    tolerance: dict = field(default_factory=lambda: dict(DEFAULT_TOLERANCE))
    parity_clips: int = 16
    calib_cache: str | Path | None = None  # folder for cached ranges (default ~/.cache/edgevt/calibration)
    max_batch: int = 64
    keep_first_conv: bool = True  # tensorrt flavour: keep 3-input-channel convs out of INT8
    forms: list = field(default_factory=list)  # names from register_form, or callables(ctx)
    threads: int | None = None  # onnxruntime intra-op threads for the checks
    skip_bad: bool = True  # skip unreadable calib/eval videos with a warning; False: the first one is an error

    def validate(self) -> None:
        bad = [p for p in self.precisions if p not in PRECISIONS]
        if bad or not self.precisions:
            raise EdgevtError(f"--precision: unknown {bad or 'empty'}; choose any of {', '.join(PRECISIONS)}")
        if self.flavour not in FLAVOURS:
            raise EdgevtError(f"--flavour {self.flavour!r}: choose from {', '.join(FLAVOURS)}")
        if self.calib_method not in CALIB_METHODS:
            raise EdgevtError(f"--calib-method {self.calib_method!r}: choose from {', '.join(CALIB_METHODS)}")
        if self.exporter not in EXPORTERS:
            raise EdgevtError(f"--exporter {self.exporter!r}: choose from {', '.join(EXPORTERS)}")
        if "int8" in self.precisions:
            if self.calib is None:
                raise EdgevtError("INT8 needs calibration clips from the target domain: pass --calib DIR|LIST")
            if self.calib_clips < 1:
                raise EdgevtError(f"--calib-clips must be >= 1, got {self.calib_clips}")
            if self.flavour == "tensorrt" and self.opset < 19:
                raise EdgevtError(f"--opset {self.opset}: the tensorrt INT8 flavour needs opset >= 19 "
                                  "(FP16 Q/DQ scales for strongly typed builds)")
        if self.max_drop < 0:
            raise EdgevtError(f"--max-drop must be >= 0, got {self.max_drop}")


@dataclass
class ExportContext:
    """What a form builder gets: the staged bundle and everything the exporter knows."""

    bundle: Bundle
    model: torch.nn.Module
    spec: ClipSpec
    config: ExportConfig
    checkpoint: dict
    clips: np.ndarray  # uint8 [N,T,H,W,3] parity clips (real when data was given)
    log: Callable[[str], None]
    warnings: list


_FORMS: dict[str, Callable[[ExportContext], None]] = {}


def register_form(name: str, builder: Callable[[ExportContext], None]) -> None:
    """Register an extra-artifact builder (e.g. streaming forms) usable as ``ExportConfig(forms=[name])``."""
    _FORMS[name] = builder


def _stream_form(name: str | None) -> Callable[[ExportContext], None]:
    def build(ctx: ExportContext) -> None:
        from edgevt.export.streaming import export_stream_forms

        export_stream_forms(ctx.model, ctx.bundle, None if name is None else [name])

    build.__name__ = name or "stream"
    return build


# Streaming forms (edgevt.export.streaming): "stream" adds whichever the model supports.
for _name in ("incremental", "stateful", None):
    register_form(_name or "stream", _stream_form(_name))


def parse_tolerance(text: str | None) -> dict:
    """``fp32=1e-3,fp16=3e-2`` (or one number for all) -> dict."""
    tol = dict(DEFAULT_TOLERANCE)
    if not text:
        return tol
    for part in text.split(","):
        part = part.strip()
        try:
            if "=" in part:
                k, v = part.split("=", 1)
                if k.strip() not in tol:
                    raise ValueError
                tol[k.strip()] = float(v)
            else:
                tol = {k: float(part) for k in tol}
        except ValueError:
            raise EdgevtError(f"--tolerance {text!r}: expected e.g. 'fp32=1e-3,fp16=3e-2' or one number") from None
    return tol


def _versions() -> dict:
    from edgevt.env import environment

    env = environment()
    import onnxconverter_common

    keys = ("edgevt", "python", "torch", "onnx", "onnxruntime", "opencv", "numpy", "tensorrt", "cpu")
    out = {k: env.get(k) for k in keys}
    out["onnxconverter_common"] = onnxconverter_common.__version__
    return out


def _parity_check(name: str, ref: np.ndarray, path: Path, inputs: np.ndarray, tol: float, threads) -> dict:
    s = ort_session(path, threads)
    res = compare_logits(ref, run_onnx(s, inputs))
    res.update(tolerance=tol, passed=res["max_rel_diff"] <= tol, ort_optimization=s.edgevt_optimization)
    if not res["passed"]:
        raise EdgevtError(f"{name} parity check failed: max abs logit diff {res['max_abs_diff']:.3g} "
                          f"({res['max_rel_diff']:.3g} of the logit scale) > tolerance {tol:g}; "
                          f"raise --tolerance {name}=... if this is expected")
    return res


def export_bundle(checkpoint: str | Path, out: str | Path, config: ExportConfig | None = None,
                  log: Callable[[str], None] | None = None) -> Bundle:
    """Export ``checkpoint`` into the bundle folder ``out`` (replaced atomically)."""
    config = config or ExportConfig()
    config.validate()
    log = log or (lambda msg: None)
    warnings: list[str] = []

    def warn(msg: str) -> None:
        warnings.append(msg)
        log(f"warning: {msg}")

    ckpt_path = Path(checkpoint)
    check_replaceable(out, is_bundle, "an edgevt bundle")  # before minutes of work, not after
    ckpt = load_checkpoint(ckpt_path)
    model, spec = model_from_checkpoint(ckpt, ckpt_path)
    if not spec.labels:
        raise EdgevtError(f"{ckpt_path}: its ClipSpec has no labels; re-save it with the class names")
    source = {"checkpoint": str(ckpt_path.resolve()), "sha256": file_sha256(ckpt_path), "arch": ckpt["arch"],
              "strategy": ckpt.get("strategy")}
    forms = [f if callable(f) else _FORMS.get(f) for f in config.forms]
    if any(f is None for f in forms):
        unknown = [f for f in config.forms if not callable(f) and f not in _FORMS]
        raise EdgevtError(f"unknown export form(s) {unknown}; known: {', '.join(_FORMS) or 'none'}")

    # Data first: a bad --calib/--eval fails before minutes of export work.
    calib = eval_set = None
    if "int8" in config.precisions:
        log(f"loading calibration clips from {describe_source(config.calib)}")
        calib = load_clips(config.calib, spec, config.calib_clips, labeled=False, what="calibration",
                           skip_bad=config.skip_bad)
        if len(calib[0]) < MIN_SENSIBLE_CLIPS:
            warn(f"calibrating on only {len(calib[0])} clips (fewer than {MIN_SENSIBLE_CLIPS}); activation "
                 "ranges may be noisy -- give more target-domain clips")
    elif config.calib is not None:  # no INT8, but real clips for the parity check
        calib_for_parity = load_clips(config.calib, spec, config.parity_clips, labeled=False, what="calibration",
                                      skip_bad=config.skip_bad)
    if config.eval is not None:
        log(f"loading evaluation clips from {describe_source(config.eval)}")
        eval_set = _load_eval(config.eval, spec, config.eval_clips, config.skip_bad)
    if eval_set is not None:
        parity_clips = eval_set[0][:config.parity_clips]
        parity_source = f"eval data {describe_source(config.eval)}"
    elif calib is not None or config.calib is not None:
        parity_clips = (calib if calib is not None else calib_for_parity)[0][:config.parity_clips]
        parity_source = f"calibration data {describe_source(config.calib)}"
    else:
        parity_clips = example_input(spec, batch=min(config.parity_clips, 8)).numpy()
        parity_source = "random uint8 frames (no --eval/--calib data given)"
        warn("parity checked on random frames; pass --eval or --calib to check on real clips")

    bundle = Bundle.staging(out, spec, source)
    try:
        with tempfile.TemporaryDirectory(prefix="edgevt-export.") as tmpdir:
            _export_into(bundle, model, spec, config, ckpt, calib, eval_set, parity_clips, parity_source,
                         Path(tmpdir), log, warn)
            ctx = ExportContext(bundle, model, spec, config, ckpt, parity_clips, log, warnings)
            for builder in forms:
                log(f"building form {getattr(builder, '__name__', builder)}")
                builder(ctx)
        bundle.manifest["tools"] = _versions()
        bundle.manifest["warnings"] = warnings
        bundle.manifest["export_config"] = _config_record(config)
        return bundle.commit()
    except BaseException:
        shutil.rmtree(bundle.path, ignore_errors=True)
        raise


def describe_source(source) -> str:
    """A short description of a data source for logs and the manifest (lists are not spelled out)."""
    if isinstance(source, (list, tuple)):
        return f"{len(source)} listed files"
    return str(source)


def _load_eval(source, spec: ClipSpec, max_clips: int | None, skip_bad: bool = True):
    """Labeled clips when the source has labels, otherwise unlabeled (agreement-only gate)."""
    try:
        return load_clips(source, spec, max_clips, labeled=True, what="evaluation", skip_bad=skip_bad)
    except EdgevtError as e:
        if "no class subfolders" not in str(e) and "no readable evaluation clips" not in str(e):
            raise
    return load_clips(source, spec, max_clips, labeled=False, what="evaluation", skip_bad=skip_bad)


def _config_record(config: ExportConfig) -> dict:
    d = asdict(config)
    d["forms"] = [f if isinstance(f, str) else getattr(f, "__name__", str(f)) for f in config.forms]
    for k in ("calib", "eval"):
        if d[k] is not None:
            d[k] = describe_source(getattr(config, k))
    d["calib_cache"] = str(d["calib_cache"]) if d["calib_cache"] else None
    d["precisions"] = list(config.precisions)
    return d


def _export_into(bundle: Bundle, model, spec: ClipSpec, config: ExportConfig, ckpt: dict, calib, eval_set,
                 parity_clips: np.ndarray, parity_source: str, tmp: Path, log, warn) -> None:
    checks = bundle.manifest["checks"]
    meta = {"edgevt.arch": ckpt["arch"], "edgevt.labels": ",".join(spec.labels)}
    fp32_path = bundle.path / FILES["fp32"]
    log(f"exporting {ckpt['arch']} to ONNX (opset {config.opset})")
    info = export_onnx(model, spec, fp32_path, float_input=config.float_input, opset=config.opset,
                       exporter=config.exporter, max_batch=config.max_batch, metadata=meta)
    if info.fallback_reason:
        warn(f"dynamo exporter failed ({info.fallback_reason}); used the TorchScript exporter")
    checks["onnx"] = {"checker": "passed", "shape_inference": "passed", "exporter": info.exporter,
                      "fallback_reason": info.fallback_reason, "export_seconds": info.seconds}
    torch_module = deploy_module(model, spec, config.float_input)
    parity_inputs = as_model_input(parity_clips, spec, config.float_input)
    with torch.no_grad():
        ref = run_torch(torch_module, parity_inputs)
    common = {"form": "window", "role": "model", "kind": "onnx", "opset": info.opset, "inputs": info.inputs,
              "outputs": info.outputs, "float_input": config.float_input}
    log("parity check fp32 (PyTorch vs onnxruntime)")
    checks["parity.fp32"] = {**_parity_check("fp32", ref, fp32_path, parity_inputs, config.tolerance["fp32"],
                                             config.threads), "data": parity_source}
    bundle.add_artifact("model.fp32", FILES["fp32"], precision="fp32", exporter=info.exporter, **common)

    if "fp16" in config.precisions:
        log("converting to FP16")
        t0 = time.perf_counter()
        conv = convert_fp16(fp32_path, bundle.path / FILES["fp16"])
        checks["parity.fp16"] = {**_parity_check("fp16", ref, bundle.path / FILES["fp16"], parity_inputs,
                                                 config.tolerance["fp16"], config.threads),
                                 "data": parity_source, "seconds": round(time.perf_counter() - t0, 3), **conv}
        bundle.add_artifact("model.fp16", FILES["fp16"], precision="fp16", **common)

    eval_logits = {}
    if eval_set is not None:
        eval_inputs = as_model_input(eval_set[0], spec, config.float_input)
        eval_logits["fp32"] = run_onnx(ort_session(fp32_path, config.threads), eval_inputs)
        if "fp16" in config.precisions:
            eval_logits["fp16"] = run_onnx(ort_session(bundle.path / FILES["fp16"], config.threads), eval_inputs)

    if "int8" in config.precisions:
        _int8(bundle, spec, config, calib, eval_set, eval_logits, ref, parity_inputs, parity_source, tmp, common,
              log, warn)

    if eval_set is not None:
        labels = eval_set[1]
        labeled = bool(len(labels)) and bool((labels >= 0).all())
        acc = {"clips": int(len(labels)), "labeled": labeled, "data": describe_source(config.eval)}
        for p, logits in eval_logits.items():
            acc[p] = {"top1": gate_mod.top1(logits, labels) if labeled else None,
                      "agreement_with_fp32": float((logits.argmax(1) == eval_logits["fp32"].argmax(1)).mean() * 100)}
        checks["accuracy"] = acc


def _int8(bundle: Bundle, spec, config: ExportConfig, calib, eval_set, eval_logits, ref, parity_inputs,
          parity_source, tmp: Path, common: dict, log, warn) -> None:
    import onnx

    checks = bundle.manifest["checks"]
    clips, _, paths = calib
    calib_inputs = as_model_input(clips, spec, config.float_input)
    prepared = tmp / "prepared.onnx"
    t0 = time.perf_counter()
    preprocess_for_quantization(bundle.path / FILES["fp32"], prepared)
    model_hash = file_sha256(prepared)
    cache = cache_path(model_hash, data_hash(paths, clips), config.calib_method, len(clips), config.calib_cache)
    cache_hit = cache.exists()
    log(f"calibrating on {len(clips)} target clips ({config.calib_method}, "
        f"{'cached ranges' if cache_hit else 'computing ranges'})")
    reader = ClipCalibrationReader(calib_inputs)
    qdq32 = tmp / "qdq32.onnx"
    out_path = bundle.path / FILES["int8"]

    def quantize(exclude: list[str]) -> dict:
        return quantize_int8(prepared, out_path, reader=reader, method=config.calib_method, flavour=config.flavour,
                             nodes_to_exclude=exclude, cache_path=cache, qdq_fp32_copy=qdq32)

    kept: list[dict] = []
    if config.flavour == "tensorrt" and config.keep_first_conv:
        # A conv with 3 input channels gains nothing from INT8 on TensorRT and bloats the engine.
        m = onnx.load(str(prepared))
        inits = {i.name: i for i in m.graph.initializer}
        for n in m.graph.node:
            if n.op_type == "Conv" and n.input[1] in inits and len(inits[n.input[1]].dims) > 1 \
                    and inits[n.input[1]].dims[1] == 3:
                kept.append({"node": n.name, "reason": "3-input-channel conv (no INT8 gain on TensorRT)"})
    base_exclude = [k["node"] for k in kept]
    summary = quantize(base_exclude)
    calib_seconds = time.perf_counter() - t0
    result = None
    if eval_set is not None:
        eval_inputs = as_model_input(eval_set[0], spec, config.float_input)
        labels = eval_set[1]

        def measure() -> tuple[dict, np.ndarray]:
            logits = run_onnx(ort_session(out_path, config.threads), eval_inputs)
            return gate_mod.measure(eval_logits["fp32"], logits, labels), logits

        m, logits = measure()
        steps = [{"excluded": len(base_exclude), "drop": m["drop"], "int8": m["int8"], "agreement": m["agreement"]}]
        ranking = []
        if m["drop"] > config.max_drop:
            log(f"INT8 drop {m['drop']:.2f} points > {config.max_drop}; ranking layers by sensitivity")
            ranking = gate_mod.layer_sensitivity(prepared, qdq32, eval_inputs[:32], tmp)
            ranked = [n for n, _ in ranking if n not in base_exclude]
            for exclude in gate_mod.exclusion_schedule(ranked, base_exclude):
                summary = quantize(exclude)
                m, logits = measure()
                steps.append({"excluded": len(exclude), "drop": m["drop"], "int8": m["int8"],
                              "agreement": m["agreement"]})
                log(f"  {len(exclude)} layers in higher precision: drop {m['drop']:.2f} points")
                if m["drop"] <= config.max_drop:
                    break
            kept += [{"node": n, "reason": "accuracy gate (sensitivity rank)"}
                     for n in summary["nodes_excluded"] if n not in base_exclude]
        result = gate_mod.GateResult(passed=m["drop"] <= config.max_drop, max_drop=config.max_drop,
                                     labeled=m["labeled"], metric="top1_drop" if m["labeled"] else "disagreement",
                                     fp32=m["fp32"], int8=m["int8"], drop=m["drop"], agreement=m["agreement"],
                                     clips=int(len(labels)), kept_high_precision=kept, steps=steps,
                                     sensitivity=[(n, round(s, 5)) for n, s in ranking[:10]])
        eval_logits["int8"] = logits
    else:
        warn("no --eval data: the INT8 accuracy gate was not run; pass labeled target clips with --eval")
    summary.update(kept_high_precision=kept, calibration={
        "clips": len(clips), "method": config.calib_method, "data": describe_source(config.calib), "cache": str(cache),
        "cache_hit": cache_hit, "seconds": round(calib_seconds, 3)})
    checks["int8"] = summary
    if result is not None:
        if result.passed and summary["qdq_nodes"]["QuantizeLinear"] == 0:
            # every quantized layer had to be kept in higher precision: that is not an INT8 graph
            result.passed = False
            raise EdgevtError(f"INT8 accuracy gate: the drop is within --max-drop {config.max_drop} only with no "
                              "layer left in INT8; this model does not quantize well here -- export fp16 "
                              "instead, or calibrate on more/other target clips")
        checks["gate"] = result.to_dict()
        if not result.passed:
            raise EdgevtError(f"INT8 accuracy gate failed: drop {result.drop:.2f} points > --max-drop "
                              f"{config.max_drop} even with {len(kept)} layers kept in higher precision; "
                              "calibrate on more target clips, try --calib-method, or export without int8")
    checks["parity.int8"] = {**compare_logits(ref, run_onnx(ort_session(out_path, config.threads), parity_inputs)),
                             "data": parity_source, "note": "informational: INT8 is judged by the accuracy gate"}
    bundle.add_artifact("model.int8", FILES["int8"], precision="int8", flavour=config.flavour,
                        ort_optimization="basic" if config.flavour == "tensorrt" else "all",
                        kept_high_precision=[k["node"] for k in kept], **common)
