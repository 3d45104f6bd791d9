"""export_bundle: the bundle, its checks, TensorRT Q/DQ rules, calibration cache, bad input, atomicity."""
import json
import shutil
from dataclasses import replace

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper

from edgevt.errors import EdgevtError
from edgevt.bundle import Bundle
from edgevt.export.exporter import ExportConfig, export_bundle, parse_tolerance, register_form
from edgevt.export.onnx import ort_session


def leftovers(folder):
    """Staging or moved-aside folders an export may leave behind (there must be none)."""
    return [p.name for p in folder.iterdir() if p.name.endswith((".partial", ".old"))]


def test_bundle_manifest_and_checks(ex_bundle, tiny_spec):
    b = Bundle.load(ex_bundle.path)  # verifies every hash
    assert set(b.artifacts) >= {"model.fp32", "model.fp16", "model.int8"}
    assert {p.name for p in b.path.iterdir()} >= {"edgevt.json", "model.onnx", "model.fp16.onnx", "model.int8.onnx"}
    assert not leftovers(b.path.parent)
    m = b.manifest
    assert m["spec"]["labels"] == tiny_spec.labels and m["source"]["sha256"] and m["tools"]["onnxruntime"]
    a = b.artifact("model.fp32")
    assert a["inputs"][0] == {"name": "frames", "shape": ["batch", 4, 32, 32, 3], "dtype": "uint8"}
    assert a["opset"] == 20
    c = m["checks"]
    assert c["parity.fp32"]["passed"] and c["parity.fp32"]["max_abs_diff"] < 1e-3
    assert c["parity.fp32"]["data"].startswith("eval data")  # real clips, not random frames
    assert c["parity.fp16"]["passed"] and c["parity.fp16"]["retargeted_casts"]
    assert c["int8"]["calibration"]["clips"] == 18 and c["int8"]["flavour"] == "tensorrt"
    assert any("fewer than 32" in w for w in m["warnings"])  # 18 clips: warned, not refused
    acc = c["accuracy"]
    assert acc["labeled"] and acc["clips"] == 12 and {"fp32", "fp16", "int8"} <= set(acc)
    g = c["gate"]
    assert g["passed"] and g["labeled"] and g["drop"] == pytest.approx(acc["fp32"]["top1"] - acc["int8"]["top1"])


def test_fp16_graph_is_strongly_typed(ex_bundle):
    m = onnx.load(str(ex_bundle.artifact_path("model.fp16")))
    assert m.graph.input[0].type.tensor_type.elem_type == TensorProto.UINT8
    assert m.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    # strict type checking: no float32 tensor flows into an fp16 op (the TensorRT 11 pitfall)
    onnx.shape_inference.infer_shapes(m, check_type=True, strict_mode=True)
    first_cast = next(n for n in m.graph.node if n.op_type == "Cast" and n.input[0] == "frames")
    assert first_cast.attribute[0].i == TensorProto.FLOAT16
    assert any(i.data_type == TensorProto.FLOAT16 for i in m.graph.initializer)


