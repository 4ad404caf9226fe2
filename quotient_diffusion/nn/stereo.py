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

__all__ = ["StereoInputs", "chirality", "CHIRAL_INDEX", "CHIRAL_SIGN", "PAIR_STEREO",
           "STEREO_EDGE_SCALARS"]

CHIRAL_INDEX = "chiral_index"
CHIRAL_SIGN = "chiral_sign"
PAIR_STEREO = "pair_stereo"
#: edge scalars a stereo network adds to its messages: cis, trans, chi_target, chi_source
STEREO_EDGE_SCALARS = 4
#: eps of the chirality's denominator (model length units cubed)
CHIRALITY_EPS = 1e-6


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


def chirality(
    x: torch.Tensor, centres: torch.Tensor, signs: torch.Tensor, eps: float = CHIRALITY_EPS
) -> torch.Tensor:
    r"""chi (n,) of the coordinates x (n, 3): sigma_i det[u, v, w] / sqrt(|u|^2|v|^2|w|^2 +
    eps^2) at every centre i of ``centres`` (C, 4), 0 elsewhere (module docstring)."""
    i, a, b, c = centres.unbind(-1)
    origin = x.index_select(0, i)
    u, v, w = (x.index_select(0, k) - origin for k in (a, b, c))
    det = (torch.linalg.cross(u, v) * w).sum(-1)
    norms = (u * u).sum(-1) * (v * v).sum(-1) * (w * w).sum(-1)
    chi = signs.to(x.dtype) * det / (norms + eps**2).sqrt()
    return x.new_zeros(x.shape[0]).index_add_(0, i, chi)
