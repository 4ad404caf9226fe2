"""Rebuilding a trained model from a checkpoint written by ``quotient_diffusion.training.train``.

The checkpoint's config names the task, and the task builds the network; the weights are then
loaded into it. This lives above the training layer because it needs the tasks.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from ..diffusion import DiffusionModel
from ..training.checkpoint import CheckpointError, load_checkpoint
from ..training.config import TrainConfig
from ..training.loop import upgrade_config
from ..training.validation import ConfigError
from .registry import get_task

__all__ = ["load_trained_model", "bundled_checkpoint"]


def bundled_checkpoint(name: str) -> Path:
    """``quotient_diffusion/checkpoints/<name>``, a model that ships inside the package (the path
    whether or not the file is there: a bundled model may be missing from a development tree)."""
    return Path(str(resources.files("quotient_diffusion") / "checkpoints" / name))


def load_trained_model(
    path: str | Path, use_ema: bool = True
) -> tuple[DiffusionModel, TrainConfig]:
    """The model of a training checkpoint (EMA weights by default, in eval mode) and its config;
    :class:`~quotient_diffusion.training.CheckpointError` if the file does not hold one."""
    weights = "ema" if use_ema else "model"
    state = load_checkpoint(path, ("config", weights))
    if not isinstance(state["config"], dict):
        raise CheckpointError(f"{path}: its config is a {type(state['config']).__name__}")
    try:
        config = TrainConfig.from_dict(upgrade_config(state["config"], state.get("version", 1)))
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
    return model, config
