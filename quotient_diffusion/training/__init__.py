"""Training: configuration, EMA, atomic checkpoints and the (data-parallel) loop."""

from .checkpoint import export_weights, load_checkpoint, save_checkpoint
from .config import ModelConfig, OptimConfig, RunConfig, TaskConfig, TrainConfig
from .ema import EMA
from .loop import load_trained_model, train

__all__ = [
    "TrainConfig",
    "TaskConfig",
    "ModelConfig",
    "OptimConfig",
    "RunConfig",
    "EMA",
    "save_checkpoint",
    "load_checkpoint",
    "export_weights",
    "train",
    "load_trained_model",
]
