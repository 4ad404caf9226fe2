r"""Stereochemistry as network inputs: the chirality pseudoscalar and the cis/trans pair columns.

Why a pseudoscalar. A network that is O(3)-equivariant (EGNN, the e3nn network) maps the mirror
image of its input to the mirror image of its output. Fed reflection-invariant inputs only (atom
and pair features, distances), its sampled distribution is then mirror-symmetric: an enantiomer
and its mirror image come out equally often, whatever the invariant features say. Telling R from
S needs an input that changes sign under a reflection and is unchanged by rotations.

The chirality of a tetrahedral centre i, with three reference neighbours (a, b, c) and a sign
sigma_i = +-1 that says which handedness is wanted, at coordinates x:

    u = x_a - x_i,  v = x_b - x_i,  w = x_c - x_i,
    chi_i(x) = sigma_i det[u, v, w] / sqrt(|u|^2 |v|^2 |w|^2 + eps^2)   (0 for other atoms).

det[u, v, w] = (u x v) . w is invariant under rotations and translations and changes sign
under a reflection; |det| <= |u||v||w| (Hadamard), so chi lies in [-1, 1], and eps (inside the
root, so that chi is smooth where atoms coincide) only matters for near-degenerate centres.
The convention (:func:`quotient_diffusion.chem.stereo.stereo_features`): chi_i > 0 where the
geometry has the requested configuration. A network that sees chi is SO(3)- but not
O(3)-equivariant where centres exist, and stays O(3)-equivariant where none do (chi = 0).

Double bonds (E/Z) need no pseudoscalar: cis/trans depends on |dihedral| only, which a
reflection keeps, so they are two plain invariant pair columns (cis, trans) on the message
edges between the substituents of a stereo double bond.

How the inputs travel. A :class:`~quotient_diffusion.data.Graph` carries them as extras
(:data:`CHIRAL_INDEX`: (C, 4) atom numbers (i, a, b, c), offset by ``collate`` like every extra
whose name ends in ``_index``; :data:`CHIRAL_SIGN`: (C,) sigma; :data:`PAIR_STEREO`: (E, 2)
cis/trans per edge, in ``edge_index`` order); :meth:`StereoInputs.from_extras` collects them for
the network's ``stereo`` argument.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as fn

__all__ = ["StereoInputs", "ChiralityPush", "centre_chirality", "chirality", "CHIRAL_INDEX",
           "CHIRAL_SIGN", "PAIR_STEREO", "STEREO_EDGE_SCALARS"]

CHIRAL_INDEX = "chiral_index"
CHIRAL_SIGN = "chiral_sign"
PAIR_STEREO = "pair_stereo"
#: edge scalars a stereo network adds to its messages: cis, trans, chi_target, chi_source
STEREO_EDGE_SCALARS = 4
#: eps of the chirality's denominator (model length units cubed)
CHIRALITY_EPS = 1e-6
#: the neighbours one and two places on from each of (a, b, c): (b, c, a) and (c, a, b)
_NEXT, _AFTER = [1, 2, 0], [2, 0, 1]


@dataclass(frozen=True)
class StereoInputs:
    """The stereo inputs of a flat batch: ``centres`` (C, 4) long, global atom numbers of each
    centre i and its neighbours (a, b, c); ``signs`` (C,) sigma_i = +-1; ``pairs`` (E, 2) the
    cis and trans columns of every message edge."""

    centres: torch.Tensor
    signs: torch.Tensor
    pairs: torch.Tensor

    @classmethod
    def from_extras(cls, extras: Mapping) -> StereoInputs | None:
        """The stereo inputs stored in a batch's extras (None when it carries none)."""
        keys = (CHIRAL_INDEX, CHIRAL_SIGN, PAIR_STEREO)
        present = [key in extras for key in keys]
        if not any(present):
            return None
        if not all(present):
            raise ValueError(f"a batch with stereo inputs needs all of {', '.join(keys)}")
        return cls(extras[CHIRAL_INDEX].reshape(-1, 4), extras[CHIRAL_SIGN], extras[PAIR_STEREO])


def centre_chirality(
    x: torch.Tensor, centres: torch.Tensor, signs: torch.Tensor, eps: float = CHIRALITY_EPS
) -> torch.Tensor:
    r"""chi (C,) of the coordinates x (n, 3) at each centre of ``centres`` (C, 4):
    sigma_i det[u, v, w] / sqrt(|u|^2|v|^2|w|^2 + eps^2) (module docstring)."""
    bonds, sq = _centre_bonds(x, centres)
    return _chirality_of(bonds, sq, signs.to(x.dtype), eps)


