"""RDKit molecules and conformers from coordinate arrays: the one place that turns an (N, 3)
array (Angstrom) into RDKit's ``Conformer``.

* :func:`make_conformer`: a 3D conformer holding the positions (float64);
* :func:`mol_with_positions`: a copy of a molecule carrying exactly that conformer;
* :func:`molecule_from_xyz`: atoms (symbols or atomic numbers) and a conformer, no bonds, as an
  editable ``RWMol`` (bonds are then perceived or added by the caller).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["make_conformer", "mol_with_positions", "molecule_from_xyz"]


def make_conformer(pos: np.ndarray):
    """An RDKit 3D ``Conformer`` with the positions ``pos`` (N, 3), Angstrom."""
    from rdkit import Chem
    from rdkit.Geometry import Point3D

    pos = np.asarray(pos, dtype=float)
    conf = Chem.Conformer(len(pos))
    for k, p in enumerate(pos):
        conf.SetAtomPosition(k, Point3D(*p))
    conf.Set3D(True)
    return conf


def mol_with_positions(mol, pos: np.ndarray):
    """Copy of an RDKit molecule carrying exactly one conformer with ``pos`` (Angstrom)."""
    from rdkit import Chem

    out = Chem.Mol(mol)
    out.RemoveAllConformers()
    out.AddConformer(make_conformer(pos), assignId=True)
    return out


def molecule_from_xyz(elements: Sequence, pos: np.ndarray):
    """An editable RDKit molecule (``RWMol``) with the atoms ``elements`` (symbols or atomic
    numbers, in order) and one 3D conformer ``pos``; no bonds."""
    from rdkit import Chem

    mol = Chem.RWMol()
    for a in elements:
        mol.AddAtom(Chem.Atom(a if isinstance(a, str) else int(a)))
    mol.AddConformer(make_conformer(pos), assignId=True)
    return mol
