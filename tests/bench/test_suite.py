import json

import numpy as np
import pytest

from edgevt.bench.plots import accuracy_by_precision
from edgevt.bench.report import to_markdown, write_reports
from edgevt.bench.suite import run_bench
from edgevt.errors import EdgevtError


@pytest.fixture(scope="module")
def result(bench_bundle, motiondigits):
    return run_bench(bench_bundle, "ort-cpu,torch", "fp32,int8", "1,2", warmup_s=0.05, runs=6, threads=1,
                     clips=motiondigits / "target" / "test")


def test_baseline_first_and_speedups(result):
    by = {(r.backend, r.precision, r.batch): r for r in result.rows}
    base = by[("torch", "fp32", 1)]
    assert result.rows[0] is base and base.baseline and base.status == "ok"
    ort = by[("ort-cpu", "fp32", 2)]
    assert ort.status == "ok" and ort.stats.runs == 6 and ort.stats.batch == 2
    base2 = by[("torch", "fp32", 2)]
    # 6 runs over the default 10 rounds: 6 rounds of one run each; the speed-up is the median of the
    # per-round ratios (baseline median / row median in the same round), not the ratio of pooled p50s
    assert len(ort.rounds_ms) == len(base2.rounds_ms) == 6 and result.config["rounds"] == 6
    ratios = [b / r for b, r in zip(base2.rounds_ms, ort.rounds_ms)]
    assert ort.speedup_spread["ratios"] == pytest.approx(ratios)
    assert ort.speedup == pytest.approx(float(np.median(ratios)))
    assert ort.speedup_spread["p25"] <= ort.speedup <= ort.speedup_spread["p75"]
    assert ort.speedup_pooled == pytest.approx(base2.stats.p50_ms / ort.stats.p50_ms)
    assert ort.samples_ms == pytest.approx([m for m in ort.rounds_ms])  # one run per round
    # the same from CPU time: a CPU-bound 1-thread run uses about its wall time in CPU time
    assert len(ort.rounds_cpu_ms) == 6 and ort.cpu_p50_ms > 0
    assert ort.cpu_speedup == pytest.approx(float(np.median([b / r for b, r in zip(base2.rounds_cpu_ms,
                                                                                    ort.rounds_cpu_ms)])))
    # what cannot run here is reported, with the reason, not dropped
    assert by[("ort-cpu", "int8", 1)].status == "skipped" and "model.int8" in by[("ort-cpu", "int8", 1)].reason
    assert by[("torch", "int8", 1)].status == "skipped" and by[("torch", "int8", 1)].stats is None


def test_provenance_and_threads(result):
    assert result.provenance["threads"]["requested"] == 1
    assert result.provenance["threads"]["torch_intra_op"] == 1
    assert "onnxruntime" in result.provenance["environment"]
    assert "real clips" in result.config["inputs"]
    ort = next(r for r in result.rows if r.backend == "ort-cpu" and r.status == "ok")
    assert ort.describe["threads"] == 1


def test_reports_written(result, tmp_path):
    files = write_reports(result, tmp_path)
    data = json.loads(files["json"].read_text())
    assert data["format"] == "edgevt-bench" and len(data["rows"]) == len(result.rows)
    assert files["png"].read_bytes()[:4] == b"\x89PNG"
    md = files["md"].read_text()
    assert "1.00x (baseline)" in md and "| ort-cpu | fp32 | 2 |" in md
    assert "skipped: bundle has no model.int8" in md


def test_accuracy_plot_when_bundle_has_eval(result, tmp_path):
    result.eval = {"target_test": {"model.fp32": {"top1": 0.5}}}
    try:
        files = write_reports(result, tmp_path)
    finally:
        result.eval = {}
    assert files["accuracy_png"].exists() and "accuracy vs latency" in files["md"].read_text()


def test_accuracy_by_precision_shapes():
    assert accuracy_by_precision({"model.int8": {"top1": 0.9}, "fp16": {"accuracy": 91.0}}) == {"int8": 90.0,
                                                                                              "fp16": 91.0}
    assert accuracy_by_precision({}) == {}


def test_efficiency_columns(result):
    eff = result.efficiency
    assert eff["flops_per_clip"] > 0 and "flop_counter" in eff["flops_source"]
    assert eff["peak"]["gflops"] > 0 and eff["peak"]["assumptions"]
    for r in result.ok_rows():
        want = eff["flops_per_clip"] * r.batch / (r.stats.p50_ms / 1e3) / 1e9
        assert r.gflops == pytest.approx(want)
        # --threads 1: against the peak of one core
        assert r.peak_share == pytest.approx(r.gflops / eff["peak"]["per_core_gflops"])
    md = to_markdown(result)
    assert "GFLOP/s" in md and "FMA units" in md and "assumed" in md and "interleaved rounds" in md


