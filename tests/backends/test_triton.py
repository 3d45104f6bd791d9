"""The Triton client backend without a server: URLs, an unreachable server, a model that is not
edgevt's, and the retry path (backoff, sequence restart with replay, gap records) on a fake client."""
import subprocess
import sys
from collections import deque

import numpy as np
import pytest

from edgevt.backends.triton import RemoteSequenceForm, TritonBackend, parse_url
from edgevt.errors import EdgevtError

pytest.importorskip("tritonclient.grpc")


def test_parse_url():
    assert parse_url("triton://127.0.0.1:8001/cams") == ("127.0.0.1", 8001, "cams")
    assert parse_url("triton://[::1]:9/m_1") == ("::1", 9, "m_1")
    for bad in ("triton://host/m", "triton://h:80", "http://h:1/m", "triton://h:x/m"):
        with pytest.raises(EdgevtError, match="expected triton://HOST:PORT/MODEL"):
            parse_url(bad)


def test_unreachable_server_is_one_line(tiny_bundle, tmp_path):
    from edgevt.deploy.server import free_port

    video = tmp_path / "v.mp4"
    from edgevt.data.synth import make_stream_video

    make_stream_video(video, "target", 12, 32, seed=0)
    p = subprocess.run([sys.executable, "-m", "edgevt", "run", str(tiny_bundle), str(video), "--backend",
                        f"triton://127.0.0.1:{free_port()}/m", "--no-live", "--jsonl", str(tmp_path / "o.jsonl")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1
    assert "unreachable" in p.stderr and "start it" in p.stderr
    assert not (tmp_path / "o.jsonl").exists()


class FakeError(Exception):
    def __init__(self, msg, status="StatusCode.UNAVAILABLE"):
        super().__init__(msg)
        self._status = status

    def status(self):
        return self._status


class FakeClient:
    """Answers like the edgevt python model (logits = frame index of the newest frame in each window),
    failing the requests listed in ``fail``."""

    def __init__(self, cfg, fail=()):
        self.cfg, self.fail, self.calls, self.seen = cfg, list(fail), [], []

    def get_model_config(self, name, as_json=True, client_timeout=None):
        return {"config": self.cfg}

    def is_model_ready(self, name, client_timeout=None):
        return True


def _backend(spec, client, **kw):
    import tritonclient.grpc as grpcclient

    b = object.__new__(TritonBackend)
    b.url, b.host, b.port, b.model, b.address = "triton://h:1/m", "h", 1, "m", "h:1"
    b.spec, b.timeout, b.retry_for, b.backoff = spec, 1.0, kw.get("retry_for", 5.0), (0.0, 0.0)
    b.bundle_path, b.sequence_id, b.client, b._exc = "B", 7, client, FakeError
    b._infer_input, b._requested = grpcclient.InferInput, None
    b.started, b.requests, b.retries, b.gap_count, b.server_version = False, 0, 0, 0, ""
    b.state = {}
    b.reconnect = lambda: client.calls.append("reconnect")

    def infer(frames, decide, *, start, end=False, timeout=None):
        client.calls.append((len(frames), start))
        if client.fail:
            err = client.fail.pop(0)
            if err is not None:
                raise err
        return np.repeat(np.arange(len(frames), dtype=np.float32)[:, None], spec.num_classes, 1) + len(client.calls)

    b._infer = infer
    return b


def _edgevt_cfg(spec, form="window", dims=None):
    import json

    h, w = spec.size
    return {"input": [{"name": "FRAMES", "data_type": "TYPE_UINT8", "dims": dims or ["-1", str(h), str(w), "3"]},
                      {"name": "DECIDE", "data_type": "TYPE_UINT8", "dims": ["-1"]}],
            "parameters": {"edgevt_spec": {"string_value": json.dumps(spec.to_dict())},
                           "edgevt_form": {"string_value": form}}}


def test_model_checks(tiny_spec):
    b = _backend(tiny_spec, FakeClient({"input": [{"name": "frames", "data_type": "TYPE_UINT8",
                                                   "dims": ["4", "32", "32", "3"]}]}))
    with pytest.raises(EdgevtError, match=r"is not an edgevt sequence model \(inputs: frames TYPE_UINT8 \[4, 32, 32, 3\]"):
        b._check_model(None)
    b.client = FakeClient(_edgevt_cfg(tiny_spec, dims=["-1", "64", "64", "3"]))
    with pytest.raises(EdgevtError, match="takes FRAMES"):
        b._check_model(None)
    b.client = FakeClient(_edgevt_cfg(tiny_spec.replace(frame_stride=3)))
    with pytest.raises(EdgevtError, match="another bundle: ClipSpec frame_stride 3 vs 2"):
        b._check_model(None)
    b.client = FakeClient(_edgevt_cfg(tiny_spec, form="incremental"))
    assert b._check_model(None) == "incremental"
    with pytest.raises(EdgevtError, match="runs the incremental form, not --form stateful"):
        b._check_model("stateful")


def _frames(n, spec, start=0):
    return np.stack([np.full((*spec.size, 3), (start + i) % 256, np.uint8) for i in range(n)])


def test_retry_replays_and_records_a_gap(tiny_spec):
    t = tiny_spec.num_frames
    client = FakeClient({}, fail=[None, FakeError("[StatusCode.UNAVAILABLE] failed to connect"),
                                  FakeError("must specify the START flag", "StatusCode.INVALID_ARGUMENT"), None])
    b = _backend(tiny_spec, client)
    b.form = "window"
    form = RemoteSequenceForm(b, tiny_spec, stride=1)
    form.gaps = deque()
    form.encode(0, _frames(t, tiny_spec))  # first request: starts the sequence
    assert client.calls == [(t, True)]
    form.encode(t, _frames(2, tiny_spec, t))  # fails twice, then restarts with the last T-1 frames replayed
    assert client.calls[1:] == [(2, False), "reconnect", (t - 1 + 2, True), "reconnect", (t - 1 + 2, True)]
    assert sorted(form._logits) == [t - 1, t, t + 1]  # every decision point answered once
    (gap,) = form.gaps
    assert gap.recovered and gap.attempts == 2 and "replayed" in gap.reason and "START flag" in gap.reason
    assert b.gap_count == 1 and b.retries == 2


def test_refused_request_is_an_error_not_a_retry(tiny_spec):
    client = FakeClient({}, fail=[FakeError("unexpected shape for input 'FRAMES'", "StatusCode.INVALID_ARGUMENT")])
    b = _backend(tiny_spec, client)
    b.form = "window"
    form = RemoteSequenceForm(b, tiny_spec)
    with pytest.raises(EdgevtError, match="refused a request: unexpected shape"):
        form.encode(0, _frames(tiny_spec.num_frames, tiny_spec))
    assert client.calls == [(tiny_spec.num_frames, True)]


def test_gives_up_after_retry_for(tiny_spec, monkeypatch):
    import edgevt.backends.triton as tb

    clock = iter(range(0, 1000, 4))
    monkeypatch.setattr(tb.time, "time", lambda: float(next(clock)))
    monkeypatch.setattr(tb.time, "sleep", lambda s: None)
    client = FakeClient({}, fail=[FakeError("[StatusCode.UNAVAILABLE] failed to connect")] * 100)
    b = _backend(tiny_spec, client, retry_for=10.0)
    b.form = "window"
    form = RemoteSequenceForm(b, tiny_spec)
    with pytest.raises(EdgevtError, match="unreachable for 12 s"):
        form.encode(0, _frames(tiny_spec.num_frames, tiny_spec))
    (gap,) = form.gaps
    assert not gap.recovered and "gave up" in gap.reason