def _centre_bonds(x: torch.Tensor, centres: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(bonds (C, 3, 3): u, v, w = x_a - x_i, x_b - x_i, x_c - x_i; their squared lengths
    (C, 3)). One gather for all four atoms of every centre: these run in every layer of every
    sampling step on a handful of centres, where the cost is the number of tensor operations."""
    pts = x.index_select(0, centres.reshape(-1)).view(-1, 4, 3)
    bonds = pts[:, 1:] - pts[:, :1]
    return bonds, (bonds * bonds).sum(-1)


def _chirality_of(
    bonds: torch.Tensor, sq: torch.Tensor, signs: torch.Tensor, eps: float = CHIRALITY_EPS
) -> torch.Tensor:
    """chi (C,) from :func:`_centre_bonds` and the signs (in the coordinates' dtype)."""
    u, v, w = bonds.unbind(1)
    det = (torch.linalg.cross(u, v) * w).sum(-1)
    norms = sq[:, 0] * sq[:, 1] * sq[:, 2]
    return signs * det / (norms + eps**2).sqrt()


def chirality(
    x: torch.Tensor, centres: torch.Tensor, signs: torch.Tensor, eps: float = CHIRALITY_EPS
) -> torch.Tensor:
    r"""chi (n,) of the coordinates x (n, 3): :func:`centre_chirality` at every centre atom i of
    ``centres`` (C, 4), 0 elsewhere."""
    chi = centre_chirality(x, centres, signs, eps)
    return x.new_zeros(x.shape[0]).index_add_(0, centres[:, 0], chi)


class ChiralityPush(nn.Module):
    r"""Displacements that can turn a tetrahedral centre over, for an EGNN layer.

    An EGNN moves atom i only along the differences x_i - x_j, so inverting a centre takes a
    delicate balance of many radial steps. This branch gives every centre (i; a, b, c) the
    direct move. With unit bond vectors \hat u, \hat v, \hat w from i to a, b, c, the
    directions

        n_a = sigma (\hat v x \hat w),  n_b = sigma (\hat w x \hat u),
        n_c = sigma (\hat u x \hat v)

    are ascent directions of chi_i: n_a . grad_{x_a} chi_i = (|u|^2 |v x w|^2 - det^2) /
    (|u|^3 |v|^2 |w|^2) >= 0 by Cauchy-Schwarz (det = u . (v x w)), and likewise for b and c,
    so moving a neighbour along +n raises chi_i, towards the requested configuration. Each
    neighbour k moves by

        dx_k = tanh(phi([h_i, h_k, chi_i])) n_k,        dx_i = -(dx_a + dx_b + dx_c),

    so the branch moves no centre of mass (translation invariant). Cross products of rotated
    vectors rotate (det R = 1), so the branch is SO(3)-equivariant; a reflection together with
    sigma -> -sigma maps it to its mirror image, like the rest of the stereo network. Relabelling
    (a, b, c) by an odd permutation flips both sigma and the cross products, and phi sees each
    neighbour on its own: the branch does not depend on the order of the reference neighbours.

    ``starts_at_zero``: phi's output layer is initialised to zero, so the branch adds exactly
    nothing until it has been trained, and a model without it warm-starts into one with it
    computing the same function (:func:`quotient_diffusion.training.warm_start`)."""

    starts_at_zero = True

    def __init__(self, hidden: int):
        super().__init__()
        self.hidden = nn.Linear(2 * hidden + 1, hidden)
        self.out = nn.Linear(hidden, 1, bias=False)
        nn.init.zeros_(self.out.weight)

    def forward(self, h: torch.Tensor, x: torch.Tensor, stereo: StereoInputs) -> torch.Tensor:
        """The displacement (n, 3) of every atom (zero away from centres)."""
        centres = stereo.centres
        step = x.new_zeros(x.shape)
        if centres.shape[0] == 0:
            return step
        # few operations on few rows (the branch runs in every layer of every sampling step)
        signs = stereo.signs.to(x.dtype)
        bonds, sq = _centre_bonds(x, centres)  # (C, 3, 3): u, v, w; (C, 3)
        chi = _chirality_of(bonds, sq, signs)
        unit = bonds / (sq.unsqueeze(-1) + CHIRALITY_EPS).sqrt()
        # rows (v x w, w x u, u x v): the cross product of the unit vectors shifted by 1 and 2
        normals = signs[:, None, None] * torch.linalg.cross(unit[:, _NEXT], unit[:, _AFTER])
        hc = h.index_select(0, centres.reshape(-1)).view(-1, 4, h.shape[-1])  # h_i, h_a, ...
        inputs = torch.cat([hc[:, :1].expand(-1, 3, -1), hc[:, 1:],
                            chi[:, None, None].expand(-1, 3, 1)], -1)
        moves = torch.tanh(self.out(fn.silu(self.hidden(inputs)))) * normals  # (C, 3, 3)
        step.index_add_(0, centres[:, 1:].reshape(-1), moves.reshape(-1, 3))
        return step.index_add_(0, centres[:, 0], -moves.sum(1))
