"""Tasks: which data and which model a training run uses (``[task] name`` in the config).

:data:`TASKS` maps each name to its class; :func:`get_task` builds the task of a config (and
checks its task section); :func:`load_trained_model` rebuilds the model of a checkpoint.
"""

from .base import Task
from .loading import load_trained_model
from .registry import TASKS, get_task

__all__ = ["Task", "get_task", "TASKS", "load_trained_model"]
