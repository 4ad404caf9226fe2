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

Stereo as network inputs (:func:`stereo_features`, read by a model trained with the conformer
task option ``stereo``; the maths is in :mod:`quotient_diffusion.nn.stereo`). RDKit's tag of a
tetrahedral centre i refers to the order of its bonds: with (a, b, c) its first three
neighbours in that order, ``CHI_TETRAHEDRAL_CCW`` means det[x_a - x_i, x_b - x_i, x_c - x_i] > 0
and ``CW`` means < 0 (for three and four neighbours alike; a test checks it on RDKit
geometries), so sigma_i = +1 (CCW) / -1 (CW) makes the chirality chi_i > 0 exactly where the
geometry has the tagged configuration. A stereo double bond u=v with stereo atoms (c, d)
(cis for ``STEREOZ`` / ``STEREOCIS``, trans for ``STEREOE`` / ``STEREOTRANS``: RDKit's
perception sets E/Z stereo atoms to the CIP-highest neighbours) marks every pair (p, q) of a
neighbour p of u and q of v: cis when (p == c) == (q == d), trans otherwise, so the features
do not depend on which substituents RDKit picked. Because the tags are relative to the
molecule's own bond order, labels read from a SMILES / SDF (inference) and labels perceived
from 3D (training, ``from_3d=True``) give the same features for the same stereoisomer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["StereoLabels", "requested_stereo", "realised_stereo", "compare_stereo", "mirror",
           "StereoFeatures", "stereo_features"]


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

    from .molecules import mol_with_positions

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


@dataclass(frozen=True)
class StereoFeatures:
    """Stereo of one molecule as network inputs (module docstring): ``centres`` (C, 4) int64,
    each row a centre i and its reference neighbours (a, b, c); ``signs`` (C,) int8, sigma_i;
    ``pairs`` (P, 3) int64, rows (p, q, code) with code 1 cis, 2 trans, for both orders of
    every substituent pair of a stereo double bond."""

    centres: np.ndarray
    signs: np.ndarray
    pairs: np.ndarray


_CIS = 1
_TRANS = 2


def _double_bond_pairs(mol) -> list[tuple[int, int, int]]:
    """(p, q, code) for both orders of the substituent pairs of every stereo double bond."""
    from rdkit import Chem

    same = {Chem.BondStereo.STEREOZ: True, Chem.BondStereo.STEREOCIS: True,
            Chem.BondStereo.STEREOE: False, Chem.BondStereo.STEREOTRANS: False}
    rows = []
    for bond in mol.GetBonds():
        if bond.GetStereo() not in same or len(bond.GetStereoAtoms()) != 2:
            continue
        u, v = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        c, d = bond.GetStereoAtoms()
        if not mol.GetBondBetweenAtoms(u, c):  # stereo atoms listed from the end atom first
            c, d = d, c
        for p in (n.GetIdx() for n in mol.GetAtomWithIdx(u).GetNeighbors() if n.GetIdx() != v):
            for q in (n.GetIdx() for n in mol.GetAtomWithIdx(v).GetNeighbors()
                      if n.GetIdx() != u):
                cis = same[bond.GetStereo()] == ((p == c) == (q == d))
                code = _CIS if cis else _TRANS
                rows += [(p, q, code), (q, p, code)]
    return rows


def stereo_features(mol, from_3d: bool = False, conf_id: int = -1) -> StereoFeatures:
    """The stereo inputs of ``mol`` (module docstring): from its own stereo flags (the
    requested labels of a SMILES or SDF), or with ``from_3d`` from its conformer ``conf_id``
    (``Chem.AssignStereochemistryFrom3D``: how training molecules get their labels)."""
    from rdkit import Chem

    copy = Chem.Mol(mol)
    if from_3d:
        Chem.AssignStereochemistryFrom3D(copy, confId=conf_id)
    else:
        Chem.AssignStereochemistry(copy, cleanIt=True, force=True)
    sign = {Chem.ChiralType.CHI_TETRAHEDRAL_CCW: 1, Chem.ChiralType.CHI_TETRAHEDRAL_CW: -1}
    centres, signs = [], []
    for atom in copy.GetAtoms():
        if atom.GetChiralTag() in sign and atom.GetDegree() >= 3:
            i = atom.GetIdx()
            centres.append([i, *(b.GetOtherAtomIdx(i) for b in atom.GetBonds())][:4])
            signs.append(sign[atom.GetChiralTag()])
    return StereoFeatures(centres=np.asarray(centres, dtype=np.int64).reshape(-1, 4),
                          signs=np.asarray(signs, dtype=np.int8),
                          pairs=np.asarray(_double_bond_pairs(copy), dtype=np.int64).reshape(-1, 3))
