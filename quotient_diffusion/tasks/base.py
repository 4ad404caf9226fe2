"""What a task gives the training loop: data sets of graphs and the model to train on them."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch

from ..data import Graph, collate
from ..diffusion import DiffusionModel, get_interpolant, get_treatment
from ..training.config import TrainConfig

__all__ = ["Task"]


class Task(ABC):
    """A family of data and models. Subclasses set ``name`` and implement the two methods."""

    name: str = "task"

    def __init__(self, config: TrainConfig):
        self.config = config

    @abstractmethod
    def datasets(self) -> tuple[Sequence[Graph], Sequence[Graph]]:
        """(training graphs, validation graphs)."""

    @abstractmethod
    def build_network(self) -> torch.nn.Module:
        """The denoiser network, sized from ``self.config.model``."""

    def feature_dim(self) -> int:
        """Number of diffused node features (0: coordinates only)."""
        return 0

    def coord_scale(self) -> float:
        """Angstrom per model unit (data are divided by it)."""
        return 1.0

    def build_model(self) -> DiffusionModel:
        m = self.config.model
        return DiffusionModel(
            self.build_network(),
            get_treatment(m.treatment),
            get_interpolant(m.interpolant),
            coord_scale=self.coord_scale(),
            feature_dim=self.feature_dim(),
            augment_rotations=m.augment_rotations,
            weighting=m.weighting,
        )

    @torch.no_grad()
    def validate(self, model: DiffusionModel, graphs: Sequence[Graph], seed: int = 0) -> dict:
        """Default validation: the training loss on the validation graphs, fixed noise."""
        gen = torch.Generator().manual_seed(seed)
        bs = self.config.optim.batch_size
        total, count = 0.0, 0
        for start in range(0, len(graphs), bs):
            chunk = graphs[start : start + bs]
            loss, _ = model.training_loss(collate(chunk), gen)
            total += float(loss) * len(chunk)
            count += len(chunk)
        return {"val_loss": total / max(count, 1)}
