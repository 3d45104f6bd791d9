"""edgevt deploy deepstream: nvinfer / nvdspreprocess keys and values, and the DeepStream-facing graph."""
import configparser

import numpy as np
import pytest

from edgevt.deploy.deepstream import normalisation, write_deepstream_configs
from edgevt.errors import EdgevtError


def _ini(path):
    cp = configparser.ConfigParser(inline_comment_prefixes=None)
    cp.optionxform = str  # keys are case- and dash-sensitive
    cp.read_string(path.read_text())
    return cp


@pytest.fixture(scope="module")
def ds(deploy_assets, tmp_path_factory):
    out = tmp_path_factory.mktemp("ds") / "ds"
    return write_deepstream_configs(deploy_assets["tsm_tinycnn"], out, precision="fp32", batch=2, sources=3, stride=2,
                                    gie_id=4)


def test_preprocess_config(ds, tiny_spec):
    cp = _ini(ds.path / "config_preprocess.txt")
    p, u, g = cp["property"], cp["user-configs"], cp["group-0"]
    assert p["enable"] == "1" and p["target-unique-ids"] == "4"
    assert p["network-input-shape"] == "2;3;4;32;32"  # N;C;T;H;W
    assert p["network-input-order"] == "2" and p["network-color-format"] == "0" and p["tensor-data-type"] == "0"
    assert p["tensor-name"] == "input_ds"
    assert p["processing-width"] == "32" and p["processing-height"] == "32"
    assert p["custom-lib-path"].endswith("libnvds_custom_sequence_preprocess.so")
    assert p["custom-tensor-preparation-function"] == "CustomSequenceTensorPreparation"
    scale = [float(v) for v in u["channel-scale-factors"].split(";")]
    offset = [float(v) for v in u["channel-mean-offsets"].split(";")]
    np.testing.assert_allclose(scale, [1 / (255 * s) for s in tiny_spec.std], rtol=1e-8)
    np.testing.assert_allclose(offset, [255 * m for m in tiny_spec.mean], rtol=1e-8)
    assert u["stride"] == "2" and u["subsample"] == str(tiny_spec.frame_stride - 1)
    assert g["src-ids"] == "0;1;2" and g["process-on-roi"] == "0"


def test_infer_config(ds, tiny_spec):
    p = _ini(ds.path / "config_infer.txt")["property"]
    assert p["onnx-file"] == "model.deepstream.onnx" and p["model-engine-file"].endswith(".engine")
    assert p["network-mode"] == "0" and p["batch-size"] == "2" and p["gie-unique-id"] == "4"
    assert p["input-tensor-from-meta"] == "1" and p["output-tensor-meta"] == "1" and p["process-mode"] == "1"
    assert p["labelfile-path"] == "labels.txt" and p["output-blob-names"] == "probs"
    assert (ds.path / "labels.txt").read_text().strip() == ";".join(tiny_spec.labels)
    assert "nvdspreprocess" in (ds.path / "README.md").read_text()


def test_network_mode_per_precision(deploy_assets, tmp_path):
    from edgevt.deploy.deepstream import infer_config

    assert "network-mode=2" in infer_config(onnx_file="m.onnx", engine_file="m.engine", precision="fp16")
    assert "network-mode=1" in infer_config(onnx_file="m.onnx", engine_file="m.engine", precision="int8")
    with pytest.raises(EdgevtError, match="no model.int8"):
        write_deepstream_configs(deploy_assets["tsm_tinycnn"], tmp_path / "x", precision="int8")
    assert not (tmp_path / "x").exists()


def test_graph_gives_the_bundles_probabilities(ds, deploy_assets, tiny_spec):
    """DeepStream's normalised NCTHW tensor through model.deepstream.onnx == softmax of the bundle's logits."""
    import onnxruntime as ort

    from edgevt.bundle import Bundle

    b = Bundle.load(deploy_assets["tsm_tinycnn"])
    x = np.random.default_rng(0).integers(0, 256, (3, tiny_spec.num_frames, 32, 32, 3), dtype=np.uint8)
    logits = ort.InferenceSession(str(b.artifact_path("model.fp32"))).run(None, {"frames": x})[0]
    ref = np.exp(logits - logits.max(1, keepdims=True))
    ref /= ref.sum(1, keepdims=True)
    scale, offset = (np.asarray(v, np.float32).reshape(1, 3, 1, 1, 1) for v in normalisation(tiny_spec))
    y = (scale * (x.transpose(0, 4, 1, 2, 3).astype(np.float32) - offset)).astype(np.float32)  # what DeepStream sends
    got = ort.InferenceSession(str(ds.path / "model.deepstream.onnx")).run(None, {"input_ds": y})[0]
    np.testing.assert_allclose(got, ref, atol=1e-6)


def test_cli(deploy_assets, tmp_path):
    from typer.testing import CliRunner

    from edgevt.cli import app

    res = CliRunner().invoke(app, ["deploy", "deepstream", str(deploy_assets["tsn_tinycnn"]), "-o", str(tmp_path / "d")])
    assert res.exit_code == 0, res.output
    assert "config_infer.txt" in res.output and (tmp_path / "d" / "config_preprocess.txt").exists()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "f").write_text("x")
    res = CliRunner().invoke(app, ["deploy", "deepstream", str(deploy_assets["tsn_tinycnn"]), "-o",
                                   str(tmp_path / "other")])
    assert res.exit_code != 0 and (tmp_path / "other" / "f").exists()
