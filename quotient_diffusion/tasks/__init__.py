"""Tasks: which data and which model a training run uses (``[task] name`` in the config)."""

from __future__ import annotations

import importlib

from .base import Task

__all__ = ["Task", "get_task", "TASKS"]

# task name -> "module:Class" under quotient_diffusion.tasks (imported lazily)
TASKS = {
    "toy": "toy:ToyTask",
    "conformers": "conformers:ConformerTask",
    "backbones": "backbones:BackboneTask",
    "denovo_qm9": "denovo:DenovoTask",
}


def get_task(config) -> Task:
    name = config.task.name
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {sorted(TASKS)}")
    module, cls = TASKS[name].split(":")
    return getattr(importlib.import_module(f"quotient_diffusion.tasks.{module}"), cls)(config)
