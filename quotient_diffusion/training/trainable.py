"""What the training loop needs of a task: its data, its model and its validation.

:func:`~.loop.train` receives the task; this protocol names what it calls, so that the training
layer depends on no task (``quotient_diffusion.tasks.Task`` satisfies it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ..data import Graph
from ..diffusion import DiffusionModel

__all__ = ["TrainableTask"]


class TrainableTask(Protocol):
    """A source of training data and of the model to train on it."""

    def datasets(self) -> tuple[Sequence[Graph], Sequence[Graph]]:
        """(training graphs, validation graphs)."""
        ...

    def build_model(self) -> DiffusionModel:
        """A freshly initialised model."""
        ...

    def validate(self, model: DiffusionModel, graphs: Sequence[Graph], seed: int = 0) -> dict:
        """Validation metrics of ``model`` on ``graphs`` (name -> number)."""
        ...
