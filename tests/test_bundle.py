"""edgevt.bundle: the one list of contract names, file names and check keys, and open_artifact for
every kind of path a verb gets."""
import json

import pytest

from edgevt.bundle import (FORM_ROLES, FORMS, PRECISIONS, ROLES, Bundle, artifact_key, check_key, engine_file,
                           onnx_file, open_artifact, read_sidecar, sidecar_path)
from edgevt.errors import EdgevtError
from edgevt.spec import STREAMING_FORMS


def test_names_and_files():
    assert FORMS == STREAMING_FORMS and set(FORM_ROLES) == set(FORMS)
    assert {r for roles in FORM_ROLES.values() for r in roles} == set(ROLES)
    assert [onnx_file("model", p) for p in PRECISIONS] == ["model.onnx", "model.fp16.onnx", "model.int8.onnx"]
    assert onnx_file("head", "int8") == "head.int8.onnx" and engine_file("stateful", "fp16") == "stateful.fp16.engine"
    assert artifact_key("encoder", "int8") == "encoder.int8"
    assert artifact_key("model", "fp16", engine=True) == "engine.model.fp16"
    assert check_key("parity", "window", "fp32") == "parity.fp32"
    assert check_key("gate", "stateful") == "gate.stateful" and check_key("parity", "incremental", "int8") == \
        "parity.incremental.int8"
    with pytest.raises(EdgevtError, match="unknown precision 'fp8'"):
        onnx_file("model", "fp8")
    with pytest.raises(EdgevtError, match="unknown role"):
        artifact_key("decoder", "fp32")


def test_open_artifact_knows_every_kind(stream_assets, tmp_path):
    bundle, ckpt, spec = stream_assets["tsn_tinycnn"], stream_assets["tsn_tinycnn.pt"], stream_assets["spec"]
    b = open_artifact(bundle)
    assert b.kind == "bundle" and b.bundle.path == bundle and b.spec.num_frames == spec.num_frames
    assert b.default_backend == "ort-cpu"
    assert open_artifact(bundle / "edgevt.json").kind == "bundle"
    c = open_artifact(ckpt)
    assert c.kind == "checkpoint" and c.default_backend == "torch" and c.spec.labels == spec.labels
    o = open_artifact(bundle / "model.onnx")  # the ClipSpec from the ONNX metadata
    assert o.kind == "onnx" and o.spec.to_dict() == b.bundle.spec.replace(streaming=o.spec.streaming).to_dict()
    eng = tmp_path / "model.fp16.engine"
    eng.write_bytes(b"plan")
    with pytest.raises(EdgevtError, match="no sidecar"):
        open_artifact(eng)
    sidecar_path(eng).write_text(json.dumps({"format": "something-else", "spec": spec.to_dict()}))
    with pytest.raises(EdgevtError, match="unreadable engine sidecar"):
        read_sidecar(eng)  # the format check every reader now goes through
    with pytest.raises(EdgevtError, match="no such checkpoint, ONNX file, engine or bundle"):
        open_artifact(tmp_path / "nope.pt")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(EdgevtError, match="expected a bundle folder"):
        open_artifact(tmp_path / "notes.txt")


def test_stream_form_falls_back_to_window_without_artifacts(stream_assets):
    b = Bundle.load(stream_assets["tsm_tinycnn"])
    assert b.spec.streaming == "stateful" and b.stream_form("fp32") == "stateful"
    assert not b.has_form("stateful", "int8") and b.stream_form("int8") == "window"


def _int8_bundle(tmp_path, entries: dict) -> Bundle:
    """A manifest-only bundle with the given {key: extra entry fields} (no files: resolution only)."""
    from edgevt.spec import ClipSpec

    spec = ClipSpec(num_frames=4, size=(32, 32), labels=["a", "b"])
    arts = {k: {"file": f"{k}.onnx", "sha256": "", "precision": k.split(".")[1].split("-")[0], **v}
            for k, v in entries.items()}
    return Bundle(tmp_path, {"format": "edgevt-bundle", "spec": spec.to_dict(), "artifacts": arts})


