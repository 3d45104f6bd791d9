"""One camera's stream state where the model runs (the Triton python model keeps one per CORRID).

``SequenceRunner.push(frames, decide)`` takes the sequence's next frames in order and returns the
logits of the window that ends at every frame marked in ``decide``. It runs the same form objects
as the local streaming loop (edgevt.stream.loop), over the same artifacts, so a stream through the
server decides exactly as the local loop does:

- window: the last T frames are kept; the window model runs once per marked frame;
- incremental / stateful: each frame is encoded once (stateful: with its shift buffers); the head
  classifies the last T embeddings of the marked frames in one call.
"""
from __future__ import annotations

import numpy as np

from edgevt.errors import EdgevtError


class SequenceRunner:
    def __init__(self, backends: dict, spec, form: str):
        from edgevt.stream.loop import FORM_CLASSES

        self.spec, self.form_name = spec, form
        self.t = spec.num_frames
        self.form = FORM_CLASSES[form](backends, spec)  # its own embedding ring / shift buffers
        self.count = 0  # frames pushed since the sequence started
        h, w = spec.size
        self._tail = np.zeros((0, h, w, 3), np.uint8)  # window form: the last T-1 frames

    def push(self, frames: np.ndarray, decide: np.ndarray) -> np.ndarray:
        k = len(frames)
        if frames.ndim != 4 or frames.shape[1:] != (*self.spec.size, 3) or frames.dtype != np.uint8:
            raise EdgevtError(f"FRAMES must be uint8 [k, {self.spec.size[0]}, {self.spec.size[1]}, 3], "
                              f"got {frames.dtype} {list(frames.shape)}")
        decide = np.asarray(decide).reshape(-1).astype(bool)
        if len(decide) != k:
            raise EdgevtError(f"DECIDE has {len(decide)} entries for {k} frames")
        ends = [self.count + i for i in np.flatnonzero(decide)]
        if ends and ends[0] < self.t - 1:
            raise EdgevtError(f"a decision at frame {ends[0]} of the sequence needs {self.t} frames; "
                              "start the sequence with enough frames")
        out = np.zeros((k, self.spec.num_classes), np.float32)
        if self.form_name == "window":
            buf = np.concatenate([self._tail, frames]) if len(self._tail) else frames
            base = self.count - len(self._tail)  # sequence index of buf[0]
            for e in ends:
                j = e - base
                out[e - self.count] = self.form.decide(buf[j - self.t + 1:j + 1])
            self._tail = buf[-(self.t - 1):].copy() if self.t > 1 else buf[:0].copy()
        else:
            self.form.encode(self.count, frames)
            for c in range(0, len(ends), self.t):  # the head batches at most T windows
                chunk = ends[c:c + self.t]
                out[np.asarray(chunk) - self.count] = self.form.decide(chunk)
        self.count += k
        return out
