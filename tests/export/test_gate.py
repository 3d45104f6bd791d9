"""The INT8 accuracy gate: measurement, per-layer sensitivity, exclusion until within the gate."""
import numpy as np

from edgevt.export import gate
from edgevt.export.exporter import ExportConfig, export_bundle


def test_measure_labeled_and_unlabeled():
    fp32 = np.array([[2, 0], [0, 2], [2, 0], [0, 2]], np.float32)
    int8 = np.array([[2, 0], [2, 0], [2, 0], [0, 2]], np.float32)
    m = gate.measure(fp32, int8, np.array([0, 1, 0, 0]))
    assert m["labeled"] and m["fp32"] == 75.0 and m["int8"] == 50.0 and m["drop"] == 25.0
    u = gate.measure(fp32, int8, np.array([-1, -1, -1, -1]))
    assert not u["labeled"] and u["agreement"] == 75.0 and u["drop"] == 25.0


def test_exclusion_schedule_grows_to_everything():
    assert gate.exclusion_schedule(list("abcde"), ["x"]) == [
        ["x", "a"], ["x", "a", "b"], ["x", "a", "b", "c", "d"], ["x", "a", "b", "c", "d", "e"]]


def test_badly_calibrated_int8_is_repaired_by_keeping_layers(tmp_path, ex_ckpt, motiondigits):
    """Calibrated on black frames, INT8 ranges are far too small for real clips. With a
    zero-disagreement gate on unlabeled clips, the gate must rank layers, keep the most sensitive
    ones in higher precision until INT8 agrees with FP32, say what it did, and deliver the graph
    it measured (still an INT8 graph)."""
    from edgevt.data.video import write_video

    paths = []
    for i in range(2):
        p = tmp_path / f"black{i}.avi"
        write_video(p, np.zeros((12, 32, 32, 3), np.uint8))
        paths.append(p)
    unlabeled_eval = sorted((motiondigits / "target" / "test").rglob("*.mp4"))  # gate on FP32 agreement
    cfg = ExportConfig(precisions=("fp32", "int8"), calib=paths, eval=unlabeled_eval, max_drop=0.0,
                       calib_method="minmax", calib_cache=tmp_path / "cache")
    b = export_bundle(ex_ckpt, tmp_path / "b", cfg)
    g = b.manifest["checks"]["gate"]
    assert g["passed"] and g["drop"] <= 0.0 and not g["labeled"] and g["agreement"] == 100.0
    assert len(g["steps"]) >= 2 and g["steps"][0]["drop"] > 0  # it was failing before exclusions
    assert g["sensitivity"] and all(isinstance(s, (int, float)) for _, s in g["sensitivity"])
    gate_kept = [k for k in g["kept_high_precision"] if k["reason"].startswith("accuracy gate")]
    assert gate_kept and b.artifact("model.int8")["kept_high_precision"][-1] == gate_kept[-1]["node"]
    assert b.manifest["checks"]["int8"]["qdq_nodes"]["QuantizeLinear"] > 0  # still an INT8 graph
    from edgevt.export.calibration import load_clips
    from edgevt.export.onnx import ort_session, run_onnx

    clips = load_clips(unlabeled_eval, b.spec)[0]
    fp32 = run_onnx(ort_session(b.artifact_path("model.fp32")), clips)
    int8 = run_onnx(ort_session(b.artifact_path("model.int8")), clips)
    assert (fp32.argmax(1) == int8.argmax(1)).mean() * 100 == g["agreement"]
