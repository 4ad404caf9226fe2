"""The bundled drug-like conformer model against chemistry and against protein-bound X-ray poses.

The model (``quotient_diffusion/checkpoints/conformers_druglike.pt``, trained on the CCD
drug-like set, whose training and validation exclude the Genentech PDB ligands), with seed 0 and
the default sampler, on five neutral Genentech ligands of ``$QD_DATA/druglike`` (read as
benchmarks/bound_pose.py reads them: hydrogens present, the bound X-ray pose as the conformer):

* every heavy-atom bond within ``BOND_TOLERANCE`` of the same bond in the MMFF94-optimised copy
  of the X-ray pose (a geometry that is chemistry, not the model; the model was trained on
  MMFF94 relaxations of CCD coordinates), and the X-ray poses within it too;
* every bond to hydrogen inside the chemical range of its kind (the QM9 test's ranges): the
  model fails this (C-H bonds up to 1.14 A at seed 0), so the test is marked as an expected
  failure (strict);
* the best of five conformers within ``RMSD_BOUND`` of the bound pose (heavy atoms,
  symmetry-aware, RDKit's GetBestRMS on hydrogen-free copies as in benchmarks/bound_pose.py),
  within ``MEAN_RMSD_BOUND`` on average, and every conformer with the input's R/S and E/Z.

The data follow the shared-data rule of tests/conftest.py (skipped where absent, failing when
``CI`` is set); a missing bundled checkpoint fails (it is committed). About 5 s on one thread.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
from conftest import require_data
from test_bundled_models import BOND_RANGES, bond_kind

from quotient_diffusion.chem.molecules import make_conformer
from quotient_diffusion.chem.stereo import realised_stereo, requested_stereo
from quotient_diffusion.conformers import bundled_model, embed_molecules

pytestmark = pytest.mark.usefixtures("single_thread")  # many small operations: see conftest

GENENTECH_NEUTRAL = "druglike/genentech_pdb_ligands_neutral.sdf"
#: fullStructID -> what it covers: five neutral ligands of 21-26 heavy atoms and at most three
#: rotatable bonds, chosen (by chemistry, before any sampling) to cover S, Cl and F, amides,
#: aromatic heterocycles, a sulfonamide, R/S centres and an E/Z double bond
LIGANDS = {
    "5icp69Z_A_401_": "imidazothiadiazole amide of a 2-(4-chlorophenyl)pyrrolidine (S, Cl, one "
                      "R/S centre): Cc1ncc2sc(C(=O)N3CCC[C@H]3c3ccc(Cl)cc3)nn12",
    "2welK88_A_600_": "oxindole with an E/Z exocyclic C=C to a tetrahydroindole, a "
                      "dimethylsulfonamide: CN(C)S(=O)(=O)c1ccc2c(c1)/C(=C/c1cc3c([nH]1)CCCC3)"
                      "C(=O)N2",
    "4itj1HX_A_301_": "N-methylpyrrole carboxamide, nitrile, 2-chloro-6-fluorophenyl (one R/S "
                      "centre): C[C@H](NC(=O)c1ccc(C#N)n1C)c1c(F)cccc1Cl",
    "5t6a5GA_A_601_": "2-aminothiazole between a 3-chloro-4-fluorophenyl and a "
                      "1,5-naphthyridine: Nc1nc(-c2ccc(F)c(Cl)c2)c(-c2ccc3ncccc3n2)s1",
    "5v8q97A_A1004_": "pyrrolidinone (lactam) with two R/S centres and an alcohol, CF3 and "
                      "nitrile on the aryl: CC[C@H]1[C@@H](O)CC(=O)N1c1ccc(C#N)c(C(F)(F)F)c1",
}
CONFORMERS = 5
SEED = 0

#: largest accepted |length - MMFF94 length| of a heavy-atom bond (Angstrom): well under the gap
#: between a C-C single and a C=C double bond (about 0.19 A), and above the worst bond of these
#: five X-ray poses. Measured: the X-ray poses reach 0.101 (2welK88, a conjugated C-C single bond
#: refined to 1.411 against MMFF's 1.511; over all 483 neutral ligands of 15-30 heavy atoms the
#: worst bond of a pose has median 0.077 and is above 0.10 in 29%); the model at seed 0 0.093
#: (5t6a5GA, the thiazole C-S), over seeds 0-5 0.130: 2 of 150 conformers above the tolerance
#: (seed 2 the same C-S 0.130, seed 5 the sulfonamide C-S of 2welK88 0.128), so a changed random
#: stream may meet one. Samples blurred by 0.03 A per coordinate, or shrunk by 3% or stretched by
#: 5% about their centroid, fail; stretched by 3% they pass.
BOND_TOLERANCE = 0.12
#: bounds on the best (of five) heavy-atom RMSD to the bound pose (Angstrom), of every ligand and
#: its mean over the five. Measured best-of-five per ligand (5icp69Z, 2welK88, 4itj1HX, 5t6a5GA,
#: 5v8q97A) and mean:
#:   seed 0: 1.24 1.12 1.25 1.01 1.35, mean 1.19    seed 3: 0.57 1.43 0.66 1.12 0.99, mean 0.95
#:   seed 1: 0.87 0.73 0.95 0.34 0.58, mean 0.69    seed 4: 1.40 1.68 1.00 1.29 0.87, mean 1.25
#:   seed 2: 0.86 1.64 1.50 1.07 1.30, mean 1.28    seed 5: 1.68 1.02 0.76 0.90 1.72, mean 1.21
#: worst 1.72, worst mean 1.28. For context, RDKit ETKDGv3 (five conformers, seed 0): 2.25 1.21
#: 1.26 1.57 1.04, mean 1.47. These bounds catch a broken model (a 2-step sampler: mean 8.5;
#: weights blurred by 10% of each tensor's spread: mean 1.52; every rotatable bond of the seed-0
#: samples turned by 120 degrees: 2.15), not a subtly worse one: turned by random angles they
#: give 1.74, mean 1.30.
RMSD_BOUND = 2.0
MEAN_RMSD_BOUND = 1.5


@cache
def bound_poses() -> dict:
    """fullStructID -> RDKit molecule with its hydrogens and its X-ray pose (and the stereo
    RDKit reads from it)."""
    from rdkit import Chem

    root = require_data(GENENTECH_NEUTRAL)
    found = {}
    for mol in Chem.SDMolSupplier(str(root / GENENTECH_NEUTRAL), removeHs=False):
        if mol is not None and mol.GetProp("fullStructID") in LIGANDS:
            assert not any(a.GetNumImplicitHs() for a in mol.GetAtoms())  # neutral set: all H
            found[mol.GetProp("fullStructID")] = mol
    assert set(found) == set(LIGANDS)
    return {name: found[name] for name in LIGANDS}  # the order of LIGANDS: it sets the batches


@cache
def mmff_references() -> dict:
    """fullStructID -> positions of the MMFF94-optimised copy of the X-ray pose (converged)."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    out = {}
    for name, pose in bound_poses().items():
        mol = Chem.Mol(pose)
        field = AllChem.MMFFGetMoleculeForceField(mol, AllChem.MMFFGetMoleculeProperties(mol))
        assert field.Minimize(maxIts=5000) == 0, name
        out[name] = mol.GetConformer().GetPositions()
    return out


