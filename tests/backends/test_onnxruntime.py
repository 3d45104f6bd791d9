import numpy as np
import pytest

from edgevt.backends import available_backends, open_backend
from edgevt.backends.base import parse_batch
from edgevt.backends.onnxruntime import trt_profile_shapes
from edgevt.backends.base import TensorInfo
from edgevt.errors import EdgevtError


def test_ort_cpu_from_onnx_path_matches_torch(tiny_onnx, clips, torch_logits, tiny_spec):
    with open_backend("ort-cpu", tiny_onnx, threads=1) as b:
        assert [(t.name, t.dtype) for t in b.inputs] == [("frames", "uint8")]
        assert b.inputs[0].shape[1:] == (tiny_spec.num_frames, *tiny_spec.size, 3)
        assert isinstance(b.inputs[0].shape[0], str)  # dynamic batch
        assert [(t.name, t.dtype) for t in b.outputs] == [("logits", "float32")]
        out = b.run({"frames": clips})["logits"]
        assert out.shape == (len(clips), tiny_spec.num_classes)
        np.testing.assert_allclose(out, torch_logits(clips), atol=1e-4, rtol=1e-4)
        assert b.last_timing.compute > 0 and b.last_timing.h2d == 0
        d = b.describe()
        assert d["device"] == "cpu" and d["precision"] == "fp32" and d["threads"] == 1 and d["onnxruntime"]


def test_ort_cpu_from_bundle_by_precision_and_key(tiny_bundle, clips, torch_logits):
    ref = torch_logits(clips)
    with open_backend("ort-cpu", tiny_bundle) as b:  # default: model.fp32
        assert b.describe()["key"] == "model.fp32"
        np.testing.assert_allclose(b.run({"frames": clips})["logits"], ref, atol=1e-4, rtol=1e-4)
    with open_backend("ort-cpu", tiny_bundle, precision="fp16") as b:
        assert b.precision == "fp16"
        out = b.run({"frames": clips})["logits"]
        np.testing.assert_allclose(out, ref, atol=5e-2, rtol=5e-2)
        assert (out.argmax(1) == ref.argmax(1)).all()
    with open_backend("ort-cpu", tiny_bundle, key="model.fp16") as b:
        assert b.describe()["key"] == "model.fp16"


def test_iobinding_path_reuses_buffers_per_shape(tiny_onnx, clips, torch_logits):
    """The binding code ort-cuda/ort-trt use, run with CPU buffers: same numbers, one binding per shape."""
    with open_backend("ort-cpu", tiny_onnx, threads=1, iobinding=True) as b:
        first = b.run({"frames": clips})["logits"]
        kept = first.copy()
        second = b.run({"frames": clips[::-1].copy()})["logits"]
        np.testing.assert_allclose(first, torch_logits(clips), atol=1e-4, rtol=1e-4)
        np.testing.assert_array_equal(first, kept)  # outputs are copies, not views of bound buffers
        np.testing.assert_allclose(second, kept[::-1], atol=1e-5)
        assert len(b._bindings) == 1
        one = b.run({"frames": clips[:1]})["logits"]
        np.testing.assert_allclose(one, kept[:1], atol=1e-5)
        assert len(b._bindings) == 2
        t = b.last_timing
        assert t.h2d > 0 and t.compute > 0 and t.d2h > 0


def test_bad_inputs_are_clear_errors(tiny_onnx, clips):
    with open_backend("ort-cpu", tiny_onnx) as b:
        with pytest.raises(EdgevtError, match="must be uint8"):
            b.run({"frames": clips.astype(np.float32)})
        with pytest.raises(EdgevtError, match="missing input 'frames'"):
            b.run({"video": clips})
        with pytest.raises(EdgevtError, match="shape"):
            b.run({"frames": clips[:, :2]})


def test_bundle_errors(tiny_bundle, tmp_path):
    with pytest.raises(EdgevtError, match="no artifact 'model.int8'"):
        open_backend("ort-cpu", tiny_bundle, precision="int8")
    with pytest.raises(EdgevtError, match="no such file"):
        open_backend("ort-cpu", tmp_path / "missing.onnx")
    bad = tmp_path / "model.txt"
    bad.write_text("x")
    with pytest.raises(EdgevtError, match="expected a .onnx file"):
        open_backend("ort-cpu", bad)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(EdgevtError, match="junk.onnx"):
        open_backend("ort-cpu", junk)


