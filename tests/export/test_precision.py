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
