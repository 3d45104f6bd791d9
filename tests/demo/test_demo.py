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
    # INT8 weights rounded adaptively by default, each flavour's, and the report says so
    rounding = first.records["export"]["summary"]["rounding"]
    assert set(rounding) == set(bundle["int8_flavours"]) and all(r["steps"] == 300 for r in rounding.values())
    assert "Weights rounded adaptively" in report
    chosen = first.records["adapt"]["summary"]["best"]
    assert f"Exported: **{chosen}**" in report and "Per-class top-1 on target-test" in report

    # Rerun: everything is reused except the step whose output went missing.
    (out / "stream" / "annotated.mp4").unlink()
    second = run_demo(out, SIZES["tiny"], threads=1)
    reused = {n for n, r in second.records.items() if r.get("reused")}
    assert reused == {"data", "adapt", "export", "eval", "bench"}
    assert (out / "stream" / "annotated.mp4").exists()


def test_demo_size_takes_t_stride_and_size_from_its_clip_spec():
    """T, frame stride and size are declared once, in DemoSize.clip (a ClipSpec); the adapt config, the
    synthetic videos and the run-cache settings all read them from there."""
    from dataclasses import fields
    from pathlib import Path

    from edgevt.demo import DemoContext, DemoSize, adapt_config, synth_config
    from edgevt.demo.steps import _adapt_settings
    from edgevt.spec import ClipSpec

    assert {f.name for f in fields(DemoSize)} & {"num_frames", "frame_stride", "frame_size", "size"} == set()
    for s in SIZES.values():
        assert isinstance(s.clip, ClipSpec)
        got = adapt_config(Path("d"), Path("o"), s).clip_spec([], (0.5,) * 3, (0.5,) * 3)
        assert (got.num_frames, got.frame_stride, got.size, got.sampling) == \
            (s.clip.num_frames, s.clip.frame_stride, s.clip.size, s.clip.sampling)
        assert synth_config(s).size == s.frame_size == s.clip.size[0]
        settings = _adapt_settings(DemoContext(Path("o"), s))
        assert (settings["num_frames"], settings["frame_stride"]) == (s.clip.num_frames, s.clip.frame_stride)


def test_demo_clip_values_are_the_recipes():
    from edgevt.demo import with_clip

    clip = {n: (s.clip.num_frames, s.clip.frame_stride, s.clip.size) for n, s in SIZES.items()}
    assert clip == {"tiny": (4, 2, (32, 32)), "quick": (8, 1, (64, 64)), "full": (8, 1, (64, 64))}
    small = with_clip(SIZES["quick"], size=(32, 32))
    assert small.frame_size == 32 and small.clip.num_frames == 8 and SIZES["quick"].frame_size == 64


def test_run_cache_reuses_reruns_on_new_settings_and_on_new_upstream(tmp_path):
    """edgevt.demo.run_cached (the run cache the benchmarks share with the demo)."""
    from edgevt.demo import DemoContext, run_cached

    ctx = DemoContext(tmp_path, SIZES["tiny"])
    calls = []

    def make(name, value):
        def run():
            calls.append(name)
            (tmp_path / f"{name}.txt").write_text(str(value))
            return [tmp_path / f"{name}.txt"], {"value": value}
        return run

    assert not run_cached(ctx, "data", {"n": 1}, make("data", 1)).get("reused")
    assert not run_cached(ctx, "model", {"e": 1}, make("model", 1), needs=("data",)).get("reused")
    ctx = DemoContext(tmp_path, SIZES["tiny"])  # a new invocation: the records on disk
    assert run_cached(ctx, "data", {"n": 1}, make("data", 1))["reused"]
    assert run_cached(ctx, "model", {"e": 1}, make("model", 1), needs=("data",))["reused"]
    assert calls == ["data", "model"]
    assert not run_cached(ctx, "model", {"e": 2}, make("model", 2), needs=("data",)).get("reused")  # new settings
    run_cached(ctx, "data", {"n": 2}, make("data", 2))  # new data: what was made from it runs again
    rec = run_cached(ctx, "model", {"e": 2}, make("model", 2), needs=("data",))
    assert not rec.get("reused") and calls == ["data", "model", "model", "data", "model"]
    (tmp_path / "model.txt").unlink()  # a missing output: runs again
    assert not run_cached(ctx, "model", {"e": 2}, make("model", 2), needs=("data",)).get("reused")


def test_cached_adapt_reuses_an_identical_run(monkeypatch, tmp_path):
    import edgevt.adapt
    from edgevt.adapt import AdaptConfig, AdaptResult
    from edgevt.demo import DemoContext, cached_adapt

    runs = []

    def fake_adapt(cfg, **kw):
        runs.append(kw)
        out = tmp_path / "runs" / "a"
        out.mkdir(parents=True, exist_ok=True)
        (out / "model.pt").write_bytes(b"x")
        report = {"epochs": cfg.epochs}
        (out / "report.json").write_text(json.dumps(report))
        return AdaptResult(str(out / "model.pt"), report, str(out))

    monkeypatch.setattr(edgevt.adapt, "adapt", fake_adapt)
    ctx = DemoContext(tmp_path, SIZES["tiny"])
    cfg = AdaptConfig(source="s.txt", out=str(tmp_path / "runs" / "a"), epochs=3)
    ckpt, report, reused = cached_adapt(ctx, "a", cfg, feature_cache="cache")
    assert (ckpt, report, reused) == (tmp_path / "runs" / "a" / "model.pt", {"epochs": 3}, False)
    assert runs == [{"feature_cache": "cache"}]
    assert cached_adapt(DemoContext(tmp_path, SIZES["tiny"]), "a", cfg)[1:] == ({"epochs": 3}, True)
    cfg.epochs = 4
    assert cached_adapt(ctx, "a", cfg)[1:] == ({"epochs": 4}, False) and len(runs) == 2


def test_the_export_steps_cache_key_holds_the_rounding(tmp_path, monkeypatch):
    """A demo folder exported with nearest rounding (before AdaRound became the default) is exported
    again, not reused: the rounding steps are part of the export step's settings."""
    import importlib

    from edgevt.demo import DemoContext
    from edgevt.export.exporter import ExportConfig

    S = importlib.import_module("edgevt.demo.steps")  # (edgevt.demo.steps is also a function's name)

    ctx = DemoContext(tmp_path, SIZES["tiny"])
    assert S._export_settings(ctx)["adaround_steps"] == 300
    real = S.export_config
    monkeypatch.setattr(S, "export_config", lambda *a: ExportConfig(**{**real(*a).__dict__, "adaround_steps": 0}))
    assert S._export_settings(ctx)["adaround_steps"] == 0
