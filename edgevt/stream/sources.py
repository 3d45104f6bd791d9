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

from edgevt.data.video import resize_frame
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


def open_capture(info: SourceInfo) -> cv2.VideoCapture:
    if info.kind == "gstreamer":
        cap = cv2.VideoCapture(info.target, cv2.CAP_GSTREAMER)
    elif info.kind == "url":
        cap = cv2.VideoCapture(info.target, cv2.CAP_FFMPEG)
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


@dataclass
class GapEvent:
    """A live source stalled or disconnected; ``end_*`` is when frames flowed again (or the run ended)."""

    start_time: float
    end_time: float
    after_source_frame: int
    attempts: int
    reason: str
    recovered: bool


class FrameReader(threading.Thread):
    """Decode a source into a FrameRing on a background thread.

    realtime: pace a file at its own fps (to replay a recording as if it were a camera).
    reconnect: reopen a live source that fails, backing off from ``backoff[0]`` to ``backoff[1]``
    seconds; ``max_gap`` seconds without frames ends the run (None: retry forever).
    """

    def __init__(self, info: SourceInfo, ring: FrameRing, spec: ClipSpec, *, realtime: bool = False,
                 reconnect: bool = False, backoff: tuple[float, float] = (0.5, 8.0), max_gap: float | None = None,
                 max_frames: int | None = None):
        super().__init__(name="edgevt-reader", daemon=True)
        self.info, self.ring, self.spec = info, ring, spec
        self.realtime, self.reconnect, self.backoff, self.max_gap = realtime, reconnect, backoff, max_gap
        self.max_frames = max_frames
        self.cap = open_capture(info)  # open here so that a bad source fails in the caller's thread
        self.fps = float(self.cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.gaps: deque[GapEvent] = deque()  # drained by the loop
        self.frames_read = 0  # source frames taken off the source (including frame_stride skips)
        self.frames_kept = 0  # frames written to the ring
        self.error: BaseException | None = None
        self.ended = ""  # why the reader stopped: eof, stopped, gave up, error
        self._halt = threading.Event()

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

    def _loop(self) -> None:
        h, w = self.spec.size
        rgb = self.spec.pixel_format == "RGB"
        raw: np.ndarray | None = None
        small = np.empty((h, w, 3), np.uint8)  # resized BGR frame before the channel swap
        k = self.spec.frame_stride
        start = time.perf_counter()
        fps = self.fps if self.fps > 0 else 25.0
        while not self._halt.is_set():
            if self.max_frames is not None and self.frames_kept >= self.max_frames:
                self.ended = "max_frames"
                return
            if self.realtime:  # a camera delivers frame n at start + n / fps
                delay = start + self.frames_read / fps - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            keep = self.frames_read % k == 0
            t_wall, t0 = time.time(), time.perf_counter()
            if keep:
                ok, frame = self.cap.read(raw)
                if ok and (raw is None or frame.shape != raw.shape or not np.shares_memory(frame, raw)):
                    raw = frame  # first frame, or the source changed size: the new buffer is reused from now on
            else:
                ok = self.cap.grab()  # frames between strides are never decoded
            if not ok:
                if self.info.live and self.reconnect and self._reopen():
                    continue
                self.ended = "eof" if not self.info.live else "source lost"
                return
            self.frames_read += 1
            if not keep:
                continue
            t_read = time.perf_counter() - t0
            slot = self.ring.begin_write()  # may wait for the loop (drop none): not decode time
            if slot is None:
                self.ended = "stopped"
                return
            idx, out = slot
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

    def _reopen(self) -> bool:
        """Reopen a failed live source with exponential backoff; records the gap. False: give up."""
        t_start, wall_start = time.perf_counter(), time.time()
        self.cap.release()
        delay, attempts, reason = self.backoff[0], 0, "no frame from source"
        while not self._halt.is_set():
            if self.max_gap is not None and time.perf_counter() - t_start > self.max_gap:
                self.gaps.append(GapEvent(wall_start, time.time(), self.frames_read, attempts,
                                          f"gave up after {self.max_gap:.0f}s: {reason}", False))
                return False
            self._halt.wait(delay)
            attempts += 1
            try:
                cap = open_capture(self.info)
            except EdgevtError as e:
                reason = str(e)
                delay = min(delay * 2, self.backoff[1])
                continue
            self.cap = cap
            self.gaps.append(GapEvent(wall_start, time.time(), self.frames_read, attempts, reason, True))
            return True
        self.cap = None
        return False
