"""Conformer generation: QM9 parsing and graph matching, featurisation, input reading and checks,
the geometry and stereo checks, the embed API with the bundled model (linear and tiny
molecules, E/Z and R/S), the CLI (exit codes, stdout, Ctrl-C) and the ensemble metrics."""

from __future__ import annotations

import csv
import itertools
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from quotient_diffusion.chem.featurize import (
    ATOM_FEATURES,
    PAIR_FEATURES,
    expand_pairs,
    featurize,
)
from quotient_diffusion.chem.geometry import check_geometry, is_linear, linear_geometry
from quotient_diffusion.chem.inputs import parse_csv, parse_sdf, parse_smi, read_inputs
from quotient_diffusion.chem.molecules import make_conformer
from quotient_diffusion.chem.stereo import compare_stereo, mirror, realised_stereo, requested_stereo
from quotient_diffusion.cli import main as qdiff
from quotient_diffusion.conformers import (
    MAX_HEAVY_ATOMS,
    STEREO_ROUNDS,
    embed_conformers,
    embed_molecules,
    fix_stereo,
    load_conformer_model,
    prepare_jobs,
)
from quotient_diffusion.data.qm9 import (
    edm_split,
    match_smiles_to_geometry,
    parse_qm9_row,
    qm9_csv_paths,
)
from quotient_diffusion.metrics.conformers import ensemble_scores, heavy_atom_rmsd_matrix
from quotient_diffusion.nn import full_graph
from quotient_diffusion.tasks import conformers as conformer_task
from quotient_diffusion.training import TrainConfig
from quotient_diffusion.training.checkpoint import save_checkpoint
from quotient_diffusion.training.loop import CHECKPOINT_VERSION

pytestmark = pytest.mark.usefixtures("single_thread")  # many small operations: see conftest


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
             zip(full_graph(torch.zeros(9, dtype=torch.long)).T.tolist(), f.pairs)}
    assert pairs[(0, 1)] == (1, 0)  # C-C single bond, 1 bond apart
    assert pairs[(0, 2)] == (0, 1)  # C...O: no bond, 2 bonds apart
    assert pairs[(2, 0)] == pairs[(0, 2)]
    one_hot = expand_pairs(torch.from_numpy(f.pairs))
    assert one_hot.shape == (72, PAIR_FEATURES) and torch.all(one_hot.sum(1) == 2)


def embedded(smiles: str, seed: int = 1):
    """An RDKit molecule with hydrogens and one ETKDG conformer, and its positions."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    assert AllChem.EmbedMolecule(mol, randomSeed=seed) == 0
    return mol, mol.GetConformer().GetPositions()


def bond_lengths(mol, conf_id: int = -1) -> dict[str, list[float]]:
    """Bond lengths of one conformer by bond kind, e.g. {'C#N': [1.16], 'C-H': [1.06]}."""
    symbol = {1.0: "-", 1.5: ":", 2.0: "=", 3.0: "#"}
    pos = mol.GetConformer(conf_id).GetPositions()
    out: dict[str, list[float]] = {}
    for b in mol.GetBonds():
        a, c = sorted((b.GetBeginAtom().GetSymbol(), b.GetEndAtom().GetSymbol()),
                      key=lambda e: (e == "H", e))
        d = float(np.linalg.norm(pos[b.GetBeginAtomIdx()] - pos[b.GetEndAtomIdx()]))
        out.setdefault(f"{a}{symbol[b.GetBondTypeAsDouble()]}{c}", []).append(d)
    return out


@pytest.mark.parametrize("text, message", [
    ("C1CC", "cannot parse"),
    ("CCCl", "element(s) Cl"),
    ("CC.O", "disconnected"),
    ("C[NH3+]", "net charge +1"),
    ("C" * (MAX_HEAVY_ATOMS + 1), f"limit of {MAX_HEAVY_ATOMS}"),
    ("[He]", "element"),
    ("C[CH2]", "radical"),
    ("[H]", "single atom"),
    ("[C]", "single atom"),
])
def test_prepare_rejects_bad_inputs_with_a_reason(text, message):
    (job,) = prepare_jobs([text])
    assert job.error is not None and message in job.error and job.mol is None


def test_prepare_accepts_qm9s_smallest_molecules_and_warns_beyond_qm9():
    """Methane, water, ammonia and HF have one heavy atom but several atoms: accepted (the
    single-atom check counts the hydrogens)."""
    jobs = prepare_jobs(["C", "O", "N", "F", "CC(=O)Nc1ccc(O)cc1"])
    assert [j.error for j in jobs] == [None] * 5
    assert [j.mol.GetNumAtoms() for j in jobs[:4]] == [5, 3, 4, 2]
    assert not jobs[0].warnings and "11 heavy atoms" in jobs[4].warnings[0]


def test_smi_lines_keep_names_with_spaces_and_skip_header_and_comments():
    records = parse_smi(["smiles name", "CCO  ethyl alcohol, absolute ", "", "# note",
                         "c1ccccc1O\tphenol", "C"])
    assert [(r.number, r.smiles, r.name) for r in records] == [
        (2, "CCO", "ethyl alcohol, absolute"), (5, "c1ccccc1O", "phenol"), (6, "C", "C")]


def test_csv_quoted_fields_header_columns_and_headerless_files():
    text = ['id,notes,SMILES', '"aspirin, tablet","a ""quoted"" note","CC(=O)Oc1ccccc1C(=O)O"',
            'water,,O', ',,']
    records = parse_csv(text)
    assert [(r.number, r.smiles, r.name) for r in records] == [
        (2, "CC(=O)Oc1ccccc1C(=O)O", "aspirin, tablet"), (3, "O", "water")]
    bare = parse_csv(['CCO,"ethanol, dry"', "# comment", "N"])
    assert [(r.number, r.smiles, r.name) for r in bare] == [(1, "CCO", "ethanol, dry"),
                                                          (3, "N", "N")]
    (missing,) = parse_csv(["smiles,name", ",nameless"])
    assert missing.smiles is None and "no SMILES" in missing.error


def test_input_rule_a_file_only_by_its_extension(tmp_path, monkeypatch):
    """A file named like a SMILES does not turn the SMILES into a file name; a .smi that does
    not exist is an error, not a SMILES; --input-format overrides the rule."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "CCO").write_text("N ammonia\n")
    assert read_inputs("CCO")[1][0].smiles == "CCO"
    assert read_inputs("CCO", "smi")[1][0].smiles == "N"
    (tmp_path / "list.TXT").write_text("O water\n")
    assert read_inputs("list.TXT") == ("smi", [parse_smi(["O water"])[0]])
    with pytest.raises(FileNotFoundError, match="no such input file"):
        read_inputs("missing.smi")


