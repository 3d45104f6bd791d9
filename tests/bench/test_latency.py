import numpy as np
import pytest

from edgevt.backends.base import Backend, TensorInfo, Timing
from edgevt.bench.latency import make_inputs, measure, sample_clips, time_backend
from edgevt.errors import EdgevtError


def test_measure_counts_and_warmup():
    calls = []
    samples, _ = measure(lambda: calls.append(1), warmup_s=0.0, runs=7)
    assert len(samples) == 7 and len(calls) == 8  # one warm-up call at least
    samples, _ = measure(lambda: None, warmup_s=0.0, duration_s=0.0, min_runs=5)
    assert len(samples) == 5
    with pytest.raises(EdgevtError):
        measure(lambda: None, runs=0)


class MatmulBackend(Backend):
    """A real (tiny) backend: a matrix product on uint8 frames; reports a copy/compute split."""

    name = "matmul"

    def __init__(self):
        super().__init__()
        self.inputs = [TensorInfo("frames", ("batch", 4, 8, 8, 3), "uint8")]
        self.outputs = [TensorInfo("logits", ("batch", 3), "float32")]
        self.w = np.random.default_rng(0).standard_normal((4 * 8 * 8 * 3, 3)).astype(np.float32)
        self.seen = []

    def run(self, inputs):
        x = inputs["frames"]
        self.seen.append(x)
        self.last_timing = Timing(h2d=1e-4, compute=2e-4, d2h=1e-4)
        return {"logits": x.reshape(len(x), -1).astype(np.float32) @ self.w}

    def describe(self):
        return {"backend": self.name}


def test_time_backend_uses_given_inputs(tiny_spec):
    be = MatmulBackend()
    inputs = make_inputs(be.inputs, 2, tiny_spec)
    stats, samples = time_backend(be, inputs, warmup_s=0, runs=5)
    assert stats.batch == 2 and stats.runs == 5 and len(samples) == 5
    assert stats.h2d_ms == pytest.approx(0.1) and stats.compute_ms == pytest.approx(0.2)
    assert all(x is be.seen[0] for x in be.seen)


def test_random_inputs_are_never_zero(tiny_spec):
    infos = [TensorInfo("frames", ("batch", 4, 32, 32, 3), "uint8"), TensorInfo("state", (1, 8), "float32")]
    x = make_inputs(infos, 3, tiny_spec)
    assert x["frames"].shape == (3, 4, 32, 32, 3) and x["frames"].dtype == np.uint8
    assert x["frames"].min() >= 1 and x["frames"].std() > 30
    assert x["state"].shape == (1, 8) and x["state"].dtype == np.float32


def test_real_clips_are_sampled_with_the_spec(motiondigits, tiny_spec):
    clips = sample_clips(motiondigits / "target" / "test", tiny_spec, 5)
    assert clips.shape == (5, 4, 32, 32, 3) and clips.dtype == np.uint8
    infos = [TensorInfo("frames", ("batch", 4, 32, 32, 3), "uint8")]
    x = make_inputs(infos, 4, tiny_spec, clips)
    np.testing.assert_array_equal(x["frames"], clips[:4])
