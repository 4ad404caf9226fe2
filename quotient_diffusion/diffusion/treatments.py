r"""The four symmetry treatments: each gives a training residual and the sampler's drift.

Each treatment holds the group it quotients by (default SE(3)). If the group contains the
translations, every coordinate lives in the centred subspace (the group's
``remove_translations`` centres data, noise and drifts); otherwise nothing is centred. With a
denoiser output D, clean data x1 and noisy input x_t, the per-molecule loss is
w(t) * |r|^2 / (3 N) with the residual r:

=================  ==============================  ==========================================
treatment          residual r                      sampler drift (noise variance 2 eta per t)
=================  ==============================  ==========================================
conventional       D - x1                          v + eta s,           noise z
GeoDiff alignment  D - A_{x_t}(x1)                 v + eta s,           noise z
AF3 alignment      D - A_{sg(D)}(x1)               v + eta s from A_{x_t}(D), noise z
quotient           P_{x_t}(D - x1)                 P(v + eta s) - eta h, noise P z
=================  ==============================  ==========================================

(z is Gaussian with the group's translations removed, A_y(x) the point of the orbit of x
closest to y, P the horizontal projection, h the mean curvature of the orbits.) The sampler
passes every denoiser output through :meth:`Treatment.prediction` before it forms v and s: the
identity, except for AF3, whose loss leaves D's orientation free, so its sampler first aligns D
to x_t as Boltz does (:class:`AF3Alignment`). The quotient
SDE's correction is -eta h, i.e. -(sigma^2/2) h for noise variance sigma^2 = 2 eta; the paper's
printed '+ eta h' is wrong (see docs/theory.md). ``Quotient(curvature_sign=...)`` exists only
to measure the wrong variants.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from ..groups import SE3, GroupAction
from ..scatter import num_segments, scatter_sum

__all__ = [
    "Treatment",
    "Conventional",
    "GeoDiffAlignment",
    "AF3Alignment",
    "Quotient",
    "get_treatment",
    "TREATMENTS",
]


class Treatment(ABC):
    """A symmetry treatment: what the network is trained against, and how it is sampled."""

    name: str = "treatment"

    def __init__(self, group: GroupAction | None = None):
        self.group = group if group is not None else SE3()

    @abstractmethod
    def residual(
        self, denoised: torch.Tensor, x1: torch.Tensor, xt: torch.Tensor, batch: torch.Tensor
    ) -> torch.Tensor:
        """Per-atom residual whose squared norm is the loss (inputs without the group's
        translations)."""

    def loss(
        self,
        denoised: torch.Tensor,
        x1: torch.Tensor,
        xt: torch.Tensor,
        batch: torch.Tensor,
        weight: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Per-molecule loss w(t) |r|^2 / (3 N_atoms), shape (B,)."""
        r = self.residual(denoised, x1, xt, batch)
        nb = num_segments(batch)
        sq = scatter_sum((r * r).sum(-1), batch, nb, True)
        counts = scatter_sum(torch.ones_like(sq[batch]), batch, nb, True)
        per_mol = sq / (3 * counts)
        return per_mol if weight is None else per_mol * weight

    def prediction(
        self, denoised: torch.Tensor, x: torch.Tensor, batch: torch.Tensor
    ) -> torch.Tensor:
        """The denoiser output D as the sampler uses it at the current sample ``x`` (before
        forming the velocity and the score): D itself, except for :class:`AF3Alignment`."""
        return denoised

    def drift(
        self,
        velocity: torch.Tensor,
        x: torch.Tensor,
        batch: torch.Tensor,
        score: torch.Tensor | None = None,
        eta: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Drift of the sampler: v (+ eta s for the SDE), without the group's translations.
        ``eta`` is per atom (n, 1)."""
        d = velocity if score is None else velocity + eta * score
        return self.group.remove_translations(d, batch)

    def noise(self, z: torch.Tensor, x: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        """Noise increment direction for the SDE: for the standard SDE, the Gaussian ``z``
        without the group's translations (mean-free for SE(3))."""
        return self.group.remove_translations(z, batch)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(group={self.group!r})"


class Conventional(Treatment):
    """Plain regression of D on x1 (EDM, ET-Flow); standard samplers."""

    name = "conventional"

    def residual(self, denoised, x1, xt, batch):
        return denoised - x1


class GeoDiffAlignment(Treatment):
    """Regress D on x1 aligned to the noisy input (GeoDiff); standard samplers."""

    name = "geodiff"

    def residual(self, denoised, x1, xt, batch):
        with torch.no_grad():
            target = self.group.align(x1, xt, batch)
        return denoised - target


class AF3Alignment(Treatment):
    r"""Regress D on x1 aligned to the network's own (detached) output (AlphaFold 3); sample
    with D aligned to the current sample first (Boltz's AF3 sampler).

    **Why the sampler aligns.** The loss |D - A_{sg(D)}(x1)|^2 = min_g |D - g x1|^2 does not
    change when D is moved as a whole, D -> g D for any g in the group, so training fixes D's
    shape but nothing ties its orientation to x_t. The standard drift uses D as it is,
    v = (a'/a) x - (a' b / a - b') D, and an arbitrarily rotated D would rotate the sample at
    random. The faithful baseline (Boltz's ``alignment_reverse_diff``, on by default in Boltz-1
    and -2: ``weighted_rigid_align`` of the noisy sample onto D with the atom mask as weights, so
    unweighted over real atoms; AlphaFold 3's published Algorithm 18 aligns nothing, it re-centres
    and randomly rotates the sample before every step) uses instead

        D^ = A_x(D) = R* D,   R* = argmin_{R in SO(3)} sum_n |R D_n - x_n|^2

    (for SE(3): both centred, then rotation only; unit weights, as everywhere in this project),
    the Kabsch rotation: with H = sum_n D_n x_n^T = W S V^T, R* = V diag(1, 1, det(V W^T)) W^T.
    Then v, s and the drift (ODE and SDE) are formed from D^. (Boltz rotates the sample onto D
    instead of D onto the sample: after each step the two states differ by one rotation of the
    whole cloud, so they give the same shapes for a network equivariant up to a rotation of its
    output, and nearly the same for one trained with rotation augmentation, which sees its input
    in another frame. This one keeps the sample's frame.) Consequences:

    * the drift is invariant under D -> g D (A_x(g D) = A_x(D): both are the point of the same
      orbit closest to x), so whatever orientation the network chose, the sampler is the same;
    * the sampler step is equivariant, step(g x) = g step(x), for any network whose output is
      equivariant up to a rotation, D(g x) = g' g D(x) with g' arbitrary (a network trained
      with rotation augmentation only approximates equivariance);
    * where D is already horizontal at x (zero angular momentum sum_n x_n x D_n = 0, the case of
      the exact posterior mean of an invariant target) and H is positive definite, R* = I: the
      alignment changes nothing for an exact conventional denoiser.

    ``align_sampler=False`` gives the unaligned standard sampler (the project's AF3 baseline
    before issue 18), kept only to measure the difference.
    """

    name = "af3"

    def __init__(self, group: GroupAction | None = None, align_sampler: bool = True):
        super().__init__(group)
        self.align_sampler = align_sampler

    def residual(self, denoised, x1, xt, batch):
        with torch.no_grad():
            target = self.group.align(x1, denoised.detach(), batch)
        return denoised - target

    def prediction(self, denoised, x, batch):
        if not self.align_sampler:
            return denoised
        return self.group.align(denoised, x, batch)

    def __repr__(self) -> str:
        extra = "" if self.align_sampler else ", align_sampler=False"
        return f"AF3Alignment(group={self.group!r}{extra})"


class Quotient(Treatment):
    """Supervise only the horizontal part of D - x1; sample the horizontal lift.

    ``curvature_sign`` = -1 is the correct lift. +1 (the sign printed in the paper) and 0 (no
    correction) are wrong and exist only for the ablations in benchmarks/toy_recovery.py.
    """

    name = "quotient"

    def __init__(self, group: GroupAction | None = None, curvature_sign: float = -1.0):
        super().__init__(group)
        self.curvature_sign = curvature_sign

    def residual(self, denoised, x1, xt, batch):
        return self.group.project(denoised - x1, xt, batch)

    def drift(self, velocity, x, batch, score=None, eta=None):
        if score is None:
            return self.group.project(velocity, x, batch)
        d = self.group.project(velocity + eta * score, x, batch)
        if self.curvature_sign != 0:
            d = d + self.curvature_sign * eta * self.group.curvature(x, batch)
        return d

    def noise(self, z, x, batch):
        return self.group.project(z, x, batch)

    def __repr__(self) -> str:
        sign = "" if self.curvature_sign == -1 else f", curvature_sign={self.curvature_sign}"
        return f"Quotient(group={self.group!r}{sign})"


TREATMENTS = {
    "conventional": Conventional,
    "geodiff": GeoDiffAlignment,
    "af3": AF3Alignment,
    "quotient": Quotient,
}


def get_treatment(name: str, group: GroupAction | None = None) -> Treatment:
    """Build a treatment by name: 'conventional', 'geodiff', 'af3' or 'quotient'."""
    if name not in TREATMENTS:
        raise ValueError(f"unknown treatment {name!r}; choose one of {sorted(TREATMENTS)}")
    return TREATMENTS[name](group)