def test_sdf_records_keep_their_stereo_and_title():
    from rdkit import Chem

    mol, _ = embedded("C[C@@H](N)C(=O)O")
    mol.SetProp("_Name", "L alanine")
    (record,) = parse_sdf(Chem.MolToMolBlock(mol) + "$$$$\n")
    assert record.name == "L alanine"
    assert Chem.CanonSmiles(record.smiles) == Chem.CanonSmiles("C[C@@H](N)C(=O)O")


def test_geometry_check_passes_real_geometry_and_flags_bad_bonds_and_clashes():
    mol, pos = embedded("CCCCO")
    good = check_geometry(mol, pos)
    assert good.ok and good.max_bond_error < 0.1 and good.clashes == 0
    stretched = pos.copy()
    stretched[4] += 0.4 * (pos[4] - pos[3]) / np.linalg.norm(pos[4] - pos[3])  # C-O + 0.4 A
    bad = check_geometry(mol, stretched)
    assert not bad.ok and bad.max_bond_error == pytest.approx(0.4 + good.max_bond_error, abs=0.1)
    folded = pos.copy()
    folded[4] = pos[0] + 0.3  # O onto the first carbon, 4 bonds away; its bonds off too
    assert check_geometry(mol, folded).clashes >= 1


@pytest.mark.parametrize("smiles, linear", [
    ("N#N", True), ("[C-]#[O+]", True), ("C#N", True), ("C#C", True), ("O=C=O", True),
    ("C#CC#N", True), ("F", True), ("CC#C", False), ("O", False), ("C=C", False),
    ("C=C=C", False),
])
def test_linear_molecules_are_recognised_and_built_straight(smiles, linear):
    from rdkit import Chem

    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    assert is_linear(mol) == linear
    if linear:
        pos = linear_geometry(mol)
        assert np.allclose(pos[:, :2], 0) and np.allclose(pos.mean(0), 0)
        assert check_geometry(mol, pos).max_bond_error < 1e-12


def test_stereo_verdicts_on_rdkit_geometries():
    """ok / mirror / wrong for R/S, both centres of a diastereomer, and E/Z."""
    chiral, pos = embedded("C[C@H](O)[C@@H](N)CC")
    wanted = requested_stereo(chiral)
    assert wanted.centres == {1: "S", 3: "S"}
    assert compare_stereo(wanted, realised_stereo(chiral, pos)) == "ok"
    assert compare_stereo(wanted, realised_stereo(chiral, mirror(pos))) == "mirror"
    diastereomer, other = embedded("C[C@H](O)[C@H](N)CC")  # same atom order, one centre flipped
    assert compare_stereo(wanted, realised_stereo(chiral, other)) == "wrong"
    assert compare_stereo(requested_stereo(diastereomer), realised_stereo(chiral, other)) == "ok"
    trans, pos_e = embedded("F/C=C/F")
    _, pos_z = embedded("F/C=C\\F")
    assert requested_stereo(trans).bonds == {1: "E"}
    assert compare_stereo(requested_stereo(trans), realised_stereo(trans, pos_e)) == "ok"
    assert compare_stereo(requested_stereo(trans), realised_stereo(trans, pos_z)) == "wrong"
    assert compare_stereo(requested_stereo(trans), realised_stereo(trans, mirror(pos_z))) == \
        "wrong"


def test_fix_stereo_mirrors_an_inverted_conformer():
    mol, pos = embedded("C[C@H](O)CC")
    kept, ok = fix_stereo(mol, pos)
    assert ok and np.array_equal(kept, pos)
    mirrored = pos * np.array([-1.0, 1.0, 1.0])
    fixed, ok = fix_stereo(mol, mirrored)
    assert ok and not np.array_equal(fixed, mirrored)


