"""The streaming loop: source -> reader thread -> ring -> window / incremental / stateful -> backend
-> softmax -> smoothing -> events -> sinks.

``stream(source, model)`` returns a ``Stream``; iterate it for ``Decision`` records
(``for d in edgevt.stream("cam.mp4", "bundle/")``); ``Stream.summary`` holds fps, decisions/s,
drops and latency percentiles once it has ended (or at any time, so far).

Forms (``form=``; default: the bundle's ClipSpec ``streaming``, else ``window``):

- ``window``: every ``stride`` ring frames, the last T frames go to the model as one zero-copy
  view of the ring.
- ``incremental``: each new frame goes once through the encoder; its embedding lands in a
  preallocated ring of embeddings; every ``stride`` frames the head runs on the last T.
- ``stateful``: each new frame goes once through the per-frame TSM model with its shift buffers
  fed back; every ``stride`` frames the head classifies the last T embeddings.

Ring indices count the frames the reader kept (every ``frame_stride``-th source frame), so a
window of T consecutive ring frames is exactly a dense clip of the ClipSpec.

Drop policies: ``none`` processes every decision point (the reader waits); ``latest`` jumps to
the newest decision point when inference is behind and counts the skipped ones (``dropped``).
Latency of a decision = the time it is ready minus the capture time of the newest frame it
used (when the reader took it off the source, before decoding), so it includes decode, queueing,
inference and post-processing.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgevt.backends.base import GapEvent
from edgevt.bundle import FORM_ROLES, artifact_key, check_form
from edgevt.errors import EdgevtError
from edgevt.spec import ClipSpec
from edgevt.stream.events import EventDetector
from edgevt.stream.ring import FrameRing
from edgevt.stream.smoothing import Smoother, softmax
from edgevt.stream.sources import FrameReader, parse_source

DROPS = ("latest", "none")


# -- records ----------------------------------------------------------------------------------------
@dataclass
class Decision:
    index: int  # decision number in this run
    frame: int  # source frame number of the newest frame used
    first_frame: int  # source frame number of the oldest frame in the window
    capture_time: float  # unix time the newest frame was taken off the source
    decision_time: float  # unix time the decision was ready
    latency: float  # seconds from capture of the newest frame to the decision
    media_time: float  # position of the newest frame in the source (files), seconds
    stages: dict  # seconds: decode (newest frame), preprocess, inference, post
    probs: np.ndarray  # softmax of the model's logits
    scores: np.ndarray  # smoothed probabilities
    label: str  # argmax of the smoothed scores
    score: float
    events: list = field(default_factory=list)  # Events that started/ended with this decision
    gaps: list = field(default_factory=list)  # source gaps (reconnects) reported since the last decision
    dropped: int = 0  # decision points skipped so far (drop latest)
    segment: int = 0  # source segment: 0, then +1 after every reconnect gap (no window crosses a gap)
    image: np.ndarray | None = None  # the newest frame (a view into the ring: valid until the next decision)

    def to_dict(self, labels: list[str] | None = None) -> dict:
        d = {"type": "decision", "index": self.index, "frame": self.frame, "first_frame": self.first_frame,
             "capture_time": round(self.capture_time, 6), "decision_time": round(self.decision_time, 6),
             "latency_ms": round(self.latency * 1e3, 3), "media_time": round(self.media_time, 4),
             "stages_ms": {k: round(v * 1e3, 3) for k, v in self.stages.items()},
             "label": self.label, "score": round(self.score, 5), "dropped": self.dropped, "segment": self.segment}
        if labels:
            d["scores"] = {lab: round(float(s), 5) for lab, s in zip(labels, self.scores)}
            d["probs"] = {lab: round(float(p), 5) for lab, p in zip(labels, self.probs)}
        return d


class LatencyHistogram:
    """Fixed-size log histogram (0.5% bins from 10 us to 1000 s): percentiles over runs of any
    length in constant memory; exact min/max/mean."""

    RATIO = 1.005
    LOW = 1e-5

    def __init__(self) -> None:
        self.bins = np.zeros(int(math.log(1e8) / math.log(self.RATIO)) + 2, np.int64)
        self.count, self.total, self.min, self.max = 0, 0.0, math.inf, 0.0

    def add(self, seconds: float) -> None:
        i = 0 if seconds <= self.LOW else min(len(self.bins) - 1,
                                               1 + int(math.log(seconds / self.LOW) / math.log(self.RATIO)))
        self.bins[i] += 1
        self.count += 1
        self.total += seconds
        self.min, self.max = min(self.min, seconds), max(self.max, seconds)

    def percentile(self, q: float) -> float:
        if not self.count:
            return float("nan")
        rank = q / 100 * (self.count - 1)
        i = int(np.searchsorted(np.cumsum(self.bins), rank, side="right"))
        upper = self.LOW * self.RATIO ** i  # upper edge of bin i
        return float(min(max(upper / math.sqrt(self.RATIO), self.min), self.max))

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else float("nan")


@dataclass
class StreamSummary:
    source: str
    form: str
    drop: str
    stride: int
    frames: int = 0  # frames the reader kept (decoded)
    source_frames: int = 0  # frames taken off the source (including frame_stride skips)
    decisions: int = 0
    dropped: int = 0  # decision points skipped (drop latest)
    skipped_frames: int = 0  # frames never encoded (per-frame forms under drop latest)
    gaps: int = 0
    wall_s: float = 0.0
    fps: float = 0.0  # kept frames per second of wall time
    decisions_per_s: float = 0.0
    latency_ms: dict = field(default_factory=dict)  # p50 p95 p99 mean max
    stages_ms: dict = field(default_factory=dict)  # mean per decision
    ended: str = ""  # eof, truncated, source lost, gave up, max_frames, interrupted, stopped, error
    problem: str = ""  # one line when the source ended abnormally (truncated, source lost, gave up)
    warnings: list = field(default_factory=list)
    backend: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["type"] = "summary"
        return d


# -- model forms ------------------------------------------------------------------------------------
class _VectorRing:
    """Preallocated per-frame vectors (embeddings or logits) with the same mirror trick as FrameRing."""

    def __init__(self, window: int, dim: int, dtype=np.float32):
        self.window, self.capacity = window, 2 * window
        self.data = np.zeros((self.capacity + window - 1, dim), dtype)

    def put(self, index: int, vec: np.ndarray) -> None:
        s = index % self.capacity
        self.data[s] = vec
        if s < self.window - 1:
            self.data[self.capacity + s] = vec

    def last(self, end: int) -> np.ndarray:
        s = (end - self.window + 1) % self.capacity
        return self.data[s:s + self.window]


def _output(backend, outputs: dict, preferred: str) -> np.ndarray:
    return outputs[preferred] if preferred in outputs else outputs[backend.output_names[0]]


class WindowForm:
    name = "window"
    per_frame = False

    def __init__(self, backends: dict, spec: ClipSpec):
        self.model = backends["model"]
        self.input = self.model.input_names[0]
        t, (h, w) = spec.num_frames, spec.size
        self.warmup_input = np.zeros((1, t, h, w, 3), np.uint8)

    def warmup(self) -> None:
        self.model.run({self.input: self.warmup_input})

    def decide(self, window: np.ndarray) -> np.ndarray:
        return _output(self.model, self.model.run({self.input: window[None]}), "logits")[0]

    def reset(self) -> None:
        """A new segment: the window holds no state (the loop starts the next window after the gap)."""


class _HeadOverEmbeddings:
    """Per-frame forms keep the last embeddings in a ring; the head classifies the last T."""

    per_frame = True

    def _init_head(self, head, dim: int, t: int) -> None:
        self.head, self.head_in, self.t = head, head.input_names[0], t
        self.vectors = _VectorRing(t, dim)
        self._head_batch = np.zeros((t, t, dim), np.float32)  # T-embedding windows, one per decision

    def reset(self) -> None:
        """A new segment: nothing to clear (the loop never lets a window reach back before it)."""

    def decide(self, ends: list[int]) -> np.ndarray:
        """Logits [len(ends), C]: the head once over the T-embedding windows ending at ``ends``."""
        if len(ends) == 1:
            x = self.vectors.last(ends[0])[None]  # a view, no copy
        else:
            for i, e in enumerate(ends):
                self._head_batch[i] = self.vectors.last(e)
            x = self._head_batch[:len(ends)]
        return _output(self.head, self.head.run({self.head_in: x}), "logits")


class IncrementalForm(_HeadOverEmbeddings):
    name = "incremental"

    def __init__(self, backends: dict, spec: ClipSpec):
        self.encoder = backends["encoder"]
        self.enc_in = self.encoder.input_names[0]
        h, w = spec.size
        self._probe = np.zeros((1, h, w, 3), np.uint8)
        dim = _output(self.encoder, self.encoder.run({self.enc_in: self._probe}), "embedding").shape[-1]
        self._init_head(backends["head"], dim, spec.num_frames)

    def warmup(self) -> None:
        self.encoder.run({self.enc_in: self._probe})
        self.decide([self.t - 1])

    def encode(self, first: int, frames: np.ndarray) -> None:
        emb = _output(self.encoder, self.encoder.run({self.enc_in: frames}), "embedding")
        for i, e in enumerate(emb):
            self.vectors.put(first + i, e)


class StatefulForm(_HeadOverEmbeddings):
    name = "stateful"

    def __init__(self, backends: dict, spec: ClipSpec):
        self.model = backends["stateful"]
        if not self.model.state:
            raise EdgevtError(f"{self.model.name}: the artifact declares no state buffers; "
                              "export the bundle with --forms stateful")
        self.frames_in = next(n for n in self.model.input_names if n not in self.model.state)
        self._zero_state = {t.name: np.zeros([d if isinstance(d, int) else 1 for d in t.shape], t.dtype)
                            for t in self.model.inputs if t.name in self.model.state}
        self.state = dict(self._zero_state)
        h, w = spec.size
        self._probe = np.zeros((1, h, w, 3), np.uint8)
        out = self.model.run({self.frames_in: self._probe, **self._zero_state})
        self._init_head(backends["head"], _output(self.model, out, "embedding").shape[-1], spec.num_frames)

    def warmup(self) -> None:
        self.model.run({self.frames_in: self._probe, **self._zero_state})
        self.decide([self.t - 1])

    def reset(self) -> None:
        """A new segment (after a source gap): the shift buffers start from zero again."""
        self.state = dict(self._zero_state)

    def encode(self, first: int, frames: np.ndarray) -> None:
        for i in range(len(frames)):  # one frame at a time: each needs the previous one's buffers
            out = self.model.run({self.frames_in: frames[i:i + 1], **self.state})
            for src, dst in self.model.state.items():
                self.state[src] = out[dst]
            self.vectors.put(first + i, _output(self.model, out, "embedding")[0])


FORM_CLASSES = {"window": WindowForm, "incremental": IncrementalForm, "stateful": StatefulForm}


# -- opening models -----------------------------------------------------------------------------------
def open_model(model, *, form: str | None = None, backend: str = "ort-cpu", precision: str = "fp32",
               spec: ClipSpec | None = None, **backend_options) -> tuple[dict, ClipSpec, str]:
    """-> ({role: Backend}, ClipSpec, form) from a bundle/checkpoint path, a Bundle, an open Backend
    (window form) or a {role: Backend} dict (``encoder``+``head`` or ``stateful``+``head``; needs ``spec``)."""
    from edgevt.backends import Backend, open_backend
    from edgevt.bundle import open_artifact

    if isinstance(model, (Backend, dict)):
        if isinstance(model, Backend) and model.state:
            raise EdgevtError("the stateful form needs two backends: pass {'stateful': ..., 'head': ...}")
        backends = {"model": model} if isinstance(model, Backend) else dict(model)
        spec = spec or getattr(next(iter(backends.values())), "spec", None)
        if spec is None:
            raise EdgevtError("stream(): pass spec= (a ClipSpec) with an already opened backend")
        if form is None:
            form = next(f for f, roles in FORM_ROLES.items() if set(roles) == set(backends))
        missing = set(FORM_ROLES[form]) - set(backends)
        if missing:
            raise EdgevtError(f"the {form} form needs backends for {', '.join(sorted(missing))}")
        return backends, spec, form
    if isinstance(model, (str, Path)) and not Path(model).exists():
        raise EdgevtError(f"{model}: no such bundle or checkpoint (export one with `edgevt export`)")
    art = open_artifact(model, verify=True)
    if art.kind == "onnx" or art.kind == "engine":
        p = art.path
        near = p.parent / "edgevt.json"
        raise EdgevtError(f"{p}: a bare {'ONNX file' if art.kind == 'onnx' else 'engine'} cannot stream (edgevt run "
                          "needs the ClipSpec and every form's artifacts): give the bundle folder "
                          + (f"{p.parent}" if near.exists() else "from `edgevt export`")
                          + " or a .pt checkpoint with --backend torch")
    bundle = art.bundle
    if backend.startswith("triton://"):  # the server runs the bundle's form; one remote backend streams to it
        remote = open_backend(backend, bundle if bundle is not None else model, form=form, precision=precision,
                              **backend_options)
        return {"model": remote}, remote.spec, remote.form
    spec = art.spec
    asked = precision
    if bundle is not None and backend != "torch":
        # int8: the flavour that fits the backend; from here on its explicit name (int8-cpu, ...) and
        # the stored precision its artifacts are keyed by
        stored, precision = bundle.resolve_precision(precision, backend)
    else:
        stored = precision
    if bundle is not None:
        form = bundle.stream_form(stored) if form is None else form
        target = bundle
    else:  # a checkpoint: only backends that open checkpoints (torch)
        form = form or "window"
        target = model
    check_form(form)
    if bundle is not None:
        have = [k for r in FORM_ROLES[form] for k in [artifact_key(r, stored)] if k not in bundle.artifacts]
        if have and backend != "torch":
            if precision != "fp32" and bundle.has_form(form, "fp32"):
                how = (f"export with --precision {asked}" + (" --calib DIR (target-domain clips)"
                                                              if asked.startswith("int8") else "")
                       + (f" --forms {form}" if form != "window" else "") + " or run --precision fp32")
            else:
                how = f"export it with --forms {form}" if form != "window" else "re-export the bundle"
            raise EdgevtError(f"{bundle.path}: no {' / '.join(have)} artifact for the {form} form; {how} "
                              f"(it has: {', '.join(sorted(bundle.artifacts))})")
    backends = {}
    try:
        for role in FORM_ROLES[form]:
            backends[role] = open_backend(backend, target, role=role, precision=precision, **backend_options)
    except BaseException:
        for b in backends.values():
            b.close()
        raise
    return backends, spec, form


# -- the loop -----------------------------------------------------------------------------------------
class Stream:
    """An iterable over decisions. Build it with ``stream()``; ``close()`` (or leaving a ``with``
    block, or finishing the iteration) stops the reader and flushes the sinks."""

    def __init__(self, source, model, *, form: str | None = None, backend: str = "ort-cpu",
                 precision: str = "fp32", spec: ClipSpec | None = None, stride: int = 1, drop: str | None = None,
                 smooth: str = "ema", smooth_alpha: float = 0.5, smooth_window: int = 5, onset: float = 0.6,
                 offset: float = 0.4, min_event_frames: int = 8, ignore_labels: tuple = (),
                 realtime: bool = False, reconnect: bool = False, backoff: tuple = (0.5, 8.0),
                 max_gap: float | None = None, max_frames: int | None = None, ring_capacity: int | None = None,
                 encode_batch: int | None = None, sinks: list | None = None, keep_image: bool = False,
                 backend_options=None):
        if stride < 1:
            raise EdgevtError(f"--stride {stride}: must be >= 1")
        self.info = parse_source(source)
        drop = drop or ("latest" if self.info.live else "none")
        if drop not in DROPS:
            raise EdgevtError(f"--drop {drop!r}: choose from {', '.join(DROPS)}")
        if encode_batch is not None and encode_batch < 1:
            raise EdgevtError(f"--encode-batch {encode_batch}: must be >= 1")
        if max_frames is not None and max_frames < 1:
            raise EdgevtError(f"--max-frames {max_frames}: must be >= 1 (omit it to read the whole source)")
        if max_gap is not None and not max_gap > 0:
            raise EdgevtError(f"--max-gap {max_gap}: must be > 0 seconds (omit it to retry forever)")
        threads = (backend_options or {}).get("threads")
        if threads is not None and threads < 1:
            raise EdgevtError(f"--threads {threads}: must be >= 1 (omit it for the library default)")
        self.warnings: list[str] = []
        if reconnect and not self.info.live:
            self.warnings.append(f"--reconnect applies to live sources (cameras, URLs, GStreamer); {source} is a "
                                 "file, read once to its end: --reconnect does nothing here")
        self.backends, self.spec, self.form_name = open_model(model, form=form, backend=backend, precision=precision,
                                                              spec=spec, **(backend_options or {}))
        t = self.spec.num_frames
        self.stride, self.drop = stride, drop
        # Per-frame forms encode the frames already waiting in one call (at most T): one frame at a
        # time when keeping up with a live source, batches when catching up or reading a file.
        self.encode_batch = t if encode_batch is None else min(encode_batch, t)
        remote = getattr(self.backends.get("model"), "stream_form", None)  # a served model keeps the form's state
        self.form = remote(self.spec, stride) if remote else FORM_CLASSES[self.form_name](self.backends, self.spec)
        self.labels = self.spec.labels or [str(i) for i in range(self.spec.num_classes)]
        self.smoother = Smoother(len(self.labels), smooth, smooth_alpha, smooth_window)
        self.events = EventDetector(self.labels, onset, offset, min_event_frames, tuple(ignore_labels))
        capacity = ring_capacity or t + max(2 * t, 32)
        self.ring = FrameRing(capacity, (*self.spec.size, 3), t, block=drop == "none")
        try:
            self.reader = FrameReader(self.info, self.ring, self.spec, realtime=realtime, reconnect=reconnect,
                                      backoff=backoff, max_gap=max_gap, max_frames=max_frames)
            if remote:
                self.form.gaps = self.reader.gaps  # server gaps go with the source's into the gap records
        except BaseException:
            for b in self.backends.values():
                b.close()
            raise
        self.sinks = list(sinks or [])  # may be extended until iteration starts
        self._keep_image = keep_image
        self.latency = LatencyHistogram()
        self._stage_sums = {"decode": 0.0, "preprocess": 0.0, "inference": 0.0, "post": 0.0}
        self.summary = StreamSummary(str(self.info), self.form_name, drop, stride,
                                     backend={r: b.describe() for r, b in self.backends.items()})
        self._closed = False
        self._stop_reason = ""
        self._started = False
        self._t0 = 0.0
        self.segment = 0  # +1 after each recovered source gap
        self._segment_starts: list[int] = []  # ring indices where a new segment begins, not yet reached
        self._gaps_since_decision: list[GapEvent] = []  # for the next decision's ``gaps``
        self._unwritten_gaps: list[GapEvent] = []  # reported by the reader, not yet reached by the loop

    # -- public ------------------------------------------------------------------------------------
    def __iter__(self):
        if self._started:
            raise EdgevtError("a Stream can be iterated once; call stream() again")
        self._started = True
        try:
            self.keep_image = self._keep_image or any(getattr(s, "needs_image", False) for s in self.sinks)
            self.form.warmup()
            start = {"type": "start", "source": str(self.info), "form": self.form_name, "drop": self.drop,
                     "stride": self.stride, "spec": self.spec.to_dict(), "backend": self.summary.backend,
                     "ring": {"capacity": self.ring.capacity, "bytes": self.ring.nbytes}}
            for s in self.sinks:
                s.start(start)
            self._t0 = time.perf_counter()
            self.reader.start()
            loop = self._per_frame_loop if self.form.per_frame else self._window_loop
            yield from loop()
            if self.reader.error is not None:
                raise self.reader.error
        except KeyboardInterrupt:
            self._stop_reason = "interrupted"
            raise
        finally:
            self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self, reason: str | None = None) -> None:
        """Stop the reader, end open events, flush and close every sink (idempotent).
        reason: why the run ended, for the summary (default: what the reader saw, e.g. eof).
        Every sink is closed even if one fails; the first failure is raised afterwards."""
        if reason and not self._stop_reason:
            self._stop_reason = reason
        if self._closed:
            return
        self._closed = True
        self.reader.stop()
        if self.reader.is_alive():
            self.reader.join(timeout=5)
        ended = self.events.flush()
        self._take_gaps()
        gaps, self._unwritten_gaps = self._unwritten_gaps, []
        self._finish_summary()
        error: BaseException | None = None
        try:
            for s in self.sinks:
                try:
                    for g in gaps:
                        s.gap(g)
                    for e in ended:
                        s.event(e)
                    s.close(self.summary)
                except BaseException as e:  # the other sinks still get closed
                    error = error or e
        finally:
            for b in self.backends.values():
                b.close()
        if error is not None:
            raise error

    # -- gaps and segments ---------------------------------------------------------------------------
    def _take_gaps(self) -> None:
        """Collect the gaps the reader reported; a recovered one marks where a new segment starts."""
        while self.reader.gaps:
            g = self.reader.gaps.popleft()
            self.summary.gaps += 1
            self._unwritten_gaps.append(g)
            if g.recovered and g.first_ring_index >= 0:
                self._segment_starts.append(g.first_ring_index)
        if any(g.first_ring_index < 0 for g in self._unwritten_gaps):
            self._emit_gaps(-1)

    def _emit_gaps(self, upto: int | None = None) -> None:
        """Hand the gaps before ring index ``upto`` (all: None) to the sinks, in stream order, and
        to the next decision. Gaps tied to no ring frame (a remote backend's retries, or a source
        that gave up) go at once."""
        keep = []
        for g in self._unwritten_gaps:
            if upto is None or g.first_ring_index <= upto:
                self._gaps_since_decision.append(g)
                for sink in self.sinks:
                    sink.gap(g)
            else:
                keep.append(g)
        self._unwritten_gaps = keep

    def _enter_segment(self, start: int, reset: bool = True) -> None:
        """The loop reached ring index ``start``, the first frame after a reconnect gap. Nothing from
        before it reaches a decision after it: windows and embedding histories restart (the loops),
        stateful buffers and smoothing are reset, open events end at their last decision before the
        gap; the gap record goes to the sinks here, between the two segments."""
        if reset:
            self.segment += 1
            reset = getattr(self.form, "reset", None)  # a remote form may keep its state elsewhere
            if reset is not None:
                reset()
            self.smoother.reset()
            for e in self.events.flush():
                for sink in self.sinks:
                    sink.event(e)
        self._emit_gaps(start)

    # -- loops -------------------------------------------------------------------------------------
    def _window_loop(self):
        t, stride, ring = self.spec.num_frames, self.stride, self.ring
        latest = self.drop == "latest"
        next_end = t - 1  # ring index of the newest frame of the next window
        starts = self._segment_starts
        while True:
            if not ring.wait_for(next_end):
                return
            self._take_gaps()
            if starts:
                # The next window (or, under drop latest, the newest) would reach a segment start:
                # windows before it are still whole; one across it is not -- restart after it.
                reach = ring.newest if latest else next_end
                crossed = [g for g in starts if g <= reach]
                if crossed:
                    g = crossed[-1]
                    del starts[:len(crossed)]
                    self._enter_segment(g, reset=next_end - t + 1 < g)
                    if next_end - t + 1 < g:
                        next_end = g + t - 1
                        continue
            end = next_end
            if latest:  # the newest complete decision point; the ones in between are dropped
                newest = ring.newest
                end = next_end + (newest - next_end) // stride * stride
                while end > next_end and not ring.try_hold(end - t + 1, t):
                    end -= stride
                if end == next_end and not ring.try_hold(end - t + 1, t):  # a hole left by the reader
                    self.summary.dropped += 1
                    next_end = end + stride
                    continue
                self.summary.dropped += (end - next_end) // stride
            t_pre = time.perf_counter()
            window = ring.window(end - t + 1, t)
            t_inf = time.perf_counter()
            logits = self.form.decide(window)
            t_post = time.perf_counter()
            d = self._decide(logits, end, int(ring.source_index[ring.slot(end - t + 1)]), t_post - t_inf, t_inf - t_pre,
                             t_post)
            yield d  # the window stays protected while the caller looks at the decision (and its image)
            if latest:
                ring.release()
            else:
                ring.set_low_water(end + stride - t + 1)
            next_end = end + stride

    def _per_frame_loop(self):
        """Encode each frame once, up to ``encode_batch`` waiting frames per call. Under drop latest
        a form more than ``encode_batch`` frames behind jumps to the newest ones: the skipped frames
        are never encoded (counted), and a decision covers the last T *processed* frames -- when it
        keeps up these are consecutive and the result is the same as drop none; when it cannot, the
        model sees the stream at a lower frame rate. The decisions of a batch share one head call;
        its encode + head time is split evenly among them (``stages["inference"]``). A batch never
        crosses a segment start (a reconnect gap); decision points count from the segment's first frame."""
        t, stride, ring, form = self.spec.num_frames, self.stride, self.ring, self.form
        latest = self.drop == "latest"
        nxt = 0  # ring index of the next frame to process
        done = 0  # frames processed so far (index into the form's vector ring)
        base = 0  # value of ``done`` when the current segment began
        starts = self._segment_starts
        first_frames = np.zeros(form.vectors.capacity, np.int64)  # source frame of each processed vector
        while True:
            if not ring.wait_for(nxt):
                return
            self._take_gaps()
            newest = ring.newest
            if latest and newest - nxt + 1 > self.encode_batch:
                start = newest - self.encode_batch + 1
                self.summary.skipped_frames += start - nxt
                nxt = start
            if starts and starts[0] <= nxt:  # reached (or jumped past) a segment start
                g = starts[0]
                while starts and starts[0] <= nxt:
                    g = starts.pop(0)
                self._enter_segment(g, reset=done > base)
                base = done
            k = min(self.encode_batch, newest - nxt + 1)
            if starts and nxt + k > starts[0]:
                k = starts[0] - nxt  # the frames before the gap first; the segment restarts at it
            if not (ring.try_hold(nxt, k) if latest else ring.window_valid(nxt, k)):
                # latest: the reader left a hole here (it skipped a held slot); take the newest frame
                self.summary.skipped_frames += max(0, ring.newest - nxt)
                nxt = ring.newest
                continue
            t_pre = time.perf_counter()
            frames = ring.window(nxt, k)
            for i in range(k):
                first_frames[(done + i) % len(first_frames)] = ring.source_index[ring.slot(nxt + i)]
            t_inf = time.perf_counter()
            form.encode(done, frames)
            t_enc = time.perf_counter() - t_inf
            # decision points: after processed frame p (1-based count) with p - base >= T and (p - base - T) % stride == 0
            points = [p for p in range(done + 1, done + k + 1) if p - base >= t and (p - base - t) % stride == 0]
            if latest and len(points) > 1:
                self.summary.dropped += len(points) - 1
                points = points[-1:]
            if points:
                t_head = time.perf_counter()
                logits = form.decide([p - 1 for p in points])  # one head call for the whole batch
                t_post = time.perf_counter()
                inference = (t_enc + t_post - t_head) / len(points)  # the batch's cost, shared by its decisions
            for i, p in enumerate(points):
                yield self._decide(logits[i], nxt + (p - 1 - done), int(first_frames[(p - t) % len(first_frames)]),
                                   inference, (t_inf - t_pre) / len(points), t_post if i == 0 else time.perf_counter())
            done += k
            nxt += k
            if latest:
                ring.release()
            else:
                ring.set_low_water(nxt)

    # -- per decision -------------------------------------------------------------------------------
    def _decide(self, logits: np.ndarray, end: int, first_frame: int, inference: float, preprocess: float,
                t_post: float) -> Decision:
        """end: ring index of the newest frame used; first_frame: source frame number of the oldest."""
        ring = self.ring
        s = ring.slot(end)
        probs = softmax(logits)
        scores = self.smoother.update(probs)
        c = int(np.argmax(scores))
        frame = int(ring.source_index[s])
        events = self.events.update(scores, frame, float(ring.capture_time[s]), float(ring.media_time[s]))
        gaps, self._gaps_since_decision = self._gaps_since_decision, []
        d = Decision(index=self.summary.decisions, frame=frame, first_frame=first_frame,
                     capture_time=float(ring.capture_time[s]), decision_time=0.0, latency=0.0,
                     media_time=float(ring.media_time[s]),
                     stages={"decode": float(ring.decode_time[s]), "preprocess": preprocess, "inference": inference,
                             "post": 0.0},
                     probs=probs, scores=scores.copy(), label=self.labels[c], score=float(scores[c]), events=events,
                     gaps=gaps, dropped=self.summary.dropped, segment=self.segment,
                     image=ring.frames[s] if self.keep_image else None)
        now = time.perf_counter()
        d.latency = now - float(ring.capture_clock[s])
        d.decision_time = d.capture_time + d.latency
        d.stages["post"] = now - t_post
        # Counted before the sinks see it: a sink that fails on this decision (the JSONL may already
        # hold it) leaves a summary that agrees with what was written.
        self.summary.decisions += 1
        self.latency.add(d.latency)
        for k, v in d.stages.items():
            self._stage_sums[k] += v
        for sink in self.sinks:  # sinks see the decision's final timing; their own cost is not in it
            sink.decision(d)
            for e in events:
                sink.event(e)
        return d

    def _finish_summary(self) -> StreamSummary:
        s = self.summary
        s.wall_s = time.perf_counter() - self._t0 if self._t0 else 0.0
        s.frames, s.source_frames = self.reader.frames_kept, self.reader.frames_read
        s.fps = s.frames / s.wall_s if s.wall_s > 0 else 0.0
        s.decisions_per_s = s.decisions / s.wall_s if s.wall_s > 0 else 0.0
        h = self.latency
        if h.count:
            s.latency_ms = {"p50": h.percentile(50) * 1e3, "p95": h.percentile(95) * 1e3,
                            "p99": h.percentile(99) * 1e3, "mean": h.mean * 1e3, "max": h.max * 1e3}
            s.stages_ms = {k: v / h.count * 1e3 for k, v in self._stage_sums.items()}
        s.ended = self._stop_reason or self.reader.ended or "stopped"
        s.problem = "" if self._stop_reason else self.reader.problem
        t = self.spec.num_frames
        if self._started and s.decisions == 0 and not self._stop_reason and s.frames < t:
            self.warnings.append(f"{self.info.target}: only {s.frames} frame(s) after frame_stride "
                                 f"{self.spec.frame_stride}, fewer than the {t} a decision needs: no decision")
        s.warnings = list(self.warnings)
        return s

    def snapshot(self) -> StreamSummary:
        """The summary so far (for live displays)."""
        s = StreamSummary(**{**asdict(self.summary)})
        wall = time.perf_counter() - self._t0 if self._t0 else 0.0
        s.wall_s, s.frames, s.source_frames = wall, self.reader.frames_kept, self.reader.frames_read
        s.fps = s.frames / wall if wall > 0 else 0.0
        s.decisions_per_s = s.decisions / wall if wall > 0 else 0.0
        if self.latency.count:
            s.latency_ms = {"p50": self.latency.percentile(50) * 1e3, "p95": self.latency.percentile(95) * 1e3,
                            "p99": self.latency.percentile(99) * 1e3}
        return s


def stream(source, model, **options) -> Stream:
    """Run a video classifier over a stream; iterate the result for Decisions.

    source: a video file, camera index, rtsp/http URL or GStreamer pipeline (see
    edgevt.stream.sources). model: a bundle folder (or Bundle), a checkpoint (with
    ``backend="torch"``), an open Backend or a {role: Backend} dict (with ``spec=``).
    Options: see ``Stream`` (form, backend, precision, stride, drop, smoothing, events, sinks...).
    """
    return Stream(source, model, **options)
