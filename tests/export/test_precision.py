"""Precision in the graph: FP16 conversion (casts retargeted, I/O types kept) and the quantizer
settings of each INT8 flavour."""
import onnx
import pytest
import torch
from onnx import TensorProto

from edgevt.errors import EdgevtError
from edgevt.export.onnx import export_onnx
from edgevt.export.precision import convert_fp16, quantizer_settings, weighted_nodes
from edgevt.models.zoo import create_model


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory, tiny_spec):
    torch.manual_seed(0)
    model = create_model("tsn_tinycnn", tiny_spec.num_classes, num_frames=tiny_spec.num_frames).eval()
    path = tmp_path_factory.mktemp("prec") / "model.onnx"
    export_onnx(model, tiny_spec, path)
    return path


def test_fp16_keeps_io_and_retargets_the_input_cast(tiny_onnx, tmp_path):
    out = tmp_path / "model.fp16.onnx"
    res = convert_fp16(tiny_onnx, out)
    m = onnx.load(str(out))
    assert m.graph.input[0].type.tensor_type.elem_type == TensorProto.UINT8
    assert m.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    cast = next(n for n in m.graph.node if n.op_type == "Cast" and n.input[0] == "frames")
    assert cast.name in res["retargeted_casts"] and cast.attribute[0].i == TensorProto.FLOAT16
    assert {p.key: p.value for p in m.metadata_props}["edgevt.precision"] == "fp16"


def test_fp16_of_a_qdq_graph_needs_opset_19(tiny_onnx, tmp_path):
    m = onnx.load(str(tiny_onnx))
    m.graph.node.append(onnx.helper.make_node("QuantizeLinear", ["a", "b"], ["c"], name="q"))
    for o in m.opset_import:
        if o.domain in ("", "ai.onnx"):
            o.version = 17
    p = tmp_path / "q17.onnx"
    onnx.save(m, str(p))
    with pytest.raises(EdgevtError, match="needs opset >= 19"):
        convert_fp16(p, tmp_path / "out.onnx")


def test_flavour_settings_follow_the_tensorrt_rules(tiny_onnx):
    from onnxruntime.quantization import QuantType

    m = onnx.load(str(tiny_onnx))
    trt = quantizer_settings("tensorrt", m)
    x = trt["extra_options"]
    assert trt["activation_type"] == QuantType.QInt8 and trt["weight_type"] == QuantType.QInt8
    assert x["ActivationSymmetric"] and x["WeightSymmetric"] and not x["QuantizeBias"]
    assert set(x["OpTypesToExcludeOutputQuantization"]) == {n.op_type for n in m.graph.node}  # no output Q/DQ
    cpu = quantizer_settings("cpu", m)
    assert cpu["activation_type"] == QuantType.QUInt8 and not cpu["extra_options"]["ActivationSymmetric"]
    with pytest.raises(EdgevtError, match="unknown INT8 flavour"):
        quantizer_settings("fpga", m)
    assert weighted_nodes(m) and all(n.op_type in ("Conv", "Gemm", "MatMul") for n in weighted_nodes(m))