def test_embed_refuses_unsupported_molecules_with_the_reason():
    """The QM9 model refuses Cl and 19 heavy atoms; auto (the default) gives those to the
    drug-like model, which refuses I and 61 heavy atoms; the index is that of the whole call."""
    from rdkit import Chem

    with pytest.raises(ValueError, match="implicit hydrogens.*Chem.AddHs"):
        embed_conformers(Chem.MolFromSmiles("CCO"), 1)
    with pytest.raises(ValueError, match="element.*Cl"):
        embed_conformers(Chem.AddHs(Chem.MolFromSmiles("CCl")), 1, model="qm9")
    with pytest.raises(ValueError, match="19 heavy atoms"):
        embed_conformers(Chem.AddHs(Chem.MolFromSmiles("C" * (MAX_HEAVY_ATOMS + 1))), 1,
                         model="qm9")
    with pytest.raises(ValueError, match="element.*I not"):
        embed_conformers(Chem.AddHs(Chem.MolFromSmiles("CCI")), 1)
    with pytest.raises(ValueError, match="molecule 2: 61 heavy atoms: above the limit of 60"):
        embed_molecules([Chem.AddHs(Chem.MolFromSmiles(s)) for s in ("C", "CCl", "C" * 61)], 1)
    with pytest.raises(ValueError, match="molecule 1: .*fragments"):
        embed_molecules([Chem.AddHs(Chem.MolFromSmiles("C")),
                         Chem.AddHs(Chem.MolFromSmiles("C.C"))], 1)
    with pytest.raises(ValueError, match="no bundled conformer model 'drugs'"):
        embed_conformers(Chem.AddHs(Chem.MolFromSmiles("CC")), 1, model="drugs")


def test_stereo_policy_resamples_then_drops(monkeypatch):
    """Every sample cis for a trans request: the first round and STEREO_ROUNDS extra rounds
    are drawn, nothing is kept, every conformer counted as dropped; one trans sample among
    cis ones is kept and counted as resampled."""
    mol, _ = embedded("F/C=C/F")
    _, cis = embedded("F/C=C\\F")
    _, trans = embedded("F/C=C/F")
    rounds = []

    def fake_samples(task, model, requests, sampler, generator, max_atoms):
        rounds.append(sum(count for _, count in requests))
        for k, (_, count) in enumerate(requests):
            for i in range(count):
                yield k, (trans if len(rounds) == 2 and i == 0 else cis)

    monkeypatch.setattr(conformer_task, "_samples", fake_samples)
    (result,) = embed_molecules([mol], 3)
    assert rounds == [3, 3, 2, 2] and len(rounds) == STEREO_ROUNDS + 1
    assert result.dropped == 2 and result.resampled == 1 and result.ids == [0]
    assert mol.GetConformer(0).GetIntProp("sampling_round") == 1


def test_model_is_loaded_once():
    task, model = load_conformer_model()
    assert load_conformer_model(None)[1] is model and task.name == "conformers"


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


def test_pairwise_rmsd_against_rdkit_alignment_and_a_rigid_motion():
    """pairwise_rmsd: zero for a rigidly moved copy (a mirror image is not superposable:
    positive), and equal to RDKit's AlignMol with the identity atom map for distinct ETKDG
    conformers, pair order that of numpy.triu_indices."""
    from rdkit import Chem
    from rdkit.Chem import AllChem, rdMolAlign

    from quotient_diffusion.metrics.conformers import pairwise_rmsd

    mol = Chem.AddHs(Chem.MolFromSmiles("OCC(C)NC(=O)C1CC1"))
    ids = list(AllChem.EmbedMultipleConfs(mol, 4, randomSeed=7))
    pos = np.stack([mol.GetConformer(i).GetPositions() for i in ids])
    angle = 1.1
    rot = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)],
                    [0, np.sin(angle), np.cos(angle)]])
    moved, mirrored = pos[0] @ rot.T - 2.0, pos[0] * np.array([1.0, 1.0, -1.0])
    same = pairwise_rmsd(np.stack([pos[0], moved, mirrored]))
    assert same[0] < 1e-10 and same[1] > 0.1 and same[2] > 0.1
    identity = [(k, k) for k in range(mol.GetNumAtoms())]
    expected = [rdMolAlign.AlignMol(Chem.Mol(mol), mol, prbCid=ids[i], refCid=ids[j],
                                    atomMap=identity) for i, j in zip(*np.triu_indices(4, 1))]
    assert np.allclose(pairwise_rmsd(pos), expected, atol=1e-6)


def tiny_conformer_checkpoint(path, treatment="quotient", options=None):
    """An untrained conformer model saved as `train` would (no data needed), with the task
    options ``options``."""
    from quotient_diffusion.tasks import get_task

    cfg = TrainConfig.from_dict({"task": {"name": "conformers", "options": options or {}},
                                 "model": {"hidden": 16, "layers": 2, "treatment": treatment}})
    torch.manual_seed(0)
    model = get_task(cfg).build_model()
    save_checkpoint(path, {"version": CHECKPOINT_VERSION, "config": cfg.to_dict(), "step": 0,
                           "model": model.state_dict(), "ema": model.state_dict(), "optim": {}})
    return path