def test_onnx_only_bundle_has_no_flops(bench_bundle, tmp_path):
    import shutil

    from edgevt.bundle import Bundle

    b = tmp_path / "b"
    shutil.copytree(bench_bundle, b)
    m = json.loads((b / "edgevt.json").read_text())
    m["source"]["checkpoint"] = str(tmp_path / "gone.pt")
    (b / "edgevt.json").write_text(json.dumps(m))
    Bundle.load(b)  # still a valid bundle
    r = run_bench(b, "ort-cpu", "fp32", "1", warmup_s=0, runs=3, threads=1, rounds=3)
    row = next(x for x in r.rows if x.status == "ok")
    assert row.gflops is None and row.peak_share is None and r.efficiency["flops_per_clip"] is None
    assert "FLOPs per clip: —" in to_markdown(r)


def test_bad_inputs(bench_bundle, tmp_path):
    with pytest.raises(EdgevtError, match="unknown backend"):
        run_bench(bench_bundle, "nope", "fp32", "1", runs=1)
    with pytest.raises(EdgevtError, match="--batch"):
        run_bench(bench_bundle, "ort-cpu", "fp32", "0", runs=1)
    with pytest.raises(EdgevtError, match="--rounds"):
        run_bench(bench_bundle, "ort-cpu", "fp32", "1", runs=1, rounds=0)
    with pytest.raises(EdgevtError, match="--order"):
        run_bench(bench_bundle, "ort-cpu", "fp32", "1", runs=1, order="random")
    with pytest.raises(EdgevtError, match="not an edgevt bundle"):
        run_bench(tmp_path, "ort-cpu", "fp32", "1", runs=1)


def test_markdown_flags_noise(result):
    r = next(r for r in result.rows if r.status == "ok")
    old = (r.stats.noisy, r.stats.noise)
    r.stats.noisy, r.stats.noise = True, "CV 40% > 15%"
    try:
        assert "Noisy measurements" in to_markdown(result)
    finally:
        r.stats.noisy, r.stats.noise = old


def test_busy_machine_is_said():
    from edgevt.bench.suite import machine_busy

    assert machine_busy({"load_average": {"before": [9.5, 8, 7], "after": [3, 3, 3], "cpus": 2}}).startswith(
        "machine busy: load average 9.5 on 2 CPUs")
    assert machine_busy({"load_average": {"before": [0.5, 1, 1], "after": [1.0, 1, 1], "cpus": 2}}) is None
    assert machine_busy({}) is None


def test_row_cores_for_the_peak():
    from edgevt.bench.suite import BenchRow, _row_cores

    row = BenchRow("ort-cpu", "fp32", 1, "ok", describe={"threads": "default"})
    assert _row_cores(row, None, 2) == 2  # library default: every core
    assert _row_cores(row, 1, 2) == 1
    assert _row_cores(BenchRow("torch", "fp32", 1, "ok", describe={"threads": 8}), None, 2) == 2


def test_plan_times_the_int8_flavour_that_fits_each_backend(tmp_path):
    """A bundle with both INT8 flavours: ort-cpu times the CPU one, named int8-cpu; the TensorRT
    flavour only when asked by name; auto lists int8 once."""
    from edgevt.bench.suite import plan_cases, resolve_precisions
    from edgevt.bundle import Bundle
    from edgevt.spec import ClipSpec

    spec = ClipSpec(num_frames=4, size=(32, 32), labels=["a", "b"])
    arts = {"model.fp32": {"file": "model.onnx", "precision": "fp32"},
            "model.int8": {"file": "model.int8.onnx", "precision": "int8", "flavour": "tensorrt"},
            "model.int8-cpu": {"file": "model.int8-cpu.onnx", "precision": "int8", "flavour": "cpu"}}
    b = Bundle(tmp_path, {"format": "edgevt-bundle", "spec": spec.to_dict(), "artifacts": arts, "source": {}})
    assert resolve_precisions("auto", b) == ["fp32", "int8"]
    cases, skipped = plan_cases(b, ["ort-cpu"], ["int8"], [1, 4], baseline=False)
    assert {(c.precision, c.artifact) for c in cases} == {("int8-cpu", "model.int8-cpu")} and not skipped
    cases, _ = plan_cases(b, ["ort-cpu"], ["int8", "int8-tensorrt"], [1], baseline=False)
    assert [(c.precision, c.artifact) for c in cases] == [("int8-cpu", "model.int8-cpu"),
                                                          ("int8-tensorrt", "model.int8")]
    del arts["model.int8"]
    _, skipped = plan_cases(b, ["ort-cpu"], ["int8-tensorrt"], [1], baseline=False)
    assert skipped and skipped[0].status == "skipped" and "no int8-tensorrt graph" in skipped[0].reason
