r"""ODE and SDE samplers from t = 0 (prior) to t = 1 (data) on flat batches.

Given a denoiser ``denoise(x, h, t) -> (D, D_h)`` (t per molecule), the treatment first
prepares D at the current x (``Treatment.prediction``: D itself, or for AF3 D aligned to x by
Kabsch), the interpolant gives the velocity v and score s, and the treatment turns them into a
drift:

* ODE: dx/dt = drift(v), integrated with one of three solvers (``solver``):

  - 'euler': x' = x + dt drift (one network evaluation per step);
  - 'heun': Heun's second-order predictor-corrector (two evaluations per step), except at the
    last step, which is Euler: the velocity of the linear interpolant, (D - x) / (1 - t), is
    singular at t = 1, and an Euler step from t to 1 lands exactly on D(x, t);
  - 'dpm2m': DPM-Solver++(2M) (Lu et al. 2022), a second-order multistep exponential
    integrator in the log signal-to-noise ratio lambda = log(b / a), one evaluation per step.
    The ODE drift is linear in the denoiser, drift = (a'/a) x + (b' - a' b / a) D~, where
    D~ is the treatment's version of D (centred; projected to the horizontal space at x for
    the quotient treatment, since P_x x = x), so D~ is read back from the drift. A step from
    (t0, lambda0) to (t1, lambda1), with h = lambda1 - lambda0, is

        x' = (a1 / a0) x + b1 (1 - e^-h) D^,
        D^ = (1 + 1/(2r)) D~(x, t0) - (1/(2r)) D~_prev,   r = h_prev / h,

    with D^ = D~(x, t0) (first order) at the first two steps (lambda = -inf at t = 0) and the
    last one. The first-order step is DDIM, and for the linear interpolant it is the Euler step
    exactly, x' = x + (t1 - t0) (D~ - x) / (1 - t0): 'dpm2m' is Euler with D extrapolated
    linearly in lambda from the last two evaluations.

* SDE (Euler-Maruyama): dx = drift(v, s, eta) dt + sqrt(2 eta dt) noise(z), with
  eta(t) = noise_scale * a(t)^2. This choice keeps the rate of the Langevin part,
  eta |s| / |x| ~ eta / a^2, constant (explicit steps stay stable) and switches the noise off as
  t -> 1. The score drift eta s and the noise sqrt(2 eta) are scaled together, so every
  ``noise_scale`` >= 0 keeps the ODE's marginals (0 is the ODE itself); a larger one forgets the
  prior faster and corrects integration errors more strongly, at the price of more noise per
  explicit step (tests/test_diffusion.py checks 0.3 and 3).

Time grids 0 = t_0 < t_1 < ... < t_K = 1 (``schedule``, K = ``steps``), see :func:`time_grid`:

* 'uniform': t_k = k / K;
* 'power': t_k = 1 - (1 - k/K)^rho (rho > 1 packs the steps near the data, t -> 1, where bond
  lengths are decided; for the linear interpolant a(t_k) = (1 - k/K)^rho, EDM's rho-spacing of
  the noise level from a = 1 to a = 0). With ``last_time`` T the last interior point is fixed
  at T and the power law spans [0, T]: t_k = T (1 - (1 - k/(K-1))^rho) for k < K, t_K = 1. The
  last step of every solver lands on the denoiser's output at t_{K-1}, a posterior mean that
  blurs bond lengths by the noise left at t_{K-1}; T close to 1 (0.99) keeps them sharp with
  few steps, which the plain power grid only reaches with many (t_{K-1} = 1 - K^-rho);
* 'edm': EDM's grid (Karras et al. 2022) in the noise-to-signal ratio sigma = a / b: t_0 = 0,
  then K - 1 points with sigma_i^(1/rho) evenly spaced from sigma_max^(1/rho) to
  sigma_min^(1/rho) (sigma in [0.002, 80], rho = 7 by default; sigma_min is raised to twice
  a / b at t = 1 where that is larger, as for the VP schedule, so that no interval is empty),
  then t_K = 1; for the linear interpolant t = 1 / (1 + sigma).

Invariant node features ``h`` (EDM's one-hot atom types) follow the same interpolant with the
ordinary (group-free) drift.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from ..groups import SE3, GroupAction
from .interpolants import Interpolant
from .treatments import Treatment

__all__ = ["SamplerConfig", "resolve_sampler", "sample", "prior_sample", "time_grid", "SOLVERS",
           "SCHEDULES"]

Denoiser = Callable[
    [torch.Tensor, torch.Tensor | None, torch.Tensor], tuple[torch.Tensor, torch.Tensor | None]
]

SOLVERS = ("euler", "heun", "dpm2m")
SCHEDULES = ("uniform", "power", "edm")
#: rho of each schedule when ``SamplerConfig.rho`` is None
DEFAULT_RHO = {"power": 2.0, "edm": 7.0}
#: (sigma_min, sigma_max) of the 'edm' grid, sigma = a / b (EDM's values)
EDM_SIGMA_RANGE = (0.002, 80.0)


@dataclass
class SamplerConfig:
    """How to integrate: ``method`` 'ode' or 'sde'; ``solver`` 'euler', 'heun' or 'dpm2m' (the
    last two ODE only); time grid ``schedule`` 'uniform', 'power' or 'edm' with exponent
    ``rho`` (None: 2 for 'power', 7 for 'edm') and, for 'power' only, ``last_time`` (the
    last interior time t_{K-1}; None: the power law's own); ``steps`` intervals of the
    grid."""

    steps: int = 100
    method: str = "ode"
    solver: str = "euler"
    schedule: str = "uniform"
    rho: float | None = None
    noise_scale: float = 1.0
    progress: bool = False
    last_time: float | None = None

    def __post_init__(self):
        if self.method not in ("ode", "sde"):
            raise ValueError(f"method must be 'ode' or 'sde', got {self.method!r}")
        if self.solver not in SOLVERS:
            raise ValueError(f"solver must be one of {SOLVERS}, got {self.solver!r}")
        if self.method == "sde" and self.solver != "euler":
            raise ValueError("the SDE sampler is Euler-Maruyama only (solver='euler')")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.rho is not None and (self.schedule == "uniform" or self.rho <= 0):
            raise ValueError("rho > 0 belongs to the 'power' and 'edm' schedules only")
        if self.steps < 1:
            raise ValueError("steps must be >= 1")
        if self.last_time is not None:
            if self.schedule != "power":
                raise ValueError("last_time belongs to the 'power' schedule only")
            if not 0.0 < self.last_time < 1.0 or self.steps < 2:
                raise ValueError("last_time must lie in (0, 1), with at least 2 steps")

    @property
    def evaluations(self) -> int:
        """Network evaluations per sample (NFE): ``steps``, or 2 ``steps`` - 1 for Heun."""
        return 2 * self.steps - 1 if self.solver == "heun" else self.steps

    def label(self) -> str:
        """A short name such as 'dpm2m-power2-10' (solver, schedule and rho, steps), with
        '-last0.99' for a ``last_time`` and '-noise0.7' for an SDE noise scale other than 1."""
        rho = "" if self.schedule == "uniform" else f"{self.rho or DEFAULT_RHO[self.schedule]:g}"
        name = self.solver if self.method == "ode" else "sde"
        last = "" if self.last_time is None else f"-last{self.last_time:g}"
        noise = ("" if self.method == "ode" or self.noise_scale == 1.0
                 else f"-noise{self.noise_scale:g}")
        return f"{name}-{self.schedule}{rho}-{self.steps}{last}{noise}"


def resolve_sampler(
    ode: SamplerConfig,
    sde_steps: int,
    steps: int | None = None,
    method: str = "ode",
    solver: str | None = None,
    schedule: str | None = None,
    rho: float | None = None,
    noise_scale: float = 1.0,
    progress: bool = False,
    last_time: float | None = None,
) -> SamplerConfig:
    """The sampler asked for by options that may be unset (None). The ODE takes what is unset
    from ``ode``; the SDE is Euler-Maruyama with ``sde_steps`` steps on the uniform grid unless
    told otherwise. A schedule other than the default's does not inherit the default's rho and
    last_time; ``last_time=0`` asks for none (the power law's own last point)."""
    base = ode if method == "ode" else SamplerConfig(steps=sde_steps, method="sde")
    grid = schedule or base.schedule
    if grid == base.schedule:
        rho = base.rho if rho is None else rho
        last_time = base.last_time if last_time is None else last_time
    last_time = last_time or None  # 0: none
    return SamplerConfig(steps=steps or base.steps, method=method, solver=solver or base.solver,
                         schedule=grid, rho=rho, noise_scale=noise_scale, progress=progress,
                         last_time=last_time)


def _time_of_ratio(interpolant: Interpolant, sigma: torch.Tensor) -> torch.Tensor:
    """The times t with a(t) / b(t) = sigma (a / b falls from inf at t = 0 to 0 at t = 1),
    by bisection in float64."""
    lo = torch.zeros_like(sigma, dtype=torch.float64)
    hi = torch.ones_like(lo)
    target = sigma.double()
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        a, b = interpolant.coefficients(mid)
        above = a > target * b  # a / b > sigma: still too noisy, t must grow
        lo = torch.where(above, mid, lo)
        hi = torch.where(above, hi, mid)
    return 0.5 * (lo + hi)


def time_grid(
    config: SamplerConfig, interpolant: Interpolant, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """The ``steps + 1`` times 0 = t_0 < ... < t_K = 1 of ``config.schedule`` (module
    docstring)."""
    k = config.steps
    if config.schedule == "uniform":
        return torch.linspace(0.0, 1.0, k + 1, dtype=dtype)
    u = torch.linspace(0.0, 1.0, k + 1, dtype=torch.float64)
    rho = config.rho or DEFAULT_RHO[config.schedule]
    if config.schedule == "power" and config.last_time is not None:
        inner = torch.linspace(0.0, 1.0, k, dtype=torch.float64)
        grid = torch.cat([config.last_time * (1.0 - (1.0 - inner) ** rho),
                          torch.ones(1, dtype=torch.float64)])
    elif config.schedule == "power":
        grid = 1.0 - (1.0 - u) ** rho
    else:
        a1, b1 = interpolant.coefficients(torch.ones((), dtype=torch.float64))
        sigma_min = max(EDM_SIGMA_RANGE[0], 2 * float(a1 / b1))  # VP ends at a / b = 0.0032
        lo, hi = (s ** (1.0 / rho) for s in (sigma_min, EDM_SIGMA_RANGE[1]))
        sigma = (hi + torch.linspace(0.0, 1.0, k - 1, dtype=torch.float64) * (lo - hi)) ** rho
        inner = _time_of_ratio(interpolant, sigma)
        grid = torch.cat([torch.zeros(1, dtype=torch.float64), inner,
                          torch.ones(1, dtype=torch.float64)])
    grid[0], grid[-1] = 0.0, 1.0
    return grid.to(dtype)


@dataclass(frozen=True)
class _DPMStep:
    """Coefficients of one DPM-Solver++(2M) step from t0 to t1 (Python floats, computed once
    per call): D~ = (drift - cx y) / cd at t0, then y' = ratio y + weight D^, and the
    log-SNR step h = lambda1 - lambda0."""

    cx: float  # a'/a at t0
    cd: float  # b' - a' b / a at t0
    ratio: float  # a1 / a0
    weight: float  # b1 - (a1 / a0) b0 = b1 (1 - e^-h)
    h: float


def _dpm_steps(interpolant: Interpolant, grid: torch.Tensor) -> list[_DPMStep]:
    """The :class:`_DPMStep` of every interval of ``grid`` (float64 throughout)."""
    t = grid.double()
    a, b = interpolant.coefficients(t)
    da, db = interpolant.derivatives(t)
    a_safe = a.clamp_min(interpolant.a_min)
    cx, cd = da / a_safe, db - da * b / a_safe
    lam = torch.where(b <= 0, -math.inf, torch.where(a <= 0, math.inf, (b / a_safe).log()))
    steps = []
    for k in range(len(grid) - 1):
        ratio = float(a[k + 1] / a[k])
        steps.append(_DPMStep(float(cx[k]), float(cd[k]), ratio,
                              float(b[k + 1] - ratio * b[k]), float(lam[k + 1] - lam[k])))
    return steps


def prior_sample(
    batch: torch.Tensor,
    num_features: int = 0,
    dtype: torch.dtype = torch.float32,
    generator: torch.Generator | None = None,
    group: GroupAction | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Gaussian coordinates (n, 3) without the translations of ``group`` (default SE(3):
    centred per molecule) and, if asked, Gaussian features (n, F)."""
    n = batch.shape[0]
    group = group if group is not None else SE3()
    # drawn on the CPU (the generator's device), then moved to the batch's device: every device
    # sees the same noise
    x = torch.randn(n, 3, dtype=dtype, generator=generator).to(batch.device)
    x = group.remove_translations(x, batch)
    h = None
    if num_features:
        h = torch.randn(n, num_features, dtype=dtype, generator=generator).to(batch.device)
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
    """Integrate from the prior sample (x, h) at t = 0 to t = 1; returns the final (x, h).
    Every step ends without the translations of ``treatment.group`` (centred for SE(3)).

    The steps run in ``torch.inference_mode`` (less bookkeeping per tensor operation than
    ``no_grad``; the same numbers); the results are handed back as ordinary tensors (copies), so
    that callers may modify them in place."""
    with torch.inference_mode():
        x, h = _integrate(denoise, x, h, batch, treatment, interpolant, config, generator)
    return x.clone(), (None if h is None else h.clone())


def _integrate(
    denoise: Denoiser,
    x: torch.Tensor,
    h: torch.Tensor | None,
    batch: torch.Tensor,
    treatment: Treatment,
    interpolant: Interpolant,
    config: SamplerConfig,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The body of :func:`sample`."""
    nb = int(batch.max()) + 1
    grid = time_grid(config, interpolant, x.dtype)

    def fields(x, h, t: float):
        tm = torch.full((nb,), t, dtype=x.dtype)
        den, den_h = denoise(x, h, tm)
        den = treatment.prediction(den, x, batch)  # AF3: D aligned to x (treatments.py)
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

    dpm = _dpm_steps(interpolant, grid) if config.solver == "dpm2m" else []
    history: tuple[float, torch.Tensor, torch.Tensor | None] | None = None  # (h, D~, D~_h)
    steps = range(config.steps)
    for k in tqdm(steps, desc=f"sampling ({config.method})", disable=not config.progress,
                  leave=False):
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
        elif config.solver == "dpm2m":
            c = dpm[k]
            # D~ from drift = (a'/a) y + (b' - a' b / a) D~ (the ODE drift is linear in D)
            den = (dx - c.cx * x) / c.cd
            den_h = None if h is None else (dh - c.cx * h) / c.cd
            use, use_h = den, den_h
            if history is not None and k < config.steps - 1:
                w = c.h / (2 * history[0])  # 1 / (2 r), r = h_prev / h (0 after t = 0)
                use = (1 + w) * den - w * history[1]
                use_h = None if h is None else (1 + w) * den_h - w * history[2]
            history = (c.h, den, den_h)
            x = c.ratio * x + c.weight * use
            h = None if h is None else c.ratio * h + c.weight * use_h
        else:
            x = x + dx * dt
            h = None if h is None else h + dh * dt
        x = treatment.group.remove_translations(x, batch)
    return x, h
