"""What a task is: for training, its typed options, data sets of graphs and the model to train on
them; for inference, :meth:`Task.prepare` (inputs -> graphs to sample), :meth:`Task.postprocess`
(a sampled batch -> records) and :meth:`Task.write` (records -> a file), which
:func:`~.sampling.generate` and the sampling commands use."""

from __future__ import annotations

import typing
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ..data import Graph, GraphBatch, collate
from ..diffusion import AuxiliaryLoss, DiffusionModel, get_interpolant, get_treatment
from ..groups import get_group
from ..training.config import TrainConfig
from ..training.validation import check_options

__all__ = ["Task", "NoOptions", "VALIDATION_TIMES"]

#: noise levels at which the validation error is reported (t = 1: data)
VALIDATION_TIMES = (0.1, 0.3, 0.5, 0.7, 0.9, 0.97)


@dataclass(frozen=True)
class NoOptions:
    """The options of a task that reads none."""


class Task(ABC):
    """A family of data and models. Subclasses set ``name`` and ``Options`` and implement the
    two abstract methods; a task that samples also implements :meth:`prepare` (and
    :meth:`postprocess` and :meth:`write` where the defaults do not fit)."""

    name: str = "task"
    #: the dataclass of the ``task.options`` the task reads, with their types and defaults; any
    #: other key, or a value of the wrong type, is a ConfigError naming the known ones
    Options: type = NoOptions
    #: file name of the task's model in quotient_diffusion/checkpoints/ (None: none ships)
    bundled: str | None = None

    def __init__(self, config: TrainConfig):
        self.config = config
        check_options("task.options", config.task.options, typing.get_type_hints(self.Options),
                      f"option(s) for task {self.name!r}:")
        self.options = self.Options(**config.task.options)

    @abstractmethod
    def datasets(self) -> tuple[Sequence[Graph], Sequence[Graph]]:
        """(training graphs, validation graphs)."""

    @abstractmethod
    def build_network(self) -> torch.nn.Module:
        """The denoiser network, sized from ``self.config.model``."""

    def prepare(self, inputs: Sequence) -> list[Graph]:
        """One graph to sample per input (its ``pos`` is ignored)."""
        raise NotImplementedError(f"task {self.name!r} does not sample")

    def postprocess(
        self, batch: GraphBatch, pos: torch.Tensor, features: torch.Tensor | None
    ) -> list:
        """One record per graph of a sampled batch: by default its coordinates (Angstrom) as a
        float64 array."""
        sizes = batch.num_nodes_per_graph.tolist()
        return [x.double().numpy() for x in torch.split(pos, sizes)]

    def write(self, records: Sequence, path: str | Path) -> int:
        """Write records to ``path``; returns how many were written."""
        raise NotImplementedError(f"task {self.name!r} writes no files")

    def feature_dim(self) -> int:
        """Number of diffused node features (0: coordinates only)."""
        return 0

    def coord_scale(self) -> float:
        """Angstrom per model unit (data are divided by it)."""
        return 1.0

    def sigma_data(self) -> float:
        """Standard deviation per coordinate of the centred data, in model units (the
        preconditioning's sigma; ``model.sigma_data`` in the config overrides it)."""
        return 1.0

    def sigma_data_features(self) -> float:
        """Root mean square of the diffused node features (their preconditioning's sigma)."""
        return 1.0

    def auxiliary_loss(self) -> AuxiliaryLoss | None:
        """The task's extra loss on the denoiser output, added for every treatment alike
        (:class:`~quotient_diffusion.diffusion.AuxiliaryLoss`); none by default."""
        return None

    def noise_levels(self) -> int:
        """Noise levels per training molecule and step (the model tiles its batches); 1 by
        default."""
        return 1

    def build_model(self) -> DiffusionModel:
        """The diffusion model of ``self.config.model``: its network, and its treatment
        quotienting by the group ``model.group``, with the task's :meth:`auxiliary_loss` and
        :meth:`noise_levels`."""
        m = self.config.model
        return DiffusionModel(
            self.build_network(),
            get_treatment(m.treatment, get_group(m.group)),
            get_interpolant(m.interpolant),
            coord_scale=self.coord_scale(),
            feature_dim=self.feature_dim(),
            augment_rotations=m.augment_rotations,
            weighting=m.weighting,
            preconditioning=m.preconditioning,
            sigma_data=m.sigma_data or self.sigma_data(),
            sigma_data_features=self.sigma_data_features(),
            auxiliary_loss=self.auxiliary_loss(),
            noise_levels=self.noise_levels(),
        )

    @torch.no_grad()
    def validate(self, model: DiffusionModel, graphs: Sequence[Graph], seed: int = 0) -> dict:
        """The training loss on the validation graphs (fixed noise; with an auxiliary loss also
        its part, ``val_aux_loss``), the unweighted mean squared coordinate residual in
        Angstrom^2 at fixed noise levels (``val_mse_t<t>``), and the task's :meth:`quality`
        metrics."""
        bs = self.config.optim.batch_size
        chunks = [collate(graphs[s : s + bs]) for s in range(0, len(graphs), bs)]
        sizes = [g.num_graphs for g in chunks]

        def mean_over_chunks(keys: tuple[str, ...], t: float | None) -> dict[str, float]:
            gen = torch.Generator().manual_seed(seed)
            total = dict.fromkeys(keys, 0.0)
            for graph, n in zip(chunks, sizes):
                times = None if t is None else torch.full((n,), t, dtype=graph.pos.dtype)
                logs = model.training_loss(graph, gen, times)[1]
                for key in keys:
                    total[key] += logs.get(key, 0.0) * n
            return {key: value / max(sum(sizes), 1) for key, value in total.items()}

        has_aux = getattr(model, "auxiliary_loss", None) is not None
        keys = ("loss", "aux_loss") if has_aux else ("loss",)
        result = {f"val_{key}": value for key, value in mean_over_chunks(keys, None).items()}
        for t in VALIDATION_TIMES:
            result[f"val_mse_t{t:.2f}"] = mean_over_chunks(("coord_mse",), t)["coord_mse"]
        return {**result, **self.quality(model, graphs, seed)}

    def quality(self, model: DiffusionModel, graphs: Sequence[Graph], seed: int = 0) -> dict:
        """The task's quality metrics of a few samples (for learning curves); none by default."""
        return {}
