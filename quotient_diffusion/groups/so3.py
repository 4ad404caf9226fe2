r"""SO(3): rotations about the origin, with closed forms from the inertia tensor.

Generators :math:`u_j(x)_n = e_j \times x_n`, so that :math:`U^T v = \sum_n x_n \times v_n`
(angular momentum :math:`L`) and :math:`G = K = \sum_n (|x_n|^2 I_3 - x_n x_n^T)`, the inertia
tensor with unit masses. Then

* projection: :math:`w = K^{-1} L`, :math:`P_x(v)_n = v_n - w \times x_n`;
* curvature: :math:`h(x)_n = (K^{-1} - \mathrm{tr}(K^{-1}) I_3)\, x_n`, and
  :math:`\langle x, h(x)\rangle = -3` for every non-degenerate x;
* alignment: Kabsch with det = +1;
* augmentation: Haar-uniform rotations (QR of Gaussian matrices).

Rotations act about the origin: for molecules, use :class:`SE3` (or centre first).
"""

from __future__ import annotations

import torch

from ..scatter import batch_index, num_segments, scatter_sum
from .base import GroupAction
from .geometry import axis_angle_to_matrix, kabsch_rotation, random_rotations, rotate, skew

__all__ = ["SO3", "inertia_tensor"]


def inertia_tensor(x: torch.Tensor, batch: torch.Tensor, nb: int) -> torch.Tensor:
    r"""K = sum_n (|x_n|^2 I - x_n x_n^T) per molecule, shape (B, 3, 3).

    Computed as :math:`K = \mathrm{tr}(S) I - S` from the second moment
    :math:`S = \sum_n x_n x_n^T`, so that only one 3x3 outer product per atom is formed.
    """
    second = scatter_sum(x.unsqueeze(-1) * x.unsqueeze(-2), batch, nb, True)
    eye = torch.eye(3, dtype=x.dtype, device=x.device)
    return second.diagonal(dim1=-2, dim2=-1).sum(-1)[:, None, None] * eye - second


class SO3(GroupAction):
    """Rotations about the origin acting on point clouds (closed forms)."""

    dim = 3

    def generators(self, x, batch=None):
        # column j is e_j x x_n = -[x_n]_x e_j
        return -skew(x)

    def act(self, x, theta, batch=None):
        return rotate(x, axis_angle_to_matrix(theta), batch)

    def gram(self, x, batch=None):
        b = batch_index(x, batch)
        return inertia_tensor(x, b, num_segments(b))

    def _metric(self, x, b, nb):
        k = inertia_tensor(x, b, nb)
        return self.inverse_gram(k, x, b)

    def project(self, v, x, batch=None):
        b = batch_index(x, batch)
        nb = num_segments(b)
        ang_mom = scatter_sum(torch.cross(x, v, dim=-1), b, nb, True)
        w = (self._metric(x, b, nb) @ ang_mom.unsqueeze(-1)).squeeze(-1)
        return v - torch.cross(w[b], x, dim=-1)

    def curvature(self, x, batch=None):
        b = batch_index(x, batch)
        f = self._metric(x, b, num_segments(b))
        eye = torch.eye(3, dtype=x.dtype, device=x.device)
        m = f - f.diagonal(dim1=-2, dim2=-1).sum(-1)[:, None, None] * eye
        return torch.einsum("nij,nj->ni", m[b], x)

    def align(self, x, y, batch=None):
        return rotate(x, kabsch_rotation(x, y, batch), batch)

    def augment(self, x, batch=None, generator=None):
        b = batch_index(x, batch)
        rot = random_rotations(num_segments(b), x.dtype, generator).to(x.device)
        return rotate(x, rot, b)
