"""Frame sources and the reader thread that fills the ring.

A source is one string (or int) on the command line:

- a video file path (``clip.mp4``): not live; by default every window is processed (drop none);
- a camera index (``0``): V4L2 / the platform's camera API through OpenCV; live;
- an ``rtsp://``, ``rtmp://``, ``http(s)://`` URL: decoded by OpenCV's FFmpeg backend; live;
- a GStreamer pipeline ending in ``appsink`` (any string containing ``!``), e.g. a Jetson CSI camera::

      nvarguscamerasrc sensor-id=0 ! video/x-raw(memory:NVMM),width=1280,height=720,framerate=30/1 !
      nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! appsink drop=1

  This needs an OpenCV built with GStreamer (JetPack's system OpenCV is; the pip wheels are
  not: ``python -c "import cv2; print(cv2.getBuildInformation())"`` shows ``GStreamer: YES``).

The reader thread decodes each kept frame once (frames skipped by the ClipSpec's
``frame_stride`` are only grabbed, never decoded), converts and resizes it straight into the
ring slot, stamps it with its capture time, and reopens a live source with exponential backoff
when it stalls or drops (``reconnect``), reporting the gap.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edgevt.backends.base import GapEvent
from edgevt.data.video import MIN_FRAME_SIDE, resize_frame
from edgevt.errors import EdgevtError
from edgevt.spec import ClipSpec
from edgevt.stream.ring import FrameRing

URL_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")


@dataclass(frozen=True)
class SourceInfo:
    kind: str  # file | camera | url | gstreamer
    target: object  # path string, camera index or URL/pipeline string
    live: bool

    def __str__(self) -> str:
        return f"{self.kind}:{self.target}"


def parse_source(source) -> SourceInfo:
    """Classify a source string; files must exist (checked here, with a clear message)."""
    if isinstance(source, int):
        return SourceInfo("camera", source, True)
    s = str(source).strip()
    if s.isdigit():
        return SourceInfo("camera", int(s), True)
    if s.lower().startswith(URL_SCHEMES):
        return SourceInfo("url", s, True)
    if "!" in s:
        return SourceInfo("gstreamer", s, True)
    p = Path(s)
    if not p.exists():
        raise EdgevtError(f"{p}: no such video file (give a file, a camera index, an rtsp:// URL "
                          "or a GStreamer pipeline ending in appsink)")
    if p.is_dir():
        raise EdgevtError(f"{p}: is a folder; give one video file")
    return SourceInfo("file", str(p), False)


def check_frame_size(frame: np.ndarray, source) -> None:
    h, w = frame.shape[:2]
    if min(h, w) < MIN_FRAME_SIDE:
        raise EdgevtError(f"{source}: frames are {w}x{h} pixels, too small to classify (at least "
                          f"{MIN_FRAME_SIDE}x{MIN_FRAME_SIDE}); check the source's resolution")


def open_capture(info: SourceInfo, timeout: float | None = None,
                 read_timeout: float | None = None) -> cv2.VideoCapture:
    """Open a source. For URLs, ``timeout`` (seconds) bounds how long opening may block and
    ``read_timeout`` (default: the same) each read (FFmpeg's own default is 30 s, which would
    overrun a --max-gap deadline)."""
    if info.kind == "gstreamer":
        cap = cv2.VideoCapture(info.target, cv2.CAP_GSTREAMER)
    elif info.kind == "url":
        params = []
        if timeout is not None:
            read_timeout = timeout if read_timeout is None else read_timeout
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, max(100, int(timeout * 1000)),
                      cv2.CAP_PROP_READ_TIMEOUT_MSEC, max(100, int(read_timeout * 1000))]
        cap = cv2.VideoCapture(info.target, cv2.CAP_FFMPEG, params)
    else:
        cap = cv2.VideoCapture(info.target)
    if not cap.isOpened():
        cap.release()
        hint = {"gstreamer": "this OpenCV must be built with GStreamer (cv2.getBuildInformation())",
                "camera": "is a camera attached and free?",
                "url": "is the stream reachable?",
                "file": "unsupported format or corrupt file"}[info.kind]
        raise EdgevtError(f"{info}: cannot be opened ({hint})")
    return cap


class _OpenGap:
    def __init__(self, last_frame_wall: float, last_frame_clock: float, frames_read: int):
        self.wall, self.clock, self.frames_read = last_frame_wall, last_frame_clock, frames_read
        self.attempts, self.reason = 0, "no frame from source"

    def event(self, recovered: bool, first_ring_index: int = -1, reason: str | None = None) -> GapEvent:
        return GapEvent(self.wall, time.time(), self.frames_read, self.attempts, reason or self.reason, recovered,
                        first_ring_index, round(time.perf_counter() - self.clock, 3))


class FrameReader(threading.Thread):
    """Decode a source into a FrameRing on a background thread.

    realtime: pace a file at its own fps (to replay a recording as if it were a camera).
    reconnect: reopen a live source that fails, backing off from ``backoff[0]`` to ``backoff[1]``
    seconds; ``max_gap`` seconds without frames ends the run (None: retry forever). The deadline
    caps the backoff and every open/read attempt, so the reader gives up on time.

    ``ended`` says how the source ended: ``eof`` (a file read to its end), ``truncated`` (a file
    that ends before the frame count in its header: cut short or corrupt), ``source lost`` (a live
    source stopped and ``reconnect`` is off), ``gave up`` (no frames for ``max_gap`` seconds),
    ``max_frames``, ``stopped`` or ``error``; ``ok`` is False for the abnormal ones and ``problem``
    says what happened in one line.
    """

    # Read/open timeout for URL sources when no --max-gap bounds it: a stalled stream is noticed
    # (and reopened under --reconnect) after this long instead of FFmpeg's 30 s.
    STALL_TIMEOUT_S = 10.0

    def __init__(self, info: SourceInfo, ring: FrameRing, spec: ClipSpec, *, realtime: bool = False,
                 reconnect: bool = False, backoff: tuple[float, float] = (0.5, 8.0), max_gap: float | None = None,
                 max_frames: int | None = None):
        super().__init__(name="edgevt-reader", daemon=True)
        self.info, self.ring, self.spec = info, ring, spec
        self.realtime, self.reconnect, self.backoff, self.max_gap = realtime, reconnect, backoff, max_gap
        self.max_frames = max_frames
        self.cap = open_capture(info, self._timeout())  # open here so that a bad source fails in the caller's thread
        self.fps = float(self.cap.get(cv2.CAP_PROP_FPS) or 0.0)
        count = self.cap.get(cv2.CAP_PROP_FRAME_COUNT) if info.kind == "file" else 0
        self.expected_frames = int(count) if count and count > 0 else 0  # from the file's header; 0 unknown
        self.gaps: deque[GapEvent] = deque()  # drained by the loop
        self.frames_read = 0  # source frames taken off the source (including frame_stride skips)
        self.frames_kept = 0  # frames written to the ring
        self.error: BaseException | None = None
        self.ended = ""  # why the reader stopped: eof, truncated, source lost, gave up, max_frames, stopped, error
        self.problem = ""  # one line for an abnormal end (truncated, source lost, gave up)
        self._halt = threading.Event()

    @property
    def ok(self) -> bool:
        return self.ended not in ("truncated", "source lost", "gave up", "error")

    def _timeout(self, remaining: float | None = None) -> float | None:
        if self.info.kind != "url":
            return None
        t = self.STALL_TIMEOUT_S if self.max_gap is None else min(self.STALL_TIMEOUT_S, self.max_gap)
        return t if remaining is None else max(0.1, min(t, remaining))

    def stop(self) -> None:
        self._halt.set()
        self.ring.close()
        if self.ident is None and self.cap is not None:  # never started: release the source here
            self.cap.release()
            self.cap = None

    def run(self) -> None:
        try:
            self._loop()
        except BaseException as e:  # surfaced by the loop; never dies silently
            self.error = e
            self.ended = "error"
        finally:
            self.ring.close()
            if self.cap is not None:
                self.cap.release()

    def _end_of_source(self, gap: _OpenGap | None) -> None:
        if self.info.live:
            if gap is not None:
                self.ended = "gave up"
                self.problem = (f"{self.info}: no frames for {self.max_gap:g} s after {self.frames_read} frames "
                                f"({gap.attempts} reconnect attempts: {gap.reason}); gave up (--max-gap)")
            else:
                self.ended = "source lost"
                self.problem = (f"{self.info}: the source stopped delivering frames after {self.frames_read} "
                                "frames; pass --reconnect to reopen it with backoff")
            return
        missing = self.expected_frames - self.frames_read
        if self.expected_frames and missing > max(2, 0.01 * self.expected_frames):
            self.ended = "truncated"
            self.problem = (f"{self.info.target}: the video ends after {self.frames_read} of the "
                            f"{self.expected_frames} frames its header announces (cut short or corrupt)")
        else:
            self.ended = "eof"

    def _loop(self) -> None:
        h, w = self.spec.size
        rgb = self.spec.pixel_format == "RGB"
        raw: np.ndarray | None = None
        small = np.empty((h, w, 3), np.uint8)  # resized BGR frame before the channel swap
        k = self.spec.frame_stride
        start = time.perf_counter()
        fps = self.fps if self.fps > 0 else 25.0
        gap: _OpenGap | None = None  # set from a failed read until frames flow again
        last_wall, last_clock = time.time(), time.perf_counter()
        while not self._halt.is_set():
            if self.max_frames is not None and self.frames_kept >= self.max_frames:
                self.ended = "max_frames"
                return
            if self.realtime:  # a camera delivers frame n at start + n / fps
                delay = start + self.frames_read / fps - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            keep = self.frames_read % k == 0 or gap is not None  # the first frame after a gap is always kept
            t_wall, t0 = time.time(), time.perf_counter()
            if keep:
                ok, frame = self.cap.read(raw)
                if ok and frame is not None and (raw is None or frame.shape != raw.shape
                                                 or not np.shares_memory(frame, raw)):
                    check_frame_size(frame, self.info.target)
                    raw = frame  # first frame, or the source changed size: the new buffer is reused from now on
                ok = ok and frame is not None
            else:
                ok = self.cap.grab()  # frames between strides are never decoded
            if not ok:
                if self.info.live and self.reconnect:
                    if gap is None:
                        gap = _OpenGap(last_wall, last_clock, self.frames_read)
                    if self._reopen(gap):
                        continue
                    if self._halt.is_set():
                        break
                    self.gaps.append(gap.event(False, reason=f"gave up after {self.max_gap:g}s: {gap.reason}"))
                self._end_of_source(gap)
                return
            self.frames_read += 1
            last_wall, last_clock = t_wall, t0
            if not keep:
                continue
            t_read = time.perf_counter() - t0
            slot = self.ring.begin_write()  # may wait for the loop (drop none): not decode time
            if slot is None:
                self.ended = "stopped"
                return
            idx, out = slot
            if gap is not None:  # reported before the frame is committed: the loop sees the gap first
                self.gaps.append(gap.event(True, idx))
                gap = None
            t_put = time.perf_counter()
            if rgb:
                resize_frame(raw, (h, w), self.spec.resize, out=small)
                cv2.cvtColor(small, cv2.COLOR_BGR2RGB, dst=out)
            else:
                resize_frame(raw, (h, w), self.spec.resize, out=out)
            decode = t_read + time.perf_counter() - t_put
            media = self.cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0 if self.info.kind == "file" else t_wall
            self.ring.commit(idx, source_index=self.frames_read - 1, capture_time=t_wall, capture_clock=t0,
                             media_time=media, decode_time=decode)
            self.frames_kept += 1
        self.ended = "stopped"

    def _reopen(self, gap: _OpenGap) -> bool:
        """Reopen a failed live source with exponential backoff until it opens (True) or the
        --max-gap deadline, counted from the last frame, passes (False). Neither a backoff wait nor
        an open attempt runs past the deadline."""
        if self.cap is not None:
            self.cap.release()
            self.cap = None
        deadline = None if self.max_gap is None else gap.clock + self.max_gap
        delay = self.backoff[0] * 2 ** min(gap.attempts, 16)
        while not self._halt.is_set():
            remaining = None if deadline is None else deadline - time.perf_counter()
            if remaining is not None and remaining <= 0:
                return False
            wait = min(delay, self.backoff[1]) if remaining is None else min(delay, self.backoff[1], remaining)
            if self._halt.wait(wait):
                break
            remaining = None if deadline is None else deadline - time.perf_counter()
            if remaining is not None and remaining <= 0:
                return False
            gap.attempts += 1
            try:
                self.cap = open_capture(self.info, self._timeout(remaining), self._timeout())
                return True
            except EdgevtError as e:
                gap.reason = str(e)
                delay = min(delay * 2, self.backoff[1])
        return False
