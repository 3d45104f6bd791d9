"""Adaptation: fine-tuning, domain adaptation and meta-learning on one training loop.

``adapt(AdaptConfig(...)) -> AdaptResult`` is the library entry point (``edgevt adapt`` is a thin
CLI over it). See ``config.py`` for every option and ``trainer.py`` for the loop.
"""
from edgevt.adapt.config import AdaptConfig, AdaptResult, STRATEGIES


def adapt(config: AdaptConfig, **kwargs) -> AdaptResult:
    from edgevt.adapt.api import adapt as _adapt

    return _adapt(config, **kwargs)


__all__ = ["AdaptConfig", "AdaptResult", "STRATEGIES", "adapt"]

# ``edgevt.adapt(config)`` runs ``adapt`` (the package stays importable as ``edgevt.adapt``).
from edgevt._callable import make_callable  # noqa: E402

make_callable(__name__, adapt)
