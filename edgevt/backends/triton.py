"""A model served by Triton Inference Server: ``--backend triton://HOST:PORT/MODEL`` (gRPC).

The served model is the python model that ``edgevt deploy triton BUNDLE`` writes (protocol in
edgevt.deploy.triton): it keeps each camera's form state (frame window, embedding ring, TSM shift
buffers) keyed by the sequence id. The streaming loop therefore sends every processed frame once,
as one sequence per stream, and gets back the logits of the windows that end at its decision
points; several streams (threads or processes) share the server, each its own sequence.

The client side of the loop is always a per-frame form (``RemoteSequenceForm``), whatever form the
server runs: under ``--drop latest`` it skips the frames it cannot keep up with, like the local
incremental/stateful forms, also for a served window form. Under ``--drop none`` it makes exactly
the local loop's decisions.

Opening checks, each with a one-line error: the server answers, it has the model and the model is
ready, the model is an edgevt sequence model whose frames match the bundle's ClipSpec, and it was
emitted for this bundle (same ClipSpec and labels).

Server gone mid-stream: a request that fails because the server is unreachable (or restarted and
no longer knows the sequence) is retried with exponential backoff for up to ``retry_for`` seconds.
The retry restarts the sequence and replays the last T-1 frames first, so the window, embedding
ring and decisions resume where they stopped; the stateful form's shift buffers restart from zero
at the first replayed frame, so its first decisions after a gap can differ slightly. The gap
(start, end, attempts, reason) goes to the stream's gap records (the JSONL ``gap`` lines). No
decision is made from a failed request, so nothing already decided is lost or changed.
"""
from __future__ import annotations

import re
import secrets
import time
from types import SimpleNamespace

import numpy as np

from edgevt.backends.base import Backend, TensorInfo, Timing
from edgevt.errors import EdgevtError

HINT = "pip install 'edgevt[triton]'"
URL = re.compile(r"^triton://(?P<host>\[[^\]]+\]|[^:/]+):(?P<port>\d+)/(?P<model>[A-Za-z0-9_.-]+)/?$")
# A failure that a restarted / reachable-again server fixes; anything else is the request's fault.
TRANSIENT = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED", "unknown sequence", "START flag",
             "is not found", "not ready", "Socket closed", "failed to connect", "Connection reset", "unloaded")


def parse_url(url: str) -> tuple[str, int, str]:
    m = URL.match(url)
    if not m:
        raise EdgevtError(f"--backend {url!r}: expected triton://HOST:PORT/MODEL (the gRPC port, e.g. "
                          "triton://127.0.0.1:8001/mymodel)")
    return m["host"].strip("[]"), int(m["port"]), m["model"]


def _grpc():
    try:
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException
    except ImportError as e:
        raise EdgevtError(f"the triton backend needs tritonclient[grpc] ({e}): {HINT}") from None
    return grpcclient, InferenceServerException


def _msg(e: Exception) -> str:
    s = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return s[:240]


def _transient(e: Exception) -> bool:
    s = f"{getattr(e, 'status', lambda: '')() or ''} {e}"
    return any(t in s for t in TRANSIENT)