def test_altered_bundle_file_is_refused(tiny_bundle, tmp_path):
    import shutil

    copy = tmp_path / "b"
    shutil.copytree(tiny_bundle, copy)
    with open(copy / "model.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(EdgevtError, match="hash does not match"):
        open_backend("ort-cpu", copy)


def test_trt_profile_shapes_and_batch_parsing():
    infos = [TensorInfo("frames", ("batch", 8, 112, 112, 3), "uint8")]
    p = trt_profile_shapes(infos, (1, 4, 16))
    assert p == {"trt_profile_min_shapes": "frames:1x8x112x112x3", "trt_profile_opt_shapes": "frames:4x8x112x112x3",
                 "trt_profile_max_shapes": "frames:16x8x112x112x3"}
    with pytest.raises(EdgevtError, match="dynamic axis 2"):
        trt_profile_shapes([TensorInfo("frames", ("batch", 8, "h", 112, 3), "uint8")], (1, 1, 1))
    assert parse_batch("1,8,32") == (1, 8, 32)
    assert parse_batch(4) == (4, 4, 4)
    for bad in ("8,1,32", "0,1,2", "a,b,c", "1,2"):
        with pytest.raises(EdgevtError):
            parse_batch(bad)


def _usable(name):
    return {n: ok for n, ok, _ in available_backends()}[name]


@pytest.mark.parametrize("name", ["ort-cuda", "ort-trt"])
def test_gpu_providers_match_cpu(name, tiny_bundle, clips, torch_logits, tmp_path):
    if not _usable(name):
        pytest.skip(f"{name} not usable here")
    opts = {"batch": (1, 2, 4)} if name == "ort-trt" else {}
    with open_backend(name, tiny_bundle, **opts) as b:
        out = b.run({"frames": clips})["logits"]
        np.testing.assert_allclose(out, torch_logits(clips), atol=1e-3, rtol=1e-3)
        t = b.last_timing
        assert t.h2d > 0 and t.compute > 0 and t.d2h > 0
    if name == "ort-trt":
        assert any((tiny_bundle / "trt_cache").iterdir())  # engine + timing cache kept in the bundle


def test_trt_provider_options(tiny_bundle, tmp_path):
    from edgevt.backends.onnxruntime import trt_provider_options

    onnx_path = tiny_bundle / "model.onnx"
    o = trt_provider_options(onnx_path, "int8", "1,4,8", tmp_path / "cache", workspace_mb=512)
    assert o["trt_int8_enable"] and o["trt_fp16_enable"]
    assert not any("calibration" in k for k in o)  # Q/DQ is explicit quantization: never a table
    assert o["trt_engine_cache_enable"] and o["trt_timing_cache_enable"]
    assert o["trt_engine_cache_path"] == o["trt_timing_cache_path"] == str(tmp_path / "cache")
    assert o["trt_profile_max_shapes"] == "frames:8x4x32x32x3" and o["trt_max_workspace_size"] == 512 << 20
    o = trt_provider_options(onnx_path, "fp32", 2, tmp_path, dla_core=0)
    assert not o["trt_fp16_enable"] and not o["trt_int8_enable"] and o["trt_dla_core"] == 0
    assert o["trt_profile_min_shapes"] == o["trt_profile_max_shapes"] == "frames:2x4x32x32x3"


def test_precision_is_read_from_the_graph(tiny_bundle, tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from edgevt.backends.onnxruntime import onnx_precision

    assert onnx_precision(tiny_bundle / "model.onnx") == "fp32"
    assert onnx_precision(tiny_bundle / "model.fp16.onnx") == "fp16"
    g = helper.make_graph(
        [helper.make_node("QuantizeLinear", ["x", "s"], ["q"]), helper.make_node("DequantizeLinear", ["q", "s"], ["y"])],
        "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])], [helper.make_tensor("s", TensorProto.FLOAT, [], [0.1])])
    onnx.save(helper.make_model(g), tmp_path / "qdq.onnx")
    assert onnx_precision(tmp_path / "qdq.onnx") == "int8"
