r"""Metrics of de novo 3D molecules (EDM's): stability, validity, uniqueness, novelty, distances.

A molecule is a pair (Z, x): atomic numbers (n,) of H, C, N, O, F and coordinates (n, 3) in
Angstrom. Batches of molecules are handled as flat arrays (atoms concatenated, a molecule index
per atom), so the geometric part runs without Python loops over atoms.

**Bond orders from distances** (EDM's rule, our own table). For atoms a, b at distance d (pm),
with tabulated single/double/triple bond lengths l1 > l2 > l3 and margins m = (10, 5, 3) pm:

    order(a, b) = 0                         if d >= l1 + m1
                  1 + [d < l2 + m2] + [d < l2 + m2 and d < l3 + m3]   otherwise

(a pair without a double or triple entry never gets that order). The table holds standard
covalent bond lengths (textbook values, e.g. C-C 154, C=C 134, C#C 120, C-H 109 pm).

**Stability.** The valence of an atom is the sum of its bond orders. An atom is stable when its
valence equals the allowed one: H 1, C 4, N 3, O 2, F 1 (no charges). Atom stability is the
fraction of stable atoms over all atoms; molecule stability the fraction of molecules whose atoms
are all stable.

**Validity** (two methods, both reported by :func:`evaluate`):

* ``'table'`` (EDM's, the headline, because EDM's published 91.9 % and the data's 97.7 % use it):
  an RDKit molecule with the bonds of the table above, ``SanitizeMol``; valid when sanitisation
  succeeds. Under-bonded atoms receive implicit hydrogens, so a molecule can be valid without
  being stable; over-bonded ones make it invalid. Its SMILES is that of the largest fragment.
* ``'xyz2mol'``: RDKit ``rdDetermineBonds.DetermineBonds`` (connectivity from covalent radii,
  then bond orders with total charge 0 and formal charges allowed, Kim & Kim's xyz2mol); stricter
  chemistry, independent of our table, but slower and it can give up on strange geometries.

Connectedness (one fragment) is reported beside validity: EDM's validity keeps the largest
fragment, so a molecule in two pieces still counts as valid.

**Uniqueness** = distinct canonical SMILES among the valid / number valid; **novelty** = distinct
valid SMILES absent from a reference set (the training molecules) / number of distinct valid.

**Distribution distances** against reference molecules: total variation between the atom-type
frequencies, 1/2 sum_k |p_k - q_k|; 1-Wasserstein distance (Angstrom) between the lengths of
bonded pairs (order >= 1 by the table), overall and per element pair.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from ..chem.elements import ATOMIC_NUMBERS, ELEMENTS, NUMBER_OF, SYMBOL_OF
from ..chem.molecules import molecule_from_xyz

__all__ = [
    "ELEMENTS",
    "ATOMIC_NUMBERS",
    "ALLOWED_VALENCE",
    "BOND_LENGTHS_PM",
    "MARGINS_PM",
    "flatten",
    "within_molecule_pairs",
    "bond_orders",
    "stability",
    "xyz_molecule",
    "build_molecule",
    "canonical_smiles",
    "validity",
    "uniqueness_novelty",
    "distribution_distances",
    "evaluate",
]

#: the former name of :func:`~quotient_diffusion.chem.molecules.molecule_from_xyz`
xyz_molecule = molecule_from_xyz

ALLOWED_VALENCE = {1: 1, 6: 4, 7: 3, 8: 2, 9: 1}
#: margins (pm) added to the single, double and triple bond lengths
MARGINS_PM = (10.0, 5.0, 3.0)

#: standard covalent bond lengths (pm): {order: {(element, element): length}}
BOND_LENGTHS_PM: dict[int, dict[tuple[str, str], float]] = {
    1: {
        ("H", "H"): 74, ("H", "C"): 109, ("H", "N"): 101, ("H", "O"): 96, ("H", "F"): 92,
        ("C", "C"): 154, ("C", "N"): 147, ("C", "O"): 143, ("C", "F"): 135,
        ("N", "N"): 145, ("N", "O"): 140, ("N", "F"): 136,
        ("O", "O"): 148, ("O", "F"): 142,
        ("F", "F"): 142,
    },
    2: {
        ("C", "C"): 134, ("C", "N"): 129, ("C", "O"): 120,
        ("N", "N"): 125, ("N", "O"): 121, ("O", "O"): 121,
    },
    3: {("C", "C"): 120, ("C", "N"): 116, ("C", "O"): 113, ("N", "N"): 110},
}


def _threshold_table() -> np.ndarray:
    """(3, 100, 100) thresholds l_k + m_k in Angstrom indexed by atomic numbers (-inf: none)."""
    table = np.full((3, 100, 100), -np.inf)
    for order, lengths in BOND_LENGTHS_PM.items():
        for (a, b), length in lengths.items():
            value = (length + MARGINS_PM[order - 1]) / 100.0
            table[order - 1, NUMBER_OF[a], NUMBER_OF[b]] = value
            table[order - 1, NUMBER_OF[b], NUMBER_OF[a]] = value
    return table


_THRESHOLDS = _threshold_table()
_VALENCE = np.full(100, -1)
for _z, _v in ALLOWED_VALENCE.items():
    _VALENCE[_z] = _v


def flatten(molecules: Sequence[tuple[np.ndarray, np.ndarray]]):
    """(Z (A,), positions (A, 3), molecule index (A,)) of a list of (Z, positions)."""
    z = np.concatenate([np.asarray(m[0], dtype=np.int64).reshape(-1) for m in molecules])
    pos = np.concatenate([np.asarray(m[1], dtype=np.float64).reshape(-1, 3) for m in molecules])
    sizes = np.array([len(m[0]) for m in molecules])
    return z, pos, np.repeat(np.arange(len(molecules)), sizes)


def within_molecule_pairs(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All pairs i < j of atoms in the same molecule of a sorted molecule index (vectorised
    per molecule size)."""
    sizes = np.bincount(batch)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    first, second = [], []
    for size in np.unique(sizes[sizes > 1]):
        i, j = np.triu_indices(size, 1)
        starts = offsets[sizes == size][:, None]
        first.append((starts + i).ravel())
        second.append((starts + j).ravel())
    if not first:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(first), np.concatenate(second)


