"""Training: configuration, EMA, atomic checkpoints, seeding and the (data-parallel) loop.

The loop receives its task (:class:`TrainableTask`); nothing here imports a task (rebuilding a
trained model is ``quotient_diffusion.tasks.load_trained_model``).
"""

from .checkpoint import (
    CheckpointError,
    export_weights,
    load_checkpoint,
    restore_checkpoint,
    save_checkpoint,
)
from .config import ConfigError, ModelConfig, OptimConfig, RunConfig, TaskConfig, TrainConfig
from .ema import EMA
from .loop import train
from .seeding import step_generator
from .trainable import TrainableTask
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
    "restore_checkpoint",
    "export_weights",
    "step_generator",
    "TrainableTask",
    "train",
    "warm_start",
]
