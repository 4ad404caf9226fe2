"""The horizontal lift of Brownian motion (DESIGN.md 2.6): the sign of the curvature correction.

Brownian motion with variance sigma^2 per unit time on the space a group acts on, read on the
quotient, is reproduced by the horizontal SDE

    dx = -(sigma^2 / 2) h(x) dt + sigma P_x dW,

with h the lifted mean curvature of the orbits. A statistic that sees only the quotient is
|x|^2 (rotation invariant; translation invariant on centred clouds). For true Brownian motion
on centred R^{3N}, d E|x|^2 / dt = sigma^2 (3N - 3). Projected noise alone contributes
sigma^2 (3N - 6); the drift contributes -sigma^2 <x, h> = +3 sigma^2 because <x, h> = -3. The
paper's printed "+ eta h" (drift +(sigma^2/2) h) gives sigma^2 (3N - 9) instead.

Euler-Maruyama adds a bias of (sigma^4 / 4) dt E sum_k |h(x_k)|^2 dt per unit time; the start
clouds are large enough for it to stay well below the Monte-Carlo standard error.
"""

from __future__ import annotations

import pytest
import torch

from quotient_diffusion.groups import SE3, SO2, GroupAction, center
from quotient_diffusion.scatter import scatter_sum

pytestmark = pytest.mark.usefixtures("single_thread")

DT = torch.float64
SIGMA = 1.0
HORIZON = 1.0


def simulate_lifted_brownian(
    group: GroupAction,
    n_atoms: int,
    paths: int,
    correction: float,
    steps: int = 100,
    scale: float = 2.0,
    centred: bool = True,
    seed: int = 0,
) -> torch.Tensor:
    """Per-path increments |x_T|^2 - |x_0|^2 of dx = correction * (sigma^2/2) h dt + sigma P dW.

    ``correction`` = -1 is the correct lift, +1 the paper's printed sign, 0 no correction. All
    paths run at once as one flat batch of ``paths`` molecules of ``n_atoms`` atoms.
    """
    gen = torch.Generator().manual_seed(seed)
    batch = torch.arange(paths).repeat_interleave(n_atoms)
    x = scale * torch.randn(paths * n_atoms, 3, dtype=DT, generator=gen)
    x = center(x, batch) if centred else x
    x0 = x.clone()
    dt = HORIZON / steps
    for _ in range(steps):
        noise = torch.randn(x.shape, dtype=DT, generator=gen)
        noise = center(noise, batch) if centred else noise
        drift = correction * 0.5 * SIGMA**2 * group.curvature(x, batch)
        x = x + drift * dt + SIGMA * dt**0.5 * group.project(noise, x, batch)
    sq = (x * x).sum(-1) - (x0 * x0).sum(-1)
    return scatter_sum(sq, batch, paths)


def z_score(increments: torch.Tensor, expected: float) -> float:
    """(sample mean - expected) / standard error of the mean."""
    se = increments.std() / increments.numel() ** 0.5
    return float((increments.mean() - expected) / se)


@pytest.mark.parametrize("n_atoms", [4, 5])
def test_se3_lift_reproduces_brownian_quotient_statistics(n_atoms):
    group = SE3()
    expected = SIGMA**2 * (3 * n_atoms - 3) * HORIZON
    z = {
        c: z_score(simulate_lifted_brownian(group, n_atoms, 2000, c), expected)
        for c in (-1.0, 1.0, 0.0)
    }
    assert abs(z[-1.0]) < 4.0, z  # -(sigma^2/2) h: correct within Monte-Carlo error
    assert z[1.0] < -15.0, z  # the printed "+": off by -6 sigma^2, many standard errors
    assert z[0.0] < -7.0, z  # no correction: off by -3 sigma^2


def test_so2_lift_reproduces_brownian_quotient_statistics():
    """The same identity for SO(2) about z acting on (uncentred) R^{3N}: 3N versus 3N - 1 + 1."""
    group = SO2()
    n_atoms = 3
    expected = SIGMA**2 * 3 * n_atoms * HORIZON
    z = {
        c: z_score(simulate_lifted_brownian(group, n_atoms, 4000, c, 50, 1.0, False), expected)
        for c in (-1.0, 1.0)
    }
    assert abs(z[-1.0]) < 4.0, z
    assert z[1.0] < -10.0, z  # off by -2 sigma^2


@pytest.mark.slow
@pytest.mark.parametrize("n_atoms", [3, 4, 5, 8])
def test_se3_lift_precise(n_atoms):
    """Larger and more precise: 10,000 paths, 200 steps (20-30 s per case).

    The wrong signs are off by more than 30 (printed "+") and 15 (no correction) standard errors
    for every N here; the thresholds leave a margin.
    """
    group = SE3()
    expected = SIGMA**2 * (3 * n_atoms - 3) * HORIZON
    z = {
        c: z_score(simulate_lifted_brownian(group, n_atoms, 10000, c, steps=200), expected)
        for c in (-1.0, 1.0, 0.0)
    }
    assert abs(z[-1.0]) < 4.0, z
    assert z[1.0] < -20.0, z
    assert z[0.0] < -10.0, z
