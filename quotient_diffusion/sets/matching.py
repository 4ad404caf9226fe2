"""Distances between sets: Chamfer (vectorised) and the Hungarian matching (scipy, per set).

On padded blocks ``a: (B, n, F)``, ``b: (B, m, F)`` with masks:

* Chamfer: ``C(A, B) = mean_{a in A} min_{b in B} |a - b|^2
  + mean_{b in B} min_{a in A} |a - b|^2``, one value per pair of sets, for the whole batch at
  once;
* Hungarian: the permutation ``pi`` minimising ``sum_i |a_i - b_pi(i)|^2`` between two sets of
  the same size (``scipy.optimize.linear_sum_assignment``, one call per set).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

__all__ = ["chamfer", "hungarian_match"]


def chamfer(
    a: torch.Tensor, mask_a: torch.Tensor, b: torch.Tensor, mask_b: torch.Tensor
) -> torch.Tensor:
    """Chamfer distance ``(B,)`` between corresponding padded sets (squared Euclidean)."""
    d = torch.cdist(a, b).square()  # (B, n, m)
    big = torch.finfo(d.dtype).max
    d = d.masked_fill(~mask_b[:, None, :], big).masked_fill(~mask_a[:, :, None], big)
    ab = d.min(dim=2).values.masked_fill(~mask_a, 0).sum(1) / mask_a.sum(1).clamp_min(1)
    ba = d.min(dim=1).values.masked_fill(~mask_b, 0).sum(1) / mask_b.sum(1).clamp_min(1)
    return ab + ba


def hungarian_match(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """For padded sets of equal sizes, ``perm (B, n)`` with ``b[k, perm[k, i]]`` matched to
    ``a[k, i]`` (optimal for squared distances); padded slots map to themselves."""
    cost = torch.cdist(a.detach(), b.detach()).square().cpu().numpy()
    sizes = mask.sum(1).tolist()
    perm = np.tile(np.arange(a.shape[1]), (a.shape[0], 1))
    for k, n in enumerate(sizes):  # scipy solves one assignment problem at a time
        rows, cols = linear_sum_assignment(cost[k, :n, :n])
        perm[k, rows] = cols
    return torch.as_tensor(perm, device=a.device)
