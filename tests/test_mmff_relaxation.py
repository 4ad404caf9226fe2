"""MMFF relaxation of generated conformers (quotient_diffusion.conformers.relax_mmff): the
minimisation lowers the energy, and a molecule MMFF94 has no parameters for comes back
unchanged with no energy instead of raising."""

from __future__ import annotations

import numpy as np
import pytest

from quotient_diffusion.conformers import relax_mmff


def embedded(smiles: str, seed: int = 7):
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    assert AllChem.EmbedMolecule(mol, randomSeed=seed) == 0
    return mol, np.array(mol.GetConformer().GetPositions())


def mmff_energy(mol, pos: np.ndarray) -> float:
    """MMFF94 energy of ``pos``, computed here with RDKit directly (no minimisation)."""
    from rdkit.Chem import AllChem
    from rdkit.Geometry import Point3D

    conf = mol.GetConformer()
    for k, p in enumerate(pos):
        conf.SetAtomPosition(k, Point3D(*map(float, p)))
    props = AllChem.MMFFGetMoleculeProperties(mol)
    return AllChem.MMFFGetMoleculeForceField(mol, props).CalcEnergy()


def test_relaxation_lowers_the_mmff_energy():
    mol, pos = embedded("CCO")
    start = pos + 0.1 * np.random.default_rng(0).normal(size=pos.shape)
    relaxed, energy = relax_mmff(mol, start)
    assert relaxed.shape == start.shape and np.isfinite(relaxed).all()
    assert energy == pytest.approx(mmff_energy(mol, relaxed), abs=1e-6)
    assert energy < mmff_energy(mol, start) - 1.0
    assert np.abs(relaxed - start).max() > 1e-3


@pytest.mark.parametrize("smiles", ["O=O", "CB(C)C"])  # QM9 elements only; boron
def test_untypeable_molecule_returns_its_input_and_no_energy(smiles):
    from rdkit.Chem import AllChem

    mol, pos = embedded(smiles)
    assert not AllChem.MMFFHasAllMoleculeParams(mol)  # the failure path is the one taken
    start = pos.copy()
    relaxed, energy = relax_mmff(mol, pos)
    assert energy is None
    np.testing.assert_array_equal(relaxed, start)
    np.testing.assert_array_equal(pos, start)  # the input is not modified either
