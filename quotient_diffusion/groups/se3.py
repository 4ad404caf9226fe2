r"""SE(3) = T(3) x SO(3): rigid motions of a molecule.

Generators: the three translations and the three rotations about the molecule's centroid
:math:`\bar x`, :math:`u_{3+j}(x)_n = e_j \times (x_n - \bar x)`. Rotations about the centroid
are rotations about the origin plus a translation, so this basis spans the same vertical space
as the Killing fields, and the change of basis is unimodular (block triangular with identity
blocks): :math:`\det G` and hence :math:`h = -\tfrac12\nabla\log\det G` are unchanged. Its
advantage is that the Gram matrix is exactly block diagonal for *every* cloud,
:math:`G = \mathrm{diag}(N I_3, K(x - \bar x))`, so its eigenvalues are :math:`N` and those of
the centred inertia tensor, whatever the position of the molecule. (With rotations about the
origin, a molecule far from the origin would get spuriously small Gram eigenvalues and trip the
degeneracy filter.) The degeneracy policy is applied block by block: the translation block is
inverted exactly, the rotation block exactly as by :class:`SO3` on the centred cloud, so the
generic path and the closed forms agree in degenerate configurations too.

Closed forms: remove the mean of ``v``, then project out the rotations at the centred cloud;
the curvature is the SO(3) curvature of the centred cloud (itself mean-free); alignment centres
both clouds, applies Kabsch and moves to the target's centroid. SE(3) contains the translations:
:meth:`~.base.GroupAction.remove_translations` centres, and the augmentation draws Haar-random
rotations about the origin (of centred clouds).
"""

from __future__ import annotations

import torch

from ..scatter import batch_index, num_segments, scatter_mean
from .base import GroupAction, filtered_inverse
from .geometry import axis_angle_to_matrix, center, kabsch_rotation, rotate
from .so3 import SO3
from .translation import Translation

__all__ = ["SE3"]


class SE3(GroupAction):
    """Rigid motions; parameters are (translation, rotation vector)."""

    dim = 6
    has_translations = True

    def __init__(self, rel_tol: float | None = None):
        self._so3 = SO3()
        self._t3 = Translation()
        if rel_tol is not None:
            self.rel_tol = self._so3.rel_tol = rel_tol

    def generators(self, x: torch.Tensor, batch: torch.Tensor | None = None) -> torch.Tensor:
        """Translations, then rotations about each molecule's centroid: ``(num_atoms, 3, 6)``."""
        b = batch_index(x, batch)
        return torch.cat([self._t3.generators(x, b), self._so3.generators(center(x, b), b)], -1)

    def act(
        self, x: torch.Tensor, theta: torch.Tensor, batch: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x_n -> exp([omega]) (x_n - centroid) + centroid + t, with theta = (t, omega)."""
        b = batch_index(x, batch)
        mean = scatter_mean(x, b, num_segments(b), True)[b]
        return rotate(x - mean, axis_angle_to_matrix(theta[:, 3:]), b) + mean + theta[b, :3]

    def inverse_gram(
        self, gram: torch.Tensor, x: torch.Tensor, batch: torch.Tensor
    ) -> torch.Tensor:
        """Block-wise :func:`filtered_inverse` of ``diag(N I_3, K_c)`` (the same policy as SO3)."""
        out = torch.zeros_like(gram).detach()
        out[:, :3, :3] = filtered_inverse(gram[:, :3, :3], self.rel_tol)
        out[:, 3:, 3:] = filtered_inverse(gram[:, 3:, 3:], self._so3.rel_tol)
        return out

    def project(self, v, x, batch=None):
        return self._so3.project(center(v, batch), center(x, batch), batch)

    def curvature(self, x, batch=None):
        return self._so3.curvature(center(x, batch), batch)

    def augment(self, x, batch=None, generator=None):
        return self._so3.augment(x, batch, generator)

    def align(self, x, y, batch=None):
        b = batch_index(x, batch)
        yc_mean = scatter_mean(y, b, num_segments(b), True)
        xc, yc = center(x, b), y - yc_mean[b]
        return rotate(xc, kabsch_rotation(xc, yc, b), b) + yc_mean[b]
