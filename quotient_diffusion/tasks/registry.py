"""The tasks by name (``task.name`` in a config) and the one way to build a task on a config."""

from __future__ import annotations

from ..training.config import TrainConfig
from ..training.validation import check_name
from .backbones import BackboneTask
from .base import Task
from .conformers import ConformerTask
from .denovo import DenovoTask
from .toy import ToyTask

__all__ = ["TASKS", "get_task"]

#: task name -> task class
TASKS: dict[str, type[Task]] = {
    task.name: task for task in (ToyTask, ConformerTask, BackboneTask, DenovoTask)
}


def get_task(config: TrainConfig) -> Task:
    """The task of ``config``, built on it: a :class:`~quotient_diffusion.training.ConfigError`
    naming the key for an unknown ``task.name`` or (from the task, which reads its options
    into its ``Options``) a ``task.options`` entry the task does not read or of the wrong
    type."""
    check_name("task.name", config.task.name, TASKS)
    return TASKS[config.task.name](config)
