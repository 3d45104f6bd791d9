"""Packages that are also their entry point: ``edgevt.stream(...)``, ``edgevt.adapt(...)``,
``edgevt.eval(...)`` call one function of the package without hiding the package itself."""
from __future__ import annotations

import sys
import types


def make_callable(module_name: str, fn) -> None:
    """Calling the package ``module_name`` calls ``fn`` (with its signature's arguments)."""

    class _CallablePackage(types.ModuleType):
        def __call__(self, *args, **kwargs):
            return fn(*args, **kwargs)

    _CallablePackage.__call__.__doc__ = fn.__doc__
    sys.modules[module_name].__class__ = _CallablePackage