def test_int8_flavour_names_are_defined_once():
    from edgevt.bundle import (EXPORT_FLAVOURS, FLAVOUR_BACKENDS, INT8_FLAVOURS, INT8_STORED, PRECISION_NAMES,
                               check_flavour, flavour_for_backend, int8_name)

    assert set(INT8_STORED) == set(FLAVOUR_BACKENDS) == set(INT8_FLAVOURS) and EXPORT_FLAVOURS[0] == "auto"
    assert {int8_name(f) for f in INT8_FLAVOURS} <= set(PRECISION_NAMES)
    assert INT8_STORED["tensorrt"] == "int8"  # engines, DeepStream and Triton build from model.int8
    assert onnx_file("model", "int8-cpu") == "model.int8-cpu.onnx" and artifact_key("model", "int8-tensorrt") == \
        "model.int8"
    assert all(flavour_for_backend(b) == f for f, bs in FLAVOUR_BACKENDS.items() for b in bs)
    with pytest.raises(EdgevtError, match=r"^--flavour 'gpu': choose from auto, tensorrt, cpu$"):
        check_flavour("gpu", "--flavour", EXPORT_FLAVOURS)


def test_resolve_precision_picks_the_flavour_for_the_backend(tmp_path):
    both = _int8_bundle(tmp_path, {"model.fp32": {}, "model.int8": {"flavour": "tensorrt"},
                                   "model.int8-cpu": {"flavour": "cpu"}})
    assert both.int8_flavours() == {"tensorrt": "int8", "cpu": "int8-cpu"}
    assert both.resolve_precision("int8", "ort-cpu") == ("int8-cpu", "int8-cpu")
    assert both.resolve_precision("int8", None) == ("int8-cpu", "int8-cpu")  # a bundle's default backend: ort-cpu
    for gpu in ("ort-trt", "tensorrt", "ort-cuda"):
        assert both.resolve_precision("int8", gpu) == ("int8", "int8-tensorrt")
    # the other flavour only when asked by name
    assert both.resolve_precision("int8-tensorrt", "ort-cpu") == ("int8", "int8-tensorrt")
    assert both.resolve_precision("int8-cpu", "ort-trt") == ("int8-cpu", "int8-cpu")
    assert both.resolve_precision("fp16", "ort-cpu") == ("fp16", "fp16")
    with pytest.raises(EdgevtError, match="unknown precision 'int4'"):
        both.resolve_precision("int4", "ort-cpu")


def test_old_bundles_with_one_int8_graph_keep_working(tmp_path):
    """Before flavours a bundle had one model.int8 (tensorrt unless its entry said cpu): every backend
    runs it, named as what it is; asking for the missing flavour by name is a one-line error."""
    old_trt = _int8_bundle(tmp_path, {"model.fp32": {}, "model.int8": {}})
    assert old_trt.resolve_precision("int8", "ort-cpu") == ("int8", "int8-tensorrt")
    old_cpu = _int8_bundle(tmp_path, {"model.fp32": {}, "model.int8": {"flavour": "cpu"}})
    assert old_cpu.resolve_precision("int8", "ort-cpu") == ("int8", "int8-cpu")
    assert old_cpu.resolve_precision("int8-cpu", "ort-cpu") == ("int8", "int8-cpu")
    with pytest.raises(EdgevtError, match=r"no int8-tensorrt graph \(INT8 here: int8-cpu\).*--flavour tensorrt"):
        old_cpu.resolve_precision("int8-tensorrt", "ort-trt")
    none = _int8_bundle(tmp_path, {"model.fp32": {}})
    assert none.resolve_precision("int8", "ort-cpu") == ("int8", "int8")  # the caller says model.int8 is missing
