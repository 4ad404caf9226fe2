r"""ODE and SDE samplers from t = 0 (prior) to t = 1 (data) on flat batches.

Given a denoiser ``denoise(x, h, t) -> (D, D_h)`` (t per molecule), the interpolant gives the
velocity v and score s, and the treatment turns them into a drift:

* ODE: dx/dt = drift(v) (Euler or Heun);
* SDE (Euler-Maruyama): dx = drift(v, s, eta) dt + sqrt(2 eta dt) noise(z), with
  eta(t) = noise_scale * a(t)^2. This choice keeps the rate of the Langevin part,
  eta |s| / |x| ~ eta / a^2, constant (explicit steps stay stable) and switches the noise off as
  t -> 1. The score drift eta s and the noise sqrt(2 eta) are scaled together, so every
  ``noise_scale`` >= 0 keeps the ODE's marginals (0 is the ODE itself); a larger one forgets the
  prior faster and corrects integration errors more strongly, at the price of more noise per
  explicit step (tests/test_diffusion.py checks 0.3 and 3).

Invariant node features ``h`` (EDM's one-hot atom types) follow the same interpolant with the
ordinary (group-free) drift.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from ..groups import center
from .interpolants import Interpolant
from .treatments import Treatment

__all__ = ["SamplerConfig", "sample", "prior_sample"]

Denoiser = Callable[
    [torch.Tensor, torch.Tensor | None, torch.Tensor], tuple[torch.Tensor, torch.Tensor | None]
]


@dataclass
class SamplerConfig:
    """How to integrate: ``method`` 'ode' or 'sde', ``solver`` 'euler' or 'heun' (ODE only)."""

    steps: int = 100
    method: str = "ode"
    solver: str = "euler"
    noise_scale: float = 1.0
    progress: bool = False

    def __post_init__(self):
        if self.method not in ("ode", "sde"):
            raise ValueError(f"method must be 'ode' or 'sde', got {self.method!r}")
        if self.solver not in ("euler", "heun"):
            raise ValueError(f"solver must be 'euler' or 'heun', got {self.solver!r}")
        if self.method == "sde" and self.solver == "heun":
            raise ValueError("the SDE sampler is Euler-Maruyama only (solver='euler')")
        if self.steps < 1:
            raise ValueError("steps must be >= 1")


def prior_sample(
    batch: torch.Tensor,
    num_features: int = 0,
    dtype: torch.dtype = torch.float32,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Centred Gaussian coordinates (n, 3) and, if asked, Gaussian features (n, F)."""
    n = batch.shape[0]
    x = center(torch.randn(n, 3, dtype=dtype, generator=generator), batch)
    h = torch.randn(n, num_features, dtype=dtype, generator=generator) if num_features else None
    return x, h


@torch.no_grad()
def sample(
    denoise: Denoiser,
    x: torch.Tensor,
    h: torch.Tensor | None,
    batch: torch.Tensor,
    treatment: Treatment,
    interpolant: Interpolant,
    config: SamplerConfig,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Integrate from the prior sample (x, h) at t = 0 to t = 1; returns the final (x, h)."""
    nb = int(batch.max()) + 1
    grid = torch.linspace(0.0, 1.0, config.steps + 1, dtype=x.dtype)

    def fields(x, h, t: float):
        tm = torch.full((nb,), t, dtype=x.dtype)
        den, den_h = denoise(x, h, tm)
        tn = tm[batch].unsqueeze(-1)
        v = interpolant.velocity(x, den, tn)
        vh = None if h is None else interpolant.velocity(h, den_h, tn)
        if config.method == "ode":
            return treatment.drift(v, x, batch), vh, tn
        a, _ = interpolant.coefficients(tn)
        eta = config.noise_scale * a**2
        s = interpolant.score(x, den, tn)
        dx = treatment.drift(v, x, batch, s, eta)
        dh = None if h is None else vh + eta * interpolant.score(h, den_h, tn)
        return dx, dh, eta

    steps = range(config.steps)
    for k in tqdm(steps, desc=f"sampling ({config.method})", disable=not config.progress):
        t0, t1 = float(grid[k]), float(grid[k + 1])
        dt = t1 - t0
        dx, dh, aux = fields(x, h, t0)
        if config.method == "sde":
            z = torch.randn(x.shape, dtype=x.dtype, generator=generator)
            x = x + dx * dt + (2 * aux * dt).sqrt() * treatment.noise(z, x, batch)
            if h is not None:
                zh = torch.randn(h.shape, dtype=h.dtype, generator=generator)
                h = h + dh * dt + (2 * aux * dt).sqrt() * zh
        elif config.solver == "heun" and k < config.steps - 1:
            x_e = x + dx * dt
            h_e = None if h is None else h + dh * dt
            dx2, dh2, _ = fields(x_e, h_e, t1)
            x = x + 0.5 * (dx + dx2) * dt
            h = None if h is None else h + 0.5 * (dh + dh2) * dt
        else:
            x = x + dx * dt
            h = None if h is None else h + dh * dt
        x = center(x, batch)
    return x, h
