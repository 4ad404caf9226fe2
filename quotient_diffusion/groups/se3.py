r"""SE(3) = T(3) x SO(3): rigid motions of a molecule.

Generators: the three translations and the three rotations about the origin. For a centred
cloud the Gram matrix is block diagonal, :math:`\mathrm{diag}(N I_3, K)`, and for any cloud
:math:`\det G = N^3 \det K(x - \bar x)`. Hence the closed forms: remove the mean of ``v``, then
project out the rotations at the centred cloud; the curvature is the SO(3) curvature of the
centred cloud (itself mean-free); alignment centres both clouds, applies Kabsch and moves to
the target's centroid.
"""

from __future__ import annotations

import torch

from ..scatter import batch_index, num_segments, scatter_mean
from .base import GroupAction
from .geometry import axis_angle_to_matrix, center, kabsch_rotation, rotate
from .so3 import SO3
from .translation import Translation

__all__ = ["SE3"]


class SE3(GroupAction):
    """Rigid motions; parameters are (translation, rotation vector)."""

    dim = 6

    def __init__(self, rel_tol: float | None = None):
        self._so3 = SO3()
        self._t3 = Translation()
        if rel_tol is not None:
            self.rel_tol = self._so3.rel_tol = rel_tol

    def generators(self, x, batch=None):
        return torch.cat([self._t3.generators(x, batch), self._so3.generators(x, batch)], -1)

    def act(self, x, theta, batch=None):
        b = batch_index(x, batch)
        return rotate(x, axis_angle_to_matrix(theta[:, 3:]), b) + theta[b, :3]

    def project(self, v, x, batch=None):
        return self._so3.project(center(v, batch), center(x, batch), batch)

    def curvature(self, x, batch=None):
        return self._so3.curvature(center(x, batch), batch)

    def align(self, x, y, batch=None):
        b = batch_index(x, batch)
        yc_mean = scatter_mean(y, b, num_segments(b), True)
        xc, yc = center(x, b), y - yc_mean[b]
        return rotate(xc, kabsch_rotation(xc, yc, b), b) + yc_mean[b]
