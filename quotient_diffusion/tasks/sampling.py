"""Sampling from a trained model, the same loop for every task.

The task turns its inputs into graphs (:meth:`~.base.Task.prepare`: SMILES-derived molecules
for conformers, atom counts for de novo molecules, chain lengths for backbones) and a sampled
batch into records (:meth:`~.base.Task.postprocess`). :func:`generate` packs ``copies`` samples
of every input into flat batches (no padding) of at most ``batch_size`` graphs and
``max_atoms`` atoms, samples them one batch after another from one generator (same seed, same
samples) and yields each batch as soon as it is finished, so that a caller can write it or stop.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from tqdm.auto import tqdm

from ..data import collate
from ..diffusion import DiffusionModel, SamplerConfig
from .base import Task

__all__ = ["generate", "generate_all", "batches"]


def batches(
    sizes: Sequence[int], batch_size: int | None = None, max_atoms: int | None = None
) -> Iterator[slice]:
    """Consecutive slices of ``sizes`` (atoms per graph) with at most ``batch_size`` graphs and
    ``max_atoms`` atoms (None: no limit), at least one graph each."""
    start = 0
    while start < len(sizes):
        stop, atoms = start + 1, sizes[start]
        while (stop < len(sizes) and (batch_size is None or stop - start < batch_size)
               and (max_atoms is None or atoms + sizes[stop] <= max_atoms)):
            atoms += sizes[stop]
            stop += 1
        yield slice(start, stop)
        start = stop


@torch.no_grad()
def generate(
    task: Task,
    model: DiffusionModel,
    inputs: Sequence,
    sampler: SamplerConfig | None = None,
    seed: int | torch.Generator = 0,
    copies: int | Sequence[int] = 1,
    batch_size: int | None = None,
    max_atoms: int | None = None,
) -> Iterator[list[tuple[int, object]]]:
    """For each finished batch, its (input index, record) pairs: ``copies`` samples of every
    input (one count for all, or one per input), in input order. ``seed`` is a seed or a
    generator to continue. With ``sampler.progress``, a progress bar over the samples."""
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    sampler = sampler or SamplerConfig()
    generator = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(seed)
    graphs = task.prepare(inputs)
    counts = [copies] * len(graphs) if isinstance(copies, int) else list(copies)
    owners = [k for k, count in enumerate(counts) for _ in range(count)]
    sizes = [graphs[k].num_nodes for k in owners]
    with tqdm(total=len(owners), desc=f"{task.name}", unit="sample",
              disable=not sampler.progress) as bar:
        for part in batches(sizes, batch_size, max_atoms):
            batch = collate([graphs[k] for k in owners[part]])
            pos, features = model.sample(batch, sampler, generator)
            records = task.postprocess(batch, pos, features)
            bar.update(len(records))
            yield list(zip(owners[part], records))


def generate_all(
    task: Task,
    model: DiffusionModel,
    inputs: Sequence,
    sampler: SamplerConfig | None = None,
    seed: int | torch.Generator = 0,
    **batching,
) -> list:
    """Every record of :func:`generate` (one sample per input), in input order."""
    return [record for batch in generate(task, model, inputs, sampler, seed, **batching)
            for _, record in batch]
