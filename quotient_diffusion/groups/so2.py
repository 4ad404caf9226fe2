r"""SO(2): rotations about a fixed axis through the origin (the worked example of docs/groups.md).

With unit axis :math:`a`: generator :math:`u(x)_n = a \times x_n`, Gram (a scalar)
:math:`G = \sum_n |x_n^\perp|^2` where :math:`x^\perp = x - (a\cdot x) a`. Closed forms:

* projection: :math:`P_x(v)_n = v_n - \frac{\sum_m (a\times x_m)\cdot v_m}{G}\, a\times x_n`;
* curvature: :math:`h(x)_n = -x_n^\perp / G`, so :math:`\langle x, h\rangle = -1`;
* alignment: the angle :math:`\theta = \mathrm{atan2}(\sum a\cdot(x_n\times y_n),
  \sum x_n^\perp\cdot y_n^\perp)`;
* augmentation: angles uniform on :math:`[0, 2\pi)` (the Haar measure).

No translations: the diffusion keeps every coordinate (the centroid included), and the position
of a molecule relative to the axis matters.
"""

from __future__ import annotations

import torch

from ..scatter import batch_index, num_segments, scatter_sum
from .base import GroupAction
from .geometry import axis_angle_to_matrix, rotate

__all__ = ["SO2"]


class SO2(GroupAction):
    """Rotations about ``axis`` (default z) through the origin."""

    dim = 1

    def __init__(self, axis=(0.0, 0.0, 1.0), rel_tol: float | None = None):
        axis = torch.as_tensor(axis, dtype=torch.float64)
        if axis.shape != (3,) or axis.norm() == 0:
            raise ValueError(f"axis must be a non-zero 3-vector, got {axis.tolist()}")
        self.axis = axis / axis.norm()
        if rel_tol is not None:
            self.rel_tol = rel_tol

    def _axis(self, x):
        return self.axis.to(dtype=x.dtype, device=x.device)

    def _perp(self, x):
        a = self._axis(x)
        return x - (x @ a).unsqueeze(-1) * a

    def degeneracy_scale(self, gram, x, batch):
        # G vanishes as a whole when every atom lies on the axis: compare it to the cloud's size
        return scatter_sum((x * x).sum(-1), batch, gram.shape[0], True)

    def generators(self, x, batch=None):
        return torch.cross(self._axis(x).expand_as(x), x, dim=-1).unsqueeze(-1)

    def act(self, x, theta, batch=None):
        return rotate(x, axis_angle_to_matrix(theta * self._axis(x)), batch)

    def _inverse(self, x, b, nb):
        g = scatter_sum((self._perp(x) ** 2).sum(-1), b, nb, True)
        return self.inverse_gram(g.view(-1, 1, 1), x, b).view(-1)

    def project(self, v, x, batch=None):
        b = batch_index(x, batch)
        nb = num_segments(b)
        u = torch.cross(self._axis(x).expand_as(x), x, dim=-1)
        coef = scatter_sum((u * v).sum(-1), b, nb, True) * self._inverse(x, b, nb)
        return v - coef[b].unsqueeze(-1) * u

    def curvature(self, x, batch=None):
        b = batch_index(x, batch)
        return -self._perp(x) * self._inverse(x, b, num_segments(b))[b].unsqueeze(-1)

    def align(self, x, y, batch=None):
        b = batch_index(x, batch)
        nb = num_segments(b)
        a = self._axis(x)
        sin = scatter_sum(torch.cross(x, y, dim=-1) @ a, b, nb, True)
        cos = scatter_sum((self._perp(x) * self._perp(y)).sum(-1), b, nb, True)
        angle = torch.atan2(sin, cos)
        return self.act(x, angle.unsqueeze(-1), b)

    def augment(self, x, batch=None, generator=None):
        b = batch_index(x, batch)
        angle = torch.rand(num_segments(b), 1, dtype=x.dtype, generator=generator)
        return self.act(x, 2 * torch.pi * angle.to(x.device), b)

    def __repr__(self):
        return f"SO2(axis={self.axis.tolist()})"
