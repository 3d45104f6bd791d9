"""Precision in the graph: an FP16 graph with FP32 I/O, and INT8 explicit Q/DQ graphs.

FP16 (``convert_fp16``): onnxconverter_common with ``keep_io_types=True``; afterwards every
``Cast(to=FLOAT)`` that was already in the graph (our uint8 -> float input cast, casts the exporter
emitted) is retargeted to FLOAT16, because the converter leaves them alone and a strongly typed
TensorRT 11 build then rejects the float32 tensor flowing into FP16 ops.

INT8 (``quantize_int8``): ``onnxruntime.quantization.quantize_static`` in QDQ form with two flavours:

- ``tensorrt``: symmetric int8 activations and weights, per-channel Conv weights on axis 0
  (ConvTranspose axis 1), no bias quantization, no Q/DQ on any op output (so none on the model
  output), Q/DQ on both Add inputs (residual input included). The Q/DQ graph is then converted to
  FP16 with FP32 I/O so its scales are FP16 (needs opset >= 19): under strong typing a DQ's output
  type follows its scale type, which makes the non-quantized layers run in FP16 on TensorRT.
- ``cpu``: what onnxruntime runs fastest on x86 -- uint8 (asymmetric) activations, int8 per-channel
  weights, int32 bias, QDQ format (onnxruntime fuses QDQ groups into its integer kernels), op outputs
  quantized too. Not for TensorRT. A layer the accuracy gate keeps in higher precision computes in
  float with float weights, but its input is still rounded by its neighbour's output Q/DQ.
  Quantizing op inputs only (as the tensorrt flavour does) would make the exclusion exact; measured on
  the demo model, that graph with 8 layers kept ran at 0.70x FP32 on ort-cpu (vs 2.2x with output
  Q/DQ and 32 layers kept), so the cpu flavour keeps output quantization, on every graph: the
  stateful per-frame graph with only its convolutions quantized took 0.31 ms per frame against 0.25 ms
  with every op (once the frame normalisation no longer ran in NHWC, ``FramePreprocess``).
  The cpu flavour keeps the graph's input side in float (``input_side_nodes``: normalisation, frame
  differences), which the first convolution then quantizes: the uint8 frame differences cost the
  224x224 Lite0 most of its agreement with FP32.
  It also keeps the classifier that writes the logits in float (``output_side_nodes``): quantized,
  the logits themselves were rounded to uint8, which ties or swaps nearly tied classes.

Before quantizing, the exporter folds into each quantized conv's bias the mean output shift its
int8-rounded weights cause (``edgevt.export.bias_correction``; ``--no-bias-correction`` turns it off),
and into each quantized fully connected (Gemm) layer's: the tensorrt flavour's classifier.
It is computed per exclusion list, so a layer the gate keeps in float keeps its own bias.

``--qat-steps N`` quantizes a copy of the model fine-tuned for N steps with the flavour's rounding
simulated, to reproduce the FP32 model's logits on the calibration clips (``edgevt.export.qat``), instead
of the model itself; the FP32 graph, the gate's reference, stays the checkpoint. ``--adaround-steps N``
does the same with a copy whose convolution weights are rounded to int8 adaptively (AdaRound: up or
down per weight, whichever reproduces each layer's FP32 output on the calibration clips best;
``edgevt.export.adaround``) instead of to the nearest level; nothing else in the model changes. That is
the default for INT8 (300 steps, ``adaround.DEFAULT_STEPS``) unless ``--qat-steps`` is given;
``--adaround-steps 0`` quantizes the model itself with nearest rounding.

``--calib-method auto`` (the default) tries every method, measures each graph on the eval clips and
keeps, of those the gate passes, the one whose logits are closest to FP32's
(``gate.best_calibration``). No one method is best for every model; counting changed decisions alone
ties often (on the demo model's 240 target-val decisions percentile and minmax both agreed on 98.3%,
with logits 0.95% and 1.7% off FP32's).

Calibration ranges are computed once per (model, data, method, clips) and cached as JSON by
onnxruntime (``calibration_cache_path``), so re-quantizing with other excluded nodes (the accuracy
gate) or re-running an export reuses them.
"""
from __future__ import annotations

