"""Events from smoothed scores, with hysteresis.

A class becomes *active* when its smoothed score reaches ``onset`` and stays active until the
score falls below ``offset`` (< onset), so a score hovering around one threshold does not
flicker. An activation shorter than ``min_frames`` source frames is discarded. Each event is
reported twice: ``start`` once it has lasted ``min_frames`` (so a live consumer learns early),
and ``end`` with its full extent: start/end source frame, start/end timestamps, peak score.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from edgevt.errors import EdgevtError


@dataclass
class Event:
    label: str
    phase: str  # start | end
    start_frame: int
    end_frame: int
    start_time: float  # capture time (unix seconds) of the first frame of the event
    end_time: float
    start_media_time: float  # position in the source (files), seconds
    end_media_time: float
    peak_score: float
    decisions: int

    def to_dict(self) -> dict:
        d = asdict(self)
        d["type"] = "event"
        return d


@dataclass
class _Active:
    start_frame: int
    start_time: float
    start_media_time: float
    peak: float
    decisions: int = 1
    announced: bool = False
    last: tuple = field(default=(0, 0.0, 0.0))  # (frame, time, media time) of the last decision above offset


class EventDetector:
    def __init__(self, labels: list[str], onset: float = 0.6, offset: float = 0.4, min_frames: int = 8,
                 ignore: tuple[str, ...] = ()):
        if not 0 < offset <= onset <= 1:
            raise EdgevtError(f"event thresholds need 0 < offset <= onset <= 1 (got onset={onset}, offset={offset})")
        if min_frames < 1:
            raise EdgevtError(f"--min-event-frames {min_frames}: must be >= 1")
        self.labels = list(labels)
        self.onset, self.offset, self.min_frames = onset, offset, min_frames
        self.ignore = set(ignore)  # e.g. a background class that should not raise events
        self._active: dict[int, _Active] = {}

    def update(self, scores, frame: int, time: float, media_time: float = 0.0) -> list[Event]:
        """Feed one decision's smoothed scores (frame = newest source frame); returns new events."""
        out: list[Event] = []
        for c, label in enumerate(self.labels):
            if label in self.ignore:
                continue
            s = float(scores[c])
            a = self._active.get(c)
            if a is None:
                if s >= self.onset:
                    self._active[c] = a = _Active(frame, time, media_time, s, last=(frame, time, media_time))
                    self._maybe_announce(c, a, out)
                continue
            if s < self.offset:
                self._finish(c, out)
                continue
            a.peak = max(a.peak, s)
            a.decisions += 1
            a.last = (frame, time, media_time)
            self._maybe_announce(c, a, out)
        return out

    def _maybe_announce(self, c: int, a: _Active, out: list[Event]) -> None:
        if not a.announced and a.last[0] - a.start_frame + 1 >= self.min_frames:
            a.announced = True
            out.append(self._event(c, a, "start"))

    def _event(self, c: int, a: _Active, phase: str) -> Event:
        f, t, m = a.last
        return Event(self.labels[c], phase, a.start_frame, f, a.start_time, t, a.start_media_time, m,
                     a.peak, a.decisions)

    def _finish(self, c: int, out: list[Event]) -> None:
        a = self._active.pop(c)
        if a.announced:  # shorter activations never became events
            out.append(self._event(c, a, "end"))

    def flush(self) -> list[Event]:
        """End every active event (end of stream)."""
        out: list[Event] = []
        for c in list(self._active):
            self._finish(c, out)
        return out

    @property
    def active(self) -> list[str]:
        return [self.labels[c] for c, a in self._active.items() if a.announced]
