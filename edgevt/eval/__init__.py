"""Evaluation of checkpoints, bundle ONNX graphs and engines on labeled clips (``edgevt eval``)."""
from edgevt.eval.evaluate import ClipSet, EvalResult, evaluate, evaluate_all, load_eval_clips

__all__ = ["ClipSet", "EvalResult", "evaluate", "evaluate_all", "load_eval_clips"]
