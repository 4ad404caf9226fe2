r"""The group-action interface and its generic (Gram-matrix) implementation.

A compact Lie group :math:`G` of dimension :math:`k` acts on point clouds
:math:`x \in R^{N\times 3}` by isometries. Its Lie-algebra basis gives, at every :math:`x`, the
tangent vectors of the orbit

.. math:: U(x) = [u_1(x), \dots, u_k(x)] \in R^{3N \times k}  \qquad\text{(vertical space)}.

Everything the diffusion code needs follows from :math:`U` alone:

* Gram matrix :math:`G(x) = U^T U` (:math:`k\times k`);
* horizontal projection :math:`P_x v = v - U\,G^{-1} U^T v`;
* mean curvature of the orbit :math:`h(x) = -\tfrac12 \nabla_x \log\det G(x)`;
* alignment :math:`A_y(x) = \arg\min_{g} \lVert g\cdot x - y \rVert`.

Translations are flat directions (:math:`h = 0`, :math:`G = N I_3` on them), so a group that
contains the translations of :math:`R^3` is quotiented by them once and for all: the diffusion
works in the centred subspace :math:`\sum_n x_n = 0` (:meth:`GroupAction.remove_translations`
removes each molecule's mean from data, noise, drifts and denoiser outputs). A group without
translations leaves every coordinate as it is.

Flat batches: ``x`` has shape ``(num_atoms, 3)`` with all molecules' atoms concatenated and
``batch[i]`` the molecule of atom ``i`` (``None`` for a single molecule). Per-molecule quantities
have a leading dimension ``B`` (number of molecules); nothing loops over molecules.

Degenerate configurations (where the action is not free: one atom, collinear clouds) make
:math:`G` singular. Every inverse of :math:`G` goes through :func:`filtered_inverse`, which
inverts eigenvalues exactly above a threshold :math:`\tau = \mathrm{rel\_tol}\cdot\mathrm{tr}\,G`
and fades them linearly to zero below it (``f(lambda) = lambda / tau^2``). The curvature is then
the gradient of the matching regularised log-determinant, so projection and curvature stay
continuous and finite everywhere, and are exact wherever the smallest eigenvalue exceeds tau
(see docs/theory.md, "Degenerate configurations").
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from ..scatter import batch_index, num_segments, scatter_sum
from .geometry import center

__all__ = ["GroupAction", "filtered_inverse", "DEFAULT_REL_TOL"]

DEFAULT_REL_TOL = 1e-3


def filtered_inverse(
    gram: torch.Tensor, rel_tol: float = DEFAULT_REL_TOL, scale: torch.Tensor | None = None
) -> torch.Tensor:
    r"""Regularised inverse :math:`f(G)` of a batch of symmetric PSD matrices ``(B, k, k)``.

    With eigenvalues :math:`\lambda_i`, a per-molecule ``scale`` (default :math:`\mathrm{tr}G`)
    and :math:`\tau = \max(\mathrm{rel\_tol}\cdot\mathrm{scale}, \epsilon)`:
    :math:`f(\lambda) = 1/\lambda` for :math:`\lambda \ge \tau` and :math:`\lambda/\tau^2` below.
    :math:`f` is continuous, bounded by :math:`1/\tau`, and equals
    :math:`G^{-1}` for well-conditioned :math:`G`. :math:`f` is the derivative of
    :math:`g(\lambda) = \log\lambda` (above tau) and :math:`\lambda^2/(2\tau^2) + \mathrm{const}`
    (below), the regularised log-determinant whose gradient (with tau held fixed) defines the
    curvature.

    The geometry is treated as constant: the result is detached from the autograd graph (the
    library differentiates projections with respect to the projected vector, never the metric).
    """
    gram = gram.detach()
    if scale is None:
        scale = gram.diagonal(dim1=-2, dim2=-1).sum(-1)
    tau = (rel_tol * scale.detach()).clamp_min(torch.finfo(gram.dtype).eps).unsqueeze(-1)
    if gram.shape[-1] == 1:
        return _fade(gram[..., 0], tau).unsqueeze(-1)
    lam, vecs = torch.linalg.eigh(gram)
    f = _fade(lam, tau)
    return (vecs * f.unsqueeze(-2)) @ vecs.transpose(-1, -2)


def _fade(lam: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    """1/lambda above tau, lambda/tau^2 below (continuous at tau)."""
    lam = lam.clamp_min(0)
    return torch.where(lam >= tau, 1.0 / torch.maximum(lam, tau), lam / tau**2)


class GroupAction(ABC):
    r"""A Lie group acting on flat batches of 3D point clouds.

    Subclasses give :meth:`generators` and :meth:`act` (``dim`` parameters per molecule); the base
    class then derives the Gram matrix, projection, curvature and alignment. Subclasses may
    override :meth:`project`, :meth:`curvature` and :meth:`align` with closed forms; the generic
    versions stay available as :meth:`generic_project`, :meth:`generic_curvature` and
    :meth:`generic_align`, and the tests check that both agree to float64 precision.
    """

    #: dimension of the group (number of generators)
    dim: int
    #: relative eigenvalue threshold for degenerate configurations
    rel_tol: float = DEFAULT_REL_TOL
    #: whether the group contains the translations of R^3 (see :meth:`remove_translations`)
    has_translations: bool = False

    # ------------------------------------------------------------------ what a group must give
    @abstractmethod
    def generators(self, x: torch.Tensor, batch: torch.Tensor | None = None) -> torch.Tensor:
        """Tangent vectors of the Lie-algebra basis at ``x``: shape ``(num_atoms, 3, dim)``."""

    @abstractmethod
    def act(
        self, x: torch.Tensor, theta: torch.Tensor, batch: torch.Tensor | None = None
    ) -> torch.Tensor:
        r"""Apply the group element with parameters ``theta`` (``(B, dim)``) to each molecule.

        Must be a retraction: :math:`\frac{d}{d\epsilon} \mathrm{act}(x, \epsilon e_j)|_0 = u_j(x)`.
        """

    def degeneracy_scale(
        self, gram: torch.Tensor, x: torch.Tensor, batch: torch.Tensor
    ) -> torch.Tensor:
        r"""Per-molecule size against which small Gram eigenvalues count as degenerate.

        Default: :math:`\mathrm{tr}\,G`. Groups whose Gram matrix can vanish as a whole (a
        one-parameter group) override it with a size of the configuration.
        """
        return gram.diagonal(dim1=-2, dim2=-1).sum(-1)

    def inverse_gram(
        self, gram: torch.Tensor, x: torch.Tensor, batch: torch.Tensor
    ) -> torch.Tensor:
        """:func:`filtered_inverse` of ``gram`` with this group's threshold."""
        return filtered_inverse(gram, self.rel_tol, self.degeneracy_scale(gram, x, batch))

    # ------------------------------------------------------------------ derived quantities
    def generic_gram(self, x: torch.Tensor, batch: torch.Tensor | None = None) -> torch.Tensor:
        r"""Gram matrix :math:`G_{ij} = \sum_n u_i(x)_n \cdot u_j(x)_n` from the generators."""
        b = batch_index(x, batch)
        u = self.generators(x, b)
        return scatter_sum(torch.einsum("nci,ncj->nij", u, u), b, num_segments(b), True)

    def gram(self, x: torch.Tensor, batch: torch.Tensor | None = None) -> torch.Tensor:
        """Orbit Gram matrix :math:`G = U^T U` per molecule, shape ``(B, dim, dim)``."""
        return self.generic_gram(x, batch)

    def generic_project(
        self, v: torch.Tensor, x: torch.Tensor, batch: torch.Tensor | None = None
    ) -> torch.Tensor:
        r"""Horizontal part :math:`v - U f(G) U^T v` of ``v`` at ``x`` (any group)."""
        b = batch_index(x, batch)
        u = self.generators(x, b)
        nb = num_segments(b)
        g = scatter_sum(torch.einsum("nci,ncj->nij", u, u), b, nb, True)
        utv = scatter_sum(torch.einsum("nci,nc->ni", u, v), b, nb, True)
        coef = (self.inverse_gram(g, x, b) @ utv.unsqueeze(-1)).squeeze(-1)
        return v - torch.einsum("nci,ni->nc", u, coef[b])

    def generic_curvature(self, x: torch.Tensor, batch: torch.Tensor | None = None) -> torch.Tensor:
        r"""Mean-curvature vector :math:`h = -\tfrac12 \nabla_x \log\det G(x)` by autograd.

        Uses :math:`d\log\det G = \mathrm{tr}(G^{-1} dG)`: the gradient of the surrogate
        :math:`\mathrm{tr}(\mathrm{sg}[f(G)]\, G(x))` equals that of the (regularised)
        log-determinant, and needs no eigen-decomposition backward.
        """
        b = batch_index(x, batch)
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            g = self.generic_gram(xg, b)
            finv = self.inverse_gram(g, xg, b)
            surrogate = (finv * g).sum()
            if not surrogate.requires_grad:  # the Gram matrix does not depend on x: flat orbits
                return torch.zeros_like(x)
            (grad,) = torch.autograd.grad(surrogate, xg)
        return -0.5 * grad

    def generic_align(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch: torch.Tensor | None = None,
        iterations: int = 30,
    ) -> torch.Tensor:
        r"""Point of the orbit of ``x`` closest to ``y``, by Gauss-Newton over the parameters.

        Each step solves the linearised problem :math:`\min_\theta \lVert x + U\theta - y\rVert`
        (:math:`\theta = G^{-1} U^T (y - x)`) and moves along the group with :meth:`act`. It
        converges to the nearest local minimum; groups with a closed form override it.
        """
        b = batch_index(x, batch)
        nb = num_segments(b)
        cur = x
        for _ in range(iterations):
            u = self.generators(cur, b)
            g = scatter_sum(torch.einsum("nci,ncj->nij", u, u), b, nb, True)
            rhs = scatter_sum(torch.einsum("nci,nc->ni", u, y - cur), b, nb, True)
            theta = (self.inverse_gram(g, cur, b) @ rhs.unsqueeze(-1)).squeeze(-1)
            cur = self.act(cur, theta, b)
        return cur

    # ------------------------------------------------------------------ public API
    def remove_translations(
        self, x: torch.Tensor, batch: torch.Tensor | None = None
    ) -> torch.Tensor:
        r"""The quotient by the group's translations.

        With translations (:attr:`has_translations`): :math:`x_n - \bar x` per molecule, the
        orthogonal projection onto the centred subspace :math:`\sum_n x_n = 0` (unweighted mean,
        no masses). Without: ``x`` itself. The diffusion code passes data, prior and SDE noise,
        drifts and denoiser outputs through it, so they all stay in the same subspace.
        """
        return center(x, batch) if self.has_translations else x

    def augment(
        self,
        x: torch.Tensor,
        batch: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Each molecule moved by its own random element of the group's compact part (its
        rotations), drawn from the Haar measure: the data augmentation of a network that is not
        equivariant. Translations have no Haar probability and are never drawn; a group with
        translations is applied to clouds whose translations are removed already."""
        raise NotImplementedError(f"{self!r} draws no random elements (no augmentation)")

    def project(
        self, v: torch.Tensor, x: torch.Tensor, batch: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Horizontal part of ``v`` at ``x`` (orthogonal to the orbit through ``x``)."""
        return self.generic_project(v, x, batch)

    def curvature(self, x: torch.Tensor, batch: torch.Tensor | None = None) -> torch.Tensor:
        r"""Lifted mean curvature :math:`h(x) = -\tfrac12\nabla_x\log\det G(x)`."""
        return self.generic_curvature(x, batch)

    def align(
        self, x: torch.Tensor, y: torch.Tensor, batch: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The point of the orbit of ``x`` closest to ``y`` (per molecule)."""
        return self.generic_align(x, y, batch)

    def vertical(
        self, x: torch.Tensor, coef: torch.Tensor, batch: torch.Tensor | None = None
    ) -> torch.Tensor:
        r"""The vertical vector :math:`U(x)\,c` for per-molecule coefficients ``coef`` (B, dim)."""
        b = batch_index(x, batch)
        return torch.einsum("nci,ni->nc", self.generators(x, b), coef[b])

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