def test_int8_graph_follows_tensorrt_rules(ex_bundle, motiondigits):
    m = onnx.load(str(ex_bundle.artifact_path("model.int8")))
    assert {o.domain: o.version for o in m.opset_import}.get("", 0) >= 19
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    consts = {n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in m.graph.node if n.op_type == "Constant"}
    vals = {**inits, **consts}
    q = [n for n in m.graph.node if n.op_type == "QuantizeLinear"]
    dq = [n for n in m.graph.node if n.op_type == "DequantizeLinear"]
    assert q and dq
    for n in q + dq:
        scale, zp = vals[n.input[1]], vals[n.input[2]]
        assert scale.dtype == np.float16 and (scale > 0).all()  # FP16 scales for strongly typed builds
        assert zp.dtype == np.int8 and (zp == 0).all()  # symmetric int8
    producers = {o: n for n in m.graph.node for o in n.output}
    outputs = {o.name for o in m.graph.output}
    for o in outputs:  # no Q/DQ on the model output
        p = producers[o]
        while p.op_type == "Cast":
            p = producers[p.input[0]]
        assert p.op_type != "DequantizeLinear"
    convs = [n for n in m.graph.node if n.op_type == "Conv"]
    for conv in convs:
        w = producers.get(conv.input[1])
        if w is not None and w.op_type == "DequantizeLinear":
            axis = {a.name: a.i for a in w.attribute}.get("axis", 1)
            assert axis == 0 and vals[w.input[1]].ndim == 1  # per-channel on the output channels
        if len(conv.input) > 2:  # bias stays float: no int32 bias DequantizeLinear
            b = producers.get(conv.input[2])
            assert b is None or b.op_type != "DequantizeLinear"
    # the first conv (3 input channels) is kept in higher precision
    kept = ex_bundle.manifest["checks"]["int8"]["kept_high_precision"]
    assert kept and kept[0]["reason"].startswith("3-input-channel conv")
    first = next(c for c in convs if c.name == kept[0]["node"])
    assert first.input[1] in inits and first.input[1] not in producers  # plain float weight, no Q/DQ
    # the delivered file is the one measured: running it on the eval clips gives the manifest's top-1
    from edgevt.data.datasets import load_clips
    from edgevt.export.onnx import run_onnx

    acc = ex_bundle.manifest["checks"]["accuracy"]
    clips, labels, paths = load_clips(motiondigits / "target" / "test", ex_bundle.spec, labeled=True,
                                      windows=acc["windows_per_clip"])
    assert acc["decisions"] == len(labels) and acc["clips"] == len(set(paths)) < len(labels)
    logits = run_onnx(ort_session(ex_bundle.artifact_path("model.int8")), clips)
    top1 = float((logits.argmax(1) == labels).mean() * 100)
    assert ex_bundle.manifest["checks"]["accuracy"]["int8"]["top1"] == pytest.approx(top1)
    assert ex_bundle.manifest["checks"]["gate"]["int8"] == pytest.approx(top1)


def test_calibration_cache_is_reused_and_forms_hook(tmp_path, ex_ckpt, motiondigits, ex_bundle):
    cache = ex_bundle.path.parent / "cache"

    def extra(ctx):  # what the streaming forms do: write into the staged bundle, then add_artifact
        (ctx.bundle.path / "extra.txt").write_text(ctx.spec.to_json())
        ctx.bundle.add_artifact("extra.fp32", "extra.txt", kind="text", role="extra", precision="fp32")

    register_form("test-extra", extra)
    # no --eval: --calib-method auto has nothing to judge on, so it is entropy; ex_bundle chose on its eval clips
    cal0 = ex_bundle.manifest["checks"]["int8"]["calibration"]
    cfg = ExportConfig(precisions=("fp32", "int8"), calib=motiondigits / "target" / "train", calib_cache=cache,
                       forms=["test-extra"], calib_method=cal0["method"])
    b = export_bundle(ex_ckpt, tmp_path / "again", cfg)
    cal = b.manifest["checks"]["int8"]["calibration"]
    assert cal["cache_hit"] and cal["cache"] == ex_bundle.manifest["checks"]["int8"]["calibration"]["cache"]
    assert b.artifact("model.int8")["sha256"] == ex_bundle.artifact("model.int8")["sha256"]
    assert any("accuracy gate was not run" in w for w in b.manifest["warnings"])
    assert "extra.fp32" in Bundle.load(b.path).artifacts
    assert json.loads((b.path / "extra.txt").read_text())["num_frames"] == 4
    with pytest.raises(EdgevtError, match="unknown export form"):
        export_bundle(ex_ckpt, tmp_path / "c", ExportConfig(forms=["nope"]))


def test_cache_key_depends_on_everything():
    from edgevt.export.calibration import cache_key

    base = cache_key("m", "d", "entropy", 10)
    assert len({base, cache_key("m2", "d", "entropy", 10), cache_key("m", "d2", "entropy", 10),
                cache_key("m", "d", "minmax", 10), cache_key("m", "d", "entropy", 11)}) == 5


