"""Range checks for command-line values, shared by the verbs: a bad value is a one-line error that
names the option, before any work starts (instead of being accepted silently or failing later)."""
from __future__ import annotations

from edgevt.errors import EdgevtError


def at_least(option: str, value, minimum, hint: str = "") -> None:
    """``value`` is None (not given) or >= ``minimum``."""
    if value is not None and value < minimum:
        raise EdgevtError(f"{option} {value}: must be >= {minimum}" + (f" ({hint})" if hint else ""))


def positive(option: str, value, hint: str = "") -> None:
    """``value`` is None (not given) or > 0."""
    if value is not None and not value > 0:
        raise EdgevtError(f"{option} {value}: must be > 0" + (f" ({hint})" if hint else ""))


def threads(value) -> None:
    at_least("--threads", value, 1, "omit it for the library default")
