"""Training: configuration, EMA, atomic checkpoints and the (data-parallel) loop."""

from .checkpoint import CheckpointError, export_weights, load_checkpoint, save_checkpoint
from .config import ConfigError, ModelConfig, OptimConfig, RunConfig, TaskConfig, TrainConfig
from .ema import EMA
from .loop import load_trained_model, train
from .warm_start import warm_start

__all__ = [
    "TrainConfig",
    "ConfigError",
    "TaskConfig",
    "ModelConfig",
    "OptimConfig",
    "RunConfig",
    "EMA",
    "CheckpointError",
    "save_checkpoint",
    "load_checkpoint",
    "export_weights",
    "train",
    "load_trained_model",
    "warm_start",
]
