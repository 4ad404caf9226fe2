"""Shared fixtures for the test-suite: thread count, seeded random flat batches, real molecules,
and the rule for tests that need the shared data (skip locally, fail under CI)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# Tests run on small tensors. Intra-op threads then buy nothing and, on a loaded machine, cost a
# lot (OpenMP workers spin on busy cores: the group tests ran 15x slower with 2 threads on 2
# shared cores). Without OMP_NUM_THREADS, cap torch at 2 threads; modules made of many small
# operations also use the ``single_thread`` fixture below.
if "OMP_NUM_THREADS" not in os.environ:
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def require_data(relative: str | None = None) -> Path:
    """The shared data root, with ``relative`` (e.g. ``'mnist'``) present under it.

    Where the data are absent the test is skipped on a developer's machine, but fails when the
    environment variable ``CI`` is set: CI has ``../shared/data``, so a missing folder there is a
    broken set-up, not a reason to pass silently.
    """
    from quotient_diffusion.data.paths import data_root

    try:
        return data_root(required=relative)
    except FileNotFoundError as err:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but the shared data are missing: {err}")
        pytest.skip(f"shared data not available: {err}")


@pytest.fixture
def single_thread():
    """Run one test with one torch intra-op thread, restoring the previous count afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def random_flat_batch(
    sizes: list[int],
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
    scale: float = 1.5,
    offset: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A flat batch of Gaussian point clouds with the given atom counts: (x, batch)."""
    gen = torch.Generator().manual_seed(seed)
    counts = torch.tensor(sizes)
    batch = torch.repeat_interleave(torch.arange(len(sizes)), counts)
    x = scale * torch.randn(int(counts.sum()), 3, dtype=dtype, generator=gen)
    shift = offset * torch.randn(len(sizes), 3, dtype=dtype, generator=gen)
    return x + shift[batch], batch


def ase_positions(name: str, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Atomic positions (Angstrom) of a molecule from ASE's g2 collection, e.g. 'CO2'."""
    from ase.build import molecule

    return torch.as_tensor(molecule(name).get_positions(), dtype=dtype)


@pytest.fixture
def flat_batch():
    """Factory fixture: ``flat_batch(sizes, dtype=..., seed=...)`` -> (x, batch)."""
    return random_flat_batch


@pytest.fixture
def molecule_positions():
    """Factory fixture: ``molecule_positions('CO2', dtype)`` -> (N, 3) tensor."""
    return ase_positions
