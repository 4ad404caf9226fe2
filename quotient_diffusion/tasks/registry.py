"""The tasks by name (``task.name`` in a config), the names they had before a rename, and the
one way to build a task on a config."""

from __future__ import annotations

from ..training.config import TrainConfig
from ..training.validation import check_name
from .backbones import BackboneTask
from .base import Task
from .conformers import ConformerTask
from .molecules import MoleculeTask
from .toy import ToyTask

__all__ = ["TASKS", "RENAMED_TASKS", "current_task_name", "get_task"]

#: task name -> task class
TASKS: dict[str, type[Task]] = {
    task.name: task for task in (ToyTask, ConformerTask, BackboneTask, MoleculeTask)
}

#: former task name -> today's. Checkpoints and configs written before a rename keep the
#: former name; every config that builds a task (:func:`get_task`) or comes out of a checkpoint
#: (:func:`~.loading.checkpoint_config`) is read under today's. A rename adds a line here.
RENAMED_TASKS: dict[str, str] = {"denovo_qm9": "molecules"}


def current_task_name(name: str) -> str:
    """Today's name of the task called ``name`` (``name`` itself unless it was renamed)."""
    return RENAMED_TASKS.get(name, name)


def get_task(config: TrainConfig) -> Task:
    """The task of ``config``, built on it: a :class:`~quotient_diffusion.training.ConfigError`
    naming the key for an unknown ``task.name`` or (from the task, which reads its options
    into its ``Options``) a ``task.options`` entry the task does not read or of the wrong
    type. A former name (:data:`RENAMED_TASKS`) is replaced by today's in ``config`` itself,
    so that a run trained on it, and its checkpoints, record today's name."""
    config.task.name = current_task_name(config.task.name)
    check_name("task.name", config.task.name, TASKS)
    return TASKS[config.task.name](config)
