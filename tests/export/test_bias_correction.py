"""Bias correction: the weight rounding it models is the quantizer's, and the corrected biases cancel
the mean output shift of the rounded weights, padding and stride included."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgevt.export.bias_correction import correct_biases, input_tap_means, quantized_weight
from edgevt.export.calibration import ClipCalibrationReader


def _conv_net(rng) -> onnx.ModelProto:
    """x [N,4,9,9] -> Conv 3x3 stride 2 pad 1 (+bias) -> Relu -> depthwise 3x3 pad 1 (no bias) ->
    Conv 1x1 (+bias) -> y; weights far from int8 steps, inputs positive (a mean shift shows)."""
    w1 = rng.normal(0, 1, (6, 4, 3, 3)).astype(np.float32)
    w1[:, 0, 0, 0] = 9.0  # an outlier per row: coarse steps for the others
    w2 = rng.normal(0, 1, (6, 1, 3, 3)).astype(np.float32)
    w3 = rng.normal(0, 1, (5, 6, 1, 1)).astype(np.float32)
    inits = [numpy_helper.from_array(a, n) for a, n in
             ((w1, "w1"), (rng.normal(0, 1, 6).astype(np.float32), "b1"), (w2, "w2"), (w3, "w3"),
              (np.zeros(5, np.float32), "b3"))]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu"),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], name="dw", pads=[1, 1, 1, 1], group=6),
             helper.make_node("Conv", ["c2", "w3", "b3"], ["y"], name="pw")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4, 9, 9])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _rounded(model: onnx.ModelProto) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for i in m.graph.initializer:
        if i.name.startswith("w"):
            i.CopyFrom(numpy_helper.from_array(quantized_weight(numpy_helper.to_array(i)), i.name))
    return m


def _outputs(model, x, names):
    from edgevt.export.gate import _with_outputs

    s = ort.InferenceSession(_with_outputs(model, names).SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip(names, s.run(names, {"x": x})))


def test_quantized_weight_is_what_onnxruntime_writes(tmp_path):
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    rng = np.random.default_rng(0)
    model = _conv_net(rng)
    src, dst = tmp_path / "f.onnx", tmp_path / "q.onnx"
    onnx.save(model, str(src))
    x = rng.uniform(0, 1, (8, 4, 9, 9)).astype(np.float32)
    quantize_static(str(src), str(dst), ClipCalibrationReader({"x": x}), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    extra_options={"WeightSymmetric": True, "ActivationSymmetric": False})
    q = onnx.load(str(dst))
    inits = {i.name: numpy_helper.to_array(i) for i in q.graph.initializer}
    seen = 0
    for n in q.graph.node:
        if n.op_type == "DequantizeLinear" and inits.get(n.input[0]) is not None \
                and inits[n.input[0]].dtype == np.int8 and inits[n.input[0]].ndim == 4:
            scale = inits[n.input[1]].reshape(-1, 1, 1, 1)
            w = numpy_helper.to_array(next(i for i in model.graph.initializer
                                           if n.input[0].startswith(i.name)))
            np.testing.assert_allclose(inits[n.input[0]] * scale, quantized_weight(w), rtol=0, atol=1e-6)
            seen += 1
    assert seen == 3


def test_corrected_biases_cancel_the_mean_shift_of_the_rounded_weights():
    rng = np.random.default_rng(1)
    model = _conv_net(rng)
    x = rng.uniform(0, 1, (16, 4, 9, 9)).astype(np.float32)
    means = input_tap_means(model, ClipCalibrationReader({"x": x}))
    assert set(means) == {"conv1", "dw", "pw"} and means["conv1"].shape == (4, 3, 3)
    fixed, info = correct_biases(model, means)
    assert info["convs"] == 3 and info["largest_shift"] > 0
    ref = _outputs(model, x, ["c1"])["c1"]
    plain = _outputs(_rounded(model), x, ["c1"])["c1"]
    corr = _outputs(_rounded(fixed), x, ["c1"])["c1"]

    def shift(a):  # per-channel mean offset from FP32
        return np.abs((a - ref).mean(axis=(0, 2, 3))).max()

    # the first conv sees the FP32 input, so its mean shift is gone (padding and stride included)
    assert shift(plain) > 1e-3 and shift(corr) < 1e-5
    # the depthwise conv had no bias: it gets one; the skipped conv keeps its own
    assert len(next(n for n in fixed.graph.node if n.name == "dw").input) == 3
    kept, _ = correct_biases(model, means, skip={"pw"})
    b3 = {i.name: numpy_helper.to_array(i) for i in kept.graph.initializer}["b3"]
    assert np.all(b3 == 0)
    # and the whole rounded graph lands closer to FP32
    y, y0, y1 = (_outputs(m, x, ["y"])["y"] for m in (model, _rounded(model), _rounded(fixed)))
    assert np.linalg.norm(y1 - y) < np.linalg.norm(y0 - y)


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER", "VALID"])
def test_tap_means_follow_auto_pad(auto_pad):
    rng = np.random.default_rng(2)
    w = rng.normal(0, 1, (3, 2, 3, 3)).astype(np.float32)
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], name="c", auto_pad=auto_pad, strides=[2, 2])
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.zeros(3, np.float32), "b")])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    x = rng.uniform(0, 1, (4, 2, 8, 8)).astype(np.float32)
    fixed, _ = correct_biases(model, input_tap_means(model, ClipCalibrationReader({"x": x})))
    ref = _outputs(model, x, ["y"])["y"]
    corr = _outputs(_rounded(fixed), x, ["y"])["y"]
    assert np.abs((corr - ref).mean(axis=(0, 2, 3))).max() < 1e-5


def test_export_corrects_the_int8_biases_and_says_so(tmp_path, make_tiny_checkpoint, motiondigits):
    """The exporter applies the correction to every quantized conv (on by default), records it in the
    manifest, and ``bias_correction=False`` gives the plain graph back."""
    from edgevt.export.exporter import ExportConfig, export_bundle

    ckpt = make_tiny_checkpoint("tsn_tinycnn")
    # nearest rounding (adaround_steps 0): a rounded copy's weights lie on the int8 grid already, so the
    # correction would have no shift to measure
    cfg = {"precisions": ("fp32", "int8"), "flavour": "cpu", "calib": motiondigits / "target" / "train",
           "calib_cache": tmp_path / "cache", "threads": 1, "adaround_steps": 0}

    def conv_biases(bundle):
        q = onnx.load(str(bundle.artifact_path("model.int8-cpu")))
        inits = {i.name: numpy_helper.to_array(i) for i in q.graph.initializer}
        return [inits[n.input[0]] for n in q.graph.node if n.op_type == "DequantizeLinear"
                and n.input[0] in inits and inits[n.input[0]].dtype == np.int32]

    on = export_bundle(ckpt, tmp_path / "on", ExportConfig(**cfg))
    off = export_bundle(ckpt, tmp_path / "off", ExportConfig(bias_correction=False, **cfg))
    info = on.manifest["checks"]["int8-cpu"]["bias_correction"]
    convs = sum(n.op_type == "Conv" for n in onnx.load(str(on.artifact_path("model.fp32"))).graph.node)
    assert 0 < info["convs"] <= convs and info["largest_shift"] > 0
    assert "bias_correction" not in off.manifest["checks"]["int8-cpu"]
    b_on, b_off = conv_biases(on), conv_biases(off)
    # (this model's convs have no bias of their own: each corrected one gets one)
    assert len(b_on) == info["convs"] and len(b_off) <= len(b_on)
    assert len(b_off) < len(b_on) or any(not np.array_equal(a, b) for a, b in zip(b_on, b_off))


def _gemm_net(rng, trans_b: int, bias: bool, **attrs) -> onnx.ModelProto:
    """x [N,16] -> Relu -> Gemm to 5 outputs (B as [5,16] with transB=1, [16,5] without) -> y."""
    w = rng.normal(0, 1, (5, 16)).astype(np.float32)
    w[:, 0] = 9.0  # an outlier per output: coarse steps for the other weights
    inits = [numpy_helper.from_array(w if trans_b else np.ascontiguousarray(w.T), "B")]
    ins = ["r", "B"]
    if bias:
        inits.append(numpy_helper.from_array(rng.normal(0, 1, 5).astype(np.float32), "C"))
        ins.append("C")
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("Gemm", ins, ["y"], name="fc", transB=trans_b, **attrs)]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _gemm_rounded(model: onnx.ModelProto) -> onnx.ModelProto:
    from edgevt.export.bias_correction import gemm_weight

    m = onnx.ModelProto()
    m.CopyFrom(model)
    node = next(n for n in m.graph.node if n.op_type == "Gemm")
    b = next(i for i in m.graph.initializer if i.name == "B")
    q = quantized_weight(gemm_weight(node, numpy_helper.to_array(b)))  # [out, in]
    trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
    b.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(q if trans_b else q.T), "B"))
    return m


@pytest.mark.parametrize("trans_b", [1, 0])
def test_gemm_weight_rounding_is_what_onnxruntime_writes(tmp_path, trans_b):
    """Per output feature: B's axis 0 with transB=1, axis 1 without (both flavours use per-channel)."""
    from onnxruntime.quantization import quantize_static

    from edgevt.export.bias_correction import gemm_weight
    from edgevt.export.precision import quantizer_settings

    rng = np.random.default_rng(3)
    model = _gemm_net(rng, trans_b, bias=True)
    src, dst = tmp_path / "f.onnx", tmp_path / "q.onnx"
    onnx.save(model, str(src))
    x = rng.normal(0, 1, (8, 16)).astype(np.float32)
    quantize_static(str(src), str(dst), ClipCalibrationReader({"x": x}), **quantizer_settings("cpu", model))
    q = onnx.load(str(dst))
    inits = {i.name: numpy_helper.to_array(i) for i in q.graph.initializer}
    dq = next(n for n in q.graph.node if n.op_type == "DequantizeLinear" and n.input[0].startswith("B"))
    axis = next(a.i for a in dq.attribute if a.name == "axis")
    assert axis == (0 if trans_b else 1)
    stored = inits[dq.input[0]].astype(np.float32) * np.expand_dims(inits[dq.input[1]], 1 - axis)
    node = next(n for n in model.graph.node if n.op_type == "Gemm")
    np.testing.assert_allclose(gemm_weight(node, stored), quantized_weight(gemm_weight(node, numpy_helper.to_array(
        model.graph.initializer[0]))), rtol=0, atol=1e-6)