def test_cpu_flavour_on_resized_clips_from_a_list(tmp_path, ex_ckpt, motiondigits):
    """Calibration clips at another resolution are resized by the spec; a list of paths works; the
    cpu flavour has uint8 activations and loads with onnxruntime's full (integer kernel) fusions."""
    from edgevt.data.video import write_video

    rng = np.random.default_rng(0)
    paths = []
    for i in range(3):
        p = tmp_path / f"big{i}.avi"
        write_video(p, rng.integers(0, 256, (10, 48, 40, 3), dtype=np.uint8))
        paths.append(p)
    cfg = ExportConfig(precisions=("fp32", "int8"), calib=paths, flavour="cpu", calib_cache=tmp_path / "c",
                       eval=motiondigits / "target" / "test", max_drop=100.0, min_agreement=0.0,
                       adaround_steps=0)
    b = export_bundle(ex_ckpt, tmp_path / "cpu", cfg)
    assert "model.int8" not in b.artifacts and "int8" not in b.manifest["checks"]  # only the cpu flavour
    assert b.manifest["checks"]["int8-cpu"]["calibration"]["clips"] == 3
    assert b.manifest["checks"]["int8-cpu"]["activation_type"] == "QUInt8"
    assert b.manifest["int8_flavours"] == {"cpu": {"precision": "int8-cpu", "artifacts": "*.int8-cpu",
                                                   "backends": ["ort-cpu"]}}
    s = ort_session(b.artifact_path("model.int8-cpu"), optimization="all")
    assert s.edgevt_optimization == "all"


def test_bad_inputs_have_clear_messages(tmp_path, ex_ckpt):
    bogus = tmp_path / "bogus.pt"
    bogus.write_bytes(b"not a checkpoint")
    with pytest.raises(EdgevtError, match="not an edgevt checkpoint"):
        export_bundle(bogus, tmp_path / "x")
    import torch

    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    with pytest.raises(EdgevtError, match="not an edgevt checkpoint"):
        export_bundle(tmp_path / "foreign.pt", tmp_path / "x")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "broken.mp4").write_bytes(b"\x00" * 100)
    with pytest.raises(EdgevtError, match="no readable calibration clips"):
        export_bundle(ex_ckpt, tmp_path / "x", ExportConfig(precisions=("fp32", "int8"), calib=empty))
    with pytest.raises(EdgevtError, match="needs calibration clips"):
        export_bundle(ex_ckpt, tmp_path / "x", ExportConfig(precisions=("fp32", "int8")))
    with pytest.raises(EdgevtError, match="calib-clips must be >= 1"):
        export_bundle(ex_ckpt, tmp_path / "x", ExportConfig(precisions=("int8",), calib=empty, calib_clips=0))
    with pytest.raises(EdgevtError, match="opset >= 19"):
        export_bundle(ex_ckpt, tmp_path / "x", ExportConfig(precisions=("int8",), calib=empty, opset=17))
    with pytest.raises(EdgevtError, match="unknown"):
        export_bundle(ex_ckpt, tmp_path / "x", ExportConfig(precisions=("fp8",)))
    assert not (tmp_path / "x").exists() and not leftovers(tmp_path)
    with pytest.raises(EdgevtError, match="--tolerance"):
        parse_tolerance("fp32=abc")
    assert parse_tolerance("fp16=0.1")["fp16"] == 0.1


def test_failed_export_keeps_old_bundle_and_leaves_nothing_half_written(tmp_path, ex_ckpt, ex_bundle):
    out = tmp_path / "b"
    shutil.copytree(ex_bundle.path, out)
    before = (out / "edgevt.json").read_text()
    # an impossible tolerance fails the parity check after model.onnx was written to the staging folder
    with pytest.raises(EdgevtError, match="fp32 parity check failed"):
        export_bundle(ex_ckpt, out, ExportConfig(tolerance={"fp32": -1.0, "fp16": 1.0}))
    assert (out / "edgevt.json").read_text() == before
    assert not leftovers(tmp_path)
    Bundle.load(out)


def test_unreadable_calibration_video_skipped_or_an_error_with_skip_bad_off(tmp_path, ex_ckpt, tiny_spec,
                                                                            motiondigits):
    from edgevt.data.datasets import load_clips

    bad = tmp_path / "x.mp4"
    bad.write_bytes(b"garbage, not a video" * 8)
    good = sorted((motiondigits / "target" / "train").rglob("*.mp4"))[:3]
    with pytest.warns(UserWarning, match="calibration: skipped 1 unreadable video.*x.mp4"):
        clips, _, paths = load_clips([*good, bad], tiny_spec)
    assert len(clips) == 3 and str(bad) not in paths
    with pytest.raises(EdgevtError, match=r"x\.mp4: .*pass --skip-bad"):
        load_clips([*good, bad], tiny_spec, skip_bad=False)
    # the exporter checks its data first: nothing is written
    cfg = ExportConfig(precisions=("fp32", "int8"), calib=[*good, bad], calib_cache=tmp_path / "c", skip_bad=False)
    with pytest.raises(EdgevtError, match=r"x\.mp4"):
        export_bundle(ex_ckpt, tmp_path / "b", cfg)
    assert not (tmp_path / "b").exists() and not leftovers(tmp_path)
    cfg = ExportConfig(calib=good, eval=[*good, bad], skip_bad=False)
    with pytest.raises(EdgevtError, match=r"x\.mp4"):
        export_bundle(ex_ckpt, tmp_path / "b", cfg)


