r"""A diffusion model: network + interpolant + symmetry treatment, on flat graph batches.

The network follows the calling convention of :mod:`quotient_diffusion.nn`:
``net(pos, node_attr, batch, t, edge_index, edge_attr) -> (vec, feat)``. The denoiser is

    D(x_t, t) = centre(x_t + vec),   D_h = feat  (prediction of the clean features),

in units of ``coord_scale`` Angstrom (data are divided by it before noising). The network sees
``[node_attr, h_t]``: conditioning features (the molecular graph, residue indices) and, for de
novo generation, the noisy diffused features h_t (``feature_dim`` of them, in
``batch.extras['features']``).

Training: t ~ U(t_min, 1) per molecule; per-molecule loss of the treatment, weighted by
``weighting``: 'velocity' (1/a^2, clipped at ``max_weight``: the loss of the velocity field),
'snr' (b^2/a^2: EDM's epsilon loss) or 'constant'.
"""

from __future__ import annotations

import torch
from torch import nn

from ..data.batch import GraphBatch
from ..groups import center, random_rotations, rotate
from .interpolants import Interpolant, LinearInterpolant
from .samplers import SamplerConfig, prior_sample, sample
from .treatments import Quotient, Treatment

__all__ = ["DiffusionModel"]


class DiffusionModel(nn.Module):
    def __init__(
        self,
        network: nn.Module,
        treatment: Treatment | None = None,
        interpolant: Interpolant | None = None,
        coord_scale: float = 1.0,
        feature_dim: int = 0,
        feature_loss_weight: float = 1.0,
        augment_rotations: bool = False,
        weighting: str = "velocity",
        max_weight: float = 100.0,
        t_min: float = 0.0,
    ):
        super().__init__()
        if weighting not in ("velocity", "snr", "constant"):
            raise ValueError(f"unknown weighting {weighting!r}")
        self.network = network
        self.treatment = treatment if treatment is not None else Quotient()
        self.interpolant = interpolant if interpolant is not None else LinearInterpolant()
        self.coord_scale = coord_scale
        self.feature_dim = feature_dim
        self.feature_loss_weight = feature_loss_weight
        self.augment_rotations = augment_rotations
        self.weighting = weighting
        self.max_weight = max_weight
        self.t_min = t_min

    # ---------------------------------------------------------------- denoiser
    def denoise(
        self,
        x: torch.Tensor,
        h: torch.Tensor | None,
        t: torch.Tensor,
        graph: GraphBatch,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(D, D_h) for noisy coordinates x (scaled units), noisy features h, times t (B,)."""
        inputs = graph.node_attr if h is None else torch.cat([graph.node_attr, h], -1)
        vec, feat = self.network(x, inputs, graph.batch, t, graph.edge_index, graph.edge_attr)
        den = center(x + vec, graph.batch)
        return den, (feat if self.feature_dim else None)

    def _weight(self, t: torch.Tensor) -> torch.Tensor:
        a, b = self.interpolant.coefficients(t)
        a2 = a.clamp_min(self.interpolant.a_min) ** 2
        if self.weighting == "velocity":
            return (1.0 / a2).clamp_max(self.max_weight)
        if self.weighting == "snr":
            return (b * b / a2).clamp_max(self.max_weight)
        return torch.ones_like(t)

    # ---------------------------------------------------------------- training
    def training_loss(
        self, graph: GraphBatch, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, dict]:
        """Mean over molecules of the treatment's loss (+ feature loss); returns (loss, logs)."""
        batch, nb = graph.batch, graph.num_graphs
        dtype = graph.pos.dtype
        x1 = center(graph.pos, batch) / self.coord_scale
        if self.augment_rotations:
            x1 = rotate(x1, random_rotations(nb, dtype, generator).to(dtype), batch)
        t = self.t_min + (1 - self.t_min) * torch.rand(nb, dtype=dtype, generator=generator)
        eps, eps_h = prior_sample(batch, self.feature_dim, dtype, generator)
        tn = t[batch].unsqueeze(-1)
        xt = self.interpolant.noisy(x1, eps, tn)
        h1 = graph.extras.get("features") if self.feature_dim else None
        ht = None if h1 is None else self.interpolant.noisy(h1, eps_h, tn)
        den, den_h = self.denoise(xt, ht, t, graph)
        weight = self._weight(t)
        coord = self.treatment.loss(den, x1, xt, batch, weight)
        loss = coord.mean()
        logs = {"coord_loss": float(coord.mean().detach())}
        if h1 is not None:
            sq = torch.zeros(nb, dtype=dtype).index_add_(0, batch, ((den_h - h1) ** 2).sum(-1))
            counts = torch.bincount(batch, minlength=nb).to(dtype)
            feat = weight * sq / (counts * self.feature_dim)
            loss = loss + self.feature_loss_weight * feat.mean()
            logs["feature_loss"] = float(feat.mean().detach())
        logs["loss"] = float(loss.detach())
        return loss, logs

    def forward(
        self, graph: GraphBatch, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, dict]:
        """Same as :meth:`training_loss` (so that DistributedDataParallel can wrap the model)."""
        return self.training_loss(graph, generator)

    # ---------------------------------------------------------------- sampling
    @torch.no_grad()
    def sample(
        self,
        graph: GraphBatch,
        config: SamplerConfig | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Sample coordinates (Angstrom, centred) and features for the molecules of ``graph``
        (its ``pos`` is ignored; its graph and node features condition the network)."""
        config = config or SamplerConfig()
        dtype = graph.node_attr.dtype if graph.node_attr.is_floating_point() else torch.float32
        x, h = prior_sample(graph.batch, self.feature_dim, dtype, generator)

        def denoise(x, h, t):
            return self.denoise(x, h, t, graph)

        x, h = sample(
            denoise, x, h, graph.batch, self.treatment, self.interpolant, config, generator
        )
        return x * self.coord_scale, h