@pytest.mark.parametrize("trans_b,bias", [(1, True), (0, False)])
def test_corrected_gemm_bias_cancels_the_mean_shift(trans_b, bias):
    rng = np.random.default_rng(4)
    model = _gemm_net(rng, trans_b, bias)
    x = rng.normal(0.5, 1, (64, 16)).astype(np.float32)
    means = input_tap_means(model, ClipCalibrationReader({"x": x}))
    assert means["fc"].shape == (16,)
    fixed, info = correct_biases(model, means)
    assert info["gemms"] == 1 and info["convs"] == 0 and info["largest_shift"] > 0
    ref = _outputs(model, x, ["y"])["y"]
    plain = _outputs(_gemm_rounded(model), x, ["y"])["y"]
    corr = _outputs(_gemm_rounded(fixed), x, ["y"])["y"]
    assert np.abs((plain - ref).mean(axis=0)).max() > 1e-3
    assert np.abs((corr - ref).mean(axis=0)).max() < 1e-5
    # skipped (kept in float by the quantizer): its bias stays as it was
    kept, info = correct_biases(model, means, skip={"fc"})
    assert info["gemms"] == 0 and len(kept.graph.initializer) == len(model.graph.initializer)


@pytest.mark.parametrize("attrs", [{"transA": 1}, {"alpha": 2.0}, {"beta": 0.5}])
def test_gemms_whose_shift_is_not_dw_times_the_mean_are_left_alone(attrs):
    from edgevt.export.bias_correction import correctable_gemms

    model = _gemm_net(np.random.default_rng(5), 1, True, **attrs)
    assert correctable_gemms(model) == []
    assert correctable_gemms(_gemm_net(np.random.default_rng(5), 1, True))[0].name == "fc"


def test_export_corrects_the_classifier_only_where_it_is_quantized(tmp_path, make_tiny_checkpoint, motiondigits):
    """The tensorrt flavour quantizes the fully connected classifier, so its bias is corrected too; the
    cpu flavour keeps the classifier in float (output_side_nodes), so it is not."""
    from edgevt.bundle import INT8_STORED
    from edgevt.export.exporter import ExportConfig, export_bundle

    ckpt = make_tiny_checkpoint("tsn_tinycnn")
    fp32 = None
    for flavour in ("tensorrt", "cpu"):
        b = export_bundle(ckpt, tmp_path / flavour, ExportConfig(
            precisions=("fp32", "int8"), flavour=flavour, calib=motiondigits / "target" / "train",
            calib_cache=tmp_path / "cache", threads=1, adaround_steps=0))
        fp32 = fp32 or onnx.load(str(b.artifact_path("model.fp32")))
        info = b.manifest["checks"][INT8_STORED[flavour]]["bias_correction"]
        assert info["gemms"] == (1 if flavour == "tensorrt" else 0), (flavour, info)
    assert sum(n.op_type == "Gemm" for n in fp32.graph.node) == 1