def sdf_molecules(path_or_text, from_text: bool = False) -> list:
    from rdkit import Chem

    supplier = Chem.SDMolSupplier()
    if from_text:
        supplier.SetData(path_or_text, removeHs=False)
    else:
        supplier = Chem.SDMolSupplier(str(path_or_text), removeHs=False)
    mols = list(supplier)
    assert all(m is not None for m in mols)
    return mols


def test_cli_writes_sdf_for_good_lines_and_reports_bad_ones(tmp_path, capsys):
    ckpt = tiny_conformer_checkpoint(tmp_path / "m.pt")
    inputs = tmp_path / "in.smi"
    inputs.write_text("CCO ethanol\nnot_a_smiles\nCCCl\nCC(N)C(=O)O alanine, racemic\n")
    out = tmp_path / "out.sdf"
    code = qdiff(["conformers", str(inputs), "-n", "3", "-o", str(out), "--checkpoint", str(ckpt),
                  "--steps", "4", "--mmff"])
    err = capsys.readouterr().err
    assert code == 1  # some inputs failed
    assert "line 2" in err and "line 3" in err and "Cl" in err and "geometry:" in err
    mols = sdf_molecules(out)
    assert [m.GetProp("_Name") for m in mols] == ["ethanol"] * 3 + ["alanine, racemic"] * 3
    assert [m.GetIntProp("input_line") for m in mols] == [1] * 3 + [4] * 3
    assert all(np.isfinite(m.GetConformer().GetPositions()).all() for m in mols)
    for key in ("mmff_energy_kcal_mol", "geometry_ok", "max_bond_error_A", "stereo_repair",
                "sampling_round", "source", "model", "sampler"):
        assert mols[0].HasProp(key), key
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


def test_cli_interrupt_writes_the_finished_conformers(tmp_path, capsys, monkeypatch):
    """Ctrl-C after two samples: those two are complete records, the rest is not written."""
    ckpt = tiny_conformer_checkpoint(tmp_path / "m.pt")
    real = conformer_task._samples

    def interrupted(*args, **kwargs):
        samples = real(*args, **kwargs)
        yield next(samples)
        yield next(samples)
        raise KeyboardInterrupt

    monkeypatch.setattr(conformer_task, "_samples", interrupted)
    out = tmp_path / "out.sdf"
    code = qdiff(["conformers", "CCO", "-n", "5", "-o", str(out), "--checkpoint", str(ckpt),
                  "--steps", "2"])
    assert code == 130
    assert "interrupted: wrote 2 of 5 conformers" in capsys.readouterr().err
    assert len(sdf_molecules(out)) == 2
    assert {p.name for p in tmp_path.iterdir()} == {"m.pt", "out.sdf"}  # no temporary left