@pytest.mark.parametrize("input", ["diff", "edgediff"])
def test_cpu_flavour_keeps_the_input_side_of_a_frame_difference_model_in_float(tmp_path, tiny_spec, motiondigits,
                                                                              input):
    """The cpu flavour leaves the normalisation and frame differences (the nodes before the first
    convolution) in float, so the first conv quantizes the differences themselves; the TSN Lite0 on
    frame differences lost most of its agreement with FP32 to uint8 differences (precision.py).
    edgediff: its local contrast (a box blur and an absolute value) is on that side too, and the
    exported graph gives a clip and its negative the same logits, as the model does."""
    import onnx
    import torch

    from edgevt.export.exporter import ExportConfig, export_bundle
    from edgevt.export.precision import input_side_nodes
    from edgevt.models.checkpoint import save_checkpoint
    from edgevt.models.zoo import create_model

    torch.manual_seed(0)
    model = create_model("tsn_tinycnn", tiny_spec.num_classes, num_frames=tiny_spec.num_frames, input=input).eval()
    ckpt = tmp_path / "diff.pt"
    save_checkpoint(ckpt, model, tiny_spec, arch="tsn_tinycnn", model_kwargs={"input": input})
    cfg = ExportConfig(precisions=("fp32", "int8"), flavour="cpu", calib=motiondigits / "target" / "train",
                       calib_cache=tmp_path / "cache", threads=1, adaround_steps=0)
    b = export_bundle(ckpt, tmp_path / "b", cfg)
    fp32 = onnx.load(str(b.artifact_path("model.fp32")))
    side = input_side_nodes(fp32)
    ops = {n.name: n.op_type for n in fp32.graph.node}
    assert "Sub" in {ops[n] for n in side} and "Conv" not in {ops[n] for n in side}
    if input == "edgediff":
        import numpy as np
        import onnxruntime as ort

        assert {"AveragePool", "Abs"} <= {ops[n] for n in side}
        sess = ort.InferenceSession(str(b.artifact_path("model.fp32")), providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        clip = np.random.default_rng(0).integers(0, 256, (1, tiny_spec.num_frames, *tiny_spec.size, 3), dtype=np.uint8)
        out, neg = (sess.run(None, {name: c})[0] for c in (clip, 255 - clip))
        np.testing.assert_allclose(out, neg, atol=1e-4)
    q = onnx.load(str(b.artifact_path("model.int8-cpu")))
    producer = {o: n for n in q.graph.node for o in n.output}
    in_q = {n.name: n for n in q.graph.node}
    sub = next(in_q[n] for n in side if ops[n] == "Sub")
    # the differences are taken in float: neither input of Sub comes out of a DequantizeLinear
    assert not [i for i in sub.input if i in producer and producer[i].op_type == "DequantizeLinear"]
    summary = b.manifest["checks"]["int8-cpu"]
    assert sub.name in summary["input_side_float"] and sub.name not in summary["nodes_excluded"]
    assert not summary["kept_high_precision"]  # not counted as layers kept by the gate


def test_float_prefix_is_the_leading_layers_with_their_activations(tmp_path, make_tiny_checkpoint):
    import onnx

    from edgevt.export.exporter import ExportConfig, export_bundle
    from edgevt.export.precision import float_prefix, weighted_nodes

    b = export_bundle(make_tiny_checkpoint("tsn_tinycnn"), tmp_path / "b", ExportConfig())
    m = onnx.load(str(b.artifact_path("model.fp32")))
    names = [n.name for n in m.graph.node]
    w = [n.name for n in weighted_nodes(m)]
    assert float_prefix(m, 0) == []
    for k in (1, 2):
        p = float_prefix(m, k)
        assert p == names[:names.index(w[k])]  # everything before the (k+1)-th weighted layer
        assert [n for n in p if n in w] == w[:k] and len(p) > k  # its activations too
    assert float_prefix(m, len(w)) == names


def test_cpu_flavour_keeps_the_classifier_in_float_so_the_logits_are_not_rounded(tmp_path, tiny_spec, motiondigits):
    """Quantized, the final Gemm's output Q/DQ rounded the logits to 256 levels, which ties or swaps
    nearly tied classes: the classifier (the last weighted op when it is a Gemm/MatMul, and what follows
    it) runs in float, and the INT8 logits are not a DequantizeLinear's output."""
    import numpy as np
    import onnx

    from edgevt.backends import open_backend
    from edgevt.export.exporter import ExportConfig, export_bundle
    from edgevt.export.precision import output_side_nodes
    from edgevt.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = create_model("tsm_tinycnn", tiny_spec.num_classes, num_frames=tiny_spec.num_frames).eval()
    ckpt = tmp_path / "m.pt"
    save_checkpoint(ckpt, model, tiny_spec, arch="tsm_tinycnn")
    cfg = dict(precisions=("fp32", "int8"), flavour="cpu", calib=motiondigits / "target" / "train",
               calib_cache=tmp_path / "cache", threads=1, adaround_steps=0)
    b = export_bundle(ckpt, tmp_path / "b", ExportConfig(**cfg))
    fp32 = onnx.load(str(b.artifact_path("model.fp32")))
    head = output_side_nodes(fp32)
    ops = {n.name: n.op_type for n in fp32.graph.node}
    assert head and ops[head[0]] == "Gemm" and "Conv" not in {ops[n] for n in head}
    q = onnx.load(str(b.artifact_path("model.int8-cpu")))
    producer = {o: n for n in q.graph.node for o in n.output}
    assert producer[q.graph.output[0].name].op_type != "DequantizeLinear"
    gemm = next(n for n in q.graph.node if n.op_type == "Gemm")
    assert not any(producer.get(i) is not None and producer[i].op_type == "DequantizeLinear" for i in gemm.input[1:])
    summary = b.manifest["checks"]["int8-cpu"]
    assert head[0] in summary["output_side_float"] and not summary["kept_high_precision"]
    # the logits take more than 256 values over many clips (rounded, they took at most 256)
    be = open_backend("ort-cpu", b, precision="int8", threads=1)
    x = np.random.default_rng(0).integers(0, 256, (64, tiny_spec.num_frames, *tiny_spec.size, 3), dtype=np.uint8)
    z = np.concatenate([be.run({be.input_names[0]: x[i:i + 16]})[be.output_names[0]] for i in range(0, 64, 16)])
    be.close()
    assert len(np.unique(z)) > 256
    # off, the old graph: its logits come out of a DequantizeLinear
    b2 = export_bundle(ckpt, tmp_path / "b2", ExportConfig(keep_output_float=False, **cfg))
    q2 = onnx.load(str(b2.artifact_path("model.int8-cpu")))
    producer2 = {o: n for n in q2.graph.node for o in n.output}
    assert producer2[q2.graph.output[0].name].op_type == "DequantizeLinear"
