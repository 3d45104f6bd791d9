import threading
import time

import numpy as np
import pytest

from edgevt.stream.ring import FrameRing


def _fill(ring, i):
    idx, out = ring.begin_write()
    out[...] = i % 256
    ring.commit(idx, source_index=i, capture_time=0.0, capture_clock=0.0)
    return idx


def test_every_window_is_a_contiguous_view_even_across_the_wrap():
    t, cap = 4, 7
    ring = FrameRing(cap, (2, 3, 3), t, block=False)
    buf = ring.frames
    for i in range(30):
        _fill(ring, i)
        assert ring.frames is buf  # preallocated once, never reallocated
        for start in range(max(0, i - cap + 1), i - t + 2):
            w = ring.window(start, t)
            assert w.flags["C_CONTIGUOUS"] and np.shares_memory(w, buf)  # a view, not a copy
            assert ring.window_valid(start, t)
            np.testing.assert_array_equal(w[:, 0, 0, 0], [(start + k) % 256 for k in range(t)])
    assert not ring.window_valid(30 - cap - 1, t)  # overwritten frames are not valid any more


def test_blocking_ring_waits_for_the_consumer():
    ring = FrameRing(6, (1,), 3, block=True)
    for i in range(6):
        _fill(ring, i)
    done = threading.Event()

    def writer():
        _fill(ring, 6)  # would overwrite frame 0, still needed
        done.set()

    th = threading.Thread(target=writer, daemon=True)
    th.start()
    time.sleep(0.3)
    assert not done.is_set()
    ring.set_low_water(1)  # frame 0 no longer needed
    assert done.wait(2)
    assert ring.newest == 6


def test_latest_ring_never_blocks_and_skips_the_held_window():
    t, cap = 3, 5
    ring = FrameRing(cap, (1,), t, block=False)
    for i in range(5):
        _fill(ring, i)
    ring.hold(2, 4)  # being inferred
    before = ring.window(2, t).copy()
    written = [_fill(ring, 5 + k) for k in range(4)]  # the reader keeps going
    np.testing.assert_array_equal(ring.window(2, t), before)  # held frames untouched
    assert ring.window_valid(2, t)
    assert ring.skipped_slots > 0 and written[-1] > 8  # indices of held slots were skipped
    ring.release()
    newest = ring.newest
    assert ring.window_valid(newest - 1, 2) or ring.skipped_slots


def test_capacity_must_exceed_window():
    with pytest.raises(ValueError):
        FrameRing(4, (1,), 4)


def test_try_hold_checks_and_holds_atomically():
    ring = FrameRing(5, (1,), 3, block=False)
    for i in range(4):
        _fill(ring, i)
    assert not ring.try_hold(3, 3)  # frames 4, 5 not written yet
    assert ring.try_hold(1, 3)
    for i in range(4, 8):
        _fill(ring, i)  # comes round to the held slots and skips them
    assert ring.window_valid(1, 3) and ring.skipped_slots == 3
    ring.release()
    assert not ring.try_hold(-1, 3)
