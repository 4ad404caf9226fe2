"""Between flat batches and padded blocks.

Sets travel through the package as flat batches: the rows of all sets concatenated, with a sorted
``batch`` index naming the set of each row (the convention of :mod:`quotient_diffusion.data`).
Attention and matching work set by set, so they use a padded block ``(B, n_max, F)`` with a
boolean ``mask`` (True on real rows) built here without any loop over sets or elements.
"""

from __future__ import annotations

import torch

__all__ = ["sizes_to_batch", "slot_index", "to_padded", "from_padded"]


def sizes_to_batch(sizes: torch.Tensor) -> torch.Tensor:
    """The flat ``batch`` index of sets with the given sizes: ``[0]*n_0 + [1]*n_1 + ...``."""
    return torch.repeat_interleave(torch.arange(sizes.shape[0], device=sizes.device), sizes)


def slot_index(batch: torch.Tensor, num_sets: int) -> torch.Tensor:
    """Position of each row inside its set: row i is element ``slot[i]`` of set ``batch[i]``.

    ``batch`` must be sorted (rows of one set contiguous).
    """
    sizes = torch.bincount(batch, minlength=num_sets)
    starts = torch.cumsum(sizes, 0) - sizes
    return torch.arange(batch.shape[0], device=batch.device) - starts[batch]


def to_padded(
    x: torch.Tensor, batch: torch.Tensor, num_sets: int, n_max: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat ``(N, F)`` rows to a zero-padded ``(B, n_max, F)`` block and its ``(B, n_max)`` mask."""
    sizes = torch.bincount(batch, minlength=num_sets)
    n_max = int(sizes.max()) if n_max is None else n_max
    slots = slot_index(batch, num_sets)
    out = x.new_zeros((num_sets, n_max) + tuple(x.shape[1:]))
    out[batch, slots] = x
    mask = torch.arange(n_max, device=x.device)[None, :] < sizes[:, None]
    return out, mask


def from_padded(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The real rows of a padded block, set after set: the inverse of :func:`to_padded`."""
    return x[mask]