class TritonBackend(Backend):
    """One stream's connection to the served model: one sequence id, one form state on the server."""

    name = "triton"

    def __init__(self, url: str, spec, *, form: str | None = None, bundle_path=None, timeout: float = 30.0,
                 connect_timeout: float = 5.0, retry_for: float = 60.0, backoff: tuple = (0.25, 4.0),
                 sequence_id: int | None = None, **_ignored):
        super().__init__()
        grpcclient, self._exc = _grpc()
        self.url = url
        self.host, self.port, self.model = parse_url(url)
        self.address = f"{'[' + self.host + ']' if ':' in self.host else self.host}:{self.port}"
        self.spec, self.timeout, self.retry_for, self.backoff = spec, timeout, retry_for, backoff
        self.bundle_path = bundle_path
        self.sequence_id = int(sequence_id) if sequence_id else secrets.randbits(62) + 1
        self._infer_input = grpcclient.InferInput
        self._requested = grpcclient.InferRequestedOutput("LOGITS")
        self._new_client = grpcclient.InferenceServerClient
        try:
            self.client = self._new_client(self.address)
        except Exception as e:
            raise EdgevtError(f"triton server {self.address}: cannot create a gRPC client ({_msg(e)})") from None
        self._check_server(connect_timeout)
        self.form = self._check_model(form)
        h, w = spec.size
        self.inputs = [TensorInfo("FRAMES", (1, "frames", h, w, 3), "uint8"), TensorInfo("DECIDE", (1, "frames"), "uint8")]
        self.outputs = [TensorInfo("LOGITS", (1, "frames", spec.num_classes), "float32")]
        self.state = {}
        self.started = False  # the server holds this sequence
        self.requests = self.retries = 0
        self.gap_count = 0

    # -- opening checks ---------------------------------------------------------------------------------
    def _check_server(self, connect_timeout: float) -> None:
        try:
            live = self.client.is_server_live(client_timeout=connect_timeout)
        except Exception as e:
            raise EdgevtError(f"triton server {self.address} unreachable ({_msg(e)}); start it (see the README in "
                              "the repository from `edgevt deploy triton`) or check HOST:PORT (the gRPC port)") from None
        if not live:
            raise EdgevtError(f"triton server {self.address} answers but is not live; check its log")
        self.server_version = ""
        try:
            self.server_version = self.client.get_server_metadata(client_timeout=connect_timeout).version
        except Exception:
            pass

    def _check_model(self, form: str | None) -> str:
        import json

        try:
            ready = self.client.is_model_ready(self.model, client_timeout=self.timeout)
        except Exception:
            ready = False
        if not ready:
            try:
                index = self.client.get_model_repository_index(as_json=True).get("models", [])
            except Exception:
                index = []
            mine = [m for m in index if m.get("name") == self.model]
            if mine:
                why = mine[0].get("reason") or mine[0].get("state") or "not loaded"
                raise EdgevtError(f"triton server {self.address}: model {self.model!r} is not ready ({why[:200]}); "
                                  "check the server log (a CPU server loads only the python model)")
            names = sorted({m.get("name", "?") for m in index})
            raise EdgevtError(f"triton server {self.address} has no model {self.model!r} (it has: "
                              f"{', '.join(names) or 'none'}); check MODEL in --backend triton://HOST:PORT/MODEL")
        try:
            cfg = self.client.get_model_config(self.model, as_json=True, client_timeout=self.timeout)["config"]
        except Exception as e:
            raise EdgevtError(f"triton model {self.model!r} at {self.address}: cannot read its config ({_msg(e)})") \
                from None
        params = {k: (v or {}).get("string_value", "") for k, v in (cfg.get("parameters") or {}).items()}
        ins = {i["name"]: i for i in cfg.get("input", [])}
        h, w = self.spec.size
        if "FRAMES" not in ins or "DECIDE" not in ins or "edgevt_spec" not in params:
            shapes = ", ".join(f"{n} {i.get('data_type', '?')} {[int(d) for d in i.get('dims', [])]}"
                               for n, i in ins.items())
            raise EdgevtError(f"triton model {self.model!r} at {self.address} is not an edgevt sequence model "
                              f"(inputs: {shapes or 'none'}); point --backend at the python model that "
                              "`edgevt deploy triton BUNDLE` wrote")
        dims = [int(d) for d in ins["FRAMES"].get("dims", [])]
        if dims[-3:] != [h, w, 3] or ins["FRAMES"].get("data_type") != "TYPE_UINT8":
            raise EdgevtError(f"triton model {self.model!r} at {self.address} takes FRAMES "
                              f"{ins['FRAMES'].get('data_type')} {dims}, but the bundle's ClipSpec needs uint8 "
                              f"[-1, {h}, {w}, 3]; redeploy it with `edgevt deploy triton BUNDLE` or check MODEL")
        served = json.loads(params["edgevt_spec"])
        mine = self.spec.to_dict()
        if served.get("labels") != mine.get("labels"):
            raise EdgevtError(f"triton model {self.model!r} was emitted for another bundle: its labels "
                              f"{served.get('labels')} differ from {mine.get('labels')} in {self.bundle_path}; "
                              "redeploy with `edgevt deploy triton BUNDLE` or pass the bundle it was made from")
        diff = sorted(k for k in set(served) | set(mine) if json.dumps(served.get(k)) != json.dumps(mine.get(k)))
        if diff:
            raise EdgevtError(f"triton model {self.model!r} was emitted for another bundle: ClipSpec "
                              f"{', '.join(f'{k} {served.get(k)} vs {mine.get(k)}' for k in diff)} "
                              f"({self.bundle_path}); redeploy with `edgevt deploy triton BUNDLE`")
        served_form = params.get("edgevt_form", "window")
        if form and form != served_form:
            raise EdgevtError(f"triton model {self.model!r} runs the {served_form} form, not --form {form}; drop "
                              f"--form or redeploy with `edgevt deploy triton BUNDLE --form {form}`")
        return served_form

    # -- requests --------------------------------------------------------------------------------------
    def _infer(self, frames: np.ndarray, decide: np.ndarray, *, start: bool, end: bool = False,
               timeout: float | None = None) -> np.ndarray:
        f = self._infer_input("FRAMES", [1, *frames.shape], "UINT8")
        f.set_data_from_numpy(np.ascontiguousarray(frames)[None])
        d = self._infer_input("DECIDE", [1, len(decide)], "UINT8")
        d.set_data_from_numpy(np.ascontiguousarray(decide, np.uint8)[None])
        t0 = time.perf_counter()
        res = self.client.infer(self.model, [f, d], outputs=[self._requested], sequence_id=self.sequence_id,
                                sequence_start=start, sequence_end=end, client_timeout=timeout or self.timeout)
        self.last_timing = Timing(compute=time.perf_counter() - t0)
        self.requests += 1
        return res.as_numpy("LOGITS")[0]

    def reconnect(self) -> None:
        """A fresh channel: gRPC's own reconnect backoff would otherwise keep failing calls for seconds
        after the server is back."""
        old, self.client = self.client, None
        try:
            old.close()
        except Exception:
            pass
        try:
            self.client = self._new_client(self.address)
        except Exception:
            self.client = old

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One request of this backend's sequence (the first one starts it): FRAMES [k, H, W, 3] uint8 and
        DECIDE [k] -> LOGITS [k, C]. The streaming loop uses ``stream_form`` instead (retries, replay)."""
        frames, decide = inputs["FRAMES"], inputs.get("DECIDE", np.ones(len(inputs["FRAMES"]), np.uint8))
        try:
            out = self._infer(frames, decide, start=not self.started)
        except self._exc as e:
            raise EdgevtError(f"triton model {self.model!r} at {self.address}: {_msg(e)}") from None
        self.started = True
        return {"LOGITS": out}

    def stream_form(self, spec, stride: int = 1) -> "RemoteSequenceForm":
        return RemoteSequenceForm(self, spec, stride)

    def close(self) -> None:
        client = getattr(self, "client", None)
        if client is None:
            return
        if self.started:  # END frees the sequence's state (and its slot) on the server at once
            h, w = self.spec.size
            try:
                self._infer(np.zeros((0, h, w, 3), np.uint8), np.zeros(0, np.uint8), start=False, end=True,
                            timeout=2.0)
            except Exception:
                pass  # the server frees an idle sequence by itself
            self.started = False
        self.client = None
        try:
            client.close()
        except Exception:
            pass

    def describe(self) -> dict:
        d = {"backend": "triton", "url": self.url, "model": self.model, "form": self.form,
             "sequence_id": self.sequence_id, "device": f"triton server {self.address}"}
        if self.server_version:
            d["triton"] = self.server_version
        try:
            import tritonclient

            d["tritonclient"] = getattr(tritonclient, "__version__", "")
        except ImportError:
            pass
        return d


class RemoteSequenceForm:
    """The loop's per-frame form for a served model: each processed frame goes to the server once,
    in order, as this stream's sequence; ``decide`` returns the logits the server sent back for the
    decision points (the same points as the local loop: after frame p with p >= T, every ``stride``)."""

    per_frame = True

    def __init__(self, backend: TritonBackend, spec, stride: int = 1):
        from collections import deque

        self.b, self.t, self.stride = backend, spec.num_frames, stride
        self.name = backend.form
        self.vectors = SimpleNamespace(capacity=2 * self.t)  # the loop sizes its bookkeeping by this
        self._logits: dict[int, np.ndarray] = {}
        self._history = deque(maxlen=max(self.t - 1, 0))  # the last T-1 frames the server has seen
        self.gaps = deque()  # the loop points this at its gap records

    def warmup(self) -> None:
        """Nothing to warm here (a request would become part of the sequence); the server warmed up at load."""

    def encode(self, first: int, frames: np.ndarray) -> None:
        k = len(frames)
        ps = np.arange(first + 1, first + k + 1)
        decide = ((ps >= self.t) & ((ps - self.t) % self.stride == 0)).astype(np.uint8)
        logits = self._send(frames, decide)
        for i in np.flatnonzero(decide):
            self._logits[first + int(i)] = logits[i]
        self._history.extend(np.array(f) for f in frames)

    def decide(self, ends: list[int]) -> np.ndarray:
        return np.stack([self._logits.pop(e) for e in ends])

    def _send(self, frames: np.ndarray, decide: np.ndarray) -> np.ndarray:
        b = self.b
        failed_at, attempts, last, delay = None, 0, "", b.backoff[0]
        replay = False
        while True:
            try:
                if replay and self._history:
                    hist = np.stack(self._history)
                    out = b._infer(np.concatenate([hist, frames]),
                                   np.concatenate([np.zeros(len(hist), np.uint8), decide]), start=True)
                    out = out[len(hist):]
                else:
                    out = b._infer(frames, decide, start=not b.started or replay)
                b.started = True
                break
            except b._exc as e:
                if not _transient(e):
                    raise EdgevtError(f"triton model {b.model!r} at {b.address} refused a request: {_msg(e)}") \
                        from None
                last = _msg(e)
            except Exception as e:  # a broken connection can surface as a plain gRPC/OS error
                last = f"{type(e).__name__}: {_msg(e)}"
            now = time.time()
            if failed_at is None:
                failed_at = now
            attempts += 1
            replay = True  # the server may have lost the sequence: restart it with the recent frames
            if now - failed_at > b.retry_for:
                self._gap(failed_at, attempts, last, recovered=False)
                raise EdgevtError(f"triton server {b.address} unreachable for {now - failed_at:.0f} s ({last}); "
                                  "the stream stopped here (every decision made so far was written)")
            time.sleep(delay)
            delay = min(delay * 2, b.backoff[1])
            b.reconnect()
        if failed_at is not None:
            self._gap(failed_at, attempts, last, recovered=True)
        return out

    def _gap(self, start: float, attempts: int, reason: str, recovered: bool) -> None:
        from edgevt.backends.base import GapEvent

        b = self.b
        b.retries += attempts
        b.gap_count += 1
        what = (f"sequence restarted, last {len(self._history)} frames replayed" if recovered else "gave up")
        self.gaps.append(GapEvent(start_time=start, end_time=time.time(), after_source_frame=-1, attempts=attempts,
                                  reason=f"triton {b.address}/{b.model}: {reason}; {what}", recovered=recovered))


def open_triton(url: str, artifact=None, *, spec=None, form: str | None = None, precision: str = "fp32",
                **options) -> TritonBackend:
    """``open_backend("triton://HOST:PORT/MODEL", bundle)``: the bundle supplies the ClipSpec the served
    model must match (or pass ``spec=``)."""
    from pathlib import Path

    from edgevt.bundle import Bundle

    bundle_path = None
    if spec is None:
        if artifact is None:
            raise EdgevtError("the triton backend needs the bundle the repository was made from (for its ClipSpec)")
        bundle = artifact if isinstance(artifact, Bundle) else Bundle.load(Path(artifact), verify=False)
        spec, bundle_path = bundle.spec, bundle.path
    options.pop("role", None)
    options.pop("threads", None)
    return TritonBackend(url, spec, form=form, bundle_path=bundle_path or artifact, **options)
