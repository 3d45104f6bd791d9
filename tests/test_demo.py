import json

import pytest

from edgevt.demo import SIZES, run_demo, split_target_train


def test_target_split_is_disjoint_per_class_and_deterministic(motiondigits, tmp_path):
    import shutil

    data = tmp_path / "d"
    shutil.copytree(motiondigits, data)
    a, v = split_target_train(data, val_share=0.34, seed=0)
    adapt, val = a.read_text().split("\n"), v.read_text().split("\n")
    adapt, val = [x for x in adapt if x], [x for x in val if x]
    train = [x for x in (data / "target_train.txt").read_text().splitlines() if x]
    assert sorted(adapt + val) == sorted(train) and not set(adapt) & set(val)
    assert {x.rsplit(maxsplit=1)[1] for x in val} == {x.rsplit(maxsplit=1)[1] for x in train}  # every class
    a.unlink(), v.unlink()
    a2, v2 = split_target_train(data, val_share=0.34, seed=0)  # deterministic: written again, the same lines

    def lines(f):
        return [x for x in f.read_text().splitlines() if x]

    assert (lines(a2), lines(v2)) == (adapt, val)


def test_unknown_size_and_step(tmp_path):
    from edgevt.errors import EdgevtError

    with pytest.raises(EdgevtError, match="unknown demo size"):
        run_demo(tmp_path, "huge")
    with pytest.raises(EdgevtError, match="unknown demo step"):
        run_demo(tmp_path, "tiny", until="nope")


def test_cli_rejects_two_sizes():
    from edgevt.cli import main

    with pytest.raises(SystemExit) as e:
        main(["demo", "--quick", "--full"])
    assert e.value.code == 2


@pytest.mark.parametrize("args, model, weights, epochs", [
    ([], "tsm_tinycnn", "none", SIZES["quick"].epochs),
    (["--model", "tsm_tinycnn", "--epochs", "6"], "tsm_tinycnn", "none", 6),
    (["--model", "tsn_efficientnet_lite0"], "tsn_efficientnet_lite0", "pretrained", SIZES["quick"].epochs),
    (["--model", "tsm_efficientnet_lite0_s4", "--weights", "none"], "tsm_efficientnet_lite0_s4", "none", SIZES["quick"].epochs),
])
def test_cli_picks_model_weights_and_epochs(monkeypatch, tmp_path, args, model, weights, epochs):
    """Lite0 models get the offline ImageNet weights, others start from scratch (their weights would need
    a download); --epochs sets the source-only epochs (the adaptation rungs get half)."""
    import edgevt.demo
    from edgevt.cli import main

    seen = {}

    def fake_run_demo(out, size, **kw):
        seen["size"] = size
        raise SystemExit(0)

    monkeypatch.setattr(edgevt.demo, "run_demo", fake_run_demo)
    with pytest.raises(SystemExit):
        main(["demo", "-o", str(tmp_path), *args])
    s = seen["size"]
    assert (s.model, s.weights, s.epochs) == (model, weights, epochs)


def test_cli_weights_pretrained_only_where_they_ship(capsys):
    from edgevt.cli import main

    with pytest.raises(SystemExit) as e:
        main(["demo", "--model", "tsm_tinycnn", "--weights", "pretrained"])
    assert e.value.code == 2 and "no weights that ship offline" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_end_to_end_and_reuse(tmp_path):
    """The whole demo at the tiny size: the default recipe (TSM-TinyCNN on frame differences, auto) on a
    few tiny clips (the plumbing, not the accuracy)."""
    out = tmp_path / "demo"
    first = run_demo(out, SIZES["tiny"], threads=1)
    report = first.report.read_text()
    for section in ("## 1. Data", "## 2. Adaptation", "## 3. Export", "## 4. Evaluation", "## 5. Latency",
                    "## 6. Streaming"):
        assert section in report
    assert set(first.records) == {"data", "adapt", "export", "eval", "bench", "stream"}
    bundle = json.loads((out / "bundle" / "edgevt.json").read_text())
    assert {"model.fp32", "model.fp16", "model.int8"} <= set(bundle["artifacts"])
    # every artifact evaluated on target-test (INT8: the flavour that fits ort-cpu)
    assert {"torch.fp32", "ort-cpu.int8-cpu"} <= set(bundle["eval"])
    # The INT8 gate (which picks layers to keep in FP) is measured on target-val, never on target-test.
    val_clips = [x for x in (out / "data" / "target_val.txt").read_text().splitlines() if x]
    assert bundle["checks"]["gate"]["clips"] == len(val_clips)
    bench = json.loads((out / "bench" / "bench.json").read_text())
    assert bench["rows"][0]["baseline"] and bench["rows"][0]["status"] == "ok"
    lines = (out / "stream" / "decisions.jsonl").read_text().splitlines()
    assert json.loads(lines[0])["type"] == "start" and json.loads(lines[-1])["type"] == "summary"
    assert (out / "stream" / "annotated.mp4").stat().st_size > 0
    runs = first.records["adapt"]["summary"]["runs"]
    assert set(runs) == set(SIZES["tiny"].rungs.split(","))  # every auto candidate the demo runs, reported
    assert all(r["target_val_top1"] is not None for r in runs.values())
    assert bundle["spec"]["streaming"] == "window"  # frame differences need whole clips
    chosen = first.records["adapt"]["summary"]["best"]
    assert f"Exported: **{chosen}**" in report and "Per-class top-1 on target-test" in report

    # Rerun: everything is reused except the step whose output went missing.
    (out / "stream" / "annotated.mp4").unlink()
    second = run_demo(out, SIZES["tiny"], threads=1)
    reused = {n for n, r in second.records.items() if r.get("reused")}
    assert reused == {"data", "adapt", "export", "eval", "bench"}
    assert (out / "stream" / "annotated.mp4").exists()
