r"""Interpolants (noise schedules) in the project's single time convention.

    x_t = a(t) * eps + b(t) * x1,   t = 0: prior (pure noise),  t = 1: data,

with eps ~ N(0, I) on the zero-centre-of-mass subspace and a(0) = 1, b(0) = 0, a(1) = 0,
b(1) = 1 (up to a tiny floor for the VP schedule). A denoiser D(x_t, t) ~ E[x1 | x_t] gives

    velocity  v = (a'/a) x - (a' b / a - b') D,
    score     s = -(x - b D) / a^2.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

__all__ = ["Interpolant", "LinearInterpolant", "PolynomialVP", "get_interpolant"]


class Interpolant(ABC):
    """Coefficients a(t), b(t) and their time derivatives (tensors in, tensors out)."""

    #: a(t) is clamped below by this value wherever it divides (t -> 1)
    a_min: float = 1e-4

    @abstractmethod
    def coefficients(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(a(t), b(t))."""

    @abstractmethod
    def derivatives(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(a'(t), b'(t))."""

    def noisy(self, x1: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x_t = a(t) eps + b(t) x1 (``t`` already broadcast to the rows of x1)."""
        a, b = self.coefficients(t)
        return a * eps + b * x1

    def velocity(self, x: torch.Tensor, denoised: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """v = (a'/a) x - (a' b / a - b') D."""
        a, b = self.coefficients(t)
        da, db = self.derivatives(t)
        a = a.clamp_min(self.a_min)
        return (da / a) * x - (da * b / a - db) * denoised

    def velocity_weight(self, t: torch.Tensor) -> torch.Tensor:
        """(a' b / a - b')^2: |v - v_true|^2 = this * |D - x1|^2 (1/a^2 for the linear one)."""
        a, b = self.coefficients(t)
        da, db = self.derivatives(t)
        return (da * b / a.clamp_min(self.a_min) - db) ** 2

    def score(self, x: torch.Tensor, denoised: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """s = -(x - b D) / a^2, the score of the marginal of x_t."""
        a, b = self.coefficients(t)
        return -(x - b * denoised) / a.clamp_min(self.a_min) ** 2


class LinearInterpolant(Interpolant):
    """Flow matching / rectified flow: a = 1 - t, b = t."""

    def coefficients(self, t):
        return 1.0 - t, t

    def derivatives(self, t):
        return -torch.ones_like(t), torch.ones_like(t)

    def __repr__(self) -> str:
        return "LinearInterpolant()"


class PolynomialVP(Interpolant):
    r"""EDM's polynomial variance-preserving schedule, in our time (s = 1 - t):

    :math:`b(t)^2 = (1 - 2\delta)(1 - s^p)^2 + \delta`, :math:`a(t)^2 = 1 - b(t)^2`,
    with EDM's power p = 2 and precision :math:`\delta = 10^{-5}`.
    """

    def __init__(self, power: float = 2.0, precision: float = 1e-5):
        self.power = power
        self.precision = precision

    def coefficients(self, t):
        s = 1.0 - t
        b2 = (1 - 2 * self.precision) * (1 - s**self.power) ** 2 + self.precision
        return (1 - b2).clamp_min(0).sqrt(), b2.sqrt()

    def derivatives(self, t):
        s = 1.0 - t
        a, b = self.coefficients(t)
        p = self.power
        # d(b^2)/dt = (1 - 2 delta) * 2 (1 - s^p) * p s^(p-1)
        db2 = (1 - 2 * self.precision) * 2 * (1 - s**p) * p * s ** (p - 1)
        return -db2 / (2 * a.clamp_min(self.a_min)), db2 / (2 * b)

    def __repr__(self) -> str:
        return f"PolynomialVP(power={self.power}, precision={self.precision})"


def get_interpolant(name: str) -> Interpolant:
    """'linear' (flow matching) or 'vp' (EDM's polynomial schedule)."""
    table = {"linear": LinearInterpolant, "vp": PolynomialVP}
    if name not in table:
        raise ValueError(f"unknown interpolant {name!r}; choose one of {sorted(table)}")
    return table[name]()