def test_per_channel_fallback_warning_is_dropped_but_others_pass(caplog):
    """onnxruntime's quantizer logs 'Axis 1 is out-of-range for weight ...' on the root logger for every
    LayerNorm scale (a correct per-tensor fallback); the export hid nothing else and restores logging."""
    import logging

    from edgevt.export.precision import _quiet_per_channel_fallback

    with caplog.at_level(logging.WARNING):
        with _quiet_per_channel_fallback():
            logging.warning("Axis 1 is out-of-range for weight 'model.tnorm.weight' with rank 1")
            logging.warning("something else")
        logging.warning("Axis 1 is out-of-range for weight 'w' with rank 1")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["something else", "Axis 1 is out-of-range for weight 'w' with rank 1"]


def test_out_that_is_not_a_bundle_is_refused_and_left_intact(tmp_path, ex_ckpt):
    """Bug: --out naming the checkpoint's own folder deleted model.pt and everything beside it."""
    run = tmp_path / "run"
    run.mkdir()
    ckpt = run / "model.pt"
    shutil.copy(ex_ckpt, ckpt)
    (run / "metrics.json").write_text("{}")
    with pytest.raises(EdgevtError, match=r"run: exists and is not an edgevt bundle"):
        export_bundle(ckpt, run, ExportConfig(precisions=("fp32",)))
    assert sorted(p.name for p in run.iterdir()) == ["metrics.json", "model.pt"]
    assert not leftovers(tmp_path)
    # --out naming an existing file: refused, the file neither renamed nor touched
    f = tmp_path / "notes.txt"
    f.write_text("mine")
    with pytest.raises(EdgevtError, match=r"notes.txt: exists and is not a folder"):
        export_bundle(ex_ckpt, f, ExportConfig(precisions=("fp32",)))
    assert f.read_text() == "mine" and not (tmp_path / "notes.txt.old").exists()


def test_user_folders_named_like_staging_are_not_deleted(tmp_path, ex_ckpt):
    """Bug: an export removed any existing <out>.old / <out>.partial folder of the user's."""
    for name in ("b.old", "b.partial"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "keep.txt").write_text("x")
    (tmp_path / "b").mkdir()  # an empty folder is a fine destination
    export_bundle(ex_ckpt, tmp_path / "b", ExportConfig(precisions=("fp32",)))
    Bundle.load(tmp_path / "b")
    export_bundle(ex_ckpt, tmp_path / "b", ExportConfig(precisions=("fp32",)))  # a bundle is replaced
    Bundle.load(tmp_path / "b")
    for name in ("b.old", "b.partial"):
        assert (tmp_path / name / "keep.txt").read_text() == "x"


