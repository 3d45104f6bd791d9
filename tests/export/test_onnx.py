"""ONNX export: uint8 frames in, dynamic batch, metadata, parity, clear errors."""
import numpy as np
import onnx
import pytest
import torch

from edgevt.errors import EdgevtError
from edgevt.export.onnx import (compare_logits, deploy_module, example_input, export_onnx, ort_session, run_onnx,
                                run_torch, unsupported_operator)
from edgevt.models.zoo import create_model


@pytest.mark.parametrize("arch", ["tsm_tinycnn"])  # tsn is covered by the float-input test
def test_uint8_export_parity_and_dynamic_batch(tmp_path, tiny_spec, arch):
    torch.manual_seed(0)
    model = create_model(arch, tiny_spec.num_classes, num_frames=tiny_spec.num_frames).eval()
    path = tmp_path / "m.onnx"
    info = export_onnx(model, tiny_spec, path)
    assert info.exporter == "dynamo" and info.opset == 20
    assert info.inputs == [{"name": "frames", "shape": ["batch", 4, 32, 32, 3], "dtype": "uint8"}]
    assert info.outputs == [{"name": "logits", "shape": ["batch", 6], "dtype": "float32"}]
    assert not list(tmp_path.glob("*.data")), "weights must be inside the one ONNX file"
    m = onnx.load(str(path))
    onnx.checker.check_model(m, full_check=True)
    props = {p.key: p.value for p in m.metadata_props}
    assert '"num_frames": 4' in props["edgevt.spec"] and props["edgevt.input"] == "uint8"
    s = ort_session(path)
    for batch in (1, 3):  # the batch axis really is dynamic
        x = example_input(tiny_spec, batch=batch, seed=batch).numpy()
        res = compare_logits(run_torch(deploy_module(model, tiny_spec), x), run_onnx(s, x))
        assert res["max_abs_diff"] < 1e-4 and res["top1_agreement"] == 100.0


def test_float_input_export(tmp_path, tiny_spec):
    model = create_model("tsn_tinycnn", tiny_spec.num_classes, num_frames=tiny_spec.num_frames).eval()
    info = export_onnx(model, tiny_spec, tmp_path / "f.onnx", float_input=True)
    assert info.inputs[0]["dtype"] == "float32" and info.inputs[0]["shape"] == ["batch", 4, 3, 32, 32]
    x = example_input(tiny_spec, batch=2, float_input=True).numpy()
    res = compare_logits(run_torch(model, x), run_onnx(ort_session(tmp_path / "f.onnx"), x))
    assert res["max_abs_diff"] < 1e-4


@torch.library.custom_op("edgevt_test::mystery", mutates_args=())
def _mystery(x: torch.Tensor) -> torch.Tensor:
    return x.clone()


@_mystery.register_fake
def _(x):
    return torch.empty_like(x)


class _Unexportable(torch.nn.Module):
    """Uses an operator that has no ONNX translation in either exporter."""

    arch = "unexportable"

    def forward(self, x):
        return _mystery(x).mean(dim=(1, 2, 3, 4)).unsqueeze(1).expand(x.shape[0], 6)


def test_unexportable_model_names_the_operator(tmp_path, tiny_spec):
    with pytest.raises(EdgevtError, match="unexportable: could not export.*mystery") as e:
        export_onnx(_Unexportable(), tiny_spec, tmp_path / "x.onnx", float_input=True, exporter="auto")
    assert "dynamo exporter" in str(e.value) and "legacy exporter" in str(e.value)


def test_unsupported_operator_is_extracted():
    class Fake(Exception):
        pass

    assert unsupported_operator(Fake("Exporting the operator 'aten::foo_bar' to ONNX opset 20 is not supported")) \
        == "aten::foo_bar"
    assert unsupported_operator(Fake("no decomposition for aten.weird_op.default")) == "aten.weird_op.default"
    assert unsupported_operator(Fake("something else")) is None


def test_bad_exporter_and_opset(tmp_path, tiny_spec):
    model = create_model("tsn_tinycnn", tiny_spec.num_classes, num_frames=tiny_spec.num_frames)
    with pytest.raises(EdgevtError, match="unknown exporter"):
        export_onnx(model, tiny_spec, tmp_path / "m.onnx", exporter="magic")
    with pytest.raises(EdgevtError, match="opset 9 is too old"):
        export_onnx(model, tiny_spec, tmp_path / "m.onnx", opset=9)


def test_compare_logits_relative_scale():
    a = np.array([[10.0, 0.0], [0.0, 1.0]], np.float32)
    b = a + np.array([[0.5, 0.0], [0.0, 0.0]], np.float32)
    r = compare_logits(a, b)
    assert r["max_abs_diff"] == pytest.approx(0.5) and r["max_rel_diff"] == pytest.approx(0.05)
    assert r["top1_agreement"] == 100.0


def test_the_tensorrt_flavour_runs_on_cpu_unoptimised(tmp_path):
    """onnxruntime's CPU fusions reject the TensorRT flavour's FP16 Q/DQ scales, so both the export
    checks and the ort-cpu backend fall back. They fell back to basic optimisation, which turned the
    FP16 Q/DQ graph of the ImageNet EfficientNet-Lite0 into garbage on onnxruntime 1.32 (logits
    2.4x off FP32's at 64x64); with optimisation off it is simulated quantization (0.1x)."""
    from edgevt.backends import open_backend
    from edgevt.export.calibration import ClipCalibrationReader
    from edgevt.export.precision import preprocess_for_quantization, quantize_int8
    from edgevt.spec import ClipSpec

    spec = ClipSpec(num_frames=4, frame_stride=1, size=(64, 64), labels=[str(i) for i in range(6)])
    torch.manual_seed(0)
    model = create_model("tsm_efficientnet_lite0", 6, num_frames=4, weights="pretrained").eval()
    export_onnx(model, spec, tmp_path / "m.onnx")
    preprocess_for_quantization(tmp_path / "m.onnx", tmp_path / "p.onnx")
    x = np.random.default_rng(0).integers(0, 256, (16, 4, 64, 64, 3), dtype=np.uint8)
    quantize_int8(tmp_path / "p.onnx", tmp_path / "q.onnx", reader=ClipCalibrationReader({"frames": x}),
                  method="minmax", flavour="tensorrt")
    fp32 = run_onnx(ort_session(tmp_path / "p.onnx"), x[:8])

    def off(z):
        return float(np.linalg.norm(z - fp32) / np.linalg.norm(fp32))

    s = ort_session(tmp_path / "q.onnx")
    assert off(run_onnx(s, x[:8])) < 0.5 and s.edgevt_optimization == "none"
    be = open_backend("ort-cpu", tmp_path / "q.onnx", threads=1)
    try:
        z = be.run({be.input_names[0]: x[:8]})[be.output_names[0]]
    finally:
        be.close()
    assert be.graph_optimization == "ORT_DISABLE_ALL" and off(z) < 0.5
