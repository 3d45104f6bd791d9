"""Streaming inference: sources -> preallocated frame ring -> window/incremental/stateful forms ->
backend -> smoothing + event hysteresis -> sinks. Entry point: ``stream(source, model, ...)``."""
from edgevt.stream.loop import Decision, Stream, StreamSummary, open_model, stream

__all__ = ["Decision", "Stream", "StreamSummary", "open_model", "stream"]


# ``edgevt.stream`` is both this package and the entry point: ``edgevt.stream(source, model)``
# calls ``stream`` (a package attribute cannot be a plain function without hiding the package).
class _CallablePackage(__import__("types").ModuleType):
    def __call__(self, source, model, **options) -> Stream:
        return stream(source, model, **options)

    __call__.__doc__ = stream.__doc__


__import__("sys").modules[__name__].__class__ = _CallablePackage