def test_auto_flavour_writes_both_int8_graphs_each_gated(ex_bundle, motiondigits):
    """--flavour auto (the default): a TensorRT Q/DQ graph and a CPU graph under their own names,
    the manifest says which device each is for, and each has its own gate with its clip count and
    agreement (12 eval clips here: flagged as too few)."""
    from edgevt.bundle import FLAVOUR_BACKENDS, INT8_STORED
    from edgevt.data.datasets import load_clips
    from edgevt.export.gate import MIN_GATE_CLIPS
    from edgevt.export.onnx import run_onnx

    b, c = ex_bundle, ex_bundle.manifest["checks"]
    assert set(b.manifest["int8_flavours"]) == {"tensorrt", "cpu"}
    clips = load_clips(motiondigits / "target" / "test", b.spec, windows=c["accuracy"]["windows_per_clip"])[0]
    fp32 = run_onnx(ort_session(b.artifact_path("model.fp32")), clips).argmax(1)
    for flavour, gate_key, act in (("tensorrt", "gate", "QInt8"), ("cpu", "gate.int8-cpu", "QUInt8")):
        key = f"model.{INT8_STORED[flavour]}"
        a = b.artifact(key)
        assert a["flavour"] == flavour and a["precision"] == "int8"
        assert a["for_backends"] == list(FLAVOUR_BACKENDS[flavour])
        assert b.manifest["int8_flavours"][flavour]["backends"] == list(FLAVOUR_BACKENDS[flavour])
        assert c[INT8_STORED[flavour]]["activation_type"] == act
        g = c[gate_key]
        assert g["flavour"] == flavour and g["form"] == "window" and g["clips"] == 12 < MIN_GATE_CLIPS
        assert g["decisions"] == len(clips) > 12  # several windows of each clip
        assert not g["enough_clips"] and "only 12 clips" in g["note"] and a["gate"]["clips"] == 12
        # the gate's agreement is that of the delivered file
        int8 = run_onnx(ort_session(b.artifact_path(key), optimization="auto"), clips).argmax(1)
        assert (int8 == fp32).mean() * 100 == pytest.approx(g["agreement"]) == pytest.approx(a["gate"]["agreement"])
    assert sum("judged on only 12 clips" in w for w in b.manifest["warnings"]) == 2


def test_auto_flavour_keeps_the_graph_whose_gate_passes(tmp_path, ex_ckpt, motiondigits, monkeypatch):
    """--flavour auto: a gate that refuses one flavour leaves the other, recorded and warned (the
    demo's TensorRT-flavour gate refused on 60 target-val clips and used to stop the whole export);
    a flavour asked for by name, or every flavour refused, still stops it."""
    import edgevt.export.exporter as ex
    from edgevt.export.gate import GateRefused

    real = ex._int8_form
    refuse = {"tensorrt"}

    def gated(*args, **kwargs):
        if args[-1] in refuse:
            raise GateRefused("INT8 accuracy gate failed on 12 clips: agreement 80.0% < 97.0")
        return real(*args, **kwargs)

    monkeypatch.setattr(ex, "_int8_form", gated)
    cfg = ExportConfig(precisions=("fp32", "int8"), calib=motiondigits / "target" / "train",
                       eval=motiondigits / "target" / "test", max_drop=100.0, min_agreement=0.0,
                       calib_cache=tmp_path / "c", adaround_steps=0)
    b = export_bundle(ex_ckpt, tmp_path / "auto", cfg)
    assert "model.int8-cpu" in b.artifacts and "model.int8" not in b.artifacts
    assert set(b.manifest["int8_flavours"]) == {"cpu"}
    assert "agreement 80.0%" in b.manifest["int8_refused"]["window.tensorrt"]
    assert any("tensorrt INT8 flavour of the window form not written" in w for w in b.manifest["warnings"])
    assert b.resolve_precision("int8", "ort-cpu") == ("int8-cpu", "int8-cpu")
    with pytest.raises(EdgevtError, match="agreement 80.0%"):
        export_bundle(ex_ckpt, tmp_path / "trt", replace(cfg, flavour="tensorrt"))
    refuse.add("cpu")
    with pytest.raises(EdgevtError, match="agreement 80.0%"):
        export_bundle(ex_ckpt, tmp_path / "none", cfg)
    assert not (tmp_path / "none").exists() and not leftovers(tmp_path)


def test_auto_calibration_tries_every_method_and_delivers_the_best(ex_bundle):
    """--calib-method auto (the default, with --eval): every method is calibrated and measured on the
    eval windows; the delivered graph is the one best_calibration picks (the passing one closest to
    FP32), and its first gate step is that measurement."""
    from edgevt.export.gate import best_calibration
    from edgevt.export.precision import CALIB_AUTO

    c = ex_bundle.manifest["checks"]
    for stored, gate_key in (("int8", "gate"), ("int8-cpu", "gate.int8-cpu")):
        cal = c[stored]["calibration"]
        assert cal["asked"] == "auto" and list(cal["tried"]) == list(CALIB_AUTO)
        g = c[gate_key]
        assert cal["method"] == best_calibration(cal["tried"], g["max_drop"], g["min_agreement"])
        assert c[stored]["method"] == cal["method"] and all("logit_error" in t for t in cal["tried"].values())
        assert c[gate_key]["steps"][0]["agreement"] == pytest.approx(cal["tried"][cal["method"]]["agreement"], abs=1e-3)
