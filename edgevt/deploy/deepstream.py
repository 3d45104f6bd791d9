"""DeepStream configs for a bundle (``edgevt deploy deepstream BUNDLE -o DIR``).

DeepStream's sequence preprocessing (nvdspreprocess with ``libnvds_custom_sequence_preprocess.so``,
as in the deepstream-3d-action-recognition sample) hands nvinfer a normalised float tensor
[N, 3, T, H, W], y = scale * (x - offset) per channel. edgevt's graphs take uint8 frames
[N, T, H, W, 3] and normalise inside. So this writes ``model.deepstream.onnx``: the bundle's window
graph behind a small prefix that maps DeepStream's tensor back to the uint8 frames exactly
(x = y / scale + offset, rounded; then NCTHW -> NTHWC) and ends in a softmax, so nvinfer's
classifier parser reads probabilities. The scale/offset written to ``[user-configs]`` come from
the ClipSpec: scale = 1 / (255 * std), offset = 255 * mean (per channel, in the spec's order).

Files: ``config_preprocess.txt`` (nvdspreprocess), ``config_infer.txt`` (nvinfer), ``labels.txt``
(one line, ``;``-separated: nvinfer's classifier label format), ``model.deepstream.onnx``,
``README.md``. None of it runs without DeepStream; the tests check the keys and values, and that
the prefixed graph gives the bundle's own logits on onnxruntime.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from edgevt.errors import EdgevtError

MARKER = "edgevt-deepstream.json"
NETWORK_MODE = {"fp32": 0, "int8": 1, "fp16": 2}  # nvinfer network-mode
COLOR_FORMAT = {"RGB": 0, "BGR": 1}  # nvdspreprocess network-color-format
INPUT_NAME = "input_ds"
OUTPUT_NAME = "probs"
SEQUENCE_LIB = "/opt/nvidia/deepstream/deepstream/lib/gst-plugins/libnvds_custom_sequence_preprocess.so"


def is_deepstream_dir(path: str | Path) -> bool:
    try:
        return json.loads((Path(path) / MARKER).read_text()).get("format") == "edgevt-deepstream"
    except (OSError, ValueError, AttributeError):
        return False


def normalisation(spec) -> tuple[list[float], list[float]]:
    """(channel-scale-factors, channel-mean-offsets) for y = scale * (x - offset) on 0..255 pixels."""
    return [1.0 / (255.0 * s) for s in spec.std], [255.0 * m for m in spec.mean]


def _fmt(vals) -> str:
    return ";".join(f"{v:.9g}" for v in vals)


def preprocess_config(spec, *, batch: int = 1, sources: int = 1, stride: int = 1, gie_id: int = 1,
                      tensor_name: str = INPUT_NAME) -> str:
    t, (h, w) = spec.num_frames, spec.size
    scale, offset = normalisation(spec)
    if spec.pixel_format not in COLOR_FORMAT:
        raise EdgevtError(f"pixel format {spec.pixel_format!r}: DeepStream configs support {', '.join(COLOR_FORMAT)}")
    return "\n".join([
        "# nvdspreprocess: a sequence of T frames per source -> one [N, 3, T, H, W] tensor (written by edgevt)",
        "[property]",
        "enable=1",
        f"target-unique-ids={gie_id}",
        "process-on-frame=1",
        "unique-id=5",
        "gpu-id=0",
        "# 0=NCHW 1=NHWC 2=CUSTOM (the sequence library lays out N;C;T;H;W)",
        "network-input-order=2",
        f"network-input-shape={batch};3;{t};{h};{w}",
        f"network-color-format={COLOR_FORMAT[spec.pixel_format]}",
        "# 0=FP32",
        "tensor-data-type=0",
        f"tensor-name={tensor_name}",
        f"processing-width={w}",
        f"processing-height={h}",
        "# stretch to the model size, as ClipSpec resize=stretch" if spec.resize == "stretch" else
        "# ClipSpec resize=short_side: DeepStream scales the whole frame (no centre crop); set an ROI to crop",
        "maintain-aspect-ratio=0",
        "symmetric-padding=0",
        "scaling-buf-pool-size=8",
        "tensor-buf-pool-size=8",
        "scaling-pool-memory-type=0",
        "scaling-pool-compute-hw=0",
        "scaling-filter=0",
        f"custom-lib-path={SEQUENCE_LIB}",
        "custom-tensor-preparation-function=CustomSequenceTensorPreparation",
        "",
        "[user-configs]",
        "# y = scale * (x - offset) per channel: scale = 1 / (255 * std), offset = 255 * mean (ClipSpec)",
        f"channel-scale-factors={_fmt(scale)}",
        f"channel-mean-offsets={_fmt(offset)}",
        f"# a decision every {stride} sampled frame(s)",
        f"stride={stride}",
        f"# frames skipped between two sampled frames (ClipSpec frame_stride {spec.frame_stride})",
        f"subsample={spec.frame_stride - 1}",
        "",
        "[group-0]",
        f"src-ids={';'.join(str(i) for i in range(sources))}",
        "process-on-roi=0",
        "",
    ])


def infer_config(*, onnx_file: str, engine_file: str, precision: str, batch: int = 1, gie_id: int = 1,
                 num_classes: int = 0) -> str:
    return "\n".join([
        "# nvinfer: classifies the clip tensor that nvdspreprocess attached (written by edgevt)",
        "[property]",
        "gpu-id=0",
        f"onnx-file={onnx_file}",
        "# built from onnx-file on the first run when absent (TensorRT of that machine)",
        f"model-engine-file={engine_file}",
        "labelfile-path=labels.txt",
        f"batch-size={batch}",
        "# 0=FP32 1=INT8 2=FP16; the int8 graph is explicit Q/DQ (no calibration file)",
        f"network-mode={NETWORK_MODE[precision]}",
        "# 1=primary (full frame)",
        "process-mode=1",
        "# the input tensor comes from nvdspreprocess",
        "input-tensor-from-meta=1",
        f"gie-unique-id={gie_id}",
        "# 1=classifier",
        "network-type=1",
        "classifier-threshold=0.0",
        f"output-blob-names={OUTPUT_NAME}",
        "# raw softmax output attached as tensor meta for the application",
        "output-tensor-meta=1",
        f"# {num_classes} classes, labels on one ;-separated line",
        "",
    ])


def deepstream_graph(onnx_path: Path, spec, out: Path) -> None:
    """The bundle's window graph behind DeepStream's tensor: float [N, 3, T, H, W], y = scale * (x - offset)
    -> uint8 [N, T, H, W, 3] (exact for pixels that were integers) -> the graph -> softmax probabilities."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    m = onnx.load(str(onnx_path))
    g = m.graph
    init = {i.name for i in g.initializer}
    ins = [i for i in g.input if i.name not in init]
    if len(ins) != 1 or len(g.output) != 1:
        raise EdgevtError(f"{onnx_path}: expected one frames input and one logits output for the DeepStream graph")
    frames, logits = ins[0].name, g.output[0].name
    t, (h, w) = spec.num_frames, spec.size
    scale, offset = normalisation(spec)
    c = np.asarray
    g.initializer.extend([
        numpy_helper.from_array(c(1.0 / np.asarray(scale), np.float32).reshape(1, 3, 1, 1, 1), "ds_inv_scale"),
        numpy_helper.from_array(c(offset, np.float32).reshape(1, 3, 1, 1, 1), "ds_offset"),
        numpy_helper.from_array(c(0.0, np.float32), "ds_lo"), numpy_helper.from_array(c(255.0, np.float32), "ds_hi")])
    prefix = [
        helper.make_node("Mul", [INPUT_NAME, "ds_inv_scale"], ["ds_x0"], name="ds_unscale"),
        helper.make_node("Add", ["ds_x0", "ds_offset"], ["ds_x1"], name="ds_unoffset"),
        helper.make_node("Round", ["ds_x1"], ["ds_x2"], name="ds_round"),
        helper.make_node("Clip", ["ds_x2", "ds_lo", "ds_hi"], ["ds_x3"], name="ds_clip"),
        helper.make_node("Cast", ["ds_x3"], ["ds_u8"], to=TensorProto.UINT8, name="ds_cast"),
        helper.make_node("Transpose", ["ds_u8"], [frames], perm=[0, 2, 3, 4, 1], name="ds_to_nthwc"),
    ]
    nodes = prefix + list(g.node) + [helper.make_node("Softmax", [logits], [OUTPUT_NAME], axis=-1, name="ds_softmax")]
    del g.node[:]
    g.node.extend(nodes)
    g.input.remove(ins[0])
    g.input.insert(0, helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", 3, t, h, w]))
    out_vi = helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", spec.num_classes])
    g.output.remove(g.output[0])
    g.output.append(out_vi)
    onnx.checker.check_model(m)
    onnx.save(m, str(out))


@dataclass
class DeepStreamConfigs:
    path: Path
    files: list = field(default_factory=list)


def write_deepstream_configs(bundle_path: str | Path, out: str | Path, *, precision: str = "fp32", batch: int = 1,
                             sources: int = 1, stride: int = 1, gie_id: int = 1) -> DeepStreamConfigs:
    from edgevt.bundle import Bundle
    from edgevt.fileio import check_replaceable, replace_dir, staging_dir

    bundle = Bundle.load(bundle_path)
    spec = bundle.spec
    if precision not in NETWORK_MODE:
        raise EdgevtError(f"--precision {precision!r}: choose from {', '.join(NETWORK_MODE)}")
    if min(batch, sources, stride, gie_id) < 1:
        raise EdgevtError("--batch, --sources, --stride and --gie-id must be >= 1")
    key = f"model.{precision}"
    if key not in bundle.artifacts:
        raise EdgevtError(f"{bundle.path}: no {key} artifact (DeepStream runs the window model); export it "
                          f"with --precision {precision}")
    if not spec.labels:
        raise EdgevtError(f"{bundle.path}: its ClipSpec has no labels; re-export with labels")
    out = Path(out)
    check_replaceable(out, is_deepstream_dir, "an edgevt DeepStream folder")
    stage = staging_dir(out)
    try:
        onnx_file = "model.deepstream.onnx"
        deepstream_graph(bundle.artifact_path(key), spec, stage / onnx_file)
        engine = f"{onnx_file}_b{batch}_gpu0_{precision}.engine"
        (stage / "config_preprocess.txt").write_text(preprocess_config(spec, batch=batch, sources=sources,
                                                                       stride=stride, gie_id=gie_id))
        (stage / "config_infer.txt").write_text(infer_config(onnx_file=onnx_file, engine_file=engine,
                                                             precision=precision, batch=batch, gie_id=gie_id,
                                                             num_classes=spec.num_classes))
        (stage / "labels.txt").write_text(";".join(spec.labels) + "\n")
        (stage / "README.md").write_text(README.format(bundle=bundle.path, t=spec.num_frames, h=spec.size[0],
                                                       w=spec.size[1], batch=batch, precision=precision))
        (stage / MARKER).write_text(json.dumps({"format": "edgevt-deepstream", "bundle": str(bundle.path),
                                                "spec": spec.to_dict(), "precision": precision, "batch": batch},
                                               indent=2))
        replace_dir(stage, out, is_deepstream_dir, "an edgevt DeepStream folder")
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    names = ["config_preprocess.txt", "config_infer.txt", "labels.txt", "model.deepstream.onnx", "README.md"]
    return DeepStreamConfigs(out, [out / n for n in names])


README = """# DeepStream configs for `{bundle}`

Written by `edgevt deploy deepstream`; not run on the machine that wrote them.

- `config_preprocess.txt`: nvdspreprocess with the custom sequence library: T={t} frames of {h}x{w}
  per source into a [{batch}, 3, {t}, {h}, {w}] float tensor, normalised with the ClipSpec's mean/std.
- `config_infer.txt`: nvinfer (`input-tensor-from-meta=1`, `output-tensor-meta=1`, network-mode for
  {precision}) on `model.deepstream.onnx` (the bundle's window model behind DeepStream's tensor
  layout, with a softmax at the end). The engine is built from the ONNX on the first run.
- `labels.txt`: the labels on one `;`-separated line.

A pipeline: `... ! nvstreammux batch-size={batch} ! nvdspreprocess config-file=config_preprocess.txt !
nvinfer config-file-path=config_infer.txt ! ...` (see the deepstream-3d-action-recognition sample
for a full application). Check `subsample`/`stride` against your DeepStream release's sequence
library: here `subsample` is the number of frames skipped between two sampled frames (the
ClipSpec's frame_stride - 1) and `stride` the number of sampled frames between two decisions.
"""
