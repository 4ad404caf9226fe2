r"""Molecular graphs as network inputs: invariant atom features and fully connected pair features.

Atoms (one-hot blocks, concatenated; ``ATOM_FEATURES`` columns):

======================  =========================================================
element                 H, C, N, O, F, other
formal charge           -1, 0, +1
aromatic                0/1
hybridisation           SP, SP2, SP3, other
heavy-atom degree       0, 1, 2, 3, 4+
attached hydrogens      0, 1, 2, 3+
in a ring               0/1
extra elements          one column per element of the vocabulary after F (S, Cl, Br)
======================  =========================================================

The element vocabulary (``elements``, default :data:`~.elements.ELEMENTS`, QM9's H C N O F)
must start with H C N O F; elements beyond them (from :data:`~.elements.EXTRA_ELEMENTS`) get
columns *appended* after the last block, and an element outside the vocabulary sets "other".
So the default vocabulary gives exactly the features every earlier model was trained on
(``ATOM_FEATURES`` columns), and the columns of a smaller vocabulary are a prefix of a larger
one's: ``qdiff train --init-from`` zero-pads the grown input and a QM9 model starts a drug-like
one computing the same function on every H C N O F molecule (S, Cl and Br then read as "no
element column", where the QM9 model saw "other").

Pairs (every ordered pair i != j of one molecule; ``PAIR_FEATURES`` columns): bond type (none,
single, double, triple, aromatic) and topological distance (1, 2, 3, 4, 5+), the information
that fixes bond lengths, angles and 1-4 torsion partners. A pair is stored as two int8 codes so
that a data set of 10^5 molecules fits in memory; :func:`expand_pairs` one-hot encodes them.

Pairs come in the order of :func:`quotient_diffusion.nn.graph.full_graph` (the fully connected
edge list of a flat batch, vectorised) for a single molecule: row-major in (target i, source j).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..nn.graph import full_graph
from .elements import ELEMENTS, EXTRA_ELEMENTS

__all__ = [
    "MolFeatures",
    "featurize",
    "ATOM_FEATURES",
    "PAIR_FEATURES",
    "expand_pairs",
    "supported_elements",
    "atom_features",
    "check_elements",
]

_CHARGES = (-1, 0, 1)
_BOND_CODES = {"SINGLE": 1, "DOUBLE": 2, "TRIPLE": 3, "AROMATIC": 4}
NUM_BOND_CODES = 5
NUM_DISTANCE_CODES = 5
ATOM_FEATURES = (len(ELEMENTS) + 1) + 3 + 1 + 4 + 5 + 4 + 1
PAIR_FEATURES = NUM_BOND_CODES + NUM_DISTANCE_CODES


def check_elements(elements) -> tuple[str, ...]:
    """``elements`` as a tuple, checked: H C N O F first, then distinct ones of
    :data:`~.elements.EXTRA_ELEMENTS` (None: the default vocabulary)."""
    if elements is None:
        return ELEMENTS
    elements = tuple(elements)
    extra = elements[len(ELEMENTS):]
    if (elements[: len(ELEMENTS)] != ELEMENTS or len(set(extra)) != len(extra)
            or any(e not in EXTRA_ELEMENTS for e in extra)):
        raise ValueError(f"element vocabulary {list(elements)}: it must be {list(ELEMENTS)} "
                         f"followed by distinct elements of {list(EXTRA_ELEMENTS)}")
    return elements


def atom_features(elements=None) -> int:
    """Number of atom feature columns for the vocabulary ``elements`` (None: the default)."""
    return ATOM_FEATURES + len(check_elements(elements)) - len(ELEMENTS)


def supported_elements(elements=None) -> tuple[str, ...]:
    """Elements with their own one-hot column in the vocabulary ``elements`` (None: the
    default; others share the 'other' column)."""
    return check_elements(elements)


@dataclass
class MolFeatures:
    """Compact features of one molecule: atoms (n, ATOM_FEATURES) uint8 and, for every ordered
    pair in :func:`~quotient_diffusion.nn.graph.full_graph` order, a bond code and a distance
    code (n(n-1), 2) int8."""

    atoms: np.ndarray
    pairs: np.ndarray

    @property
    def num_atoms(self) -> int:
        return self.atoms.shape[0]


def _one_hot(index: np.ndarray, size: int) -> np.ndarray:
    out = np.zeros((len(index), size), dtype=np.uint8)
    out[np.arange(len(index)), index] = 1
    return out


def featurize(mol, elements=None) -> MolFeatures:
    """Features of an RDKit molecule with explicit hydrogens (atom order kept), for the
    element vocabulary ``elements`` (None: H C N O F; see the module docstring)."""
    from rdkit import Chem

    extra = check_elements(elements)[len(ELEMENTS):]
    atoms = list(mol.GetAtoms())
    sym = [a.GetSymbol() for a in atoms]
    elem = np.array([ELEMENTS.index(s) if s in ELEMENTS else
                     (len(ELEMENTS) + 1 if s in extra else len(ELEMENTS)) for s in sym])
    extra_cols = np.zeros((len(atoms), len(extra)), dtype=np.uint8)
    for k, e in enumerate(extra):
        extra_cols[:, k] = [s == e for s in sym]
    charge = np.array([_CHARGES.index(c) if c in _CHARGES else 1 for c in
                       (a.GetFormalCharge() for a in atoms)])
    hyb_names = {Chem.HybridizationType.SP: 0, Chem.HybridizationType.SP2: 1,
                 Chem.HybridizationType.SP3: 2}
    hyb = np.array([hyb_names.get(a.GetHybridization(), 3) for a in atoms])
    heavy_degree = np.array([sum(nb.GetAtomicNum() > 1 for nb in a.GetNeighbors()) for a in atoms])
    hydrogens = np.array([a.GetTotalNumHs(includeNeighbors=True) for a in atoms])
    feats = np.concatenate([
        _one_hot(elem, len(ELEMENTS) + 2)[:, : len(ELEMENTS) + 1],  # extra: no column here
        _one_hot(charge, 3),
        np.array([[a.GetIsAromatic()] for a in atoms], dtype=np.uint8),
        _one_hot(hyb, 4),
        _one_hot(np.minimum(heavy_degree, 4), 5),
        _one_hot(np.minimum(hydrogens, 3), 4),
        np.array([[a.IsInRing()] for a in atoms], dtype=np.uint8),
        extra_cols,
    ], axis=1)

    n = len(atoms)
    bond = np.zeros((n, n), dtype=np.int8)
    for b in mol.GetBonds():
        code = _BOND_CODES.get(str(b.GetBondType()), 1)
        i, j = b.GetBeginAtomIdx(), b.GetEndAtomIdx()
        bond[i, j] = bond[j, i] = code
    topo = Chem.GetDistanceMatrix(mol)
    topo = np.where(np.isfinite(topo), topo, 99)  # disconnected parts: "far"
    dist_code = (np.clip(topo, 1, NUM_DISTANCE_CODES) - 1).astype(np.int8)
    src, dst = _pair_order(n)
    pairs = np.stack([bond[src, dst], dist_code[src, dst]], axis=1)
    return MolFeatures(atoms=feats, pairs=pairs)


def _pair_order(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Ordered pairs (i, j), i != j, of one molecule of ``n`` atoms: the (target, source) rows
    of :func:`~quotient_diffusion.nn.graph.full_graph`."""
    source, target = full_graph(torch.zeros(n, dtype=torch.long)).numpy()
    return target, source


def expand_pairs(pairs: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """One-hot pair features (E, PAIR_FEATURES) from the codes (E, 2)."""
    codes = pairs.long()
    return torch.cat([
        torch.nn.functional.one_hot(codes[:, 0], NUM_BOND_CODES),
        torch.nn.functional.one_hot(codes[:, 1], NUM_DISTANCE_CODES),
    ], dim=1).to(dtype)
