"""Small batched geometry helpers shared by the concrete groups."""

from __future__ import annotations

import torch

from ..scatter import batch_index, num_segments, scatter_mean, scatter_sum

__all__ = [
    "center",
    "skew",
    "axis_angle_to_matrix",
    "kabsch_rotation",
    "rotate",
    "random_rotations",
]


def center(x: torch.Tensor, batch: torch.Tensor | None = None) -> torch.Tensor:
    """Remove the (unweighted) mean of each molecule: x_n - mean_m x_m."""
    b = batch_index(x, batch)
    return x - scatter_mean(x, b, num_segments(b), True)[b]


def skew(w: torch.Tensor) -> torch.Tensor:
    """Cross-product matrices [w]_x with [w]_x v = w x v; (..., 3) -> (..., 3, 3)."""
    zero = torch.zeros_like(w[..., 0])
    wx, wy, wz = w.unbind(-1)
    rows = [
        torch.stack([zero, -wz, wy], -1),
        torch.stack([wz, zero, -wx], -1),
        torch.stack([-wy, wx, zero], -1),
    ]
    return torch.stack(rows, -2)


def axis_angle_to_matrix(omega: torch.Tensor) -> torch.Tensor:
    r"""Rotation matrices :math:`\exp([\omega]_\times)` for rotation vectors (..., 3).

    Rodrigues' formula :math:`R = I + A\,[\omega]_\times + B\,[\omega]_\times^2` with
    :math:`A = \sin\theta/\theta`, :math:`B = (1-\cos\theta)/\theta^2`,
    :math:`\theta = |\omega|`, and their Taylor series below :math:`\theta = 10^{-2}` (error
    below 1e-16 there; finite gradients at 0). ``torch.linalg.matrix_exp`` is not used: on the
    CPU build of torch 2.13 it loses accuracy for small arguments (about 2e-10 absolute error
    in float64 at an angle of 0.05 rad, and a different result for the same matrix depending
    on what else is in the batch).
    """
    k = skew(omega)
    theta2 = (omega * omega).sum(-1)
    small = theta2 < 1e-4
    theta = torch.where(small, torch.ones_like(theta2), theta2).sqrt()
    a_big = torch.sin(theta) / theta
    b_big = 2 * torch.sin(theta / 2) ** 2 / theta**2
    a_small = 1 - theta2 / 6 + theta2**2 / 120
    b_small = 0.5 - theta2 / 24 + theta2**2 / 720
    a = torch.where(small, a_small, a_big)[..., None, None]
    b = torch.where(small, b_small, b_big)[..., None, None]
    eye = torch.eye(3, dtype=omega.dtype, device=omega.device)
    return eye + a * k + b * (k @ k)


def rotate(x: torch.Tensor, rot: torch.Tensor, batch: torch.Tensor | None = None) -> torch.Tensor:
    """Apply one rotation matrix per molecule (rot: (B, 3, 3)) to a flat batch."""
    b = batch_index(x, batch)
    return torch.einsum("nij,nj->ni", rot[b], x)


def random_rotations(
    n: int, dtype=torch.float64, generator: torch.Generator | None = None
) -> torch.Tensor:
    """n rotation matrices drawn uniformly from SO(3) (QR of Gaussian matrices, sign-fixed)."""
    a = torch.randn(n, 3, 3, dtype=dtype, generator=generator)
    q, r = torch.linalg.qr(a)
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)
    det = torch.linalg.det(q)
    q[:, :, 0] = q[:, :, 0] * det.unsqueeze(-1)
    return q


def kabsch_rotation(
    x: torch.Tensor, y: torch.Tensor, batch: torch.Tensor | None = None
) -> torch.Tensor:
    r"""Proper rotations R (B, 3, 3) minimising sum_n |R x_n - y_n|^2 per molecule (about 0).

    With :math:`H = \sum_n x_n y_n^T = W S V^T`: :math:`R = V \mathrm{diag}(1, 1, d) W^T`,
    :math:`d = \mathrm{sign}\det(V W^T)`, so that det R = +1 (never a reflection).
    """
    b = batch_index(x, batch)
    h = scatter_sum(x.unsqueeze(-1) * y.unsqueeze(-2), b, num_segments(b), True)
    w, _, vt = torch.linalg.svd(h)
    v = vt.transpose(-1, -2)
    d = torch.sign(torch.linalg.det(v @ w.transpose(-1, -2)))
    d = torch.where(d == 0, torch.ones_like(d), d)
    diag = torch.ones_like(h[..., 0])
    diag[..., 2] = d
    return (v * diag.unsqueeze(-2)) @ w.transpose(-1, -2)
