"""Tasks: which data and which model a training run uses (``[task] name`` in the config).

:data:`TASKS` maps each name to its class; :func:`get_task` builds the task of a config (and
checks its task section); :func:`load_trained_model` rebuilds the model of a checkpoint;
:func:`bundled_checkpoint` is the path of a model that ships with the package.
"""

from .base import Task
from .loading import bundled_checkpoint, load_trained_model
from .registry import TASKS, get_task

__all__ = ["Task", "get_task", "TASKS", "load_trained_model", "bundled_checkpoint"]