def run_qdiff(*args: str, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "quotient_diffusion.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300, env=env)


def test_cli_process_smiles_beside_a_same_named_file_to_stdout(tmp_path):
    """`qdiff conformers CCO -o -` with a file called CCO in the working directory: the
    argument is still the SMILES; the SDF goes to stdout, the messages to stderr."""
    (tmp_path / "CCO").write_text("N\n")
    proc = run_qdiff("conformers", "CCO", "-n", "2", "-o", "-", "--steps", "10", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    mols = sdf_molecules(proc.stdout, from_text=True)
    assert [m.GetProp("smiles") for m in mols] == ["CCO", "CCO"]
    assert all(m.GetNumAtoms() == 9 and m.GetIntProp("geometry_ok") == 1 for m in mols)
    assert "wrote 2 conformers" in proc.stderr and "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["CCO"]


def test_cli_process_reads_quoted_csv_and_reports_the_bad_row(tmp_path):
    (tmp_path / "in.csv").write_text('name,smiles\n"methane, natural gas",C\nwater,O\n'
                                     'iodoethane,CCI\n')
    proc = run_qdiff("conformers", "in.csv", "-n", "1", "-o", "out.sdf", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "line 4 (CCI): element(s) I not" in proc.stderr and "Traceback" not in proc.stderr
    mols = sdf_molecules(tmp_path / "out.sdf")
    assert [m.GetProp("_Name") for m in mols] == ["methane, natural gas", "water"]


# Experimental bond lengths (NIST CCCBDB), Angstrom
LINEAR = [
    ("N#N", {"N#N": 1.098}),
    ("[C-]#[O+]", {"C#O": 1.128}),
    ("C#N", {"C#N": 1.156, "C-H": 1.064}),
    ("C#C", {"C#C": 1.203, "C-H": 1.063}),
    ("O=C=O", {"C=O": 1.160}),
]
SMALL = [("C", {"C-H": 1.087}), ("O", {"O-H": 0.958}), ("N", {"N-H": 1.012}),
         ("F", {"F-H": 0.917})]


@pytest.mark.parametrize("smiles, expected", LINEAR + SMALL)
def test_bundled_model_gives_real_bond_lengths_for_tiny_and_linear_molecules(smiles, expected):
    """N2 and CO once came out with 0.00 A bonds, HCN 0.35 A short; methane, water, ammonia and
    HF were refused. Every bond within 0.1 A of experiment, in every conformer."""
    from rdkit import Chem

    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    ids = embed_conformers(mol, 3, seed=0)
    assert ids == [0, 1, 2] and mol.GetNumConformers() == 3
    for conf_id in ids:
        lengths = bond_lengths(mol, conf_id)
        assert set(lengths) == set(expected)
        for kind, values in lengths.items():
            assert np.allclose(values, expected[kind], atol=0.1), (kind, values)
        assert mol.GetConformer(conf_id).GetIntProp("geometry_ok") == 1


def _fccf_dihedral(mol, conf_id: int) -> float:
    """|F-C=C-F| dihedral angle in degrees (atoms 0-3 of F/C=C/F)."""
    from rdkit.Chem import rdMolTransforms

    return abs(rdMolTransforms.GetDihedralDeg(mol.GetConformer(conf_id), 0, 1, 2, 3))


def test_bundled_model_conformers_carry_the_requested_E_Z_and_R_S():
    """F/C=C/F once came out cis with stereo_ok=1: every conformer now has the requested labels
    (RDKit from 3D), and the F-C=C-F dihedral on the right side of 90 degrees (the model twists
    some double bonds far from planar); the counts add up. The bundled model (stereo features
    and the chirality push) gets them right itself: nothing is dropped or redrawn."""
    from rdkit import Chem

    mols = [Chem.AddHs(Chem.MolFromSmiles(s))
            for s in ("F/C=C/F", "F/C=C\\F", "C[C@H](O)[C@@H](N)CC")]
    results = embed_molecules(mols, 4, seed=0, steps=25)
    for mol, result in zip(mols, results):
        assert len(result.ids) + result.dropped == 4 and len(result.ids) >= 2
        wanted = requested_stereo(mol)
        for conf_id in result.ids:
            pos = mol.GetConformer(conf_id).GetPositions()
            assert realised_stereo(mol, pos) == wanted
    assert min(_fccf_dihedral(mols[0], i) for i in results[0].ids) > 90
    assert max(_fccf_dihedral(mols[1], i) for i in results[1].ids) < 90
    assert all(r.resampled == 0 and r.dropped == 0 for r in results)


#: GEOM-QM9 test molecules (held out of training) with their QM9 id: rigid ring systems, so the
#: DFT geometry is the conformer to find; four tetrahedral centres in the second
HELD_OUT = {24343: "C1=Nc2cocc2CO1", 39302: "C1C[C@H]2[C@@H]3O[C@H]2CO[C@H]13",
            74045: "CC1=C2COC[C@H]2CC1", 74707: "CC1=C[C@@H]2C[C@H](C=C1)O2",
            84132: "CC1=C[C@H](C)[C@]2(CO2)C1"}


def qm9_dft_molecules(ids) -> dict:
    """QM9 id -> molecule with its DFT geometry (the installed QM9 CSVs, scanned once)."""
    csv.field_size_limit(1 << 30)
    found = {}
    for path in qm9_csv_paths():
        with open(path, newline="") as fh:
            for row in csv.DictReader(fh):
                if int(row["Index"]) not in ids:
                    continue
                index, smiles, symbols, xyz = parse_qm9_row(row)
                mol, pos = match_smiles_to_geometry(smiles, symbols, xyz)
                mol.AddConformer(make_conformer(pos), assignId=True)
                found[index] = mol
                if len(found) == len(ids):
                    return found
    return found


def test_bundled_model_reproduces_held_out_dft_geometries():
    """Five held-out QM9 molecules, five conformers each with the command's default sampler:
    every bond, hydrogens included, within 0.07 A of the same bond in the DFT geometry (atoms
    matched by substructure), the requested R/S in every conformer, and the best heavy-atom
    RMSD to the DFT geometry (symmetry-aware) below 0.15 A for each molecule. (Measured with the
    bundled model: worst bond 0.041 A, best RMSDs 0.022-0.070 A.)"""
    from rdkit import Chem

    dft = qm9_dft_molecules(set(HELD_OUT))
    assert set(dft) == set(HELD_OUT)
    for index, smiles in HELD_OUT.items():
        mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
        ids = embed_conformers(mol, 5, seed=0)
        assert len(ids) == 5
        match = mol.GetSubstructMatch(dft[index])  # generated atom of each DFT atom
        assert len(match) == mol.GetNumAtoms()
        reference = dft[index].GetConformer().GetPositions()
        pairs = [(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in dft[index].GetBonds()]
        dft_lengths = np.array([np.linalg.norm(reference[i] - reference[j]) for i, j in pairs])
        gens = [mol.GetConformer(c).GetPositions() for c in ids]
        for pos in gens:
            lengths = np.array([np.linalg.norm(pos[match[i]] - pos[match[j]]) for i, j in pairs])
            assert np.abs(lengths - dft_lengths).max() < 0.07, (smiles, lengths - dft_lengths)
            assert realised_stereo(mol, pos) == requested_stereo(mol), smiles
        rmsd = heavy_atom_rmsd_matrix(mol, gens, dft[index], [reference])
        assert rmsd.min() < 0.15, (smiles, rmsd.min())


def test_embed_conformers_in_place_like_rdkit():
    """Conformers are added to the molecule given (cleared first unless asked not to)."""
    from rdkit import Chem

    mol = Chem.AddHs(Chem.MolFromSmiles("CC(=O)N"))
    assert embed_conformers(mol, 2, seed=1, steps=20) == [0, 1]
    assert embed_conformers(mol, 1, seed=2, steps=20, clear_conformers=False) == [2]
    assert mol.GetNumConformers() == 3
    first = mol.GetConformer(0).GetPositions()
    again = Chem.AddHs(Chem.MolFromSmiles("CC(=O)N"))
    embed_conformers(again, 2, seed=1, steps=20)
    assert np.array_equal(again.GetConformer(0).GetPositions(), first)


def test_bundled_model_generates_sensible_paracetamol(tmp_path, capsys):
    """README's first command: the bundled models, offline, on paracetamol (11 heavy atoms: the
    drug-like model's by default, no warning; the QM9 model's with a warning, beyond QM9's 9)."""
    from quotient_diffusion.conformers import default_checkpoint

    assert default_checkpoint().exists()
    out = tmp_path / "out.sdf"
    code = qdiff(["conformers", "CC(=O)Nc1ccc(O)cc1", "-n", "2", "-o", str(out), "--steps", "20"])
    assert code == 0
    assert "warning" not in capsys.readouterr().err
    mols = sdf_molecules(out)
    assert [m.GetProp("checkpoint") for m in mols] == ["bundled druglike"] * 2
    qm9 = tmp_path / "qm9.sdf"
    assert qdiff(["conformers", "CC(=O)Nc1ccc(O)cc1", "-n", "2", "-o", str(qm9),
                  "--model", "qm9"]) == 0
    assert "warning" in capsys.readouterr().err
    mols += sdf_molecules(qm9)
    assert len(mols) == 4
    for mol in mols:
        pos = mol.GetConformer().GetPositions()
        lengths = [np.linalg.norm(pos[b.GetBeginAtomIdx()] - pos[b.GetEndAtomIdx()])
                   for b in mol.GetBonds()
                   if b.GetBeginAtom().GetAtomicNum() > 1 and b.GetEndAtom().GetAtomicNum() > 1]
        assert 1.15 < np.median(lengths) < 1.6  # heavy-atom bonds: 1.2-1.5 A


def test_default_sampler_is_the_one_the_command_describes():
    """DEFAULT_SAMPLER, the command's help and docstring, and the option choices written out
    for a torch-free parser all agree."""
    from quotient_diffusion.commands import conformers as command
    from quotient_diffusion.commands import sampler_options
    from quotient_diffusion.conformers import DEFAULT_SAMPLER, SDE_STEPS
    from quotient_diffusion.diffusion import samplers

    d = DEFAULT_SAMPLER
    rho = d.rho or samplers.DEFAULT_RHO.get(d.schedule)
    assert command.ODE_DEFAULT == (f"{d.steps} steps of the {d.solver} solver, {d.schedule} grid"
                                   + (f", rho {rho:g}" if rho else "")
                                   + (f", last time {d.last_time:g}" if d.last_time else ""))
    assert f"K = {d.steps} network evaluations" in command.__doc__
    assert f"--method sde takes {SDE_STEPS} Euler-Maruyama steps" in command.__doc__
    assert sampler_options.SOLVERS == samplers.SOLVERS
    assert sampler_options.SCHEDULES == samplers.SCHEDULES


def test_cli_sampler_options(tmp_path, capsys):
    """The default sampler, a chosen solver and grid, the SDE, and options that do not go
    together (one line, exit code 2, nothing written); the SDF names the sampler used."""
    ckpt = tiny_conformer_checkpoint(tmp_path / "m.pt")
    cases = {
        (): "dpm2m-power1.5-8-last0.99",
        ("--solver", "heun", "--schedule", "edm", "--steps", "3"): "heun-edm7-3",
        ("--rho", "3", "--steps", "2"): "dpm2m-power3-2-last0.99",
        ("--steps", "4", "--last-time", "0.9"): "dpm2m-power1.5-4-last0.9",
        ("--steps", "10", "--rho", "2", "--last-time", "0"): "dpm2m-power2-10",
        ("--steps", "3"): "dpm2m-power1.5-3-last0.99",  # the default's rho and last time
        ("--method", "sde", "--steps", "3"): "sde-uniform-3",
        ("--method", "sde", "--steps", "3", "--noise-scale", "0.5"): "sde-uniform-3-noise0.5",
    }
    for extra, label in cases.items():
        out = tmp_path / "out.sdf"
        code = qdiff(["conformers", "CCO", "-n", "1", "-o", str(out), "--checkpoint", str(ckpt),
                      *extra])
        assert code == 0, capsys.readouterr().err
        assert sdf_molecules(out)[0].GetProp("sampler") == label, extra
    capsys.readouterr()
    # the sampler written is the one used: the same seed gives the same coordinates exactly
    # when, and only when, the grids agree
    def positions(*extra):
        out = tmp_path / "grid.sdf"
        assert qdiff(["conformers", "CCO", "-n", "2", "-o", str(out), "--checkpoint", str(ckpt),
                      "--steps", "4", *extra]) == 0
        return np.stack([m.GetConformer().GetPositions() for m in sdf_molecules(out)])

    default = positions()
    assert np.array_equal(default, positions("--last-time", "0.99"))
    assert not np.allclose(default, positions("--last-time", "0"), atol=1e-4)
    assert not np.allclose(default, positions("--last-time", "0.9"), atol=1e-4)
    from rdkit import Chem

    from quotient_diffusion.conformers import DEFAULT_SAMPLER, embed_molecules
    with pytest.raises(ValueError, match="not both"):
        embed_molecules([Chem.AddHs(Chem.MolFromSmiles("CCO"))], 1, steps=4,
                        sampler=DEFAULT_SAMPLER, checkpoint=ckpt)
    capsys.readouterr()
    bad = tmp_path / "bad.sdf"
    for extra in (("--method", "sde", "--solver", "dpm2m"),
                  ("--schedule", "uniform", "--rho", "2"),
                  ("--last-time", "1.5"), ("--schedule", "edm", "--last-time", "0.9")):
        assert qdiff(["conformers", "CCO", "-o", str(bad), "--checkpoint", str(ckpt),
                      *extra]) == 2
        err = capsys.readouterr().err
        assert "sampler options" in err and "Traceback" not in err and len(err.splitlines()) == 1
    assert not bad.exists()


#: the task options of a CCD model (configs/conformers_ccd.json): its source and vocabulary
CCD_OPTIONS = {"source": "ccd", "elements": ["H", "C", "N", "O", "F", "S", "Cl", "Br"]}
#: 25 heavy atoms with S, Cl and Br
DRUG_LIKE = "CCCOC(=O)c1ccc(NS(=O)(=O)c2ccc(Cl)cc2)c(Br)c1C"
#: acetylcholine (+1) and acetate (-1)
CHARGED = ("C[N+](C)(C)CCOC(C)=O", "CC(=O)[O-]")
#: what a QM9 model says of molecules a CCD model takes (today's messages, word for word)
QM9_REFUSALS = {
    DRUG_LIKE: "element(s) Br, Cl, S not in the training data (the model knows H, C, N, O, F)",
    CHARGED[0]: "net charge +1: the model was trained on neutral molecules",
    CHARGED[1]: "net charge -1: the model was trained on neutral molecules",
    "C" * 25: "25 heavy atoms: above the limit of 18, where the model's geometry breaks down "
              "(it was trained on at most 9)",
}


def with_hydrogens(smiles: str):
    from rdkit import Chem

    return Chem.AddHs(Chem.MolFromSmiles(smiles))


def test_ccd_model_takes_its_elements_sizes_and_charges_without_the_ccd_data(tmp_path,
                                                                             monkeypatch):
    """A CCD model (source "ccd", its 8 elements) takes a 25-heavy-atom molecule with S, Cl and
    Br and charged ones, with no warning: conformers of every atom come out. Loading it, checking
    and sampling read no CCD data (only training does: datasets() is what fails here)."""
    from quotient_diffusion.conformers import MoleculeLimits
    from quotient_diffusion.data import ccd

    def no_data(*args, **kwargs):
        raise AssertionError("the CCD data were read")

    monkeypatch.setattr(ccd, "load_ccd", no_data)
    monkeypatch.setattr(ccd, "relax_ccd", no_data)
    monkeypatch.setenv("QD_DATA", str(tmp_path / "no_data"))
    monkeypatch.setenv("QD_CACHE", str(tmp_path / "no_cache"))
    ckpt = tiny_conformer_checkpoint(tmp_path / "ccd.pt", options=CCD_OPTIONS)
    task, _ = load_conformer_model(ckpt)
    assert task.limits == MoleculeLimits(tuple(CCD_OPTIONS["elements"]), 60, 60, charged=True)
    smiles = [DRUG_LIKE, *CHARGED]
    assert [(j.error, j.warnings) for j in prepare_jobs(smiles, task.limits)] == [(None, [])] * 3
    mols = [with_hydrogens(s) for s in smiles]
    assert mols[0].GetNumHeavyAtoms() == 25
    results = embed_molecules(mols, 2, seed=0, steps=2, checkpoint=ckpt)
    for mol, result in zip(mols, results):
        assert result.ids == [0, 1]
        for conf in mol.GetConformers():
            pos = conf.GetPositions()
            assert pos.shape == (mol.GetNumAtoms(), 3) and np.isfinite(pos).all()
    with pytest.raises(AssertionError, match="CCD data were read"):
        task.datasets()


def test_qm9_models_still_refuse_what_a_ccd_model_takes(tmp_path, capsys):
    """The bundled model and a QM9-style one refuse S/Cl/Br, net charges and 25 heavy atoms with
    today's messages (check_molecule, prepare_jobs, embed, the command: one line, exit code 2),
    while the command with a CCD checkpoint writes conformers of the same molecules."""
    from quotient_diffusion.conformers import QM9_LIMITS, check_molecule

    qm9 = tiny_conformer_checkpoint(tmp_path / "qm9.pt")
    assert load_conformer_model(qm9)[0].limits == QM9_LIMITS == load_conformer_model()[0].limits
    out = tmp_path / "out.sdf"
    for smiles, message in QM9_REFUSALS.items():
        mol = with_hydrogens(smiles)
        assert check_molecule(mol) == message == check_molecule(mol, QM9_LIMITS)
        assert prepare_jobs([smiles])[0].error == message
        with pytest.raises(ValueError) as refused:
            embed_conformers(mol, 1, checkpoint=qm9)
        assert str(refused.value) == message
        assert qdiff(["conformers", smiles, "-o", str(out), "--checkpoint", str(qm9)]) == 2
        assert capsys.readouterr().err == f"qdiff conformers: input ({smiles}): {message}\n"
    assert not out.exists()
    ccd = tiny_conformer_checkpoint(tmp_path / "ccd.pt", options=CCD_OPTIONS)
    inputs = tmp_path / "in.smi"
    inputs.write_text("".join(f"{s}\n" for s in (DRUG_LIKE, *CHARGED)))
    code = qdiff(["conformers", str(inputs), "-n", "1", "-o", str(out), "--checkpoint", str(ccd),
                  "--steps", "2"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "warning" not in err
    assert [m.GetNumAtoms() for m in sdf_molecules(out)] == [
        with_hydrogens(s).GetNumAtoms() for s in (DRUG_LIKE, *CHARGED)]


def test_max_heavy_atoms_option_sets_the_size_limit(tmp_path):
    """The task option max_heavy_atoms, recorded in the checkpoint, replaces the source's size
    limit both ways: a CCD model held to 20 refuses 25 heavy atoms, a QM9 one allowed 30 takes
    them (warning above QM9's 9); it must be positive."""
    from quotient_diffusion.tasks import get_task
    from quotient_diffusion.training.validation import ConfigError

    small = tiny_conformer_checkpoint(tmp_path / "ccd20.pt",
                                      options={**CCD_OPTIONS, "max_heavy_atoms": 20})
    task, _ = load_conformer_model(small)
    assert task.options.max_heavy_atoms == 20
    message = ("25 heavy atoms: above the limit of 20, set by the task option max_heavy_atoms "
               "(it was trained on at most 60)")
    assert prepare_jobs([DRUG_LIKE], task.limits)[0].error == message
    with pytest.raises(ValueError, match="above the limit of 20"):
        embed_conformers(with_hydrogens(DRUG_LIKE), 1, checkpoint=small)
    large = tiny_conformer_checkpoint(tmp_path / "qm9_30.pt", options={"max_heavy_atoms": 30})
    task, _ = load_conformer_model(large)
    (job,) = prepare_jobs(["C" * 25], task.limits)
    assert job.error is None and job.warnings[0].startswith(
        "25 heavy atoms, more than any training molecule (9)")
    mol = with_hydrogens("C" * 25)
    assert embed_conformers(mol, 1, steps=2, checkpoint=large) == [0]
    assert mol.GetConformer(0).GetPositions().shape == (77, 3)
    for bad in (0, -5):
        config = TrainConfig.from_dict({"task": {"name": "conformers",
                                                 "options": {"max_heavy_atoms": bad}}})
        with pytest.raises(ConfigError, match="max_heavy_atoms: must be positive"):
            get_task(config)


def test_auto_gives_each_molecule_its_bundled_model(tmp_path, capsys):
    """choose_model: the QM9 model for what it takes up to AUTO_QM9_MAX_HEAVY_ATOMS heavy atoms,
    the drug-like model for the rest (one more heavy atom, S/Cl/Br, charges). The command with
    the default --model auto writes each input's conformers from that model, as --model with
    that name does (same seed, same coordinates), and names it in the SDF; --model beside
    --checkpoint is refused (one line, exit code 2)."""
    from quotient_diffusion.commands.conformers import MODELS
    from quotient_diffusion.commands.conformers import __doc__ as command_doc
    from quotient_diffusion.conformers import AUTO_QM9_MAX_HEAVY_ATOMS, BUNDLED_MODELS, choose_model

    assert MODELS == ("auto", *BUNDLED_MODELS)
    assert f"at most {AUTO_QM9_MAX_HEAVY_ATOMS} heavy atoms" in " ".join(command_doc.split())
    largest = "C" * AUTO_QM9_MAX_HEAVY_ATOMS
    picks = {largest: "qm9", "CCO": "qm9", largest + "C": "druglike", "CCCl": "druglike",
             CHARGED[1]: "druglike", DRUG_LIKE: "druglike"}
    assert {s: choose_model(with_hydrogens(s)) for s in picks} == picks
    smiles = ("CCO", DRUG_LIKE, CHARGED[0])
    inputs = tmp_path / "in.smi"
    inputs.write_text("".join(f"{s}\n" for s in smiles))
    auto = tmp_path / "auto.sdf"
    assert qdiff(["conformers", str(inputs), "-n", "2", "-o", str(auto)]) == 0
    written = sdf_molecules(auto)
    assert [m.GetProp("checkpoint") for m in written] == [
        "bundled qm9"] * 2 + ["bundled druglike"] * 4
    for name, first in (("qm9", 0), ("druglike", 2)):
        alone = tmp_path / f"{name}.sdf"
        picked = [s for s in smiles if choose_model(with_hydrogens(s)) == name]
        inputs.write_text("".join(f"{s}\n" for s in picked))
        assert qdiff(["conformers", str(inputs), "-n", "2", "-o", str(alone),
                      "--model", name]) == 0
        for k, mol in enumerate(sdf_molecules(alone)):
            assert np.array_equal(mol.GetConformer().GetPositions(),
                                  written[first + k].GetConformer().GetPositions())
    capsys.readouterr()
    ckpt = tiny_conformer_checkpoint(tmp_path / "m.pt")
    assert qdiff(["conformers", "CCO", "-o", str(tmp_path / "x.sdf"), "--model", "qm9",
                  "--checkpoint", str(ckpt)]) == 2
    assert capsys.readouterr().err == ("qdiff conformers: give --model or --checkpoint, "
                                       "not both\n")