def bond_orders(z: np.ndarray, pos: np.ndarray, batch: np.ndarray):
    """Bonds by the table: (i, j, order) for every pair with order >= 1 (see module doc)."""
    i, j = within_molecule_pairs(batch)
    d = np.linalg.norm(pos[i] - pos[j], axis=-1)
    lim = _THRESHOLDS[:, z[i], z[j]]
    single = d < lim[0]
    double = single & (d < lim[1])
    triple = double & (d < lim[2])
    order = single.astype(np.int64) + double + triple
    keep = order > 0
    return i[keep], j[keep], order[keep]


def stability(z: np.ndarray, pos: np.ndarray, batch: np.ndarray) -> dict:
    """Per-atom valence and stability, per-molecule stability (flat arrays)."""
    i, j, order = bond_orders(z, pos, batch)
    valence = np.bincount(i, order, len(z)) + np.bincount(j, order, len(z))
    atom_stable = valence.astype(np.int64) == _VALENCE[z]
    num = int(batch.max()) + 1 if len(batch) else 0
    unstable = np.bincount(batch, ~atom_stable, num)
    return {"valence": valence.astype(np.int64), "atom_stable": atom_stable,
            "molecule_stable": unstable == 0}


def build_molecule(
    z: np.ndarray, pos: np.ndarray, method: str = "table", max_iterations: int = 10_000
):
    """A sanitised RDKit molecule with the perceived bonds, or None when perception or
    sanitisation fails. ``method``: 'table' (EDM's) or 'xyz2mol' (RDKit DetermineBonds)."""
    from rdkit import Chem
    from rdkit.Chem import rdDetermineBonds

    if method not in ("table", "xyz2mol"):
        raise ValueError(f"unknown validity method {method!r}")
    z = np.asarray(z, dtype=np.int64)
    pos = np.asarray(pos, dtype=np.float64)
    mol = molecule_from_xyz(z, pos)
    try:
        if method == "table":
            bond_type = {1: Chem.BondType.SINGLE, 2: Chem.BondType.DOUBLE,
                         3: Chem.BondType.TRIPLE}
            i, j, order = bond_orders(z, pos, np.zeros(len(z), np.int64))
            for a, b, o in zip(i.tolist(), j.tolist(), order.tolist()):
                mol.AddBond(a, b, bond_type[o])
            mol = mol.GetMol()
            Chem.SanitizeMol(mol)
        else:
            mol = mol.GetMol()
            rdDetermineBonds.DetermineBonds(mol, charge=0, embedChiral=False,
                                            maxIterations=max_iterations)
            Chem.SanitizeMol(mol)
    except (ValueError, RuntimeError):  # sanitisation failed, or DetermineBonds gave up
        return None
    return mol


