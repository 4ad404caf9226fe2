"""Conformer generation: QM9 parsing and graph matching, featurisation, input checks, the CLI,
stereo repair and the ensemble metrics."""

from __future__ import annotations

import csv
import itertools

import numpy as np
import pytest
import torch

from quotient_diffusion.chem.featurize import (
    ATOM_FEATURES,
    PAIR_FEATURES,
    expand_pairs,
    featurize,
    full_edge_index,
)
from quotient_diffusion.cli import main as qdiff
from quotient_diffusion.conformers import fix_stereo, prepare
from quotient_diffusion.data.qm9 import (
    edm_split,
    match_smiles_to_geometry,
    parse_qm9_row,
    qm9_csv_paths,
)
from quotient_diffusion.metrics.conformers import ensemble_scores, heavy_atom_rmsd_matrix
from quotient_diffusion.training import TrainConfig
from quotient_diffusion.training.checkpoint import save_checkpoint


def qm9_rows(count: int, stride: int = 1):
    csv.field_size_limit(1 << 30)
    with open(qm9_csv_paths()[0], newline="") as fh:
        yield from itertools.islice(csv.DictReader(fh), 0, count * stride, stride)


def test_qm9_rows_match_their_graph():
    """Every sampled QM9 geometry, reordered like AddHs(MolFromSmiles), has all its SMILES
    bonds short (< 2 A) and elements in the same order."""
    rows = list(qm9_rows(150, stride=97))
    for row in rows:
        index, smiles, symbols, xyz = parse_qm9_row(row)
        mol, pos = match_smiles_to_geometry(smiles, symbols, xyz)
        assert mol is not None, (index, smiles, pos)
        assert sorted(a.GetSymbol() for a in mol.GetAtoms()) == sorted(symbols)
        for bond in mol.GetBonds():
            i, j = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
            assert np.linalg.norm(pos[i] - pos[j]) < 2.0
        # the permutation keeps the geometry: same sorted pairwise distances
        d0 = np.sort(np.linalg.norm(xyz[:, None] - xyz[None], axis=-1).ravel())
        d1 = np.sort(np.linalg.norm(pos[:, None] - pos[None], axis=-1).ravel())
        np.testing.assert_allclose(d0, d1, atol=1e-12)


def test_qm9_number_parser_handles_bare_decimals():
    row = {"Index": "7", "Elements": "['C','O']", "XYZ_Ang": "[[0.,1.,-2.5e-05],[1,0.5,3.]]"}
    _, _, symbols, xyz = parse_qm9_row({**row, "SMILES": "C=O"})
    assert symbols == ["C", "O"]
    np.testing.assert_array_equal(xyz, [[0.0, 1.0, -2.5e-05], [1.0, 0.5, 3.0]])


def test_edm_split_sizes_and_determinism():
    indices = np.arange(1, 130_832)
    code = edm_split(indices)
    assert np.bincount(code).tolist() == [100_000, 17_748, 13_083]
    shuffled = np.random.RandomState(3).permutation(indices)
    assert np.array_equal(edm_split(shuffled), code[shuffled - 1])


def test_featurize_ethanol_by_hand():
    from rdkit import Chem

    mol = Chem.AddHs(Chem.MolFromSmiles("CCO"))
    f = featurize(mol)
    assert f.atoms.shape == (9, ATOM_FEATURES)
    assert f.pairs.shape == (9 * 8, 2)
    assert f.atoms[:, :6].argmax(1).tolist() == [1, 1, 3] + [0] * 6  # C C O H...
    pairs = {(int(i), int(j)): tuple(c) for (j, i), c in
             zip(full_edge_index(torch.tensor([9])).T.tolist(), f.pairs)}
    assert pairs[(0, 1)] == (1, 0)  # C-C single bond, 1 bond apart
    assert pairs[(0, 2)] == (0, 1)  # C...O: no bond, 2 bonds apart
    assert pairs[(2, 0)] == pairs[(0, 2)]
    one_hot = expand_pairs(torch.from_numpy(f.pairs))
    assert one_hot.shape == (72, PAIR_FEATURES) and torch.all(one_hot.sum(1) == 2)


def test_full_edge_index_matches_a_loop():
    sizes = [1, 3, 2, 4]
    edges = full_edge_index(torch.tensor(sizes))
    expected, offset = [], 0
    for n in sizes:
        expected += [[offset + j, offset + i] for i in range(n) for j in range(n) if i != j]
        offset += n
    assert edges.T.tolist() == expected
    assert torch.all(edges[1][1:] >= edges[1][:-1])  # target-sorted


@pytest.mark.parametrize("text, message", [
    ("C1CC", "cannot parse"),
    ("CCCl", "element(s) Cl"),
    ("CC.O", "disconnected"),
    ("C[NH3+]", "net charge +1"),
    ("C" * 45, "heavy atoms"),
    ("[He]", "element"),
])
def test_prepare_rejects_bad_inputs_with_a_reason(text, message):
    (job,) = prepare([text])
    assert job.error is not None and message in job.error and job.mol is None


def test_prepare_keeps_good_lines_skips_header_and_blank_lines():
    jobs = prepare(["smiles,name", "CCO,ethanol", "", "# comment", "xx", "c1ccccc1O phenol"])
    assert [(j.line, j.text, j.error is None) for j in jobs] == [
        (2, "CCO", True), (5, "xx", False), (6, "c1ccccc1O", True)]
    assert jobs[0].name == "ethanol" and jobs[0].mol.GetNumAtoms() == 9
    (big,) = prepare(["CC(=O)Nc1ccc(O)cc1"])  # paracetamol: 11 heavy atoms, accepted with a warning
    assert big.error is None and big.warnings


