"""The drug-like CCD set (quotient_diffusion.data.ccd) on a handful of real components.

The CCD is the one biotite ships; the columns are decoded once for the module (a few seconds)
and the pipeline runs on about forty components chosen to meet every filter: drugs that stay
(caffeine, aspirin, SAM), building blocks of polymers (amino acids, glucose, GlcNAc), elements
outside the set (ATP's phosphorus, haem's iron), a too-small component (benzamidine), model
coordinates copied from the ideal ones, absent or unsourced, a geometry that does not match its
graph, evaluation components and molecules equal to one of them by SMILES (0LW, a stereoisomer of
the evaluation ligand 0LU) or only by InChIKey skeleton (0HZ: another protonation state of ALJ;
122: another tautomer of BMZ), and a Genentech benchmark ligand.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import require_data

ccd = pytest.importorskip("quotient_diffusion.data.ccd")
pytest.importorskip("biotite.structure.info")

KEPT = ("CFF", "AIN", "SAM")
#: component -> the filter that drops it (found in a full build; docs/data.md has the counts)
DROPPED = {
    "ALA": "not_polymer_unit", "PHE": "not_polymer_unit", "TRP": "not_polymer_unit",
    "GLC": "not_polymer_unit", "NAG": "not_polymer_unit",
    "ATP": "elements", "HEM": "elements", "BEN": "heavy_atoms",
    "045": "released", "UNL": "not_named_fragment",
    "00U": "model_coordinates", "003": "model_source", "02E": "model_not_ideal_copy",
    "00Q": "geometry", "042": "geometry",
    "STI": "not_evaluation", "IBP": "not_evaluation", "0LU": "not_evaluation",
    "0LW": "not_evaluation", "ALJ": "not_evaluation", "0HZ": "not_evaluation",
    "BMZ": "not_evaluation", "122": "not_evaluation",
    "039": "not_benchmark",
}
#: molecules with a benzene (002, 00S, ...) or an indole (01C, 0GI, ...) scaffold
SCAFFOLD_MATES = ("002", "00S", "00T", "01B", "01V", "040", "043", "04B", "05R", "069",
                  "01C", "0GI", "0KI", "11S", "14O", "1ES")
CODES = KEPT + tuple(DROPPED) + SCAFFOLD_MATES


@pytest.fixture(scope="module")
def built():
    require_data(ccd.EVALUATION_CODES)
    tables = ccd.read_ccd_tables(CODES)
    data = ccd.build_ccd(tables, eval_codes=ccd.evaluation_codes(),
                         benchmark=ccd.benchmark_molecules(), fractions=(0.5, 0.25, 0.25),
                         progress=False)
    return tables, data


def test_every_filter_drops_what_it_should_and_the_funnel_adds_up(built):
    tables, data = built
    assert len(tables.code) == len(CODES)
    for code, reason in DROPPED.items():
        assert code in data.dropped[reason], (code, reason)
        assert code not in data.code
    for code in KEPT + SCAFFOLD_MATES:
        assert code in data.code, code
    names = [name for name, _ in data.funnel]
    assert names == ["all", *(name for name, _ in ccd.FILTERS)]
    left = [n for _, n in data.funnel]
    assert left[0] == len(CODES) and left[-1] == len(data)
    removed = [len(data.dropped[name]) for name in names[1:]]
    assert np.array_equal(-np.diff(left), removed)


def test_evaluation_keys_catch_stereoisomers_protonation_and_tautomers(built):
    _, data = built
    removed = data.evaluation["removed"]
    # STI, IBP, 0LU, ALJ, BMZ by code; 0LW by SMILES; 0HZ and 122 by InChIKey skeleton only
    assert removed == {"by_code": 5, "by_smiles": 1, "by_inchikey": 2}
    evaluation = set(ccd.evaluation_codes())
    assert not evaluation & set(data.code)
    assert not set(data.smiles_no_stereo) & set(data.evaluation["smiles"])
    assert not set(data.inchikey) & set(data.evaluation["inchikeys"])
    assert not set(data.inchikey) & set(data.evaluation["benchmark_inchikeys"])


def test_molecules_keep_elements_counts_and_bonds_that_match_the_coordinates(built):
    from rdkit import Chem

    from quotient_diffusion.chem.geometry import check_geometry

    _, data = built
    caffeine = data.code.index("CFF")
    assert data.smiles_no_stereo[caffeine] == "Cn1c(=O)c2c(ncn2C)n(C)c1=O"
    assert data.num_heavy_atoms()[caffeine] == 14 and data.num_atoms()[caffeine] == 24
    z = data.atomic_numbers_of(caffeine)
    assert np.bincount(z, minlength=9)[[1, 6, 7, 8]].tolist() == [10, 8, 4, 2]
    assert (np.diff((z == 1).astype(int)) >= 0).all()  # heavy atoms first, then hydrogens
    aspirin = data.code.index("AIN")
    assert data.num_heavy_atoms()[aspirin] == 13
    for i in range(len(data)):
        mol = data.molecule(i)
        pos = data.positions_of(i)
        assert np.allclose(mol.GetConformer().GetPositions(), pos, atol=1e-5)
        assert Chem.MolToSmiles(Chem.RemoveHs(mol)) == data.smiles[i]
        assert [a.GetAtomicNum() for a in mol.GetAtoms()] == data.atomic_numbers_of(i).tolist()
        assert check_geometry(mol, pos).ok
        bonds, _ = data.bonds_of(i)
        length = np.linalg.norm(pos[bonds[:, 0]] - pos[bonds[:, 1]], axis=1)
        hydrogen = (data.atomic_numbers_of(i)[bonds] == 1).any(1)
        assert ((length > 0.85) & (length < 1.25))[hydrogen].all()
        assert ((length > 1.05) & (length < 2.1))[~hydrogen].all()
    # stereo comes from the experimental coordinates: S-adenosyl-L-methionine's five carbon
    # centres as PubChem writes them, and the sulfonium, which PubChem leaves open
    sam = data.molecule(data.code.index("SAM"))
    assert len(Chem.FindMolChiralCenters(sam)) == 6
    heavy = Chem.RemoveHs(sam)
    for atom in heavy.GetAtoms():
        if atom.GetSymbol() == "S":
            atom.SetChiralTag(Chem.ChiralType.CHI_UNSPECIFIED)
    pubchem = ("C[S+](CC[C@@H](C(=O)[O-])N)C[C@@H]1[C@H]([C@H]([C@@H](O1)N2C=NC3=C(N=CN=C32)N)O)"
               "O")
    assert Chem.MolToSmiles(heavy) == Chem.MolToSmiles(Chem.MolFromSmiles(pubchem))


def test_scaffold_split_keeps_every_scaffold_in_one_split(built):
    _, data = built
    for scaffold in set(data.scaffold):
        members = [i for i, s in enumerate(data.scaffold) if s == scaffold]
        assert len(set(data.split[members].tolist())) == 1, scaffold
    assert data.scaffold[data.code.index("AIN")] == "c1ccccc1"


def test_scaffold_split_is_deterministic_balanced_and_sends_big_groups_to_training():
    rng = np.random.RandomState(3)
    scaffolds = [f"s{k}" for k in rng.zipf(1.6, size=4000) % 900] + [""] * 300
    split = ccd.scaffold_split(scaffolds, (0.9, 0.05, 0.05), seed=0)
    assert np.array_equal(split, ccd.scaffold_split(scaffolds, (0.9, 0.05, 0.05), seed=0))
    assert not np.array_equal(split, ccd.scaffold_split(scaffolds, (0.9, 0.05, 0.05), seed=1))
    by = {}
    for s, k in zip(scaffolds, split.tolist()):
        by.setdefault(s, set()).add(k)
    assert all(len(v) == 1 for v in by.values())
    assert by[""] == {0}  # the acyclic group is larger than half a validation split
    counts = np.bincount(split, minlength=3) / len(split)
    assert counts[1] <= 0.05 and counts[2] <= 0.05 and counts[1] > 0.04 and counts[2] > 0.04
    # the order of the molecules does not matter, only the scaffolds
    perm = rng.permutation(len(scaffolds))
    shuffled = ccd.scaffold_split([scaffolds[p] for p in perm], (0.9, 0.05, 0.05), seed=0)
    assert np.array_equal(shuffled, split[perm])


def test_cache_round_trip_holds_only_tensors_and_plain_data(built, tmp_path):
    from quotient_diffusion.tensor_files import load_checkpoint, save_checkpoint

    _, data = built
    path = tmp_path / "ccd.pt"
    save_checkpoint(path, ccd._to_plain(data))
    back = ccd._from_plain(load_checkpoint(path))  # weights_only=True
    assert back.code == data.code and back.smiles == data.smiles
    assert np.array_equal(back.positions, data.positions)
    assert np.array_equal(back.bonds, data.bonds) and np.array_equal(back.split, data.split)
    assert back.funnel == data.funnel and back.dropped == data.dropped
