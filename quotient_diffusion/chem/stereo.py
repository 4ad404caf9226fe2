"""Requested against realised stereochemistry: tetrahedral centres (CIP R/S) and double bonds
(E/Z), both read with RDKit.

The requested labels come from the molecule's own stereo flags (a SMILES with ``@``, ``/``,
``\\``; an SDF read by RDKit). The realised ones come from a conformer: a copy of the molecule
with those coordinates, relabelled by ``Chem.AssignStereochemistryFrom3D``. Both are compared
as CIP labels on the same graph, so the ranking of neighbours is the same on both sides.

A reflection inverts every tetrahedral centre and keeps every E/Z label (it maps a dihedral
angle phi to -phi, and cis/trans depends on |phi| only). So a conformer is

* ``"ok"``: every requested label is realised;
* ``"mirror"``: every E/Z label right and every tetrahedral centre inverted (at least one):
  its mirror image is right;
* ``"wrong"``: anything else (a mixture of right and inverted centres, a wrong E/Z, a centre
  that comes out flat): no rigid motion or reflection mends it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["StereoLabels", "requested_stereo", "realised_stereo", "compare_stereo", "mirror"]


@dataclass(frozen=True)
class StereoLabels:
    """CIP labels: tetrahedral centres {atom index: 'R'/'S'}, double bonds {bond index:
    'E'/'Z'}."""

    centres: dict[int, str] = field(default_factory=dict)
    bonds: dict[int, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.centres or self.bonds)


def _labels(mol) -> StereoLabels:
    """Labels of a molecule whose stereo has been assigned (bonds read first: the new
    ``FindMolChiralCenters`` rewrites E/Z bond flags as cis/trans)."""
    from rdkit import Chem

    names = {Chem.BondStereo.STEREOE: "E", Chem.BondStereo.STEREOZ: "Z"}
    bonds = {b.GetIdx(): names[b.GetStereo()] for b in mol.GetBonds() if b.GetStereo() in names}
    centres = dict(Chem.FindMolChiralCenters(mol, includeUnassigned=False,
                                             useLegacyImplementation=False))
    return StereoLabels(centres=centres, bonds=bonds)


def requested_stereo(mol) -> StereoLabels:
    """The labels the molecule asks for (its stereo flags, perceived on a copy)."""
    from rdkit import Chem

    copy = Chem.Mol(mol)
    Chem.AssignStereochemistry(copy, cleanIt=True, force=True)
    return _labels(copy)


def realised_stereo(mol, pos: np.ndarray) -> StereoLabels:
    """The labels of the conformer ``pos`` (N, 3), perceived from 3D on a copy of ``mol``."""
    from rdkit import Chem

    from .sdf import mol_with_positions

    copy = mol_with_positions(mol, pos)
    Chem.AssignStereochemistryFrom3D(copy)
    return _labels(copy)


def _agree(wanted: dict, got: dict) -> list[bool]:
    return [got.get(key) == label for key, label in wanted.items()]


def _inverted(wanted: dict[int, str], got: dict[int, str]) -> list[bool]:
    flip = {"R": "S", "S": "R"}
    return [label in flip and got.get(key) == flip[label] for key, label in wanted.items()]


def compare_stereo(wanted: StereoLabels, got: StereoLabels) -> str:
    """``"ok"``, ``"mirror"`` or ``"wrong"`` (see the module docstring)."""
    if not all(_agree(wanted.bonds, got.bonds)):
        return "wrong"
    if all(_agree(wanted.centres, got.centres)):
        return "ok"
    if wanted.centres and all(_inverted(wanted.centres, got.centres)):
        return "mirror"
    return "wrong"


def mirror(pos: np.ndarray) -> np.ndarray:
    """The mirror image z -> -z of a conformer (N, 3)."""
    return np.asarray(pos) * np.array([1.0, 1.0, -1.0])
