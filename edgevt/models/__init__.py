from edgevt.models.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from edgevt.models.preprocess import FramePreprocess, FramesClassifier
from edgevt.models.zoo import create_model, list_models, model_info

__all__ = ["create_model", "list_models", "model_info", "FramePreprocess", "FramesClassifier",
           "load_checkpoint", "model_from_checkpoint", "save_checkpoint"]