import contextlib
import logging
import tempfile
import warnings
from pathlib import Path

import onnx
from onnx import TensorProto

from edgevt.bundle import INT8_FLAVOURS
from edgevt.errors import EdgevtError
from edgevt.export.onnx import check_and_save, opset_of, set_metadata

CALIB_METHODS = ("entropy", "minmax", "percentile")
# --calib-method auto: calibrate with each (in this order, which also breaks ties) and keep, of those the
# gate passes on its eval clips, the one closest to FP32's logits (gate.best_calibration; entropy without eval clips)
CALIB_AUTO = ("entropy", "percentile", "minmax")
CALIB_CHOICES = ("auto",) + CALIB_METHODS
# Weighted ops the quantizer puts Q/DQ in front of; the accuracy gate ranks these.
WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


# -- FP16 --------------------------------------------------------------------------------------
def retarget_float_casts(model: onnx.ModelProto, original_cast_names: set[str]) -> list[str]:
    """Cast(to=FLOAT) nodes of the original graph -> Cast(to=FLOAT16), unless they feed a graph output.

    Casts the converter inserted itself (keep_io_types, blocked ops) are not in
    ``original_cast_names`` and keep their types.
    """
    outputs = {o.name for o in model.graph.output}
    changed = []
    for node in model.graph.node:
        if node.op_type != "Cast" or node.name not in original_cast_names or node.output[0] in outputs:
            continue
        for attr in node.attribute:
            if attr.name == "to" and attr.i == TensorProto.FLOAT:
                attr.i = TensorProto.FLOAT16
                changed.append(node.name)
    return changed


def _strip_value_info(model: onnx.ModelProto) -> None:
    """Drop stale intermediate type annotations so shape inference recomputes them after edits."""
    del model.graph.value_info[:]


def convert_fp16(src: str | Path, dst: str | Path, *, op_block_list: list[str] | None = None) -> dict:
    """Write an FP16 graph with FP32 (or uint8) I/O; returns what was changed, for the manifest."""
    from onnxconverter_common import float16

    model = onnx.load(str(src))
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node) and opset_of(model) < 19:
        raise EdgevtError(f"{src}: converting a Q/DQ graph to FP16 needs opset >= 19 (it has "
                          f"{opset_of(model)}); export with --opset 19 or newer")
    for n in model.graph.node:  # the converter keys its bookkeeping on node names
        if not n.name:
            n.name = f"{n.op_type}_{id(n)}"
    casts = {n.name for n in model.graph.node if n.op_type == "Cast"}
    kwargs = {"keep_io_types": True, "disable_shape_infer": False}
    if op_block_list is not None:
        kwargs["op_block_list"] = op_block_list
    try:
        with warnings.catch_warnings():  # one warning per tiny weight clamped to FP16's range
            warnings.simplefilter("ignore", UserWarning)
            fp16 = float16.convert_float_to_float16(model, **kwargs)
    except Exception as e:
        raise EdgevtError(f"{src}: FP16 conversion failed ({type(e).__name__}: {e})") from None
    retargeted = retarget_float_casts(fp16, casts)
    _strip_value_info(fp16)
    set_metadata(fp16, {"edgevt.precision": "fp16"})
    check_and_save(fp16, Path(dst))
    return {"retargeted_casts": retargeted}


# -- INT8 --------------------------------------------------------------------------------------
def _calibration_method(name: str):
    from onnxruntime.quantization import CalibrationMethod

    table = {"entropy": CalibrationMethod.Entropy, "minmax": CalibrationMethod.MinMax,
             "percentile": CalibrationMethod.Percentile}
    if name not in table:
        raise EdgevtError(f"unknown calibration method {name!r}; choose from {', '.join(CALIB_METHODS)}")
    return table[name]


def op_types(model: onnx.ModelProto) -> list[str]:
    return sorted({n.op_type for n in model.graph.node})


