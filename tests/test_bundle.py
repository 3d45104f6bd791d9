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
