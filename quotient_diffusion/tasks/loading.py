"""Rebuilding a trained model from a checkpoint written by ``quotient_diffusion.training.train``.

The checkpoint's config names the task, and the task builds the network; the weights are then
loaded into it. :func:`load` is the one way to do it: every front end and sampling command uses
it. This lives above the training layer because it needs the tasks. :func:`checkpoint_config`
is the one way to read the config a checkpoint records (``tasks.load``, ``qdiff train
--resume``, benchmarks/train_bundled.py): upgraded from the checkpoint's format version, and
with today's name of a renamed task (:data:`~.registry.RENAMED_TASKS`).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from ..diffusion import DiffusionModel
from ..training.checkpoint import CheckpointError, load_checkpoint
from ..training.config import TrainConfig
from ..training.loop import upgrade_config
from ..training.validation import ConfigError
from .base import Task
from .registry import TASKS, current_task_name, get_task

__all__ = ["load", "load_trained_model", "bundled_checkpoint", "checkpoint_path",
           "checkpoint_config"]


def bundled_checkpoint(name: str) -> Path:
    """``quotient_diffusion/checkpoints/<name>``, a model that ships inside the package (the path
    whether or not the file is there: a bundled model may be missing from a development tree)."""
    return Path(str(resources.files("quotient_diffusion") / "checkpoints" / name))


def checkpoint_path(checkpoint: str | Path | None, task: str | None = None) -> Path:
    """``checkpoint`` as a path; None: the bundled model of ``task`` (its ``Task.bundled``)."""
    if checkpoint is not None:
        return Path(checkpoint)
    task = None if task is None else current_task_name(task)
    bundled = TASKS[task].bundled if task in TASKS else None
    if bundled is None:
        raise CheckpointError(f"no checkpoint given and no bundled model for task {task!r}")
    return bundled_checkpoint(bundled)


def checkpoint_config(state: dict) -> TrainConfig:
    """The config recorded in a checkpoint's ``state`` (as ``load_checkpoint`` returns it), in
    today's terms: upgraded from its format ``version`` (``training.loop.upgrade_config``) and
    with today's name of a renamed task. A ConfigError if it is not a valid config."""
    config = TrainConfig.from_dict(upgrade_config(state["config"], state.get("version", 1)))
    config.task.name = current_task_name(config.task.name)
    return config


def load(
    checkpoint: str | Path | None, expected_task: str | None = None, use_ema: bool = True
) -> tuple[Task, DiffusionModel]:
    """(task, model) of a training checkpoint (the bundled model of ``expected_task`` for None;
    EMA weights by default; the model in eval mode). :class:`CheckpointError`, one line naming
    the file, if it does not hold a model, or a model of another task than ``expected_task``
    (a former task name, :data:`~.registry.RENAMED_TASKS`, is today's)."""
    expected_task = None if expected_task is None else current_task_name(expected_task)
    path = checkpoint_path(checkpoint, expected_task)
    weights = "ema" if use_ema else "model"
    state = load_checkpoint(path, ("config", weights))
    if not isinstance(state["config"], dict):
        raise CheckpointError(f"{path}: its config is a {type(state['config']).__name__}")
    try:
        config = checkpoint_config(state)
        if expected_task is not None and config.task.name != expected_task:
            raise CheckpointError(f"{path} is a model of task {config.task.name!r}, not "
                                  f"{expected_task!r}")
        task = get_task(config)
    except ConfigError as err:
        raise CheckpointError(f"{path}: bad config in the checkpoint: {err}") from None
    model = task.build_model()
    try:
        model.load_state_dict(state[weights])
    except (RuntimeError, TypeError, AttributeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: the weights do not fit its model ({first})") from None
    model.eval()
    return task, model


def load_trained_model(
    path: str | Path, use_ema: bool = True
) -> tuple[DiffusionModel, TrainConfig]:
    """(model, config) of :func:`load`, for any task."""
    task, model = load(path, use_ema=use_ema)
    return model, task.config
