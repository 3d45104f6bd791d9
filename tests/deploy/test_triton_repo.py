"""edgevt deploy triton: the repository's configs, key by key, for every form and platform.

Each config.pbtxt is parsed with Triton's own ModelConfig schema (tritonclient ships it) when
tritonclient is installed, and checked as text otherwise."""
import json

import pytest

from edgevt.deploy.triton import is_repository, write_triton_repository
from edgevt.errors import EdgevtError


def _parse(path):
    pb = pytest.importorskip("tritonclient.grpc.model_config_pb2")
    from google.protobuf import text_format

    return text_format.Parse(path.read_text(), pb.ModelConfig())


@pytest.fixture(scope="module")
def repos(deploy_assets, tmp_path_factory):
    root = tmp_path_factory.mktemp("repos")
    return {arch: write_triton_repository(deploy_assets[arch], root / arch) for arch in ("tsn_tinycnn", "tsm_tinycnn")}


def test_layout_and_identity(repos, deploy_assets, tiny_spec):
    r = repos["tsm_tinycnn"]
    assert r.name == "tsm_tinycnn" and r.form == "stateful"  # what `edgevt run` picks for the causal TSM bundle
    assert is_repository(r.path)
    meta = json.loads((r.path / "edgevt-repo.json").read_text())
    from edgevt.bundle import Bundle

    assert meta["spec"] == Bundle.load(deploy_assets["tsm_tinycnn"]).spec.to_dict() and meta["form"] == "stateful"
    assert set(meta["models"]) == {"tsm_tinycnn", "tsm_tinycnn_window_onnx", "tsm_tinycnn_window_plan",
                                   "tsm_tinycnn_stateful_onnx", "tsm_tinycnn_stateful_plan", "tsm_tinycnn_head_onnx",
                                   "tsm_tinycnn_head_plan"}
    assert set(repos["tsn_tinycnn"].models) == {"tsn_tinycnn", "tsn_tinycnn_window_onnx", "tsn_tinycnn_window_plan",
                                                "tsn_tinycnn_incremental_onnx", "tsn_tinycnn_incremental_plan",
                                                "tsn_tinycnn_head_onnx", "tsn_tinycnn_head_plan"}
    readme = (r.path / "README.md").read_text()
    assert "--load-model=tsm_tinycnn" in readme and "--backend triton://127.0.0.1:8001/tsm_tinycnn" in readme
    for m in meta["models"]:
        assert (r.path / m / "labels.txt").read_text().split() == tiny_spec.labels


def test_python_model_config(repos, deploy_assets, tiny_spec):
    from edgevt.bundle import Bundle

    r = repos["tsm_tinycnn"]
    c = _parse(r.path / r.name / "config.pbtxt")
    assert c.name == r.name and c.backend == "python" and c.max_batch_size == 16
    ins = {i.name: i for i in c.input}
    assert list(ins["FRAMES"].dims) == [-1, 32, 32, 3] and ins["FRAMES"].data_type == 2  # TYPE_UINT8
    assert list(ins["DECIDE"].dims) == [-1] and ins["DECIDE"].allow_ragged_batch
    assert c.output[0].name == "LOGITS" and list(c.output[0].dims) == [-1, tiny_spec.num_classes]
    assert c.output[0].data_type == 11  # TYPE_FP32
    sb = c.sequence_batching
    assert sb.max_sequence_idle_microseconds == 60_000_000
    ctrl = {ci.name: ci.control[0] for ci in sb.control_input}
    assert set(ctrl) == {"START", "END", "CORRID"}
    assert ctrl["START"].kind == 0 and list(ctrl["START"].fp32_false_true) == [0, 1]  # CONTROL_SEQUENCE_START
    assert ctrl["END"].kind == 2 and list(ctrl["END"].fp32_false_true) == [0, 1]  # CONTROL_SEQUENCE_END
    assert ctrl["CORRID"].kind == 3 and ctrl["CORRID"].data_type == 5  # CONTROL_SEQUENCE_CORRID, TYPE_UINT64
    assert c.instance_group[0].kind == 2 and c.instance_group[0].count == 1  # KIND_CPU
    params = {k: v.string_value for k, v in c.parameters.items()}
    assert json.loads(params["edgevt_spec"]) == Bundle.load(deploy_assets["tsm_tinycnn"]).spec.to_dict()
    assert params["edgevt_form"] == "stateful" and params["edgevt_precision"] == "fp32"
    # the copied bundle holds just this form's artifacts and verifies
    b = Bundle.load(r.path / r.name / "1" / "bundle")
    assert set(b.artifacts) == {"stateful.fp32", "head.fp32"}
    assert (r.path / r.name / "1" / "model.py").read_text().startswith('"""Triton python-backend model')


