"""A preallocated ring of uint8 frames that a reader thread fills and the inference loop reads.

Frame ``i`` (a ring index: the i-th frame the reader kept) lives in slot ``i % capacity``. Slots
``0 .. T-2`` are also written a second time at ``capacity + slot``, so any window of ``T``
consecutive frames is the plain slice ``frames[s : s + T]`` -- one contiguous array, no copy,
whatever its position in the ring. Nothing is allocated per frame: the reader decodes and
resizes straight into the slot that ``begin_write`` hands out.

Two ways to share the ring (``drop``):

- ``none`` (files): the reader blocks rather than overwrite a frame the loop still needs
  (``set_low_water``). Every window is processed; memory stays bounded by the capacity.
- ``latest`` (live sources): the reader never blocks, so the newest frame is always in the ring.
  Only the window being inferred is protected (``hold``): if the reader comes round to it, it
  skips those slots, leaving a hole that makes windows across it invalid until T new frames
  have arrived. ``window_valid`` checks every slot's sequence number, so a window is only ever
  read whole and unaltered.
"""
from __future__ import annotations

import threading

import numpy as np


class FrameRing:
    def __init__(self, capacity: int, frame_shape: tuple, window: int, dtype=np.uint8, block: bool = True):
        if window < 1 or capacity < window + 1:
            raise ValueError(f"ring capacity {capacity} must exceed the window length {window}")
        self.capacity = int(capacity)
        self.window_len = int(window)
        self.block = block
        # capacity + T - 1 slots: the mirror of slots 0..T-2 makes every window contiguous.
        self.frames = np.zeros((self.capacity + self.window_len - 1, *frame_shape), dtype)
        c = self.capacity
        self.seq = np.full(c, -1, np.int64)  # ring index held by each slot, -1 while being written
        self.source_index = np.zeros(c, np.int64)  # frame number in the source (before frame_stride)
        self.capture_time = np.zeros(c)  # time.time() when the frame was taken off the source
        self.capture_clock = np.zeros(c)  # time.perf_counter() at the same moment (for latency)
        self.media_time = np.zeros(c)  # position in the source, seconds (files); 0 if unknown
        self.decode_time = np.zeros(c)  # seconds spent decoding + resizing it
        self.written = 0  # next ring index the reader will use
        self.closed = False
        self.skipped_slots = 0  # holes left by the reader around a held window (drop latest)
        self._low_water = 0
        self._held: tuple[int, int] | None = None
        self._cond = threading.Condition()

    # -- reader side --------------------------------------------------------------------------------
    def begin_write(self) -> tuple[int, np.ndarray] | None:
        """Reserve the next slot: (ring index, the frame view to fill). None once closed."""
        c = self.capacity
        with self._cond:
            idx = self.written
            if self.block:
                while not self.closed and idx - c >= self._low_water:
                    self._cond.wait(0.1)
            else:
                while self._held is not None and self._is_held(idx % c):
                    idx += 1
                    self.skipped_slots += 1
            if self.closed:
                return None
            self.written = idx
            self.seq[idx % c] = -1  # invalid while being overwritten
            return idx, self.frames[idx % c]

    def _is_held(self, slot: int) -> bool:
        a, b = self._held
        return (slot - a) % self.capacity <= b - a

    def commit(self, idx: int, *, source_index: int, capture_time: float, capture_clock: float,
               media_time: float = 0.0, decode_time: float = 0.0) -> None:
        s = idx % self.capacity
        if s < self.window_len - 1:
            self.frames[self.capacity + s] = self.frames[s]
        with self._cond:
            self.source_index[s] = source_index
            self.capture_time[s] = capture_time
            self.capture_clock[s] = capture_clock
            self.media_time[s] = media_time
            self.decode_time[s] = decode_time
            self.seq[s] = idx
            self.written = idx + 1
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    # -- consumer side --------------------------------------------------------------------------------
    @property
    def newest(self) -> int:
        """Ring index of the newest committed frame (-1 before the first)."""
        return self.written - 1

    def wait_for(self, index: int, timeout: float | None = None) -> bool:
        """Block until frame ``index`` is committed (True) or the ring is closed / timeout (False)."""
        with self._cond:
            return self._cond.wait_for(lambda: self.written > index or self.closed, timeout) and self.written > index

    def window_valid(self, start: int, length: int) -> bool:
        if start < 0:
            return False
        with self._cond:
            for i in range(start, start + length):
                if self.seq[i % self.capacity] != i:
                    return False
            return True

    def window(self, start: int, length: int) -> np.ndarray:
        """Frames ``start .. start+length-1`` as one contiguous view [length, H, W, 3] (no copy)."""
        if length > self.window_len:
            raise ValueError(f"window of {length} frames is longer than the ring's {self.window_len}")
        s = start % self.capacity
        return self.frames[s:s + length]

    def slot(self, index: int) -> int:
        return index % self.capacity

    def try_hold(self, start: int, length: int) -> bool:
        """Check and protect a window in one step (no overwrite can slip in between): True if held."""
        if start < 0:
            return False
        with self._cond:
            if any(self.seq[i % self.capacity] != i for i in range(start, start + length)):
                return False
            self._held = (start, start + length - 1)
            return True

    def hold(self, start: int, end: int) -> None:
        """Protect frames start..end (inclusive) from the reader while they are being inferred."""
        with self._cond:
            self._held = (start, end)

    def release(self) -> None:
        with self._cond:
            self._held = None
            self._cond.notify_all()

    def set_low_water(self, index: int) -> None:
        """Blocking mode: frames before ``index`` are no longer needed and may be overwritten."""
        with self._cond:
            if index > self._low_water:
                self._low_water = index
                self._cond.notify_all()

    @property
    def nbytes(self) -> int:
        return self.frames.nbytes
