"""``export_bundle``: checkpoint -> bundle; one export path for every form.

For each form -- ``window`` (the model), and the streaming forms asked for with ``forms``
(``incremental``: encoder + head; ``stateful``: TSM per-frame model with its shift buffers + head) --
the same steps run, and each records its result in the manifest's ``checks`` under one schema
(``edgevt.bundle.check_key``: ``parity.fp32`` for the window form, ``parity.stateful.fp32`` for a
stream form; ``int8``/``gate`` likewise):

1. export every graph of the form (``edgevt.export.onnx.export_graph``: the configured exporter and
   opset, checker + strict shape inference, ClipSpec in the metadata, atomic single-file write);
2. parity: the whole form on onnxruntime against PyTorch on the same clips (real ones when
   ``--eval``/``--calib`` data is given), within ``tolerance``; top-1 agreement in percent;
3. ``fp16``: FP16 graphs with FP32/uint8 I/O, the same parity check;
4. ``int8``: calibrate every graph of the form on target clips (the window graph on the clips as the
   device feeds them; the per-frame graphs on what the stream loop feeds them, recorded while the
   FP32 form runs over the clips; ranges cached), quantize in each flavour asked for (``tensorrt``,
   ``cpu``, or both with ``auto``: stored under ``edgevt.bundle.INT8_STORED``), and the accuracy gate
   on ``eval`` clips for each (``edgevt.export.gate.run_gate``: the most sensitive layers kept in
   higher precision until within ``max_drop`` and at least ``min_agreement`` % agreement with FP32);
   the delivered INT8 files are the ones measured;
5. the artifacts go into the manifest with their I/O, parity and (for INT8) gate;
6. extra artifacts: every builder registered with ``register_form`` and named in ``config.forms``
   is called with the ``ExportContext`` before the commit;
7. commit: the bundle is assembled in a staging folder beside ``<out>`` and renamed into place only
   when every step passed; a failure removes the staging folder (nothing half-written looks valid).
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

from edgevt.bundle import (EXPORT_FLAVOURS, FLAVOUR_BACKENDS, INT8_FLAVOURS, INT8_STORED, PRECISIONS, Bundle,
                           base_precision, check_flavour, check_key, int8_name, is_bundle, load_onnx_graph, onnx_file)
from edgevt.data.datasets import has_labels, load_clips
from edgevt.errors import EdgevtError
from edgevt.export import gate as gate_mod
from edgevt.export.bias_correction import correct_biases, input_tap_means
from edgevt.export.calibration import MIN_SENSIBLE_CLIPS, ClipCalibrationReader, CalibrationSet, cache_path, data_hash
from edgevt.export.onnx import (DEFAULT_OPSET, EXPORTERS, Graph, compare_logits, deploy_module, example_input,
                                export_graph,
                                form_graphs, form_logits, initial_state, io_signature, ort_runner, ort_session,
                                torch_runner)
from edgevt.export.precision import (CALIB_AUTO, CALIB_CHOICES, convert_fp16, float_prefix, input_side_nodes,
                                     output_side_nodes, preprocess_for_quantization,
                                     quantize_int8)
from edgevt.fileio import check_replaceable, file_sha256
from edgevt.metrics import top1, top1_agreement
from edgevt.models.checkpoint import load_checkpoint, model_from_checkpoint
from edgevt.models.forms import default_stream_form, stream_forms_for
from edgevt.models.preprocess import model_input
from edgevt.spec import ClipSpec

# cpu INT8 flavour: float prefixes (leading weighted layers kept in float with their activations) the
# gate tries before ranked layers; more than a few would take most of the speed-up at high resolution
FLOAT_PREFIXES = (1, 2, 3, 4)
STREAM_FORMS = ("incremental", "stateful")  # built by the export path; "stream": whichever the model has
# Max abs logit difference allowed, relative to max(1, max |FP32 logit|).
DEFAULT_TOLERANCE = {"fp32": 1e-3, "fp16": 3e-2}


@dataclass
class ExportConfig:
    precisions: tuple = ("fp32",)
    calib: str | Path | list | None = None  # target-domain clips (calibration set, folder, list file, or paths)
    calib_clips: int = 256
    calib_method: str = "auto"  # auto (each method; of those the gate passes on the eval clips, the closest to FP32: gate.best_calibration) | entropy | minmax | percentile
    flavour: str = "auto"  # INT8 flavour: auto (both) | tensorrt | cpu (edgevt.bundle.EXPORT_FLAVOURS)
    eval: str | Path | list | None = None  # labeled (or unlabeled) target clips for the accuracy gate
    eval_clips: int | None = None  # at most this many eval clips (None: all)
    # evaluation windows per eval clip (evenly spread; edgevt.data.sampling.window_indices): the gate
    # judges every window, so more decisions than clips (1: the centred window only)
    eval_windows: int = 4
    max_drop: float = 1.0  # INT8 accuracy gate, points
    min_agreement: float = gate_mod.DEFAULT_MIN_AGREEMENT  # INT8 gate: % of eval clips with FP32's top-1
    gate_min_clips: int = gate_mod.MIN_GATE_CLIPS  # fewer eval clips: the gate result is flagged
    float_input: bool = False
    opset: int = DEFAULT_OPSET
    exporter: str = "auto"  # auto (dynamo, then TorchScript fallback) | dynamo | legacy
    tolerance: dict = field(default_factory=lambda: dict(DEFAULT_TOLERANCE))
    parity_clips: int = 16
    calib_cache: str | Path | None = None  # folder for cached ranges (default ~/.cache/edgevt/calibration)
    max_batch: int = 64
    keep_first_conv: bool = True  # tensorrt flavour: keep 3-input-channel convs out of INT8
    keep_input_float: bool = True  # cpu flavour: the input side (normalisation, frame differences) stays float
    keep_output_float: bool = True  # cpu flavour: the classifier writing the logits stays float (no uint8 logits)
    bias_correction: bool = True  # INT8: Conv biases absorb the mean shift of their rounded weights (export.bias_correction)
    # INT8: quantization-aware fine-tuning (export.qat) of a copy of the model on the calibration clips, this
    # many steps (0: off); the INT8 graphs are made from the tuned copy, the FP32 graph stays the model given
    qat_steps: int = 0
    qat_lr: float = 1e-5
    qat_batch: int = 4
    # INT8: adaptive rounding (export.adaround) of a copy's convolution weights on the calibration clips, this
    # many steps per convolution (0: off); like --qat-steps, the INT8 graphs are made from the copy. None (the
    # default): adaround.DEFAULT_STEPS when int8 is exported without --qat-steps, else off (adaround_steps_used)
    adaround_steps: int | None = None
    adaround_lr: float = 1e-2
    adaround_batch: int = 16
    adaround_clips: int = 16
    forms: list = field(default_factory=list)  # stream | incremental | stateful, names from register_form, callables(ctx)
    threads: int | None = None  # onnxruntime intra-op threads for the checks
    skip_bad: bool = True  # skip unreadable calib/eval videos with a warning; False: the first one is an error

    def validate(self) -> None:
        bad = [p for p in self.precisions if p not in PRECISIONS]
        if bad or not self.precisions:
            raise EdgevtError(f"--precision: unknown {bad or 'empty'}; choose any of {', '.join(PRECISIONS)}")
        check_flavour(self.flavour, "--flavour", EXPORT_FLAVOURS)
        if not 0 <= self.min_agreement <= 100:
            raise EdgevtError(f"--min-agreement must be a percentage (0-100), got {self.min_agreement}")
        if self.gate_min_clips < 1:
            raise EdgevtError(f"--gate-min-clips must be >= 1, got {self.gate_min_clips}")
        if self.calib_method not in CALIB_CHOICES:
            raise EdgevtError(f"--calib-method {self.calib_method!r}: choose from {', '.join(CALIB_CHOICES)}")
        if self.eval_windows < 1:
            raise EdgevtError(f"--eval-windows must be >= 1, got {self.eval_windows}")
        if self.exporter not in EXPORTERS:
            raise EdgevtError(f"--exporter {self.exporter!r}: choose from {', '.join(EXPORTERS)}")
        if "int8" in self.precisions:
            if self.calib is None:
                raise EdgevtError("INT8 needs calibration clips from the target domain: pass --calib DIR|LIST")
            if self.calib_clips < 1:
                raise EdgevtError(f"--calib-clips must be >= 1, got {self.calib_clips}")
            if "tensorrt" in self.int8_flavours() and self.opset < 19:
                raise EdgevtError(f"--opset {self.opset}: the tensorrt INT8 flavour needs opset >= 19 "
                                  "(FP16 Q/DQ scales for strongly typed builds); or --flavour cpu")
        if self.max_drop < 0:
            raise EdgevtError(f"--max-drop must be >= 0, got {self.max_drop}")
        if self.qat_steps < 0:
            raise EdgevtError(f"--qat-steps must be >= 0 (0: off), got {self.qat_steps}")
        if self.qat_steps:
            if "int8" not in self.precisions:
                raise EdgevtError("--qat-steps tunes the weights of the INT8 graphs: add int8 to --precision")
            self.qat().validate()
        if self.adaround_steps is not None and self.adaround_steps < 0:
            raise EdgevtError(f"--adaround-steps must be >= 0 (0: off), got {self.adaround_steps}")
        if self.adaround_steps:  # asked for by name (the default is None)
            if "int8" not in self.precisions:
                raise EdgevtError("--adaround-steps rounds the weights of the INT8 graphs: add int8 to --precision")
            if self.qat_steps:
                raise EdgevtError("--adaround-steps and --qat-steps both tune the INT8 weights: choose one")
        if self.adaround_steps_used():
            self.adaround().validate()

    def adaround_steps_used(self) -> int:
        """The AdaRound steps per convolution this export runs: ``adaround_steps`` when given; by default
        ``adaround.DEFAULT_STEPS`` when int8 is exported without --qat-steps, else 0."""
        if self.adaround_steps is not None:
            return self.adaround_steps
        from edgevt.export.adaround import DEFAULT_STEPS

        return DEFAULT_STEPS if "int8" in self.precisions and not self.qat_steps else 0

    def adaround(self):
        """The adaptive rounding settings (``export.adaround.AdaRoundConfig``)."""
        from edgevt.export.adaround import AdaRoundConfig

        return AdaRoundConfig(steps=self.adaround_steps_used(), lr=self.adaround_lr, batch=self.adaround_batch,
                              clips=self.adaround_clips)

    def tuning(self) -> str | None:
        """Which copy the INT8 graphs are made from: "qat", "adaround" or None (the model itself)."""
        return "qat" if self.qat_steps else "adaround" if self.adaround_steps_used() else None

    def qat(self):
        """The quantization-aware fine-tuning settings (``export.qat.QATConfig``)."""
        from edgevt.export.qat import QATConfig

        return QATConfig(steps=self.qat_steps, lr=self.qat_lr, batch=self.qat_batch)

    def int8_flavours(self) -> tuple:
        """The INT8 flavours to write: both for ``auto`` (the target device is unknown)."""
        return INT8_FLAVOURS if self.flavour == "auto" else (self.flavour,)


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
    """Register an extra-artifact builder usable as ``ExportConfig(forms=[name])``."""
    if name in STREAM_FORMS or name == "stream":
        raise EdgevtError(f"{name!r} is a built-in streaming form; register extra artifacts under another name")
    _FORMS[name] = builder


def known_forms() -> list[str]:
    """Every name ``ExportConfig.forms`` accepts."""
    return ["stream", *STREAM_FORMS, *_FORMS]


def stream_forms(model: torch.nn.Module, names: list) -> list[str]:
    """The streaming forms ``names`` asks for on this model ("stream": whichever it supports)."""
    supported = stream_forms_for(model)
    out: list[str] = []
    for n in names:
        if not isinstance(n, str) or n in _FORMS:
            continue
        if n == "stream":
            out += [f for f in supported if f not in out]
        elif n in STREAM_FORMS:
            if n not in supported:
                raise EdgevtError(f"{getattr(model, 'arch', 'this model')} cannot stream as {n!r}; "
                                  f"it supports: {', '.join(['window', *supported])}")
            out += [n] if n not in out else []
        else:
            raise EdgevtError(f"unknown export form(s) {[n]}; known: {', '.join(known_forms())}")
    return out


def parity_check(name: str, ref: np.ndarray, got: np.ndarray, tol: float) -> dict:
    res = compare_logits(ref, got)
    res.update(tolerance=tol, passed=res["max_rel_diff"] <= tol)
    if not res["passed"]:
        raise EdgevtError(f"{name} parity check failed: max abs logit diff {res['max_abs_diff']:.3g} "
                          f"({res['max_rel_diff']:.3g} of the logit scale) > tolerance {tol:g}; "
                          f"raise --tolerance {name.split()[-1]}=... if this is expected")
    return res


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


@dataclass
class _Data:
    calib: tuple | None  # (clips, labels, paths)
    eval: tuple | None
    parity: np.ndarray  # uint8 clips
    parity_source: str
    calib_set: CalibrationSet | None = None
    # --qat-steps / --adaround-steps: flavour -> (the tuned model, its record), made once per export and
    # shared by the forms
    tuned: dict = field(default_factory=dict)


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
    hooks = [f if callable(f) else _FORMS[f] for f in config.forms if callable(f) or f in _FORMS]
    forms = stream_forms(model, config.forms)
    data = _load_data(spec, config, log, warn)  # a bad --calib/--eval fails before minutes of export work
    bundle = Bundle.staging(out, spec, source)
    try:
        with tempfile.TemporaryDirectory(prefix="edgevt-export.") as tmpdir:
            _export_into(bundle, model, spec, config, ckpt, data, forms, Path(tmpdir), log, warn)
            ctx = ExportContext(bundle, model, spec, config, ckpt, data.parity, log, warnings)
            for builder in hooks:
                log(f"building form {getattr(builder, '__name__', builder)}")
                builder(ctx)
        bundle.manifest["tools"] = _versions()
        bundle.manifest["warnings"] = warnings
        bundle.manifest["export_config"] = _config_record(config)
        return bundle.commit()
    except BaseException:
        shutil.rmtree(bundle.path, ignore_errors=True)
        raise


def export_forms(model: torch.nn.Module, bundle: Bundle, forms: list[str] | None = None,
                 config: ExportConfig | None = None, log: Callable[[str], None] | None = None) -> dict:
    """Add streaming forms of an in-memory ``model`` (with the bundle's ClipSpec) to a staged Bundle,
    through the same path as ``export_bundle`` (parity on random frames unless ``config`` names data).
    Returns the new artifact entries."""
    config = config or ExportConfig(precisions=tuple(p for p in PRECISIONS if p != "int8"
                                                     and (p == "fp32" or f"model.{p}" in bundle.artifacts)))
    config.validate()
    log = log or (lambda msg: None)
    warnings = bundle.manifest.setdefault("warnings", [])

    def warn(msg: str) -> None:
        warnings.append(msg)
        log(f"warning: {msg}")

    spec = bundle.spec
    before = set(bundle.artifacts)
    names = stream_forms(model, forms if forms is not None else ["stream"])
    data = _load_data(spec, config, log, warn)
    with tempfile.TemporaryDirectory(prefix="edgevt-export.") as tmpdir:
        _export_into(bundle, model, spec, config, {"arch": getattr(model, "arch", type(model).__name__)}, data,
                     names, Path(tmpdir), log, warn, window=False)
    return {k: v for k, v in bundle.artifacts.items() if k not in before}


def describe_source(source) -> str:
    """A short description of a data source for logs and the manifest (lists are not spelled out)."""
    if isinstance(source, (list, tuple)):
        return f"{len(source)} listed files"
    if CalibrationSet.is_set(source):  # identified by its manifest hash, not by where it lies
        return CalibrationSet.open(source, verify=False).describe()
    return str(source)


def _load_data(spec: ClipSpec, config: ExportConfig, log, warn) -> _Data:
    calib = calib_set = None
    calib_source = config.calib
    if config.calib is not None and CalibrationSet.is_set(config.calib):
        calib_set = CalibrationSet.open(config.calib)
        calib_set.check_spec(spec)
        calib_source = calib_set.clip_paths()
    if "int8" in config.precisions:
        log(f"loading calibration clips from {describe_source(config.calib)}")
        calib = load_clips(calib_source, spec, config.calib_clips, labeled=False, what="calibration",
                           skip_bad=config.skip_bad)
        if len(calib[0]) < MIN_SENSIBLE_CLIPS:
            warn(f"calibrating on only {len(calib[0])} clips (fewer than {MIN_SENSIBLE_CLIPS}); activation "
                 "ranges may be noisy -- give more target-domain clips")
    eval_set = None
    if config.eval is not None:
        log(f"loading evaluation clips from {describe_source(config.eval)}")
        # labeled when the source says each clip's class (an agreement-only gate otherwise)
        eval_set = load_clips(config.eval, spec, config.eval_clips, labeled=has_labels(config.eval),
                              what="evaluation", skip_bad=config.skip_bad, windows=config.eval_windows)
    if eval_set is not None:
        # parity on one window per eval clip (the first of each), the gate on all of them
        first_row: dict = {}
        for i, path in enumerate(eval_set[2]):
            first_row.setdefault(path, i)
        first = sorted(first_row.values())
        return _Data(calib, eval_set, eval_set[0][first][:config.parity_clips], f"eval data {describe_source(config.eval)}",
                     calib_set)
    if config.calib is not None:
        clips = calib[0] if calib is not None else load_clips(calib_source, spec, config.parity_clips, labeled=False,
                                                              what="calibration", skip_bad=config.skip_bad)[0]
        return _Data(calib, None, clips[:config.parity_clips], f"calibration data {describe_source(config.calib)}",
                     calib_set)
    warn("parity checked on random frames; pass --eval or --calib to check on real clips")
    return _Data(None, None, example_input(spec, batch=min(config.parity_clips, 8)).numpy(),
                 "random uint8 frames (no --eval/--calib data given)")


def _config_record(config: ExportConfig) -> dict:
    d = asdict(config)
    d["forms"] = [f if isinstance(f, str) else getattr(f, "__name__", str(f)) for f in config.forms]
    for k in ("calib", "eval"):
        if d[k] is not None:
            d[k] = describe_source(getattr(config, k))
    d["calib_cache"] = str(d["calib_cache"]) if d["calib_cache"] else None
    d["precisions"] = list(config.precisions)
    d["adaround_steps"] = config.adaround_steps_used()  # the default (None) as run
    return d


def _export_into(bundle: Bundle, model, spec: ClipSpec, config: ExportConfig, ckpt: dict, data: _Data,
                 forms: list[str], tmp: Path, log, warn, window: bool = True) -> None:
    checks = bundle.manifest["checks"]
    if data.calib_set is not None:
        bundle.manifest["calibration"] = data.calib_set.record()
    eval_logits = {}
    for form in (["window"] if window else []) + forms:
        logits = _export_form(bundle, model, spec, config, ckpt, data, form, tmp, log, warn)
        if form == "window":
            eval_logits = logits
    if "int8" in config.precisions:  # which INT8 graphs are here (a refused flavour is not), and for which device
        bundle.manifest["int8_flavours"] = {
            fl: {"precision": int8_name(fl), "artifacts": f"*.{stored}", "backends": list(FLAVOUR_BACKENDS[fl])}
            for fl, stored in bundle.int8_flavours().items()}
    default = default_stream_form(model)
    if default in forms:  # the loop streams in it by default (a bidirectional TSM's causal form only on request)
        bundle.manifest["spec"]["streaming"] = default
    if data.eval is not None and eval_logits:
        labels = data.eval[1]
        labeled = bool(len(labels)) and bool((labels >= 0).all())
        acc = {"clips": len(set(data.eval[2])), "decisions": int(len(labels)), "windows_per_clip": config.eval_windows,
               "labeled": labeled, "data": describe_source(config.eval)}
        for p, logits in eval_logits.items():
            acc[p] = {"top1": top1(logits, labels) if labeled else None,
                      "agreement_with_fp32": top1_agreement(logits, eval_logits["fp32"])}
        checks["accuracy"] = acc


class _Form:
    """One form being exported: its graphs, where each precision's files go, and how to run it."""

    def __init__(self, bundle: Bundle, form: str, graphs: list[Graph], config: ExportConfig):
        self.bundle, self.name, self.graphs, self.config = bundle, form, graphs, config
        self.zero_state = initial_state(graphs)
        self.state = next((g.entry["state"] for g in graphs if g.entry.get("state")), {})
        # source ("fp32", or a flavour's QAT-tuned graphs) -> role -> bias_correction.input_tap_means
        self.tap_means: dict = {}

    def path(self, role: str, precision: str) -> Path:
        return self.bundle.path / onnx_file(role, precision)

    def logits(self, precision: str, clips: np.ndarray, record: bool = False):
        runners = {g.role: ort_runner(ort_session(self.path(g.role, precision), self.config.threads))
                   for g in self.graphs}
        return form_logits(self.name, runners, clips, self.state, self.zero_state, record=record)

    def torch_logits(self, clips: np.ndarray) -> np.ndarray:
        runners = {g.role: torch_runner(g) for g in self.graphs}
        return form_logits(self.name, runners, clips, self.state, self.zero_state)[0]

    def node(self, role: str, name: str) -> str:
        """A layer's name in exclusion lists: the node name, ``role/node`` in a form of two graphs."""
        return name if len(self.graphs) == 1 else f"{role}/{name}"

    def split(self, names: list[str], role: str) -> list[str]:
        if len(self.graphs) == 1:
            return list(names)
        return [n.split("/", 1)[1] for n in names if n.startswith(f"{role}/")]


def _export_form(bundle: Bundle, model, spec: ClipSpec, config: ExportConfig, ckpt: dict, data: _Data, form: str,
                 tmp: Path, log, warn) -> dict:
    """Export, check and add one form at every precision; returns its logits on the eval clips."""
    checks = bundle.manifest["checks"]
    window = form == "window"
    float_input = config.float_input and window  # the per-frame forms always take uint8 frames
    f = _Form(bundle, form, form_graphs(model, spec, form, float_input=float_input), config)
    meta = {"edgevt.arch": ckpt["arch"], "edgevt.labels": ",".join(spec.labels), "edgevt.form": form}
    infos = {}
    for g in f.graphs:
        log(f"exporting {ckpt['arch']} {form} {g.role} to ONNX (opset {config.opset})")
        info = export_graph(g, spec, f.path(g.role, "fp32"), opset=config.opset, exporter=config.exporter,
                            max_batch=config.max_batch, metadata=meta, float_input=float_input)
        if info.fallback_reason:
            warn(f"dynamo exporter failed on {form} {g.role} ({info.fallback_reason}); used the TorchScript exporter")
        infos[g.role] = info
    first = infos[f.graphs[0].role]
    checks[check_key("onnx", form)] = {"checker": "passed", "shape_inference": "passed", "exporter": first.exporter,
                                       "fallback_reason": first.fallback_reason,
                                       "export_seconds": round(sum(i.seconds for i in infos.values()), 3)}
    parity_in = model_input(data.parity, spec, float_input)
    # Reference: the PyTorch model itself for the window and incremental forms (encoder + head is the
    # window model split in two); the causal torch model for the stateful form (see models/forms.py).
    ref = (_Form(bundle, "window", form_graphs(model, spec, "window"), config).torch_logits(parity_in)
           if form == "incremental" else f.torch_logits(parity_in))

    def add(precision: str, parity: dict, **extra) -> None:
        for g in f.graphs:
            ins, outs = io_signature(load_onnx_graph(f.path(g.role, precision)))
            bundle.add_artifact(f"{g.role}.{precision}", onnx_file(g.role, precision), kind="onnx", form=form,
                                role=g.role, precision=base_precision(precision), opset=infos[g.role].opset, inputs=ins,
                                outputs=outs, float_input=float_input, exporter=infos[g.role].exporter,
                                parity={k: parity.get(k) for k in ("max_abs_diff", "top1_agreement", "clips")},
                                **g.entry, **extra)

    eval_in = model_input(data.eval[0], spec, float_input) if data.eval is not None else None
    eval_logits = {}
    for p in [q for q in ("fp32", "fp16") if q in config.precisions]:
        t0 = time.perf_counter()
        conv = {}
        if p == "fp16":
            log(f"converting {form} to FP16")
            for g in f.graphs:
                conv.setdefault("retargeted_casts", []).extend(
                    convert_fp16(f.path(g.role, "fp32"), f.path(g.role, "fp16"))["retargeted_casts"])
        log(f"parity check {form} {p} (PyTorch vs onnxruntime)")
        res = parity_check(f"{'' if window else form + ' '}{p}", ref, f.logits(p, parity_in)[0], config.tolerance[p])
        res.update(data=data.parity_source, seconds=round(time.perf_counter() - t0, 3), **conv)
        checks[check_key("parity", form, p)] = res
        add(p, res)
        if eval_in is not None:
            eval_logits[p] = f.logits(p, eval_in)[0]

    if "int8" in config.precisions:
        flavours = config.int8_flavours()
        refused = {}
        for flavour in flavours:
            try:
                _int8_form(f, spec, config, data, eval_in, eval_logits, ref, parity_in, tmp, log, warn, add, flavour,
                           tuned_sources=_tuned_sources(model, spec, config, data, f, meta, tmp, log, flavour)
                           if config.tuning() else None)
            except gate_mod.GateRefused as e:
                # --flavour auto writes both graphs because the target is unknown: a gate that refuses one
                # leaves the other (recorded and warned); one flavour asked for by name, or none passing,
                # stops the export
                if len(refused) == len(flavours) - 1:
                    raise
                refused[f"{form}.{flavour}"] = str(e)
                warn(f"{flavour} INT8 flavour of the {form} form not written: {e}")
        if refused:
            bundle.manifest.setdefault("int8_refused", {}).update(refused)
    return eval_logits


def _tuned_sources(model, spec: ClipSpec, config: ExportConfig, data: _Data, f: _Form, meta: dict, tmp: Path, log,
                   flavour: str) -> tuple[dict, dict]:
    """--qat-steps / --adaround-steps: this form's FP32 graphs exported from the copy of ``model`` tuned
    for ``flavour``'s INT8 (``export.qat.finetune_for_int8`` or ``export.adaround.adaround_for_int8`` on
    the window form's calibration inputs, once per export and flavour): ({role: ONNX path}, the tuning's
    record)."""
    method = config.tuning()
    if flavour not in data.tuned:
        float_input = config.float_input
        clips = model_input(data.calib[0], spec, float_input)
        deploy = deploy_module(model, spec, float_input)
        if method == "qat":
            from edgevt.export.qat import finetune_for_int8

            tuned, record = finetune_for_int8(deploy, clips, flavour, config.qat(), float_input=float_input, log=log)
        else:
            from edgevt.export.adaround import adaround_for_int8

            tuned, record = adaround_for_int8(deploy, clips, flavour, config.adaround(), log=log,
                                              keep_rgb_convs=flavour == "tensorrt" and config.keep_first_conv)
        data.tuned[flavour] = (tuned if float_input else tuned.model, record)
    tuned, record = data.tuned[flavour]
    float_input = config.float_input and f.name == "window"
    paths = {}
    for g in form_graphs(tuned, spec, f.name, float_input=float_input):
        paths[g.role] = tmp / f"{f.name}.{g.role}.{flavour}.{method}.onnx"
        export_graph(g, spec, paths[g.role], opset=config.opset, exporter=config.exporter, max_batch=config.max_batch,
                     metadata=meta, float_input=float_input)
    return paths, record


def _int8_form(f: _Form, spec: ClipSpec, config: ExportConfig, data: _Data, eval_in, eval_logits: dict,
               ref: np.ndarray, parity_in: np.ndarray, tmp: Path, log, warn, add, flavour: str,
               tuned_sources: tuple[dict, dict] | None = None) -> None:
    """One INT8 flavour of one form: calibrate, quantize, gate, add. Its artifacts, checks and eval
    logits are keyed by the flavour's stored precision (``INT8_STORED``: int8 | int8-cpu).
    tuned_sources (--qat-steps, --adaround-steps): ({role: FP32 graph of the tuned copy}, its record):
    quantized instead of the form's FP32 graphs, and gated against them all the same."""
    import onnx

    checks = f.bundle.manifest["checks"]
    form = f.name
    stored = INT8_STORED[flavour]
    clips, _, paths = data.calib
    t0 = time.perf_counter()
    calib_in = model_input(clips, spec, config.float_input and form == "window")
    if form == "window":
        feeds = {"model": {"frames": calib_in}}
        hashed = {"model": clips}
    else:  # what the stream loop feeds each graph on these clips, recorded from the FP32 form
        feeds = f.logits("fp32", calib_in, record=True)[1]
        hashed = feeds
    prepared, graphs, readers, qdq32, input_side, output_side = {}, {}, {}, {}, {}, {}
    kept: list[dict] = []
    n_rows = {}
    source = flavour if tuned_sources else "fp32"  # what is quantized: the form's FP32 graphs, or the tuned copy's
    for g in f.graphs:
        r = g.role
        prepared[r] = tmp / f"{form}.{r}.{source}.prepared.onnx"
        if not prepared[r].exists():  # the FP32 one is shared by the flavours
            preprocess_for_quantization(tuned_sources[0][r] if tuned_sources else f.path(r, "fp32"), prepared[r])
        n_rows[r] = len(next(iter(feeds[r].values())))
        readers[r] = ClipCalibrationReader(feeds[r])
        qdq32[r] = tmp / f"{form}.{r}.{flavour}.qdq32.onnx"
        m = graphs[r] = onnx.load(str(prepared[r]))
        # the cpu flavour's float sides: not counted as kept layers (no weights, or one tiny classifier)
        if flavour == "cpu" and config.keep_input_float:
            input_side[r] = input_side_nodes(m)
        if flavour == "cpu" and config.keep_output_float:
            output_side[r] = output_side_nodes(m)
        if flavour == "tensorrt" and config.keep_first_conv:
            # A conv with 3 input channels gains nothing from INT8 on TensorRT and bloats the engine.
            inits = {i.name: i for i in m.graph.initializer}
            for n in m.graph.node:
                if n.op_type == "Conv" and n.input[1] in inits and len(inits[n.input[1]].dims) > 1 \
                        and inits[n.input[1]].dims[1] == 3:
                    kept.append({"node": f.node(r, n.name), "reason": "3-input-channel conv (no INT8 gain on TensorRT)"})

    # bias correction: each tap's mean input, measured once per form on the FP32 graph (the flavours share
    # it); the corrected graph depends on which convs stay in float, so quantize() writes it per exclusion list
    if config.bias_correction and source not in f.tap_means:
        log(f"bias correction: measuring each convolution's and fully connected layer's input on the "
            f"{len(clips)} calibration clips ({form})")
        f.tap_means[source] = {g.role: input_tap_means(graphs[g.role], readers[g.role]) for g in f.graphs}
        log(f"bias correction: measured the inputs of {sum(len(v) for v in f.tap_means[source].values())} "
            "layers")

    def to_quantize(role: str, exclude: list[str]) -> tuple[Path, dict | None]:
        if not config.bias_correction:
            return prepared[role], None
        fixed, info = correct_biases(graphs[role], f.tap_means[source][role], skip=set(exclude),
                                     fp16_scale=flavour == "tensorrt")
        path = tmp / f"{form}.{role}.{flavour}.bias-corrected.onnx"
        onnx.save_model(fixed, str(path))
        return path, info

    def caches_for(method: str) -> dict:
        return {g.role: cache_path(file_sha256(prepared[g.role]), data_hash(paths, hashed[g.role]), method,
                                   n_rows[g.role], config.calib_cache) for g in f.graphs}

    def sides(role: str) -> list[str]:  # kept in float in every graph of this flavour, not counted as kept layers
        return input_side.get(role, []) + [n for n in output_side.get(role, []) if n not in input_side.get(role, [])]

    def quantizer(method: str) -> Callable[[list[str]], dict]:
        caches = caches_for(method)

        def quantize(exclude: list[str]) -> dict:
            per, corrected = {}, {}
            for g in f.graphs:
                names = f.split(exclude, g.role) + sides(g.role)
                src, corrected[g.role] = to_quantize(g.role, names)
                # (ranges are cached under the uncorrected graph's hash: the correction moves them little)
                per[g.role] = quantize_int8(src, f.path(g.role, stored), reader=readers[g.role], method=method,
                                            flavour=flavour, nodes_to_exclude=names, cache_path=caches[g.role],
                                            qdq_fp32_copy=qdq32[g.role])
            out = dict(next(iter(per.values())))
            if config.bias_correction:
                out["bias_correction"] = {
                    "convs": sum(c["convs"] for c in corrected.values()),
                    "gemms": sum(c["gemms"] for c in corrected.values()),
                    "largest_shift": max(c["largest_shift"] for c in corrected.values())}
            out["nodes_excluded"] = [f.node(r, n) for r, s in per.items() for n in s["nodes_excluded"]
                                     if n not in sides(r)]
            if input_side:
                out["input_side_float"] = [f.node(r, n) for r, names in input_side.items() for n in names]
            if any(output_side.values()):
                out["output_side_float"] = [f.node(r, n) for r, names in output_side.items() for n in names]
            out["qdq_nodes"] = {t: sum(s["qdq_nodes"][t] for s in per.values()) for t in out["qdq_nodes"]}
            if len(per) > 1:
                out["graphs"] = {r: {"qdq_nodes": s["qdq_nodes"], "nodes_excluded": s["nodes_excluded"]}
                                 for r, s in per.items()}
            return out
        return quantize

    base = [k["node"] for k in kept]
    # --calib-method auto: every method, measured on the eval clips as the gate measures; of those the
    # gate passes, the closest to FP32's logits (gate.best_calibration). Without eval clips: entropy.
    auto = config.calib_method == "auto"
    methods = list(CALIB_AUTO) if auto and data.eval is not None else [
        "entropy" if auto else config.calib_method]
    cache_hit = all(c.exists() for m in methods for c in caches_for(m).values())
    log(f"calibrating {form} ({flavour} INT8) on {len(clips)} target clips ({', '.join(methods)}, "
        f"{'cached ranges' if cache_hit else 'computing ranges'})")

    def measured() -> tuple:  # the INT8 graph now on disk, on the eval clips: (logits, measurement)
        lg = f.logits(stored, eval_in)[0]
        return lg, gate_mod.measure(eval_logits["fp32"], lg, data.eval[1])

    runs: dict = {}  # method -> (summary, logits, measurement) of its whole graph
    if len(methods) > 1:
        for m in methods:
            runs[m] = (quantizer(m)(base), *measured())
            log(f"  {m}: agreement with FP32 {runs[m][2]['agreement']:.1f}%, drop {runs[m][2]['drop']:.2f} points, "
                f"logits {100 * runs[m][2]['logit_error']:.2f}% off FP32's")
        method = gate_mod.best_calibration({m: r[2] for m, r in runs.items()}, config.max_drop, config.min_agreement)
    else:
        method = methods[0]
    tried = {m: r[2] for m, r in runs.items()}
    quantize = quantizer(method)
    caches = caches_for(method)
    if method == methods[-1] and method in runs:  # its graph is the one on disk
        summary, logits, m0 = runs[method]
    else:
        summary = quantize(base)
        logits, m0 = runs[method][1:] if method in runs else measured() if data.eval is not None else (None, None)
    prefix = 0
    if flavour == "cpu" and data.eval is not None and gate_mod.failures(m0, config.max_drop, config.min_agreement):
        # a float prefix (the first layers with their activations) before ranked layers: in this flavour
        # a ranked layer kept in float still has its activations rounded (precision.float_prefix)
        first = f.graphs[0].role  # the graph that takes the frames
        model0 = graphs[first]
        side0 = list(input_side.get(first, []))
        for k in FLOAT_PREFIXES:
            input_side[first] = side0 + [n for n in float_prefix(model0, k) if n not in side0]
            summary_k = quantize(base)
            logits_k, mk = measured()
            log(f"  first {k} layers in float (activations too): agreement {mk['agreement']:.1f}%, "
                f"drop {mk['drop']:.2f} points")
            if not gate_mod.failures(mk, config.max_drop, config.min_agreement):
                prefix, summary, logits = k, summary_k, logits_k
                break
        if not prefix:  # none was enough: back to the whole graph for the ranked layers
            input_side[first] = side0
            summary = quantize(base)
    summary["float_prefix_layers"] = prefix
    calib_seconds = time.perf_counter() - t0
    gate = None
    if data.eval is not None:
        def rank() -> list:
            probe = eval_in[:32]
            rows = {"model": {"frames": probe}} if form == "window" else f.logits("fp32", probe, record=True)[1]
            ranking = []
            for g in f.graphs:
                feeds_r = rows[g.role]
                one = feeds_r["frames"] if form == "window" else feeds_r
                ranking += [(f.node(g.role, n), s) for n, s in
                            gate_mod.layer_sensitivity(prepared[g.role], qdq32[g.role], one, tmp)]
            return sorted(ranking, key=lambda x: -x[1]) if len(f.graphs) > 1 else ranking

        gate = gate_mod.run_gate(quantize, lambda: f.logits(stored, eval_in)[0], rank, fp32_logits=eval_logits["fp32"],
                                 labels=data.eval[1], max_drop=config.max_drop, kept=kept, log=log, summary=summary,
                                 logits=logits,
                                 min_agreement=config.min_agreement, min_clips=config.gate_min_clips,
                                 clips=len(set(data.eval[2])))
        summary, kept = gate.summary, gate.kept
        eval_logits[stored] = gate.logits
        if not gate.result.enough_clips or gate.result.mostly_float:
            warn(f"INT8 gate ({form} form, {flavour} flavour) {gate.result.note}")
    else:
        warn("no --eval data: the INT8 accuracy gate was not run"
             + ("" if form == "window" else f" for the {form} form")
             + f" ({flavour} flavour); pass labeled target clips with --eval")
    summary.update(kept_high_precision=kept, calibration={
        "clips": len(clips), "method": method, "asked": config.calib_method,
        "tried": {m: {"agreement": round(t["agreement"], 3), "drop": round(t["drop"], 3),
                      "logit_error": round(t["logit_error"], 6)} for m, t in tried.items()},
        "data": describe_source(config.calib),
        "cache": str(caches[f.graphs[0].role]), "cache_hit": cache_hit, "seconds": round(calib_seconds, 3)})
    if data.calib_set is not None:
        summary["calibration"]["set_manifest_sha256"] = data.calib_set.manifest_sha256
    if tuned_sources:  # (after the gate: its summaries are the quantizer's, made afresh per exclusion list)
        summary[config.tuning()] = tuned_sources[1]
    if len(f.graphs) > 1:
        summary["calibration"]["rows"] = {r: len(next(iter(feeds[r].values()))) for r in feeds}
    # check keys: the TensorRT flavour keeps the historic ones (int8, gate, parity.int8 + form);
    # the CPU flavour's carry its stored name (int8-cpu, gate.int8-cpu, parity.int8-cpu + form)
    checks[check_key(stored, form)] = summary
    if gate is not None:
        checks[check_key("gate", form, None if stored == "int8" else stored)] = {
            **gate.result.to_dict(), "form": form, "flavour": flavour}
    res = {**compare_logits(ref, f.logits(stored, parity_in)[0]), "data": data.parity_source,
           "note": "informational: INT8 is judged by the accuracy gate"}
    checks[check_key("parity", form, stored)] = res
    add(stored, res, flavour=flavour, for_backends=list(FLAVOUR_BACKENDS[flavour]),
        ort_optimization="none" if flavour == "tensorrt" else "all", kept_high_precision=[k["node"] for k in kept],
        gate={k: gate.result.to_dict()[k] for k in ("passed", "drop", "max_drop", "agreement", "min_agreement",
                                                    "clips", "enough_clips", "metric", "mostly_float")}
        if gate is not None else None)

