r"""A diffusion model: network + interpolant + symmetry treatment, on flat graph batches.

The network follows the calling convention of :mod:`quotient_diffusion.nn`:
``net(pos, node_attr, batch, t, edge_index, edge_attr) -> (vec, feat)``. Coordinates are in
units of ``coord_scale`` Angstrom (data are divided by it before noising). The network sees
``[node_attr, h_t]``: conditioning features (the molecular graph, residue indices) and, for de
novo generation, the noisy diffused features h_t (``feature_dim`` of them, in
``batch.extras['features']``). A batch with stereo inputs (:mod:`~quotient_diffusion.nn.stereo`,
in its extras) passes them as the network's ``stereo`` argument; a network that takes none
refuses such a batch.

Denoiser. With ``preconditioning`` (EDM's c_skip / c_out / c_in, Karras et al. 2022, written
for x_t = a eps + b x1 with data standard deviation sigma per coordinate): let
V(t) = a^2 + b^2 sigma^2 (the variance of x_t), then

    D(x_t, t) = Pi(c_skip x_t + c_out F(c_in x_t, t)),
    c_skip = b sigma^2 / V,   c_out = a sigma / sqrt(V),   c_in = 1 / sqrt(V).

(EDM's formulas with y = x_t / b and noise level a / b.) F's input has unit variance at every
t, its target (x1 - c_skip x_t) / c_out too, and D -> x_t / b as a -> 0, so the network never
has to learn the identity at low noise. The invariant features follow the same formulas with
their own ``sigma_data_features``. Without preconditioning, D = Pi(x_t + vec), D_h = feat.

Pi is the group's ``remove_translations`` (the group is the treatment's): centring for a group
with translations (SE(3), the default), the identity for one without (SO(3), SO(2) about z).
Data, prior noise and every sampling step pass through the same Pi. ``augment_rotations``
moves each training molecule by a random element of the group's rotations (``group.augment``).

Training: t ~ U(t_min, 1) per molecule; per-molecule loss of the treatment, weighted by
``weighting``: 'unit' (1 / c_out^2: the loss of F, which weighs every t equally; the default with
preconditioning), 'velocity' ((a' b / a - b')^2: the loss of the velocity field), 'snr'
(b^2 / a^2: EDM's epsilon loss) or 'constant'; 'velocity' and 'snr' are clipped at
``max_weight``.

Task hooks, the same for every treatment. ``auxiliary_loss`` (:class:`AuxiliaryLoss`, built by
the task) receives the denoiser output D, the clean x1 (both in model units, x1 as the
treatment's target before any alignment), the times and the batch, and returns a per-molecule
loss that the model weights by the coordinate loss's w(t) and adds to the loss (logged as
``aux_loss``, with the hook's own logs). An auxiliary loss that is invariant under the group
acting on D leaves the symmetry treatments intact (docs/theory.md, "Auxiliary losses").
``noise_levels`` = K > 1 tiles each training batch K times (:meth:`GraphBatch.repeat`), so
every molecule is seen at K independent times, noises and augmentation rotations in one step;
only while training with drawn times (validation and fixed ``t`` see the batch once).
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn

from ..data.batch import GraphBatch
from ..groups import GroupAction
from ..nn.stereo import StereoInputs
from .interpolants import Interpolant, LinearInterpolant
from .samplers import SamplerConfig, prior_sample, sample
from .treatments import Quotient, Treatment

__all__ = ["DiffusionModel", "AuxiliaryLoss", "WEIGHTINGS"]

WEIGHTINGS = ("unit", "velocity", "snr", "constant")


class AuxiliaryLoss(Protocol):
    """A task's extra loss on the denoiser output (see the module docstring)."""

    def __call__(
        self, denoised: torch.Tensor, x1: torch.Tensor, t: torch.Tensor, graph: GraphBatch
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """(per-molecule loss (B,), before the model's w(t); logs name -> number)."""
        ...


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
        preconditioning: bool = False,
        sigma_data: float = 1.0,
        sigma_data_features: float = 1.0,
        auxiliary_loss: AuxiliaryLoss | None = None,
        noise_levels: int = 1,
    ):
        super().__init__()
        if weighting not in WEIGHTINGS:
            raise ValueError(f"unknown weighting {weighting!r}; choose one of {WEIGHTINGS}")
        if weighting == "unit" and not preconditioning:
            raise ValueError("weighting 'unit' is the loss of the preconditioned network F: "
                             "it needs preconditioning")
        if sigma_data <= 0 or sigma_data_features <= 0:
            raise ValueError("sigma_data and sigma_data_features must be positive")
        if noise_levels < 1:
            raise ValueError(f"noise_levels must be at least 1, got {noise_levels}")
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
        self.preconditioning = preconditioning
        self.sigma_data = sigma_data
        self.sigma_data_features = sigma_data_features
        self.auxiliary_loss = auxiliary_loss
        self.noise_levels = noise_levels

    @property
    def group(self) -> GroupAction:
        """The group the model quotients by (its treatment's)."""
        return self.treatment.group

    # ---------------------------------------------------------------- denoiser
    def scalings(
        self, t: torch.Tensor, sigma: float
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(c_skip, c_out, c_in) at times t for data of standard deviation ``sigma``."""
        a, b = self.interpolant.coefficients(t)
        var = a * a + b * b * sigma**2
        return b * sigma**2 / var, a * sigma / var.sqrt(), var.rsqrt()

    def denoise(
        self,
        x: torch.Tensor,
        h: torch.Tensor | None,
        t: torch.Tensor,
        graph: GraphBatch,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(D, D_h) for noisy coordinates x (scaled units), noisy features h, times t (B,)."""
        stereo = StereoInputs.from_extras(graph.extras)
        if stereo is not None and not getattr(self.network, "stereo", False):
            raise ValueError("the batch carries stereo inputs but the network takes none "
                             "(a model trained with task option stereo reads them)")
        extra = {} if stereo is None else {"stereo": stereo}
        if not self.preconditioning:
            inputs = graph.node_attr if h is None else torch.cat([graph.node_attr, h], -1)
            vec, feat = self.network(x, inputs, graph.batch, t, graph.edge_index,
                                     graph.edge_attr, **extra)
            den = self.group.remove_translations(x + vec, graph.batch)
            return den, (feat if self.feature_dim else None)
        tn = t[graph.batch].unsqueeze(-1)
        skip, out, scale_in = self.scalings(tn, self.sigma_data)
        inputs = graph.node_attr
        if h is not None:
            skip_h, out_h, scale_in_h = self.scalings(tn, self.sigma_data_features)
            inputs = torch.cat([inputs, scale_in_h * h], -1)
        vec, feat = self.network(scale_in * x, inputs, graph.batch, t, graph.edge_index,
                                 graph.edge_attr, **extra)
        den = self.group.remove_translations(skip * x + out * vec, graph.batch)
        return den, (skip_h * h + out_h * feat if h is not None else None)

    def loss_weight(self, t: torch.Tensor, sigma: float) -> torch.Tensor:
        """The per-molecule weight w(t) of the squared error of D (data std ``sigma``)."""
        if self.weighting == "unit":
            return self.scalings(t, sigma)[1].clamp_min(self.interpolant.a_min * sigma) ** -2
        if self.weighting == "velocity":
            return self.interpolant.velocity_weight(t).clamp_max(self.max_weight)
        if self.weighting == "snr":
            a, b = self.interpolant.coefficients(t)
            return (b * b / a.clamp_min(self.interpolant.a_min) ** 2).clamp_max(self.max_weight)
        return torch.ones_like(t)

    # ---------------------------------------------------------------- training
    def training_loss(
        self,
        graph: GraphBatch,
        generator: torch.Generator | None = None,
        t: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict]:
        """Mean over molecules of the treatment's loss (+ feature loss); returns (loss, logs).

        ``t`` (B,) fixes the times (validation by noise level); by default t ~ U(t_min, 1),
        and in training mode each molecule is tiled ``noise_levels`` times first.
        The logs hold the weighted losses and ``coord_mse``, the unweighted mean squared
        residual per coordinate in Angstrom^2, comparable across weightings.
        """
        if t is None and self.training and self.noise_levels > 1:
            graph = graph.repeat(self.noise_levels)
        batch, nb = graph.batch, graph.num_graphs
        dtype = graph.pos.dtype
        x1 = self.group.remove_translations(graph.pos, batch) / self.coord_scale
        if self.augment_rotations:
            x1 = self.group.augment(x1, batch, generator)
        if t is None:
            # drawn on the CPU (the generator's device), so every device sees the same times
            u = torch.rand(nb, dtype=dtype, generator=generator).to(batch.device)
            t = self.t_min + (1 - self.t_min) * u
        eps, eps_h = prior_sample(batch, self.feature_dim, dtype, generator, self.group)
        tn = t[batch].unsqueeze(-1)
        xt = self.interpolant.noisy(x1, eps, tn)
        h1 = graph.extras.get("features") if self.feature_dim else None
        ht = None if h1 is None else self.interpolant.noisy(h1, eps_h, tn)
        den, den_h = self.denoise(xt, ht, t, graph)
        mse = self.treatment.loss(den, x1, xt, batch)
        weight = self.loss_weight(t, self.sigma_data)
        coord = mse * weight
        loss = coord.mean()
        logs = {"coord_loss": float(coord.mean().detach()),
                "coord_mse": float(mse.mean().detach()) * self.coord_scale**2}
        if self.auxiliary_loss is not None:
            aux, aux_logs = self.auxiliary_loss(den, x1, t, graph)
            aux = (aux * weight).mean()
            loss = loss + aux
            logs["aux_loss"] = float(aux.detach())
            logs.update(aux_logs)
        if h1 is not None:
            sq = torch.zeros(nb, dtype=dtype, device=batch.device).index_add_(
                0, batch, ((den_h - h1) ** 2).sum(-1))
            counts = torch.bincount(batch, minlength=nb).to(dtype)
            feat = self.loss_weight(t, self.sigma_data_features) * sq / (counts * self.feature_dim)
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
        """Sample coordinates (Angstrom; centred if the group has translations) and features
        for the molecules of ``graph`` (its ``pos`` is ignored; its graph and node features
        condition the network)."""
        config = config or SamplerConfig()
        dtype = graph.node_attr.dtype if graph.node_attr.is_floating_point() else torch.float32
        x, h = prior_sample(graph.batch, self.feature_dim, dtype, generator, self.group)

        def denoise(x, h, t):
            return self.denoise(x, h, t, graph)

        x, h = sample(
            denoise, x, h, graph.batch, self.treatment, self.interpolant, config, generator
        )
        return x * self.coord_scale, h