def test_fix_stereo_mirrors_an_inverted_conformer():
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(Chem.MolFromSmiles("C[C@H](O)CC"))
    AllChem.EmbedMolecule(mol, randomSeed=1)
    pos = mol.GetConformer().GetPositions()
    kept, ok = fix_stereo(mol, pos)
    assert ok and np.array_equal(kept, pos)
    mirrored = pos * np.array([-1.0, 1.0, 1.0])
    fixed, ok = fix_stereo(mol, mirrored)
    assert ok and not np.array_equal(fixed, mirrored)


def test_rmsd_metrics_by_hand():
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(Chem.MolFromSmiles("OCC(C)N"))
    AllChem.EmbedMolecule(mol, randomSeed=3)
    pos = mol.GetConformer().GetPositions()
    angle = 0.7
    rot = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0],
                    [0, 0, 1]])
    moved = pos @ rot.T + 3.0
    stretched = pos * 1.5
    rmsd = heavy_atom_rmsd_matrix(mol, [moved, stretched], mol, [pos])
    assert rmsd.shape == (2, 1)
    assert rmsd[0, 0] < 1e-6 and rmsd[1, 0] > 0.3
    s = ensemble_scores(rmsd)
    assert s.cov_recall == 1.0 and s.amr_recall < 1e-6
    assert s.cov_precision == 0.5 and s.amr_precision == pytest.approx(rmsd[:, 0].mean())


def tiny_conformer_checkpoint(path, treatment="quotient"):
    """An untrained conformer model saved as `train` would (no data needed)."""
    from quotient_diffusion.tasks import get_task

    cfg = TrainConfig.from_dict({"task": {"name": "conformers"},
                                 "model": {"hidden": 16, "layers": 2, "treatment": treatment}})
    torch.manual_seed(0)
    model = get_task(cfg).build_model()
    save_checkpoint(path, {"version": 1, "config": cfg.to_dict(), "step": 0,
                           "model": model.state_dict(), "ema": model.state_dict(), "optim": {}})
    return path


def test_cli_writes_sdf_for_good_lines_and_reports_bad_ones(tmp_path, capsys):
    from rdkit import Chem

    ckpt = tiny_conformer_checkpoint(tmp_path / "m.pt")
    inputs = tmp_path / "in.smi"
    inputs.write_text("CCO ethanol\nnot_a_smiles\nCCCl\nC[C@@H](N)C(=O)O alanine\n")
    out = tmp_path / "out.sdf"
    code = qdiff(["conformers", str(inputs), "-n", "3", "-o", str(out), "--checkpoint", str(ckpt),
                  "--steps", "4", "--mmff"])
    err = capsys.readouterr().err
    assert code == 1  # some inputs failed
    assert "line 2" in err and "line 3" in err and "Cl" in err
    mols = [m for m in Chem.SDMolSupplier(str(out), removeHs=False)]
    assert len(mols) == 6 and all(m is not None for m in mols)
    assert [m.GetProp("_Name") for m in mols] == ["ethanol"] * 3 + ["alanine"] * 3
    assert all(np.isfinite(m.GetConformer().GetPositions()).all() for m in mols)
    assert mols[0].HasProp("mmff_energy_kcal_mol")
    # same seed, same conformers
    out2 = tmp_path / "again.sdf"
    qdiff(["conformers", "CCO", "-n", "3", "-o", str(out2), "--checkpoint", str(ckpt),
           "--steps", "4"])
    qdiff(["conformers", "CCO", "-n", "3", "-o", str(out), "--checkpoint", str(ckpt),
           "--steps", "4"])
    assert out.read_text() == out2.read_text()


def test_cli_exit_codes_for_user_errors(tmp_path, capsys):
    ckpt = tiny_conformer_checkpoint(tmp_path / "m.pt")
    empty = tmp_path / "empty.smi"
    empty.write_text("\n\n")
    assert qdiff(["conformers", str(empty), "-o", str(tmp_path / "x.sdf"),
                  "--checkpoint", str(ckpt)]) == 2
    assert "no SMILES" in capsys.readouterr().err
    assert qdiff(["conformers", "C1CC", "-o", str(tmp_path / "x.sdf"),
                  "--checkpoint", str(ckpt)]) == 2
    assert qdiff(["conformers", "missing.smi", "-o", str(tmp_path / "x.sdf")]) == 2
    assert "no such input file" in capsys.readouterr().err
    assert not (tmp_path / "x.sdf").exists()


def test_bundled_model_generates_sensible_paracetamol(tmp_path, capsys):
    """README's first command: the bundled model, offline, on paracetamol."""
    from rdkit import Chem

    from quotient_diffusion.conformers import default_checkpoint

    assert default_checkpoint().exists()
    out = tmp_path / "out.sdf"
    code = qdiff(["conformers", "CC(=O)Nc1ccc(O)cc1", "-n", "2", "-o", str(out), "--steps", "20"])
    assert code == 0
    assert "warning" in capsys.readouterr().err  # 11 heavy atoms: beyond QM9's 9
    mols = list(Chem.SDMolSupplier(str(out), removeHs=False))
    assert len(mols) == 2
    for mol in mols:
        pos = mol.GetConformer().GetPositions()
        lengths = [np.linalg.norm(pos[b.GetBeginAtomIdx()] - pos[b.GetEndAtomIdx()])
                   for b in mol.GetBonds()
                   if b.GetBeginAtom().GetAtomicNum() > 1 and b.GetEndAtom().GetAtomicNum() > 1]
        assert 1.15 < np.median(lengths) < 1.6  # heavy-atom bonds: 1.2-1.5 A
