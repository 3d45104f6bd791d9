"""Evaluation of checkpoints, bundle ONNX graphs and engines on labeled clips (``edgevt eval``)."""
from edgevt.eval.evaluate import ClipSet, EvalResult, evaluate, evaluate_all, load_eval_clips

__all__ = ["ClipSet", "EvalResult", "evaluate", "evaluate_all", "load_eval_clips"]

# ``edgevt.eval(artifact, data)`` runs ``evaluate`` (the package stays importable as ``edgevt.eval``).
from edgevt._callable import make_callable  # noqa: E402

make_callable(__name__, evaluate)