def quantizer_settings(flavour: str, model: onnx.ModelProto) -> dict:
    """quantize_static keyword arguments for a flavour (see the module docstring)."""
    from onnxruntime.quantization import QuantFormat, QuantType

    if flavour == "tensorrt":
        return dict(quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=False,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    extra_options={
                        "ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False,
                        "AddQDQPairToWeight": True, "DedicatedQDQPair": False,
                        "OpTypesToExcludeOutputQuantization": op_types(model),
                        "QDQOpTypePerChannelSupportToAxis": {"Conv": 0, "ConvTranspose": 1},
                        "ForceQuantizeNoInputCheck": True, "QDQDisableWeightAdjustForInt32Bias": True,
                    })
    if flavour == "cpu":
        return dict(quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=False,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    extra_options={"WeightSymmetric": True, "ActivationSymmetric": False})
    raise EdgevtError(f"unknown INT8 flavour {flavour!r}; choose from {', '.join(INT8_FLAVOURS)}")


def preprocess_for_quantization(src: str | Path, dst: str | Path) -> None:
    """onnxruntime's quant_pre_process: shape inference and graph optimisation (folds BatchNorm
    into Conv so weights are quantized as the device will run them)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    try:
        quant_pre_process(str(src), str(dst), skip_symbolic_shape=False)
    except Exception:
        # symbolic shape inference cannot handle every graph; the ONNX one is enough here
        quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)


class _PerChannelFallbackFilter:
    """Drops onnxruntime's 'Axis 1 is out-of-range for weight ...' warning: per-channel quantization
    asks for axis 1 on rank-1 weights (LayerNorm scales), finds none and correctly falls back to
    per-tensor; the warning repeats on every gate iteration and reads like an error."""

    def filter(self, record) -> bool:
        return "is out-of-range for weight" not in record.getMessage()


@contextlib.contextmanager
def _quiet_per_channel_fallback():
    root = logging.getLogger()
    f = _PerChannelFallbackFilter()
    root.addFilter(f)
    try:
        yield
    finally:
        root.removeFilter(f)


def quantize_int8(prepared: str | Path, dst: str | Path, *, reader, method: str = "entropy",
                  flavour: str = "tensorrt", nodes_to_exclude: list[str] | None = None,
                  cache_path: str | Path | None = None, qdq_fp32_copy: str | Path | None = None) -> dict:
    """Quantize ``prepared`` (output of ``preprocess_for_quantization``) to ``dst``.

    reader: an onnxruntime CalibrationDataReader (may be None when ``cache_path`` holds ranges).
    qdq_fp32_copy: also write the Q/DQ graph before the FP16 conversion there (per-layer analysis).
    Returns a summary for the manifest (flavour, settings, Q/DQ counts, excluded nodes).
    """
    import contextlib
    import io

    from onnxruntime.quantization import quantize_static

    prepared, dst = Path(prepared), Path(dst)
    model = onnx.load(str(prepared))
    settings = quantizer_settings(flavour, model)
    if reader is not None and hasattr(reader, "rewind"):
        reader.rewind()
    if reader is not None and hasattr(reader, "set_range"):
        from edgevt.export.calibration import calibration_chunk

        # Collect (and merge into histograms) a few clips at a time instead of holding all outputs.
        settings["extra_options"] = {**settings["extra_options"], "CalibStridedMinMax": calibration_chunk(len(reader))}
    with tempfile.TemporaryDirectory(prefix="edgevt-q.") as tmp:
        qdq = Path(tmp) / "qdq.onnx"
        try:
            with contextlib.redirect_stdout(io.StringIO()), _quiet_per_channel_fallback():
                # (the calibrators print progress to stdout)
                quantize_static(str(prepared), str(qdq), reader, calibrate_method=_calibration_method(method),
                                nodes_to_exclude=list(nodes_to_exclude or []),
                                calibration_cache_path=str(cache_path) if cache_path else None, **settings)
        except EdgevtError:
            raise
        except Exception as e:
            raise EdgevtError(f"INT8 quantization failed ({type(e).__name__}: {str(e).splitlines()[0][:200]})") \
                from None
        q = onnx.load(str(qdq))
        set_metadata(q, {"edgevt.precision": "int8", "edgevt.int8_flavour": flavour})
        if qdq_fp32_copy:
            onnx.save_model(q, str(qdq_fp32_copy))
        if flavour == "tensorrt":
            if opset_of(q) < 19:
                raise EdgevtError(f"the tensorrt INT8 flavour needs opset >= 19 for FP16 scales (graph has "
                                  f"{opset_of(q)}); export with --opset 19 or newer")
            onnx.save_model(q, str(qdq))
            convert_fp16(qdq, dst)
        else:
            check_and_save(q, dst)
    final = onnx.load(str(dst))
    counts = {t: sum(n.op_type == t for n in final.graph.node) for t in ("QuantizeLinear", "DequantizeLinear")}
    return {"flavour": flavour, "method": method, "nodes_excluded": list(nodes_to_exclude or []),
            "activation_type": settings["activation_type"].name, "weight_type": settings["weight_type"].name,
            "per_channel": settings["per_channel"], "scale_type": "float16" if flavour == "tensorrt" else "float32",
            "output_quantization": "OpTypesToExcludeOutputQuantization" not in settings["extra_options"],
            "qdq_nodes": counts}


def weighted_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    inits = {i.name for i in model.graph.initializer}
    return [n for n in model.graph.node if n.op_type in WEIGHTED_OPS and any(i in inits for i in n.input[1:2])]


def input_side_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes that compute only from the graph's inputs and constants, up to (not
    including) the first weighted op on each path: the frame normalisation and, for ``--input diff``
    models, the frame differences. The cpu flavour keeps them in float, so the first convolution
    quantizes the normalised (difference) frames themselves. Measured on the 224x224 Lite0 (TSN on
    frame differences): quantizing only these nodes already cost 13 points of agreement with FP32 on
    target-val, and the whole graph agreed on 76.7% with them in INT8 vs 85.0% with them in float; on the
    demo model it made no difference to agreement or speed."""
    inits = {i.name for i in model.graph.initializer}
    known = {i.name for i in model.graph.input} | inits | {""}
    weighted = {n.name for n in weighted_nodes(model)}
    out = []
    for n in model.graph.node:  # graph order is topological
        if n.name in weighted or n.op_type in WEIGHTED_OPS or not all(i in known for i in n.input):
            continue
        out.append(n.name)
        known.update(n.output)
    return out


