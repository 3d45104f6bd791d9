"""Streaming inference: sources -> preallocated frame ring -> window/incremental/stateful forms ->
backend -> smoothing + event hysteresis -> sinks. Entry point: ``stream(source, model, ...)``."""
from edgevt.stream.loop import Decision, Stream, StreamSummary, open_model, stream

__all__ = ["Decision", "Stream", "StreamSummary", "open_model", "stream"]


# ``edgevt.stream`` is both this package and the entry point: ``edgevt.stream(source, model)``.
from edgevt._callable import make_callable  # noqa: E402

make_callable(__name__, stream)
