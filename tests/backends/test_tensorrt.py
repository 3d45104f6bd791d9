"""TensorRT build/runtime logic. The plain functions run everywhere; what needs the real module or a
GPU skips cleanly (there is no fake TensorRT here)."""
import importlib.util
import json

import pytest

from edgevt.backends import available_backends, open_backend
from edgevt.backends.trt_build import (BuildPath, EngineSidecar, check_engine_compatible, check_sidecar_matches,
                                       choose_build_path,
                                       dla_decision, engine_file, parse_version, profile_shapes, read_sidecar,
                                       sidecar_path, timing_cache_file)
from edgevt.errors import EdgevtError

HAVE_TRT = importlib.util.find_spec("tensorrt") is not None


@pytest.mark.parametrize("version,flags,strong,precision,expected", [
    # 11.x: no precision flags at all -> strongly typed, whatever the precision
    ("11.4.1.2", False, True, "int8", BuildPath(True, ())),
    ("11.1.0", False, True, "fp16", BuildPath(True, ())),
    # 10.12+ still has the flags but strongly typed is the path
    ("10.12.0.36", True, True, "int8", BuildPath(True, ())),
    ("10.16.0.72", True, True, "fp32", BuildPath(True, ())),
    # JetPack 6 (10.3): weakly typed; Q/DQ needs INT8 (+FP16), an FP16 graph needs FP16
    ("10.3.0.30", True, True, "int8", BuildPath(False, ("INT8", "FP16"))),
    ("10.3.0.30", True, True, "fp16", BuildPath(False, ("FP16",))),
    ("10.3.0.30", True, True, "fp32", BuildPath(False, ())),
    ("10.11.0", True, True, "int8", BuildPath(False, ("INT8", "FP16"))),
])
def test_build_path_selection(version, flags, strong, precision, expected):
    got = choose_build_path(version, flags, strong, precision)
    assert (got.strongly_typed, got.flags) == (expected.strongly_typed, expected.flags)
    assert got.reason


def test_build_path_refusals():
    with pytest.raises(EdgevtError, match="too old"):
        choose_build_path("8.6.1", True, False, "fp16")
    with pytest.raises(EdgevtError, match="unknown precision"):
        choose_build_path("10.3.0", True, True, "bf16")
    assert parse_version("10.3.0.30") == (10, 3, 0) and parse_version("11.4") == (11, 4, 0)


def test_profile_shapes_for_dynamic_batch():
    p = profile_shapes([("frames", (-1, 8, 112, 112, 3)), ("state", (1, 4, 7, 7))], (1, 4, 16))
    assert p["frames"] == {"min": [1, 8, 112, 112, 3], "opt": [4, 8, 112, 112, 3], "max": [16, 8, 112, 112, 3]}
    assert p["state"] == {"min": [1, 4, 7, 7], "opt": [1, 4, 7, 7], "max": [1, 4, 7, 7]}
    with pytest.raises(EdgevtError, match="dynamic axis 2"):
        profile_shapes([("frames", (-1, 8, -1, 112, 3))], (1, 1, 1))


def test_dla_rules():
    assert dla_decision(None, "3d", (1, 4, 8)) is None
    with pytest.raises(EdgevtError, match="3D model"):
        dla_decision(0, "3d", (1, 1, 1))
    with pytest.raises(EdgevtError, match="fixed batch.*--batch 4,4,4"):
        dla_decision(0, "tsn", (1, 4, 8))
    assert "GPU fallback" in dla_decision(1, "tsn", (2, 2, 2), "int8")
    assert "FP16/INT8 only" in dla_decision(0, "tsm", (1, 1, 1), "fp32")


def _sidecar(**kw):
    d = dict(tensorrt="10.3.0.30", gpu="Orin", compute_capability="8.7", precision="int8", role="model",
             profile={"frames": {"min": [1, 8, 64, 64, 3], "opt": [1, 8, 64, 64, 3], "max": [1, 8, 64, 64, 3]}},
             source_onnx={"key": "model.int8", "file": "model.int8.onnx", "sha256": "ab"}, spec={},
             strongly_typed=False, flags=["INT8", "FP16"])
    d.update(kw)
    return EngineSidecar(**d)


