"""A real Triton Inference Server (the nvidia-pytriton wheel's, CPU-only, on 127.0.0.1) serving the
emitted repositories: `edgevt run --backend triton://...` decides exactly as the local ort-cpu run,
in every form; bad input is a one-line error; the platform configs get past config parsing; a
server killed and restarted mid-stream leaves a gap record and no lost or changed decision.

Skips where the wheel (or tritonclient) is absent: `pip install 'edgevt[triton]'`, see scripts/setup."""
import json
import subprocess
import sys
import threading

import numpy as np
import pytest

from edgevt.deploy import server as triton_server

pytest.importorskip("tritonclient.grpc")
_ok, _why = triton_server.available()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(not _ok, reason=_why)]


@pytest.fixture(scope="module")
def served(deploy_assets, tmp_path_factory):
    from edgevt.deploy.triton import write_triton_repository

    root = tmp_path_factory.mktemp("served")
    repos = {
        "stateful": write_triton_repository(deploy_assets["tsm_tinycnn"], root / "tsm"),  # + platform models
        "incremental": write_triton_repository(deploy_assets["tsn_tinycnn"], root / "tsn", platforms=("python",)),
        "window": write_triton_repository(deploy_assets["tsn_tinycnn"], root / "win", name="tsn_window", form="window",
                                          platforms=("python",)),
    }
    broken = root / "broken" / "broken_onnx"  # a malformed config, to show what a parse failure looks like
    (broken / "1").mkdir(parents=True)
    (broken / "config.pbtxt").write_text('name: "broken_onnx"\nplatform: "onnxruntime_onnx"\ninput [ { name: ')
    srv = triton_server.TritonServer([r.path for r in repos.values()] + [root / "broken"],
                                     [r.name for r in repos.values()])
    srv.start(timeout=120)
    yield {"server": srv, "repos": repos, "bundle": {"stateful": deploy_assets["tsm_tinycnn"],
                                                     "incremental": deploy_assets["tsn_tinycnn"],
                                                     "window": deploy_assets["tsn_tinycnn"]}}
    srv.close()


def _run(video, bundle, backend, jsonl, *extra):
    p = subprocess.run([sys.executable, "-m", "edgevt", "run", str(bundle), str(video), "--backend", backend,
                        "--jsonl", str(jsonl), "--drop", "none", "--no-live", *extra],
                       capture_output=True, text=True, timeout=300)
    return p


def _records(path):
    return [json.loads(line) for line in open(path)]


def _same_decisions(a, b):
    da, db = [r for r in a if r["type"] == "decision"], [r for r in b if r["type"] == "decision"]
    assert len(da) == len(db) and da
    for x, y in zip(da, db):
        assert (x["index"], x["frame"], x["first_frame"], x["label"]) == (y["index"], y["frame"], y["first_frame"],
                                                                          y["label"])
        np.testing.assert_allclose(list(x["probs"].values()), list(y["probs"].values()), atol=1e-5)
        np.testing.assert_allclose(list(x["scores"].values()), list(y["scores"].values()), atol=1e-5)
    return da


@pytest.mark.parametrize("form,stride", [("stateful", "1"), ("incremental", "1"), ("window", "1"), ("stateful", "3")])
def test_decisions_equal_local(served, deploy_assets, tmp_path, form, stride):
    repo, bundle = served["repos"][form], served["bundle"][form]
    url = f"triton://{served['server'].url}/{repo.name}"
    local = _run(deploy_assets["video"], bundle, "ort-cpu", tmp_path / "local.jsonl", "--form", form, "--stride", stride)
    remote = _run(deploy_assets["video"], bundle, url, tmp_path / "remote.jsonl", "--stride", stride)
    assert local.returncode == 0, local.stderr[-500:]
    assert remote.returncode == 0, remote.stderr[-500:]
    a, b = _records(tmp_path / "local.jsonl"), _records(tmp_path / "remote.jsonl")
    decisions = _same_decisions(a, b)
    start, summary = b[0], b[-1]
    assert start["form"] == form and start["backend"]["model"]["backend"] == "triton"
    assert summary["type"] == "summary" and summary["skipped_frames"] == 0 and summary["dropped"] == 0
    assert summary["gaps"] == 0 and not [r for r in b if r["type"] == "gap"]
    # frames lost = 0: every decision point of the stream was decided
    t = deploy_assets["spec"].num_frames
    assert len(decisions) == (summary["frames"] - t) // int(stride) + 1


