r"""T(3): translations of the whole molecule.

Generators are the three unit vectors at every atom, :math:`G = N I_3`, so the horizontal
projection removes the per-molecule mean, the orbits are flat (:math:`h = 0`) and alignment
matches centroids. The compact part is trivial, so augmentation leaves a cloud as it is.
"""

from __future__ import annotations

import torch

from ..scatter import batch_index, num_segments, scatter_mean
from .base import GroupAction
from .geometry import center

__all__ = ["Translation"]


class Translation(GroupAction):
    """Translations of R^3 acting on every atom of a molecule at once."""

    dim = 3
    has_translations = True

    def generators(self, x, batch=None):
        return torch.eye(3, dtype=x.dtype, device=x.device).expand(x.shape[0], 3, 3)

    def act(self, x, theta, batch=None):
        return x + theta[batch_index(x, batch)]

    def project(self, v, x, batch=None):
        return center(v, batch)

    def curvature(self, x, batch=None):
        return torch.zeros_like(x)

    def augment(self, x, batch=None, generator=None):
        return x

    def align(self, x, y, batch=None):
        b = batch_index(x, batch)
        nb = num_segments(b)
        return x + (scatter_mean(y, b, nb, True) - scatter_mean(x, b, nb, True))[b]