def test_engine_compatibility_checks(tmp_path):
    eng = tmp_path / "b" / engine_file("model", "int8")
    sc = _sidecar()
    check_engine_compatible(eng, sc, "10.3.0.30", "Orin", "8.7")  # same machine: fine
    with pytest.raises(EdgevtError, match=r"TensorRT 10.3.0.30.*11.4.1.*edgevt build .*b --precision int8 --role model"):
        check_engine_compatible(eng, sc, "11.4.1.2", "Orin", "8.7")
    with pytest.raises(EdgevtError, match=r"built for Orin \(sm 8.7\).*H100.*rebuild"):
        check_engine_compatible(eng, sc, "10.3.0.30", "NVIDIA H100", "9.0")


def test_sidecar_roundtrip_and_missing(tmp_path):
    eng = tmp_path / "model.fp16.engine"
    eng.write_bytes(b"x")
    with pytest.raises(EdgevtError, match="no sidecar.*edgevt build"):
        read_sidecar(eng)
    sidecar_path(eng).write_text(json.dumps(_sidecar(precision="fp16").to_dict()))
    assert read_sidecar(eng).precision == "fp16"
    sidecar_path(eng).write_text("{not json")
    with pytest.raises(EdgevtError, match="unreadable engine sidecar"):
        read_sidecar(eng)
    assert sidecar_path(eng).name == "model.fp16.engine.json"
    assert timing_cache_file("10.3.0.30", "8.7") == "timing-trt10.3.0.30-sm87.cache"


def test_tensorrt_backend_unusable_without_tensorrt(tiny_bundle):
    ok = {n: o for n, o, _ in available_backends()}["tensorrt"]
    if ok:
        pytest.skip("TensorRT usable here")
    with pytest.raises(EdgevtError, match="tensorrt|CUDA"):
        open_backend("tensorrt", tiny_bundle)


def test_build_without_tensorrt_names_the_extra(tiny_bundle, capsys):
    if HAVE_TRT:
        pytest.skip("tensorrt is installed")
    from edgevt.cli import main

    with pytest.raises(SystemExit) as e:
        main(["build", str(tiny_bundle)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "pip install 'edgevt[tensorrt]'" in err and "Traceback" not in err


@pytest.mark.skipif(not HAVE_TRT, reason="tensorrt not installed")
def test_feature_test_matches_the_installed_tensorrt():
    """On the real module: the path our function picks exists in this TensorRT."""
    import tensorrt as trt

    for precision in ("fp32", "fp16", "int8"):
        path = choose_build_path(trt.__version__, hasattr(trt.BuilderFlag, "FP16"),
                                 hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"), precision)
        for flag in path.flags:
            assert hasattr(trt.BuilderFlag, flag)
        if parse_version(trt.__version__)[0] >= 11:
            assert path.strongly_typed


@pytest.mark.skipif(not HAVE_TRT, reason="tensorrt not installed")
def test_build_and_run_engines(tiny_bundle, clips, torch_logits, tmp_path):
    import shutil

    import numpy as np
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from edgevt.backends.trt_build import build_bundle
    from edgevt.bundle import Bundle

    b = tmp_path / "b"
    shutil.copytree(tiny_bundle, b)
    results = build_bundle(b, precisions=["fp32", "fp16"], batch=(1, 2, 4), log=lambda *a: None)
    assert [r.key for r in results] == ["engine.model.fp32", "engine.model.fp16"]
    assert "engine.model.fp16" in Bundle.load(b).artifacts
    assert any((b / "trt_cache").glob("timing-*.cache"))
    ref = torch_logits(clips)
    for p, tol in (("fp32", 1e-3), ("fp16", 5e-2)):
        with open_backend("tensorrt", b, precision=p) as be:
            out = be.run({"frames": clips})["logits"]
            np.testing.assert_allclose(out, ref, atol=tol, rtol=tol)
            assert be.last_timing.compute > 0


def test_sidecar_must_describe_this_engine(tmp_path):
    import hashlib

    eng = tmp_path / "model.int8.engine"
    sc = _sidecar(engine_sha256=hashlib.sha256(b"plan-a").hexdigest())
    check_sidecar_matches(eng, b"plan-a", sc)
    with pytest.raises(EdgevtError, match="does not match its sidecar.*edgevt build"):
        check_sidecar_matches(eng, b"plan-b", sc)