def test_concurrent_streams_share_the_server(served, deploy_assets):
    """Three streams at once (three sequences on one model) each decide as their own local run."""
    import edgevt

    repo, bundle = served["repos"]["stateful"], served["bundle"]["stateful"]
    url = f"triton://{served['server'].url}/{repo.name}"
    local = [d.probs for d in edgevt.stream(deploy_assets["video"], bundle, drop="none")]
    results, errors = {}, []

    def one(i):
        try:
            results[i] = [d.probs for d in edgevt.stream(deploy_assets["video"], bundle, backend=url, drop="none")]
        except Exception as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=240)
    assert not errors and len(results) == 3
    for got in results.values():
        np.testing.assert_allclose(np.stack(got), np.stack(local), atol=1e-5)


def test_bad_input_is_one_line(served, deploy_assets, tmp_path):
    from edgevt.backends.triton import TritonBackend
    from edgevt.errors import EdgevtError
    from edgevt.bundle import Bundle

    srv, video, tsm = served["server"], deploy_assets["video"], deploy_assets["tsm_tinycnn"]
    p = _run(video, tsm, f"triton://{srv.url}/nope", tmp_path / "x.jsonl")
    assert p.returncode == 2 and "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert "has no model 'nope'" in p.stderr and "tsm_tinycnn" in p.stderr
    assert not (tmp_path / "x.jsonl").exists()
    p = _run(video, tsm, f"triton://{srv.url}/tsm_tinycnn_stateful_onnx", tmp_path / "x.jsonl")  # there, not loadable
    assert p.returncode == 2 and "model 'tsm_tinycnn_stateful_onnx' is not ready" in p.stderr
    p = _run(video, tsm, f"triton://{srv.url}/tsm_tinycnn", tmp_path / "x.jsonl", "--form", "window")
    assert p.returncode == 2 and "runs the stateful form, not --form window" in p.stderr
    p = _run(video, tsm, f"triton://{srv.url}/tsn_tinycnn", tmp_path / "x.jsonl")  # another bundle's repository
    assert p.returncode == 2 and "was emitted for another bundle" in p.stderr and "streaming" in p.stderr
    spec = Bundle.load(tsm).spec
    with pytest.raises(EdgevtError, match="emitted for another bundle: its labels"):
        TritonBackend(f"triton://{srv.url}/tsm_tinycnn", spec.replace(labels=[f"x{i}" for i in range(6)]))
    with pytest.raises(EdgevtError, match=r"takes FRAMES TYPE_UINT8 \[-1, 32, 32, 3\], but the bundle's ClipSpec "
                                          r"needs uint8 \[-1, 16, 16, 3\]"):
        TritonBackend(f"triton://{srv.url}/tsm_tinycnn", spec.replace(size=(16, 16)))


def test_platform_configs_get_past_parsing(served):
    """The onnxruntime_onnx / tensorrt_plan configs parse and validate in the real server; it then
    refuses them only because this server has no onnxruntime / tensorrt backend. A malformed config
    fails earlier, at parsing, with another message."""
    import tritonclient.grpc as grpcclient

    c = grpcclient.InferenceServerClient(served["server"].url)
    repo = served["repos"]["stateful"]
    checked = 0
    for name, m in repo.models.items():
        if m["platform"] == "python":
            continue
        with pytest.raises(Exception) as e:
            c.load_model(name)
        backend = "onnxruntime" if m["platform"] == "onnxruntime_onnx" else "tensorrt"
        assert f"unable to find backend library for backend '{backend}'" in str(e.value), str(e.value)
        checked += 1
    assert checked == 6
    with pytest.raises(Exception) as e:
        c.load_model("broken_onnx")
    assert "unable to find backend library" not in str(e.value) and "failed to poll" in str(e.value)
    assert "failed to read text proto" in served["server"].log_path.read_text(errors="replace")