def sample(seed: int) -> dict:
    """fullStructID -> (molecule, its ``EmbedResult``, its conformers' positions): the bundled
    drug-like model, the default sampler, one call for all ligands."""
    from rdkit import Chem

    path = bundled_model("druglike")
    assert path.is_file(), f"bundled drug-like checkpoint missing: {path}"
    mols = {name: Chem.Mol(pose) for name, pose in bound_poses().items()}
    for mol in mols.values():
        mol.RemoveAllConformers()
    results = embed_molecules(list(mols.values()), CONFORMERS, seed=seed, model="druglike")
    return {name: (mol, result, [mol.GetConformer(c).GetPositions() for c in result.ids])
            for (name, mol), result in zip(mols.items(), results)}


@cache
def generated() -> dict:
    """:func:`sample` at ``SEED``, cached: every test reads the same samples."""
    return sample(SEED)


def length(pos: np.ndarray, bond) -> float:
    return float(np.linalg.norm(pos[bond.GetBeginAtomIdx()] - pos[bond.GetEndAtomIdx()]))


def heavy_bond_errors(mol, pos: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Every heavy-atom bond of ``mol`` (as text) -> |its length at ``pos`` - at ``reference``|."""
    return {f"{bond_kind(b)} {b.GetBeginAtomIdx()}-{b.GetEndAtomIdx()}":
            abs(length(pos, b) - length(reference, b))
            for b in mol.GetBonds()
            if b.GetBeginAtom().GetAtomicNum() > 1 and b.GetEndAtom().GetAtomicNum() > 1}


def hydrogen_violations(mol, pos: np.ndarray) -> list[str]:
    """Every bond to hydrogen outside its kind's range (``BOND_RANGES``), as text."""
    out = []
    for bond in mol.GetBonds():
        if 1 not in (bond.GetBeginAtom().GetAtomicNum(), bond.GetEndAtom().GetAtomicNum()):
            continue
        kind = bond_kind(bond)
        low, high = BOND_RANGES[kind]
        value = length(pos, bond)
        if not low <= value <= high:
            out.append(f"{kind} {bond.GetBeginAtomIdx()}-{bond.GetEndAtomIdx()}: {value:.3f} "
                       f"not in [{low}, {high}]")
    return out


def best_rmsds(samples: dict) -> dict[str, float]:
    """fullStructID -> the best heavy-atom RMSD of its conformers to the X-ray pose."""
    from rdkit import Chem
    from rdkit.Chem import rdMolAlign

    best = {}
    for name, (mol, _, conformers) in samples.items():
        reference = Chem.RemoveAllHs(bound_poses()[name])
        probe = Chem.Mol(mol)
        probe.RemoveAllConformers()
        for pos in conformers:
            probe.AddConformer(make_conformer(pos), assignId=True)
        heavy = Chem.RemoveAllHs(probe)
        best[name] = round(min(rdMolAlign.GetBestRMS(heavy, reference, prbId=c.GetId())
                               for c in heavy.GetConformers()), 4)
    return best


def test_bundled_druglike_model_heavy_atom_bonds_match_mmff94():
    """Every heavy-atom bond of every conformer (25 conformers, 630 bonds) within
    ``BOND_TOLERANCE`` of its MMFF94 length; the X-ray poses pass the same check."""
    references = mmff_references()
    for name, pose in bound_poses().items():
        errors = heavy_bond_errors(pose, pose.GetConformer().GetPositions(), references[name])
        assert max(errors.values()) <= BOND_TOLERANCE, (name, max(errors.items(),
                                                                  key=lambda e: e[1]))
    bad = {}
    for name, (mol, _, conformers) in generated().items():
        for k, pos in enumerate(conformers):
            errors = heavy_bond_errors(mol, pos, references[name])
            worse = {bond: round(e, 3) for bond, e in errors.items() if e > BOND_TOLERANCE}
            if worse:
                bad[f"{name} conformer {k}"] = worse
    assert bad == {}


class HydrogenBondsOutOfRange(AssertionError):
    """Bonds to hydrogen of the model's conformers outside their ranges: the one failure the
    hydrogen test expects (a missing file or checkpoint, or a reference outside, still fails)."""


@pytest.mark.xfail(strict=True, raises=HydrogenBondsOutOfRange,
                   reason="the bundled drug-like model makes C-H bonds up to 1.14 A at seed 0 (8 "
                          "of 360 bonds to H outside the ranges); see the docstring")
def test_bundled_druglike_model_bonds_to_hydrogen_are_in_chemical_ranges():
    """Every C-H, N-H and O-H bond of every conformer (25 conformers, 360 bonds) inside the QM9
    test's range for its kind; the X-ray poses' hydrogens and the MMFF94 references pass them.

    Expected to fail (strict: it must be unmarked once the model passes it), and only by
    :class:`HydrogenBondsOutOfRange`. Measured at seed 0:
    8 bonds of 7 conformers outside, all C-H too long, 1.120-1.138 (sp3 C-H of 2welK88,
    4itj1HX, 5v8q97A, and the vinyl C-H of 2welK88); N-H 0.996-1.046 and O-H 0.950-0.997 pass.
    Over seeds 0-5: 65 of 2,160 bonds outside (6-9 of 25 conformers per seed), C-H up to 1.210,
    N-H 0.969-1.105 (the aminothiazole NH2 of 5t6a5GA), O-H up to 1.008. MMFF94 gives
    1.08-1.10, 1.01-1.02 and 0.97: the model's bonds to hydrogen are off by up to 0.1 A."""
    references = mmff_references()
    for name, pose in bound_poses().items():
        assert hydrogen_violations(pose, pose.GetConformer().GetPositions()) == [], name
        assert hydrogen_violations(pose, references[name]) == [], name
    bad = {}
    for name, (mol, _, conformers) in generated().items():
        for k, pos in enumerate(conformers):
            violations = hydrogen_violations(mol, pos)
            if violations:
                bad[f"{name} conformer {k}"] = violations
    if bad:
        raise HydrogenBondsOutOfRange(bad)


def test_bundled_druglike_model_finds_bound_poses_with_the_requested_stereo():
    """The best of five conformers within ``RMSD_BOUND`` of the X-ray pose, within
    ``MEAN_RMSD_BOUND`` on average, and every conformer with the input's R/S and E/Z labels
    (four R/S centres and one E/Z bond among the five ligands; the X-ray poses realise them).
    The embedding repairs stereo: at seeds 0-5, 1-4 of 2welK88's five first samples had the
    wrong E/Z and were replaced (at seed 0 also one 5v8q97A sample with its two centres not both
    right nor both inverted), and a few 4itj1HX samples were mirrored; none was dropped (in
    another batch order, seed 0 dropped one of 2welK88's, hence the count check)."""
    poses = bound_poses()
    requested = {name: requested_stereo(pose) for name, pose in poses.items()}
    assert sum(len(s.centres) for s in requested.values()) == 4
    assert sum(len(s.bonds) for s in requested.values()) == 1
    for name, pose in poses.items():
        assert realised_stereo(pose, pose.GetConformer().GetPositions()) == requested[name], name
    for name, (mol, result, conformers) in generated().items():
        assert len(conformers) == CONFORMERS, (name, result)  # none dropped for wrong stereo
        for k, pos in enumerate(conformers):
            assert realised_stereo(mol, pos) == requested[name], (name, k)
    best = best_rmsds(generated())
    assert max(best.values()) < RMSD_BOUND, best
    assert np.mean(list(best.values())) < MEAN_RMSD_BOUND, best
