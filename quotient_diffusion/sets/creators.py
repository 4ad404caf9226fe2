"""Set creation: from a latent vector ``z`` and a set size ``n`` to ``n`` initial points.

Every creator maps ``z: (B, L)`` and ``sizes: (B,)`` to a flat batch ``(x, batch)``: ``x`` is
``(sum(sizes), d)``, the points of set 0 first, and ``batch`` the sorted set index of each row.
A permutation-equivariant decoder then turns these points into the output set.

* :class:`TopN` (Vignac and Frossard, ICLR 2022): a trainable reference set ``r_1..r_M`` with
  keys ``k_1..k_M``; the latent gives a query ``q = g(z)`` and scores
  ``s_i = <k_i, q> / sqrt(d_k)``; the ``n`` best points are kept and modulated by their scores,
  ``x_i = (1 + gamma(s_i)) * r_i + beta(s_i)`` (FiLM, ``gamma`` and ``beta`` linear in ``s_i``),
  so the loss has a gradient with respect to the scores, hence to the keys and the query.
  Deterministic, and the result does not depend on the order of the reference set.
* :class:`IIDGaussian`: ``x_i ~ N(mu, diag(sigma^2))`` i.i.d. with trainable ``mu, sigma``.
* :class:`FirstN`: the first ``n`` rows of a trainable ``(n_max, d)`` matrix.
* :class:`MLPCreator`: an MLP maps ``z`` to ``(n_max, d)``; the first ``n`` rows are kept.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .padding import sizes_to_batch, slot_index

__all__ = ["SetCreator", "TopN", "IIDGaussian", "FirstN", "MLPCreator", "CREATORS", "make_creator"]


class SetCreator(nn.Module):
    """Base class: ``forward(z, sizes, generator=None) -> (x, batch)`` as described above."""

    def __init__(self, latent_dim: int, dim: int, max_size: int):
        super().__init__()
        self.latent_dim, self.dim, self.max_size = latent_dim, dim, max_size

    def _check(self, z: torch.Tensor, sizes: torch.Tensor) -> None:
        if z.shape[0] != sizes.shape[0]:
            raise ValueError(f"{z.shape[0]} latents but {sizes.shape[0]} set sizes")
        if sizes.numel() and int(sizes.max()) > self.max_size:
            raise ValueError(f"set size {int(sizes.max())} exceeds max_size={self.max_size}")


class TopN(SetCreator):
    """Top-n creation: the ``n`` highest-scoring points of a trainable reference set."""

    def __init__(
        self,
        latent_dim: int,
        dim: int,
        max_size: int,
        num_reference: int | None = None,
        key_dim: int = 16,
        hidden: int = 64,
    ):
        super().__init__(latent_dim, dim, max_size)
        m = num_reference or max_size
        if m < max_size:
            raise ValueError(f"reference set of {m} points cannot give sets of {max_size}")
        self.key_dim = key_dim
        self.reference = nn.Parameter(torch.randn(m, dim))
        self.keys = nn.Parameter(torch.randn(m, key_dim))
        self.query = nn.Sequential(
            nn.Linear(latent_dim, hidden), nn.SiLU(), nn.Linear(hidden, key_dim)
        )
        self.film = nn.Linear(1, 2 * dim)  # s -> (gamma(s), beta(s))

    def scores(self, z: torch.Tensor) -> torch.Tensor:
        """``s[b, i] = <k_i, g(z_b)> / sqrt(d_k)`` for every reference point, ``(B, M)``."""
        return self.query(z) @ self.keys.T / math.sqrt(self.key_dim)

    def forward(self, z, sizes, generator=None):
        self._check(z, sizes)
        n_max = int(sizes.max()) if sizes.numel() else 0
        top, idx = self.scores(z).topk(n_max, dim=1)  # descending, (B, n_max)
        keep = torch.arange(n_max, device=z.device)[None, :] < sizes[:, None]
        s = top[keep].unsqueeze(-1)  # row-major: set 0 first, so the batch index is sorted
        gamma, beta = self.film(s).chunk(2, dim=-1)
        x = (1 + gamma) * self.reference[idx[keep]] + beta
        return x, sizes_to_batch(sizes)


class IIDGaussian(SetCreator):
    """Independent Gaussian points with a trainable mean and per-channel scale."""

    def __init__(self, latent_dim: int, dim: int, max_size: int):
        super().__init__(latent_dim, dim, max_size)
        self.mean = nn.Parameter(torch.zeros(dim))
        self.log_scale = nn.Parameter(torch.zeros(dim))

    def forward(self, z, sizes, generator=None):
        self._check(z, sizes)
        noise = torch.randn(
            int(sizes.sum()), self.dim, generator=generator, device=z.device, dtype=z.dtype
        )
        return self.mean + self.log_scale.exp() * noise, sizes_to_batch(sizes)


class FirstN(SetCreator):
    """The first ``n`` rows of one trainable reference matrix, whatever the latent."""

    def __init__(self, latent_dim: int, dim: int, max_size: int):
        super().__init__(latent_dim, dim, max_size)
        self.reference = nn.Parameter(torch.randn(max_size, dim))

    def forward(self, z, sizes, generator=None):
        self._check(z, sizes)
        batch = sizes_to_batch(sizes)
        return self.reference[slot_index(batch, sizes.shape[0])], batch


class MLPCreator(SetCreator):
    """An MLP from the latent to ``max_size`` points; a set of size ``n`` takes the first ``n``."""

    def __init__(self, latent_dim: int, dim: int, max_size: int, hidden: int = 128):
        super().__init__(latent_dim, dim, max_size)
        self.net = nn.Sequential(
            nn.Linear(latent_dim, hidden), nn.SiLU(), nn.Linear(hidden, max_size * dim)
        )

    def forward(self, z, sizes, generator=None):
        self._check(z, sizes)
        batch = sizes_to_batch(sizes)
        points = self.net(z).view(z.shape[0], self.max_size, self.dim)
        return points[batch, slot_index(batch, sizes.shape[0])], batch


CREATORS: dict[str, type[SetCreator]] = {
    "topn": TopN,
    "iid": IIDGaussian,
    "firstn": FirstN,
    "mlp": MLPCreator,
}


def make_creator(name: str, latent_dim: int, dim: int, max_size: int) -> SetCreator:
    """A creator by name: one of ``topn``, ``iid``, ``firstn``, ``mlp``."""
    if name not in CREATORS:
        raise ValueError(f"unknown set creator {name!r}; choose from {sorted(CREATORS)}")
    return CREATORS[name](latent_dim, dim, max_size)
