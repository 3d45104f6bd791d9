"""Where decisions go: JSON Lines, an annotated video, a live terminal summary.

Every sink gets ``start(info)``, ``decision(d)``, ``event(e)``, ``gap(g)`` and ``close(summary)``;
the loop calls ``close`` on every sink however the run ends (end of file, Ctrl-C, SIGTERM, error),
so what was written is complete up to the last decision.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np

from edgevt.errors import EdgevtError


class Sink:
    needs_image = False

    def start(self, info: dict) -> None:
        pass

    def decision(self, d) -> None:
        pass

    def event(self, e) -> None:
        pass

    def gap(self, g) -> None:
        pass

    def close(self, summary) -> None:
        pass


class JsonlSink(Sink):
    """One JSON object per line: ``start``, then ``decision`` / ``event`` / ``gap`` records as they
    happen, ``summary`` at the end. Each line is flushed when written, so ``tail -f`` works and a
    killed run leaves every complete line readable (a reader should skip a partial last line)."""

    def __init__(self, path: str | Path, scores: bool = True):
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise EdgevtError(f"{self.path}: folder {self.path.parent} does not exist; create it first")
        if self.path.is_dir():
            raise EdgevtError(f"{self.path}: is a folder; give a file name for --jsonl")
        self.scores = scores
        self._f = open(self.path, "w", buffering=1)
        self._labels: list[str] = []

    def _write(self, rec: dict) -> None:
        self._f.write(json.dumps(rec, default=_jsonable) + "\n")
        self._f.flush()

    def start(self, info: dict) -> None:
        self._labels = info.get("spec", {}).get("labels", [])
        self._write(info)

    def decision(self, d) -> None:
        self._write(d.to_dict(self._labels if self.scores else None))

    def event(self, e) -> None:
        self._write(e.to_dict())

    def gap(self, g) -> None:
        self._write({"type": "gap", **asdict(g)})

    def close(self, summary) -> None:
        if self._f.closed:
            return
        self._write(summary.to_dict())
        self._f.close()


def _jsonable(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


# What VideoSink writes: mp4v in .mp4, MJPG in the others (OpenCV's FFmpeg writer knows these containers).
VIDEO_OUT_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov")


class VideoSink(Sink):
    """The newest frame of every decision, upscaled, with label, score and latency drawn on it.
    Written at ``fps`` (default: the decision rate cannot be known ahead; 25). The path, folder and
    frame rate are checked here, before the stream starts; the file appears only when complete."""

    needs_image = True

    def __init__(self, path: str | Path, fps: float = 25.0, min_side: int = 256, pixel_format: str = "RGB"):
        self.path = Path(path)
        if self.path.suffix.lower() not in VIDEO_OUT_EXTENSIONS:
            raise EdgevtError(f"{self.path}: --video-out needs one of {', '.join(VIDEO_OUT_EXTENSIONS)} "
                              f"(got {self.path.suffix or 'no extension'})")
        if not self.path.parent.is_dir():
            raise EdgevtError(f"{self.path}: folder {self.path.parent} does not exist; create it first")
        if self.path.is_dir():
            raise EdgevtError(f"{self.path}: is a folder; give a video file name")
        if not (fps > 0 and np.isfinite(fps)):
            raise EdgevtError(f"--video-fps {fps}: must be > 0")
        self.fps, self.min_side, self.pixel_format = fps, min_side, pixel_format
        self._writer = None
        self._canvas: np.ndarray | None = None
        self._tmp = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")

    def decision(self, d) -> None:
        img = d.image
        if img is None:
            return
        if self._writer is None:
            h, w = img.shape[:2]
            scale = max(1, int(np.ceil(self.min_side / min(h, w))))
            self._canvas = np.empty((h * scale, w * scale, 3), np.uint8)
            fourcc = cv2.VideoWriter_fourcc(*("mp4v" if self.path.suffix.lower() == ".mp4" else "MJPG"))
            self._writer = cv2.VideoWriter(str(self._tmp), fourcc, self.fps, (w * scale, h * scale))
            if not self._writer.isOpened():
                self._writer = None
                self._tmp.unlink(missing_ok=True)
                raise EdgevtError(f"{self.path}: OpenCV cannot write this video format; try a .avi path")
        canvas = self._canvas
        cv2.resize(img, (canvas.shape[1], canvas.shape[0]), dst=canvas, interpolation=cv2.INTER_NEAREST)
        if self.pixel_format == "RGB":
            cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR, dst=canvas)
        lines = [f"{d.label} {d.score:.2f}", f"latency {d.latency * 1e3:.1f} ms  frame {d.frame}"]
        for i, text in enumerate(lines):
            y = 22 + 22 * i
            cv2.putText(canvas, text, (8, y), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 3, cv2.LINE_AA)
            cv2.putText(canvas, text, (8, y), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
        self._writer.write(canvas)

    def close(self, summary) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
            if self._tmp.exists():
                self._tmp.replace(self.path)  # only a finished file gets the final name


class LiveSummary(Sink):
    """A rich live panel: frames, fps, decisions/s, drops, latency percentiles, current label and
    the events in progress. Refreshes at most ``refresh`` times a second."""

    def __init__(self, stream=None, refresh: float = 4.0, console=None):
        from rich.console import Console

        self.stream = stream  # the Stream, for its running snapshot
        self.console = console or Console(stderr=True)
        self.refresh = refresh
        self._live = None
        self._last = 0.0
        self._decision = None
        self._events: list = []

    def start(self, info: dict) -> None:
        from rich.live import Live

        self._info = info
        self._live = Live(self._render(), console=self.console, refresh_per_second=self.refresh, transient=False)
        self._live.start()

    def decision(self, d) -> None:
        self._decision = d
        now = time.perf_counter()
        if self._live is not None and now - self._last >= 1.0 / self.refresh:
            self._last = now
            self._live.update(self._render())

    def event(self, e) -> None:
        self._events = (self._events + [e])[-5:]

    def _render(self):
        from rich.table import Table

        t = Table(title="edgevt run", show_header=False, expand=False)
        t.add_column(style="bold")
        t.add_column()
        info = getattr(self, "_info", {})
        t.add_row("source", f"{info.get('source', '')} ({info.get('form', '')}, drop {info.get('drop', '')})")
        if self.stream is not None:
            s = self.stream.snapshot()
            t.add_row("frames", f"{s.frames}  ({s.fps:.1f} fps)")
            t.add_row("decisions", f"{s.decisions}  ({s.decisions_per_s:.1f}/s), dropped {s.dropped}, "
                                   f"skipped frames {s.skipped_frames}, gaps {s.gaps}")
            if s.latency_ms:
                t.add_row("latency", "p50 {p50:.1f} ms  p95 {p95:.1f} ms  p99 {p99:.1f} ms".format(**s.latency_ms))
        d = self._decision
        if d is not None:
            t.add_row("now", f"{d.label} {d.score:.2f}  (frame {d.frame}, {d.latency * 1e3:.1f} ms)")
        for e in self._events:
            t.add_row("event", f"{e.phase} {e.label} frames {e.start_frame}-{e.end_frame} peak {e.peak_score:.2f}")
        return t

    def close(self, summary) -> None:
        if self._live is not None:
            self._live.update(self._render())
            self._live.stop()
            self._live = None
