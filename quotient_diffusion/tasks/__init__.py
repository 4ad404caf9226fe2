"""Tasks: which data and which model a training run uses (``[task] name`` in the config)."""

from __future__ import annotations

import importlib

from .base import Task

__all__ = ["Task", "get_task", "task_class", "TASKS"]

# task name -> "module:Class" under quotient_diffusion.tasks (imported lazily)
TASKS = {
    "toy": "toy:ToyTask",
    "conformers": "conformers:ConformerTask",
    "backbones": "backbones:BackboneTask",
    "denovo_qm9": "denovo:DenovoTask",
}


def task_class(name: str) -> type[Task]:
    """The :class:`Task` subclass registered as ``name``."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {sorted(TASKS)}")
    module, cls = TASKS[name].split(":")
    return getattr(importlib.import_module(f"quotient_diffusion.tasks.{module}"), cls)


def get_task(config) -> Task:
    """The task of a :class:`~quotient_diffusion.training.TrainConfig`, built on it."""
    return task_class(config.task.name)(config)
