"""Backend registry: ``open_backend(name, artifact)`` and ``available_backends()``.

Backend modules register themselves on import; importing a backend module never imports its
heavy optional dependency (TensorRT, CUDA) -- that happens only when it is opened or checked.
"""
from __future__ import annotations

import importlib

from edgevt.backends.base import Backend, BackendEntry, TensorInfo, Timing
from edgevt.errors import EdgevtError

_REGISTRY: dict[str, BackendEntry] = {}
# Modules that register backends; each is imported lazily by the functions below.
_MODULES: list[str] = ["edgevt.backends.torch", "edgevt.backends.onnxruntime", "edgevt.backends.tensorrt"]


def register_backend(entry: BackendEntry) -> None:
    _REGISTRY[entry.name] = entry


def _load() -> None:
    for m in _MODULES:
        importlib.import_module(m)


def backend_names() -> list[str]:
    _load()
    return list(_REGISTRY)


def available_backends() -> list[tuple[str, bool, str]]:
    """(name, usable here, reason) for every registered backend."""
    _load()
    out = []
    for e in _REGISTRY.values():
        try:
            ok, reason = e.check()
        except Exception as ex:  # a broken optional install must not break `edgevt info`
            ok, reason = False, f"{type(ex).__name__}: {ex}"
        out.append((e.name, ok, reason))
    return out


def open_backend(name: str, artifact, **options) -> Backend:
    if name.startswith("triton://"):  # a model served by Triton: triton://HOST:PORT/MODEL (edgevt.backends.triton)
        from edgevt.backends.triton import open_triton
        return open_triton(name, artifact, **options)
    _load()
    if name not in _REGISTRY:
        raise EdgevtError(f"unknown backend {name!r}; choose from {', '.join(_REGISTRY) or 'none registered'}")
    entry = _REGISTRY[name]
    ok, reason = entry.check()
    if not ok:
        raise EdgevtError(f"backend {name} is not usable here: {reason}")
    return entry.opener(artifact, **options)


__all__ = ["Backend", "BackendEntry", "TensorInfo", "Timing", "register_backend", "available_backends",
           "open_backend", "backend_names"]
