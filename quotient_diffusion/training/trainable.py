"""What the training loop needs of a task: its data, its model and its validation.

:func:`~.loop.train` receives the task; this protocol names what it calls, so that the training
layer depends on no task (``quotient_diffusion.tasks.Task`` satisfies it). A training set may
also define ``draw(indices, generator) -> list[Graph]``, the graphs of one step drawn with the
step's generator (random crops of long protein chains); :func:`draw_graphs` calls it, or indexes
the set when it has none.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch

from ..data import Graph
from ..diffusion import DiffusionModel

__all__ = ["TrainableTask", "draw_graphs"]


def draw_graphs(
    dataset: Sequence[Graph], indices: list[int], generator: torch.Generator
) -> list[Graph]:
    """The graphs ``indices`` of ``dataset`` for one training step: ``dataset.draw(indices,
    generator)`` when the set defines it (each draw may differ), else ``dataset[i]``."""
    draw = getattr(dataset, "draw", None)
    if draw is None:
        return [dataset[i] for i in indices]
    return draw(indices, generator)


def within_pair_budget(graphs: list[Graph], max_pairs: int | None) -> list[Graph]:
    """The longest prefix of ``graphs`` whose ordered atom pairs, sum of n_i (n_i - 1), fit in
    ``max_pairs`` (at least the first graph; all of them when ``max_pairs`` is None). On a full
    graph a step costs about that many edge messages, so the budget bounds the step's time and
    memory whatever the molecules' sizes."""
    if max_pairs is None:
        return graphs
    total = 0
    for k, graph in enumerate(graphs):
        n = graph.num_nodes
        total += n * (n - 1)
        if total > max_pairs and k > 0:
            return graphs[:k]
    return graphs


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
