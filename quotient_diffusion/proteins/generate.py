"""Sampling C-alpha backbones of given lengths from a trained backbone model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from ..data import collate
from ..diffusion import DiffusionModel, SamplerConfig

__all__ = ["default_checkpoint", "load_backbone_model", "generate_backbones",
           "sample_backbone_batches"]


def default_checkpoint() -> Path:
    """The backbone model that ships inside the package (see docs/benchmarks/backbones.md)."""
    from ..tasks import bundled_checkpoint

    return bundled_checkpoint("backbones.pt")


def load_backbone_model(path: str | Path | None = None) -> DiffusionModel:
    """A trained backbone model in eval mode (EMA weights); the bundled one by default."""
    from ..tasks import load_trained_model

    path = Path(path) if path else default_checkpoint()
    model, config = load_trained_model(path)
    if config.task.name != "backbones":
        raise ValueError(f"{path} is a '{config.task.name}' model, not a backbone model")
    return model


def sample_backbone_batches(
    model: DiffusionModel,
    lengths: list[int],
    sampler: SamplerConfig,
    seed: int = 0,
    batch_size: int = 16,
) -> Iterator[list[np.ndarray]]:
    """One centred C-alpha trace (L, 3), Angstrom, per requested length; chains are sampled
    ``batch_size`` at a time from one seeded generator (same seed, same chains), and each batch
    is yielded as soon as it is finished."""
    from ..tasks.backbones import backbone_graph

    if any(n < 2 for n in lengths):
        raise ValueError("chain lengths must be at least 2")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    gen = torch.Generator().manual_seed(seed)
    for start in range(0, len(lengths), batch_size):
        chunk = lengths[start : start + batch_size]
        graph = collate([backbone_graph(None, n) for n in chunk])
        x, _ = model.sample(graph, sampler, gen)
        sizes = graph.num_nodes_per_graph.tolist()
        yield [t.double().numpy() for t in torch.split(x, sizes)]


def generate_backbones(
    model: DiffusionModel,
    lengths: list[int],
    sampler: SamplerConfig,
    seed: int = 0,
    batch_size: int = 16,
) -> list[np.ndarray]:
    """All the traces of :func:`sample_backbone_batches` in one list."""
    batches = sample_backbone_batches(model, lengths, sampler, seed, batch_size)
    return [trace for batch in batches for trace in batch]
