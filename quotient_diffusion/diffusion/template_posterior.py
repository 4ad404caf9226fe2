r"""Near-exact posterior for a rotation-invariant toy target: rotated noisy templates.

Target: x1 = R (T_k + sigma_s xi) with k uniform over K centred templates (N points each),
R Haar-uniform on SO(3) and xi a centred standard Gaussian. Given x_t = a eps + b x1:

* for fixed (k, R): x_t ~ N(b R T_k, v I) with v = a^2 + b^2 sigma_s^2, so
  log p(x_t | k, R) = (b / v) <x_t, R T_k> - b^2 |T_k|^2 / (2 v) + const, and
  x1 | x_t, k, R ~ N(mu, c I) with mu = R T_k + (b sigma_s^2 / v)(x_t - b R T_k),
  c = a^2 sigma_s^2 / v;
* the integral over R is done by self-normalised importance sampling with a defensive mixture
  proposal per (cloud, template): half Haar-uniform rotations, half Gaussian rotation vectors
  around the Kabsch optimum R*_k (width from the Laplace approximation). Importance weights
  use the proposal density with respect to the normalised Haar measure,
  q(R) = 1/2 + 1/2 N(omega; s^2 I) 8 pi^2 theta^2 / (2 - 2 cos theta).

From posterior samples the minimiser of each treatment's loss follows: the posterior mean
(conventional; its horizontal part for quotient), the mean of targets aligned to x_t (GeoDiff),
and the fixed point D = E[A_D(x1)] (AF3). These are the denoisers an infinitely large network
trained to convergence would learn under each treatment.

:class:`AxialTemplateMixture` is the SO(2) analogue: R is a rotation about a fixed axis a by an
angle uniform on [0, 2 pi), so the target is invariant under SO(2) about a but not under SO(3).
For fixed k the angle's posterior is von Mises, p(theta | k, x_t) ~ exp(kappa cos(theta -
theta*)) with kappa = b rho / v, rho = |(sum_n x^perp_n . T^perp_n, sum_n a . (T_n x x_n))|.
Its particles are a uniform grid of M angles with a random offset (Haar-uniform, so the weights
are the likelihoods): the trapezoidal rule on a periodic integrand, whose error for the
posterior mean is of order exp(-M^2 / (2 kappa)), negligible for M >= 64 at this target's
kappa (at most a few hundred). Alignments are SO(2) alignments about a.
"""

from __future__ import annotations

import math

import torch

from ..groups import SO2, axis_angle_to_matrix, kabsch_rotation, random_rotations
from .interpolants import Interpolant

__all__ = ["TemplateMixture", "AxialTemplateMixture"]