def test_server_killed_and_restarted_mid_stream(deploy_assets, tmp_path):
    """kill -9 of the server after 10 decisions, a new one on the same ports 1 s later: the stream
    waits, restarts its sequence with the last T-1 frames, and ends with every decision the local
    run made, identical (window form), and one recovered gap in the JSONL."""
    import time

    import edgevt
    from edgevt.deploy.triton import write_triton_repository
    from edgevt.stream.sinks import JsonlSink

    bundle = deploy_assets["tsn_tinycnn"]
    repo = write_triton_repository(bundle, tmp_path / "repo", form="window", platforms=("python",))
    srv = triton_server.TritonServer(repo.path, [repo.name]).start(timeout=120)
    restarted = []
    try:
        local = [(d.frame, d.label, d.probs) for d in edgevt.stream(deploy_assets["video"], bundle, form="window",
                                                                    drop="none")]
        url = f"triton://{srv.url}/{repo.name}"
        st = edgevt.stream(deploy_assets["video"], bundle, backend=url, drop="none",
                           backend_options={"backoff": (0.2, 1.0), "retry_for": 120},
                           sinks=[JsonlSink(tmp_path / "run.jsonl")])
        got = []

        def restart():
            time.sleep(1.0)
            new = triton_server.TritonServer(repo.path, [repo.name], grpc_port=srv.grpc_port, http_port=srv.http_port,
                                             metrics_port=srv.metrics_port)
            restarted.append(new)
            new.start(timeout=120)

        restarter = threading.Thread(target=restart, daemon=True)
        for d in st:
            got.append((d.frame, d.label, d.probs))
            if len(got) == 10:
                killed_stubs = srv._stubs()
                assert killed_stubs  # the python model's stub processes
                srv.kill()
                restarter.start()
        restarter.join(timeout=150)  # its readiness check may still be polling when the stream is done
        assert [g[:2] for g in got] == [x[:2] for x in local]
        np.testing.assert_allclose(np.stack([g[2] for g in got]), np.stack([x[2] for x in local]), atol=1e-5)
        gaps = [r for r in _records(tmp_path / "run.jsonl") if r["type"] == "gap"]
        assert len(gaps) == 1 and gaps[0]["recovered"] and gaps[0]["attempts"] >= 1
        assert "triton" in gaps[0]["reason"] and "replayed" in gaps[0]["reason"]
        assert st.summary.gaps == 1 and st.summary.decisions == len(local)
        assert all(not p.is_running() for p in killed_stubs)  # a killed server leaves no stub behind
    finally:
        srv.close()
        for r in restarted:
            r.close()


def test_end_frees_the_sequence_slot(deploy_assets, tmp_path):
    """A model with one sequence slot serves streams one after the other without waiting for the
    idle timeout (60 s): closing a stream sends END, which frees its slot and state at once."""
    import time

    import edgevt
    from edgevt.deploy.triton import write_triton_repository

    bundle = deploy_assets["tsm_tinycnn"]
    repo = write_triton_repository(bundle, tmp_path / "repo", platforms=("python",), max_streams=1)
    with triton_server.TritonServer(repo.path, [repo.name]) as srv:
        url = f"triton://{srv.url}/{repo.name}"
        for _ in range(3):
            t0 = time.monotonic()
            n = sum(1 for _ in edgevt.stream(deploy_assets["video"], bundle, backend=url, drop="none", max_frames=30))
            assert n == 30 - deploy_assets["spec"].num_frames + 1
            assert time.monotonic() - t0 < 30