def canonical_smiles(mol) -> tuple[str, int]:
    """(canonical SMILES of the largest fragment, number of fragments) of a sanitised mol."""
    from rdkit import Chem

    frags = Chem.GetMolFrags(mol, asMols=True, sanitizeFrags=False)
    largest = max(frags, key=lambda m: m.GetNumAtoms())
    return Chem.MolToSmiles(Chem.RemoveHs(largest, sanitize=False)), len(frags)


def validity(molecules: Sequence[tuple[np.ndarray, np.ndarray]], method: str = "table") -> dict:
    """Fraction valid, fraction valid and in one piece ('connected'), and each molecule's
    SMILES (largest fragment; None when invalid)."""
    from rdkit import RDLogger

    RDLogger.DisableLog("rdApp.*")
    smiles, connected = [], []
    for z, pos in molecules:
        mol = build_molecule(z, pos, method)
        if mol is None:
            smiles.append(None)
            connected.append(False)
            continue
        s, nfrag = canonical_smiles(mol)
        smiles.append(s)
        connected.append(nfrag == 1)
    n = max(len(molecules), 1)
    valid = sum(s is not None for s in smiles)
    return {"validity": valid / n, "connected": sum(connected) / n, "smiles": smiles}


def uniqueness_novelty(
    smiles: Sequence[str | None], reference: Iterable[str] | None = None
) -> dict:
    """Uniqueness among the valid SMILES, novelty of the distinct ones against ``reference``
    (canonical SMILES; None skips novelty)."""
    valid = [s for s in smiles if s is not None]
    distinct = set(valid)
    out = {"uniqueness": len(distinct) / len(valid) if valid else 0.0,
           "valid_unique": len(distinct) / max(len(smiles), 1)}
    if reference is not None:
        ref = set(reference)
        out["novelty"] = len(distinct - ref) / len(distinct) if distinct else 0.0
    return out


def _bond_lengths(z, pos, batch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    i, j, _ = bond_orders(z, pos, batch)
    lo, hi = np.minimum(z[i], z[j]), np.maximum(z[i], z[j])
    return np.linalg.norm(pos[i] - pos[j], axis=-1), lo, hi


def distribution_distances(
    molecules: Sequence[tuple[np.ndarray, np.ndarray]],
    reference: Sequence[tuple[np.ndarray, np.ndarray]],
) -> dict:
    """Atom-type total variation and bond-length 1-Wasserstein distances (Angstrom)."""
    from scipy.stats import wasserstein_distance

    z, pos, batch = flatten(molecules)
    zr, posr, batchr = flatten(reference)
    p = np.array([(z == a).mean() for a in ATOMIC_NUMBERS])
    q = np.array([(zr == a).mean() for a in ATOMIC_NUMBERS])
    out = {"atom_type_tv": 0.5 * float(np.abs(p - q).sum())}
    d, lo, hi = _bond_lengths(z, pos, batch)
    dr, lor, hir = _bond_lengths(zr, posr, batchr)
    out["bond_length_w1"] = float(wasserstein_distance(d, dr)) if len(d) and len(dr) else None
    per_pair = {}
    for a, b in [(6, 6), (1, 6), (6, 7), (6, 8), (1, 7), (1, 8)]:
        mine, theirs = d[(lo == a) & (hi == b)], dr[(lor == a) & (hir == b)]
        if len(mine) and len(theirs):
            per_pair[f"{SYMBOL_OF[a]}-{SYMBOL_OF[b]}"] = float(wasserstein_distance(mine, theirs))
    out["bond_length_w1_by_pair"] = per_pair
    return out


def evaluate(
    molecules: Sequence[tuple[np.ndarray, np.ndarray]],
    train_smiles: Iterable[str] | None = None,
    reference: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
    xyz2mol: bool = False,
) -> dict:
    """All metrics of a list of (Z, positions): stability, validity (table; xyz2mol if asked),
    uniqueness, novelty (if ``train_smiles``), distribution distances (if ``reference``)."""
    z, pos, batch = flatten(molecules)
    stab = stability(z, pos, batch)
    out = {"num_molecules": len(molecules),
           "atom_stability": float(stab["atom_stable"].mean()),
           "molecule_stability": float(stab["molecule_stable"].mean())}
    val = validity(molecules, "table")
    out.update({k: val[k] for k in ("validity", "connected")})
    out.update(uniqueness_novelty(val["smiles"], train_smiles))
    if xyz2mol:
        strict = validity(molecules, "xyz2mol")
        out["validity_xyz2mol"] = strict["validity"]
        out["connected_xyz2mol"] = strict["connected"]
    if reference is not None:
        out.update(distribution_distances(molecules, reference))
    return out