def _log_map_angle(rel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotation vector omega and angle theta of rotation matrices (..., 3, 3)."""
    cos = ((rel.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1 + 1e-7, 1 - 1e-7)
    theta = torch.arccos(cos)
    anti = torch.stack(
        [
            rel[..., 2, 1] - rel[..., 1, 2],
            rel[..., 0, 2] - rel[..., 2, 0],
            rel[..., 1, 0] - rel[..., 0, 1],
        ],
        -1,
    )
    omega = anti * (theta / (2 * torch.sin(theta))).unsqueeze(-1)
    return omega, theta


class TemplateMixture:
    """The toy target (Haar-random rotations in SO(3)) and its posterior. ``templates``:
    (K, N, 3), centred."""

    def __init__(self, templates: torch.Tensor, shape_noise: float):
        self.templates = templates - templates.mean(1, keepdim=True)
        self.shape_noise = shape_noise

    @property
    def num_points(self) -> int:
        return self.templates.shape[1]

    @classmethod
    def random(
        cls,
        num_templates: int,
        num_points: int,
        shape_noise: float,
        seed: int = 0,
        dtype=torch.float64,
    ) -> TemplateMixture:
        """Random asymmetric templates of radius of gyration about 1.2."""
        gen = torch.Generator().manual_seed(seed)
        t = torch.randn(num_templates, num_points, 3, dtype=dtype, generator=gen)
        t = t - t.mean(1, keepdim=True)
        rg = t.pow(2).sum(-1).mean(-1).sqrt()
        return cls(1.2 * t / rg[:, None, None], shape_noise)

    def sample(self, num: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``num`` target clouds as a flat batch (num * N, 3)."""
        k = torch.randint(len(self.templates), (num,), generator=generator)
        xi = torch.randn(num, self.num_points, 3, dtype=self.templates.dtype, generator=generator)
        shape = self.templates[k] + self.shape_noise * (xi - xi.mean(1, keepdim=True))
        rot = self.random_rotations(num, generator)
        return torch.einsum("bij,bnj->bni", rot, shape).reshape(-1, 3)

    def random_rotations(self, num: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``num`` Haar-random rotation matrices of the target's group (here SO(3))."""
        return random_rotations(num, self.templates.dtype, generator)

    def rotation_particles(
        self,
        xt: torch.Tensor,
        b: torch.Tensor,
        v: torch.Tensor,
        num_rotations: int,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Proposal rotations (B, K, M, 3, 3) for every (cloud, template) and their log-density
        with respect to the normalised Haar measure (B, K, M): the defensive mixture of the
        module docstring."""
        bsz, n, _ = xt.shape
        kt = len(self.templates)
        dtype = xt.dtype
        tmpl = self.templates.to(dtype)
        norms = tmpl.pow(2).sum((-1, -2))  # (K,)
        # Kabsch optimum of each template against x_t: R* T_k ~ x_t
        x_rep = xt.unsqueeze(1).expand(bsz, kt, n, 3).reshape(-1, 3)
        t_rep = tmpl.unsqueeze(0).expand(bsz, kt, n, 3).reshape(-1, 3)
        idx = torch.arange(bsz * kt).repeat_interleave(n)
        r_star = kabsch_rotation(t_rep, x_rep, idx).view(bsz, kt, 3, 3)
        # Laplace width of the rotation posterior, capped: the uniform half covers broad cases
        width = 1.5 * v.sqrt().unsqueeze(1) / (b.unsqueeze(1) * (2 / 3 * norms).sqrt() + 1e-9)
        width = width.clamp(1e-3, 0.6)  # (B, K)
        half = num_rotations // 2
        uni = random_rotations(bsz * kt * half, dtype, generator).view(bsz, kt, half, 3, 3)
        omega = torch.randn(bsz, kt, num_rotations - half, 3, dtype=dtype, generator=generator)
        loc = r_star.unsqueeze(2) @ axis_angle_to_matrix(omega * width[..., None, None])
        rots = torch.cat([uni, loc], 2)  # (B, K, M, 3, 3)
        # proposal density w.r.t. normalised Haar measure
        om, theta = _log_map_angle(r_star.unsqueeze(2).transpose(-1, -2) @ rots)
        w3 = width[..., None]
        log_gauss = -om.pow(2).sum(-1) / (2 * w3**2) - 1.5 * torch.log(2 * math.pi * w3**2)
        haar = torch.log(2 * (1 - torch.cos(theta)).clamp_min(1e-30) / theta.clamp_min(1e-15) ** 2)
        log_loc = log_gauss + math.log(8 * math.pi**2) - haar
        log_q = torch.logaddexp(torch.full_like(log_loc, math.log(0.5)), log_loc + math.log(0.5))
        return rots, log_q

    def aligned(self, x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        """Each cloud of ``x`` (S, N, 3) rotated onto the matching one of ``ref`` by the
        target's group (Kabsch here)."""
        n = x.shape[1]
        idx = torch.arange(x.shape[0]).repeat_interleave(n)
        rot = kabsch_rotation(x.reshape(-1, 3), ref.reshape(-1, 3), idx)
        return torch.einsum("sij,snj->sni", rot, x)

    # ------------------------------------------------------------------ posterior
    def posterior(
        self,
        xt: torch.Tensor,
        a: torch.Tensor,
        b: torch.Tensor,
        num_rotations: int = 256,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Particles of p(k, R | x_t): (log-weights (B, P), means mu (B, P, N, 3), var c (B,)).

        ``xt``: (B, N, 3) centred; ``a``, ``b``: (B,). P = K * num_rotations particles.
        """
        bsz, n, _ = xt.shape
        dtype = xt.dtype
        s2 = self.shape_noise**2
        v = a**2 + b**2 * s2  # (B,)
        tmpl = self.templates.to(dtype)
        norms = tmpl.pow(2).sum((-1, -2))  # (K,)
        rots, log_q = self.rotation_particles(xt, b, v, num_rotations, generator)
        # likelihood: (b/v) <x_t, R T_k> - b^2 |T_k|^2 / (2 v)
        h = torch.einsum("bni,knj->bkij", xt, tmpl)  # sum_n x_n T_n^T
        inner = (rots * h.unsqueeze(2)).sum((-1, -2))  # (B, K, M)
        bv = (b / v)[:, None, None]
        log_lik = bv * inner - (b**2 / (2 * v))[:, None, None] * norms[None, :, None]
        log_w = (log_lik - log_q).reshape(bsz, -1)
        # conditional means mu = R T_k (1 - b^2 s2 / v) + (b s2 / v) x_t
        rt = torch.einsum("bkmij,knj->bkmni", rots, tmpl).reshape(bsz, -1, n, 3)
        shrink = (1 - b**2 * s2 / v)[:, None, None, None]
        mu = rt * shrink + (b * s2 / v)[:, None, None, None] * xt.unsqueeze(1)
        return log_w, mu, a**2 * s2 / v

    def denoisers(
        self,
        xt: torch.Tensor,
        a: torch.Tensor,
        b: torch.Tensor,
        num_rotations: int = 256,
        num_samples: int = 64,
        af3_iterations: int = 5,
        kinds: tuple[str, ...] = ("mean", "geodiff", "af3"),
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """Loss minimisers at x_t (B, N, 3) for ``kinds`` among 'mean', 'geodiff', 'af3'."""
        log_w, mu, c = self.posterior(xt, a, b, num_rotations, generator)
        w = torch.softmax(log_w, -1)
        out = {"mean": torch.einsum("bp,bpni->bni", w, mu)}
        if kinds == ("mean",):
            return out
        bsz, n = xt.shape[:2]
        pick = torch.multinomial(w, num_samples, replacement=True, generator=generator)
        chosen = torch.gather(mu, 1, pick[..., None, None].expand(-1, -1, n, 3))
        xi = torch.randn(chosen.shape, dtype=xt.dtype, generator=generator)
        xi = xi - xi.mean(2, keepdim=True)
        samples = (chosen + c.sqrt()[:, None, None, None] * xi).reshape(-1, n, 3)

        def aligned_mean(ref: torch.Tensor) -> torch.Tensor:
            ref_rep = ref.unsqueeze(1).expand(bsz, num_samples, n, 3).reshape(-1, n, 3)
            return self.aligned(samples, ref_rep).view(bsz, num_samples, n, 3).mean(1)

        if "geodiff" in kinds:
            out["geodiff"] = aligned_mean(xt)
        if "af3" in kinds:
            d = out["mean"]
            for _ in range(af3_iterations):
                d = aligned_mean(d)
            out["af3"] = d
        return out

    def denoise_fn(self, interpolant: Interpolant, kind: str, generator=None, **kwargs):
        """A sampler-ready denoiser ``(x, h, t) -> (D, None)`` on flat batches of N-point clouds."""
        n = self.num_points
        kinds = ("mean",) if kind == "mean" else ("mean", kind)

        def denoise(x, h, t):
            a, b = interpolant.coefficients(t)
            xt = x.view(-1, n, 3)
            xt = xt - xt.mean(1, keepdim=True)
            d = self.denoisers(xt, a, b, kinds=kinds, generator=generator, **kwargs)[kind]
            return d.reshape(-1, 3), None

        return denoise


class AxialTemplateMixture(TemplateMixture):
    """The toy target rotated about one axis only (SO(2), uniform angle); see the module
    docstring for its posterior particles."""

    def __init__(self, templates: torch.Tensor, shape_noise: float, axis=(0.0, 0.0, 1.0)):
        super().__init__(templates, shape_noise)
        self.group = SO2(axis)

    def _rotations(self, angles: torch.Tensor) -> torch.Tensor:
        """Rotation matrices (..., 3, 3) about the axis by ``angles`` (...)."""
        axis = self.group.axis.to(angles.dtype)
        return axis_angle_to_matrix(angles.unsqueeze(-1) * axis)

    def random_rotations(self, num, generator=None):
        angles = torch.rand(num, dtype=self.templates.dtype, generator=generator)
        return self._rotations(2 * math.pi * angles)

    def rotation_particles(self, xt, b, v, num_rotations, generator=None):
        bsz, kt = xt.shape[0], len(self.templates)
        offset = torch.rand(bsz, kt, 1, dtype=xt.dtype, generator=generator)
        grid = torch.arange(num_rotations, dtype=xt.dtype)
        rots = self._rotations(2 * math.pi * (offset + grid) / num_rotations)
        return rots, torch.zeros(rots.shape[:-2], dtype=xt.dtype)

    def aligned(self, x, ref):
        n = x.shape[1]
        idx = torch.arange(x.shape[0]).repeat_interleave(n)
        return self.group.align(x.reshape(-1, 3), ref.reshape(-1, 3), idx).view(x.shape)