def test_window_platform_configs(repos, tiny_spec):
    r = repos["tsm_tinycnn"]
    for suffix, platform in (("onnx", "onnxruntime_onnx"), ("plan", "tensorrt_plan")):
        d = r.path / f"tsm_tinycnn_window_{suffix}"
        c = _parse(d / "config.pbtxt")
        assert c.platform == platform and c.max_batch_size == 8
        assert [(i.name, list(i.dims), i.data_type) for i in c.input] == [("frames", [4, 32, 32, 3], 2)]
        assert [(o.name, list(o.dims), o.data_type) for o in c.output] == [("logits", [tiny_spec.num_classes], 11)]
        assert c.HasField("dynamic_batching") and not c.HasField("sequence_batching")
        assert c.instance_group[0].kind == 1  # KIND_GPU
    assert (r.path / "tsm_tinycnn_window_onnx" / "1" / "model.onnx").exists()
    assert not (r.path / "tsm_tinycnn_window_plan" / "1" / "model.plan").exists()  # no engine in this bundle


def test_stateful_config_has_implicit_state(repos):
    r = repos["tsm_tinycnn"]
    for suffix in ("onnx", "plan"):
        c = _parse(r.path / f"tsm_tinycnn_stateful_{suffix}" / "config.pbtxt")
        assert c.max_batch_size == 0  # the stateful graph takes one frame [1, H, W, 3]
        assert [(i.name, list(i.dims)) for i in c.input] == [("frames", [1, 32, 32, 3])]  # buffers are state
        assert [o.name for o in c.output] == ["embedding"]
        states = {s.input_name: s for s in c.sequence_batching.state}
        assert set(states) == {"shift_in_0", "shift_in_1"}
        for name, s in states.items():
            assert s.output_name == name.replace("_in_", "_out_") and s.data_type == 11
            assert list(s.dims) == [1, 4, 16, 16]
            assert s.initial_state[0].zero_data and list(s.initial_state[0].dims) == [1, 4, 16, 16]
        assert not c.sequence_batching.control_input  # the graph has no control tensors
    head = _parse(r.path / "tsm_tinycnn_head_onnx" / "config.pbtxt")
    assert head.max_batch_size == 8 and head.HasField("dynamic_batching")
    assert [(i.name, list(i.dims)) for i in head.input] == [("embeddings", [4, 64])]


def test_incremental_encoder_is_a_sequence_model(repos):
    r = repos["tsn_tinycnn"]
    assert r.form == "incremental"  # a TSN bundle with its incremental artifacts streams in that form
    c = _parse(r.path / "tsn_tinycnn_incremental_onnx" / "config.pbtxt")
    assert c.max_batch_size == 8 and [(i.name, list(i.dims)) for i in c.input] == [("frames", [32, 32, 3])]
    assert c.HasField("sequence_batching") and not c.sequence_batching.state


def test_forms_and_options(deploy_assets, tmp_path, tiny_spec):
    r = write_triton_repository(deploy_assets["tsn_tinycnn"], tmp_path / "r", name="cams", form="incremental",
                                platforms=("python",), max_streams=4, instances=2, threads=1)
    assert list(r.models) == ["cams"] and r.form == "incremental"
    text = (tmp_path / "r" / "cams" / "config.pbtxt").read_text()
    assert "max_batch_size: 4" in text and "count: 2 kind: KIND_CPU" in text
    assert '{ key: "edgevt_threads" value: { string_value: "1" } }' in text
    # rewriting an edgevt repository replaces it; anything else is refused
    write_triton_repository(deploy_assets["tsn_tinycnn"], tmp_path / "r", platforms=("python",))
    assert not (tmp_path / "r" / "cams").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("x")
    with pytest.raises(EdgevtError, match="not an edgevt Triton repository"):
        write_triton_repository(deploy_assets["tsn_tinycnn"], tmp_path / "mine")
    with pytest.raises(EdgevtError, match="--platform"):
        write_triton_repository(deploy_assets["tsn_tinycnn"], tmp_path / "x", platforms=("tensorflow_savedmodel",))
    with pytest.raises(EdgevtError, match="no stateful.fp32"):
        write_triton_repository(deploy_assets["tsn_tinycnn"], tmp_path / "x", form="stateful")
    with pytest.raises(EdgevtError, match="--name"):
        write_triton_repository(deploy_assets["tsn_tinycnn"], tmp_path / "x", name="bad name")
    assert not (tmp_path / "x").exists()


def test_cli(deploy_assets, tmp_path):
    from typer.testing import CliRunner

    from edgevt.cli import app

    res = CliRunner().invoke(app, ["deploy", "triton", str(deploy_assets["tsm_tinycnn"]), "-o", str(tmp_path / "r"),
                                   "--platform", "python,onnxruntime_onnx"])
    assert res.exit_code == 0, res.output
    assert "tsm_tinycnn: python (stateful form)" in res.output and "tsm_tinycnn_stateful_onnx" in res.output
    assert not (tmp_path / "r" / "tsm_tinycnn_window_plan").exists()


def test_cli_bad_input_is_one_line(tmp_path):
    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-m", "edgevt", "deploy", "triton", str(tmp_path / "nope"), "-o",
                        str(tmp_path / "r")], capture_output=True, text=True)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and "not an edgevt bundle" in p.stderr
