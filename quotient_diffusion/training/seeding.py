"""The random stream of one training step, a pure function of (seed, step, stream).

Every training loop of the package (:func:`~.loop.train`, and the set VAE's
:func:`~quotient_diffusion.sets.training.train_set_vae`) draws the batch and the noise of step
``step`` from :func:`step_generator`, so a run resumed from a checkpoint at step k draws exactly
what the uninterrupted run drew from step k on.
"""

from __future__ import annotations

import torch

__all__ = ["step_generator"]


def step_generator(seed: int, step: int, stream: int = 0) -> torch.Generator:
    """A CPU generator for step ``step`` of the run seeded ``seed``; ``stream`` separates the
    parallel draws of one step (the rank under data parallelism)."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step * 997 + stream)
