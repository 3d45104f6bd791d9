"""Streaming forms through the one export path: incremental (encoder + head) and stateful (TSM with
shift buffers), as torch modules (edgevt.models.forms) and as bundle artifacts (export_forms)."""
import numpy as np
import onnxruntime as ort
import pytest
import torch

from edgevt.errors import EdgevtError
from edgevt.bundle import Bundle
from edgevt.export.exporter import ExportConfig, export_forms
from edgevt.models.forms import StatefulFrameModel, causal_clip_embeddings, compare_stateful, stream_forms_for
from edgevt.models.preprocess import FramePreprocess, FramesClassifier
from edgevt.models.zoo import create_model
from edgevt.models.temporal import temporal_shift


def _model(arch, spec):
    torch.manual_seed(0)
    return create_model(arch, spec.num_classes, num_frames=spec.num_frames).eval()


def _session(path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def test_incremental_export_matches_window_model(tmp_path, tiny_spec):
    model = _model("tsn_tinycnn", tiny_spec)
    b = Bundle.staging(tmp_path / "b", tiny_spec)
    entries = export_forms(model, b)
    assert set(entries) == {"encoder.fp32", "head.fp32"}
    assert b.manifest["spec"]["streaming"] == "incremental"
    enc, head = _session(b.artifact_path("encoder.fp32")), _session(b.artifact_path("head.fp32"))
    assert enc.get_inputs()[0].type == "tensor(uint8)"  # uint8 frames in, preprocessing in the graph
    t, (h, w) = tiny_spec.num_frames, tiny_spec.size
    clips = torch.randint(0, 256, (3, t, h, w, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = FramesClassifier(model, tiny_spec)(clips).numpy()
    # Frames encoded one at a time (as the loop does), then the head over the T embeddings.
    emb = np.stack([enc.run(None, {"frames": f[None].numpy()})[0][0] for f in clips.flatten(0, 1)])
    logits = head.run(None, {"embeddings": emb.reshape(3, t, -1)})[0]
    np.testing.assert_allclose(logits, ref, atol=1e-4)
    assert (logits.argmax(1) == ref.argmax(1)).all()
    b.commit()
    assert set(Bundle.load(tmp_path / "b").artifacts) == {"encoder.fp32", "head.fp32"}


def _causal_shift(x, num_frames, fold_div=8, causal=True):
    """Reference causal shift written independently of the stateful module: no channels from the
    future, the past channels from the previous frame (zeros before the first)."""
    nt, c, h, w = x.shape
    v = x.reshape(-1, num_frames, c, h, w)
    fold = c // fold_div
    zeros_future = torch.zeros_like(v[:, :, :fold])
    from_past = torch.cat([torch.zeros_like(v[:, :1, fold:2 * fold]), v[:, :-1, fold:2 * fold]], dim=1)
    return torch.cat([zeros_future, from_past, v[:, :, 2 * fold:]], dim=2).reshape(nt, c, h, w)


def test_stateful_export_equals_causal_offline_model(tmp_path, tiny_spec, monkeypatch):
    model = _model("tsm_tinycnn", tiny_spec)
    b = Bundle.staging(tmp_path / "b", tiny_spec)
    entries = export_forms(model, b)
    assert set(entries) == {"stateful.fp32", "head.fp32"}
    entry = entries["stateful.fp32"]
    assert entry["state"] == {f"shift_in_{i}": f"shift_out_{i}" for i in range(len(entry["state"]))}
    assert len(entry["state"]) == 2  # one buffer per shifted residual block of TinyCNN
    sess = _session(b.artifact_path("stateful.fp32"))
    n = 10  # longer than T: the stream's past is not cut at a window border
    h, w = tiny_spec.size
    frames = torch.randint(0, 256, (n, h, w, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    state = {i.name: np.zeros(i.shape, np.float32) for i in sess.get_inputs() if i.name != "frames"}
    got = []
    for f in frames:
        out = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"frames": f[None].numpy(), **state})))
        state = {k: out[v] for k, v in entry["state"].items()}
        got.append(out["embedding"][0])
    got = np.stack(got)
    # Independent reference: the offline model over all n frames as one clip, with a causal shift.
    import edgevt.models.temporal as temporal

    monkeypatch.setattr(temporal, "temporal_shift", _causal_shift)
    for m in model.modules():
        if isinstance(m, temporal.TemporalShift):
            m.num_frames = n
    with torch.no_grad():
        ref = model.encode_frames(FramePreprocess(tiny_spec)(frames)).numpy()
    np.testing.assert_allclose(got, ref, atol=1e-4)


def test_model_trained_with_causal_shift_streams_with_no_gap(tiny_spec):
    """shift_direction='causal' makes the offline model the stream's model: the stateful form from
    zero buffers gives the offline logits on every clip (the bidirectional one does not, below)."""
    torch.manual_seed(0)
    model = create_model("tsm_tinycnn", tiny_spec.num_classes, num_frames=tiny_spec.num_frames,
                         shift_direction="causal").eval()
    t, (h, w) = tiny_spec.num_frames, tiny_spec.size
    clips = torch.randint(0, 256, (4, t, h, w, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    report = compare_stateful(model, tiny_spec, clips)
    assert report["top1_agreement"] == 100.0 and report["max_abs_logit_diff"] < 1e-4
    # and the causal offline shift equals the independent reference
    x = torch.randn(2 * t, 16, 3, 3)
    torch.testing.assert_close(temporal_shift(x, t, causal=True), _causal_shift(x, t))


@pytest.mark.parametrize("direction, default", [("bidirectional", "window"), ("causal", "stateful")])
def test_bundle_streams_by_default_in_a_form_that_computes_the_model(tmp_path, tiny_spec, direction, default):
    """Both TSM bundles get the stateful artifacts; only the causal model makes it the default."""
    torch.manual_seed(0)
    model = create_model("tsm_tinycnn", tiny_spec.num_classes, num_frames=tiny_spec.num_frames,
                         shift_direction=direction).eval()
    b = Bundle.staging(tmp_path / "b", tiny_spec.replace(streaming="window"))
    entries = export_forms(model, b)
    assert "stateful.fp32" in entries and b.manifest["spec"]["streaming"] == default


def test_stateful_differs_from_bidirectional_offline_only_by_design(tiny_spec):
    """Compared with the offline (bidirectional) model the stream form loses the future shift: the
    logits differ (so the check is meaningful) and compare_stateful reports how much."""
    model = _model("tsm_tinycnn", tiny_spec)
    t, (h, w) = tiny_spec.num_frames, tiny_spec.size
    clips = torch.randint(0, 256, (4, t, h, w, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    report = compare_stateful(model, tiny_spec, clips)
    assert report["clips"] == 4 and 0.0 <= report["top1_agreement"] <= 100.0
    assert report["max_abs_logit_diff"] > 1e-6
    sm = StatefulFrameModel(model, tiny_spec)
    assert len(sm.buffer_shapes) == 2
    per_frame = causal_clip_embeddings(model, tiny_spec, clips[0])
    assert per_frame.shape == (t, model.encoder.dim)
    # the original model keeps its offline shift (the stream copy does not alter it)
    with torch.no_grad():
        a = FramesClassifier(model, tiny_spec)(clips[:1])
        b = FramesClassifier(_model("tsm_tinycnn", tiny_spec), tiny_spec)(clips[:1])
    torch.testing.assert_close(a, b)


def test_forms_per_model_and_clear_errors(tmp_path, tiny_spec):
    tsn, tsm = _model("tsn_tinycnn", tiny_spec), _model("tsm_tinycnn", tiny_spec)
    assert stream_forms_for(tsn) == ["incremental"] and stream_forms_for(tsm) == ["stateful"]
    b = Bundle.staging(tmp_path / "b", tiny_spec)
    with pytest.raises(EdgevtError, match="cannot stream as 'stateful'"):
        export_forms(tsn, b, ["stateful"])
    with pytest.raises(EdgevtError, match="cannot stream as 'incremental'"):
        export_forms(tsm, b, ["incremental"])
    with pytest.raises(EdgevtError, match="incremental form needs a TSN"):
        from edgevt.models.forms import StreamEncoder

        StreamEncoder(tsm, tiny_spec)


@pytest.mark.parametrize("arch", ["tsn_tinycnn", "tsm_tinycnn"])
def test_fp16_variants_of_the_stream_forms(tmp_path, tiny_spec, arch):
    import onnx

    model = _model(arch, tiny_spec)
    b = Bundle.staging(tmp_path / "b", tiny_spec)
    entries = export_forms(model, b, config=ExportConfig(precisions=("fp32", "fp16")))
    roles = ["encoder", "head"] if arch.startswith("tsn") else ["stateful", "head"]
    assert set(entries) == {f"{r}.{p}" for r in roles for p in ("fp32", "fp16")}
    for r in roles:
        e16 = entries[f"{r}.fp16"]
        assert e16["precision"] == "fp16" and e16["file"] != entries[f"{r}.fp32"]["file"]
        m = onnx.load(str(b.path / e16["file"]))
        assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in m.graph.initializer)
        # I/O types unchanged, so the loop feeds both precisions the same arrays
        assert [i["dtype"] for i in e16["inputs"]] == [i["dtype"] for i in entries[f"{r}.fp32"]["inputs"]]
    with pytest.raises(EdgevtError, match="INT8 needs calibration clips"):
        export_forms(model, b, config=ExportConfig(precisions=("fp32", "int8")))


@pytest.mark.parametrize("arch", ["tsn_tinycnn", "tsm_tinycnn"])
def test_stream_forms_with_a_temporal_conv_head(tmp_path, tiny_spec, arch):
    """An order-aware temporal head (conv over the T embeddings) streams too: the head artifact is
    the model's own temporal head, checked on onnxruntime inside the export."""
    torch.manual_seed(0)
    model = create_model(arch, tiny_spec.num_classes, num_frames=tiny_spec.num_frames, temporal="conv",
                         temporal_dim=16).eval()
    b = Bundle.staging(tmp_path / "b", tiny_spec)
    entries = export_forms(model, b)
    head = _session(b.artifact_path("head.fp32"))
    assert head.get_inputs()[0].shape[1:] == [tiny_spec.num_frames, model.encoder.dim]
    assert all(e["parity"]["max_abs_diff"] < 1e-3 for e in entries.values())


@pytest.mark.parametrize("arch, form", [("tsn_tinycnn", "incremental"), ("tsm_tinycnn", "stateful")])
def test_int8_stream_forms_with_parity_and_gate(tmp_path, tiny_spec, motiondigits, make_tiny_checkpoint, arch, form):
    """The one export path gives the stream forms INT8 too: every graph calibrated on what the loop
    feeds it, the form's gate on the eval clips, and the loop streams the INT8 form."""
    from pathlib import Path

    import edgevt
    from edgevt.export.exporter import export_bundle

    sample = Path(__file__).resolve().parents[2] / "calibration" / "sample"
    cfg = ExportConfig(precisions=("fp32", "int8"), calib=sample, eval=motiondigits / "target" / "test",
                       max_drop=100.0, min_agreement=0.0, forms=["stream"], calib_cache=tmp_path / "cache",
                       threads=1, adaround_steps=0)  # the rounded stream forms: test_adaround.py
    b = export_bundle(make_tiny_checkpoint(arch), tmp_path / "b", cfg)
    roles = ["encoder", "head"] if form == "incremental" else ["stateful", "head"]
    checks = b.manifest["checks"]
    gate = checks[f"gate.{form}"]
    assert gate["clips"] == 12 and gate["passed"] and 0.0 <= gate["agreement"] <= 100.0
    assert checks[f"parity.{form}.fp32"]["passed"] and checks[f"parity.{form}.int8"]["clips"] > 0
    assert set(checks[f"int8.{form}"]["graphs"]) == set(roles)
    for r in roles:
        e = b.artifact(f"{r}.int8")
        assert e["form"] == form and e["gate"]["passed"] and e["parity"]["top1_agreement"] is not None
        m = onnx_load(b.path / e["file"])
        assert any(n.op_type == "QuantizeLinear" for n in m.graph.node) or r == "head"
        assert [i["dtype"] for i in e["inputs"]] == [i["dtype"] for i in b.artifact(f"{r}.fp32")["inputs"]]
    # every role's calibration saw what the loop feeds it: T frames per clip for the per-frame graph
    rows = checks[f"int8.{form}"]["calibration"]["rows"]
    assert rows[roles[0]] == 8 * tiny_spec.num_frames and rows["head"] == 8
    decisions = list(edgevt.stream(motiondigits / "target" / "test" / "move_left" / sorted(
        p.name for p in (motiondigits / "target" / "test" / "move_left").iterdir())[0], b.path, form=form,
        precision="int8"))
    assert decisions and all(d.label in tiny_spec.labels for d in decisions)
    # the bundle holds both INT8 flavours: the loop on ort-cpu runs the CPU one, the other when named
    from edgevt.stream.loop import open_model

    for asked, stored in (("int8", "int8-cpu"), ("int8-tensorrt", "int8")):
        backends, _, used = open_model(b.path, form=form, precision=asked)
        try:
            assert used == form and {be.art.key for be in backends.values()} == {f"{r}.{stored}" for r in roles}
        finally:
            for be in backends.values():
                be.close()


def onnx_load(path):
    import onnx

    return onnx.load(str(path))


def test_cpu_int8_stateful_graph_quantizes_every_op_and_normalises_in_nchw(tmp_path, make_tiny_checkpoint):
    """The cpu flavour quantizes every op of the per-frame stateful graph, as of the window graph
    (with the frame normalisation in NCHW that is the faster step: benchmarks/int8_cpu.py), and in
    onnxruntime's optimised per-frame graph no elementwise op broadcasts over a trailing axis of 3
    (the normalisation moved behind the NHWC transpose was the slowest part of the step)."""
    from pathlib import Path

    import onnxruntime as ort

    from edgevt.export import gate
    from edgevt.export.exporter import export_bundle

    sample = Path(__file__).resolve().parents[2] / "calibration" / "sample"
    cfg = ExportConfig(precisions=("fp32", "int8"), flavour="cpu", calib=sample, forms=["stateful"],
                       calib_cache=tmp_path / "cache", threads=1, adaround_steps=0)
    b = export_bundle(make_tiny_checkpoint("tsm_tinycnn"), tmp_path / "b", cfg)
    meta = lambda m: {p.key: p.value for p in m.metadata_props}  # noqa: E731
    path = b.path / b.artifact("stateful.int8-cpu")["file"]
    st, st_fp32 = onnx_load(path), onnx_load(b.path / b.artifact("stateful.fp32")["file"])
    assert "edgevt.int8_op_types" not in meta(st)
    assert {"Conv", "Add"} <= {n.op_type for n in gate.quantized_nodes(st_fp32, st)}
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / "opt.onnx")
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    import onnx

    opt = onnx.shape_inference.infer_shapes(onnx.load(str(tmp_path / "opt.onnx")))
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in list(opt.graph.value_info) + list(opt.graph.input)}
    elementwise = [n for n in opt.graph.node if n.op_type in ("Mul", "Add", "QLinearMul", "QLinearAdd")]
    assert elementwise and not [n.name for n in elementwise if shapes.get(n.input[0], [0])[-1:] == [3]]
