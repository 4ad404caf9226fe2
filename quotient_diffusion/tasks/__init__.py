"""Tasks: which data and which model a training run uses (``[task] name`` in the config), and
how a trained model of the task samples.

:data:`TASKS` maps each name to its class; :func:`get_task` builds the task of a config (and
checks its task section); :func:`load` rebuilds (task, model) from a checkpoint and checks the
task; :func:`checkpoint_config` reads the config a checkpoint records (today's task names:
:data:`RENAMED_TASKS` maps former ones); :func:`generate` samples any task's inputs in flat
batches; :func:`bundled_checkpoint` is the path of a model that ships with the package.
"""

from .base import Task
from .loading import (
    bundled_checkpoint,
    checkpoint_config,
    checkpoint_path,
    load,
    load_trained_model,
)
from .registry import RENAMED_TASKS, TASKS, get_task
from .sampling import generate, generate_all

__all__ = ["Task", "get_task", "TASKS", "RENAMED_TASKS", "load", "load_trained_model",
           "bundled_checkpoint", "checkpoint_path", "checkpoint_config", "generate",
           "generate_all"]