def _weighted_positions(model: onnx.ModelProto) -> list[int]:
    """Indices in graph order of the weighted ops (``weighted_nodes``)."""
    weighted = {n.name for n in weighted_nodes(model)}
    return [i for i, n in enumerate(model.graph.node) if n.name in weighted]


def output_side_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the graph's classifier, when its last weighted op is a fully connected layer (Gemm,
    MatMul): that op and every node after it. The cpu flavour keeps them in float, so the logits are
    not rounded to 256 levels by an output Q/DQ: with them rounded, two nearly tied classes tie or
    swap. Measured on the 224x224 TSM Lite0 (copies, seed 0; percentile, first 2 layers in float): the
    classifier in float changed 13 of 720 target-val decisions instead of 21, and 17 of 540
    target-test windows instead of 21, at the same speed (one 1280x6 product per clip). A graph
    ending in a convolution (the stateful form's per-frame backbone) has none."""
    idx = _weighted_positions(model)
    if not idx or model.graph.node[idx[-1]].op_type not in ("Gemm", "MatMul"):
        return []
    return [n.name for n in model.graph.node[idx[-1]:]]


def float_prefix(model: onnx.ModelProto, layers: int) -> list[str]:
    """Names of every node before the ``layers``-th weighted op (0-based) in graph order: the first
    ``layers`` weighted layers *with their activations* (the elementwise nodes between them). The cpu
    flavour's accuracy gate tries these before ranked layers: a ranked layer kept in float still has
    its input and output rounded by its neighbours' Q/DQ, a prefix does not. On the 224x224 Lite0
    (TSN, diff) the whole graph agreed with FP32 on 95.0% of 240 target-val decisions, and with the
    first 3 weighted layers in float on 97.1%, at 1.88x FP32 (ad hoc)."""
    idx = _weighted_positions(model)
    if layers <= 0 or layers >= len(idx):
        return [n.name for n in model.graph.node] if layers >= len(idx) else []
    return [n.name for n in model.graph.node[:idx[layers]]]
