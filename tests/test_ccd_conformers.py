"""Conformers of drug-like molecules (issue 19 item 2): the grown element vocabulary, the warm
start of a QM9 model into it, the restrained-relaxed CCD targets and the CCD conformer task."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import require_data

from quotient_diffusion.chem.elements import DRUGLIKE_ELEMENTS, ELEMENTS
from quotient_diffusion.chem.featurize import ATOM_FEATURES, atom_features, featurize
from quotient_diffusion.data import collate
from quotient_diffusion.tasks import get_task
from quotient_diffusion.tasks.conformers import molecule_graph
from quotient_diffusion.training import ConfigError, TrainConfig

Chem = pytest.importorskip("rdkit.Chem")

#: thiophene-sulfonamide with Cl and Br on a benzene ring: every extra element
DRUG = "NS(=O)(=O)c1ccc(s1)-c1cc(Cl)ccc1Br"
OTHER = len(ELEMENTS)  # the "other" column of the element block


def _mol(smiles: str):
    return Chem.AddHs(Chem.MolFromSmiles(smiles))


def test_default_vocabulary_is_the_old_layout_and_extra_elements_get_distinct_columns():
    mol = _mol(DRUG)
    old, new = featurize(mol), featurize(mol, DRUGLIKE_ELEMENTS)
    assert ATOM_FEATURES == 24 and old.atoms.shape[1] == ATOM_FEATURES
    assert atom_features(DRUGLIKE_ELEMENTS) == ATOM_FEATURES + 3 == new.atoms.shape[1]
    sym = [a.GetSymbol() for a in mol.GetAtoms()]
    extra = np.array([s in ("S", "Cl", "Br") for s in sym])
    # the old vocabulary: S, Cl, Br share "other", exactly one element column per atom
    assert (old.atoms[extra, OTHER] == 1).all() and (old.atoms[:, :OTHER + 1].sum(1) == 1).all()
    # the new one: the old columns are a prefix, except that "other" is now empty for S/Cl/Br
    prefix = old.atoms.copy()
    prefix[extra, OTHER] = 0
    np.testing.assert_array_equal(new.atoms[:, :ATOM_FEATURES], prefix)
    tail = new.atoms[:, ATOM_FEATURES:]
    for k, e in enumerate(("S", "Cl", "Br")):
        np.testing.assert_array_equal(tail[:, k], [s == e for s in sym])
    # S, Cl and Br have pairwise distinct feature rows' element columns
    rows = {s: tuple(tail[sym.index(s)]) for s in ("S", "Cl", "Br")}
    assert len(set(rows.values())) == 3
    np.testing.assert_array_equal(new.pairs, old.pairs)
    # an H C N O F molecule: the grown features are the old ones plus zero columns
    plain = _mol("CC(=O)Nc1ccc(O)cc1F")
    a, b = featurize(plain).atoms, featurize(plain, DRUGLIKE_ELEMENTS).atoms
    np.testing.assert_array_equal(b, np.concatenate([a, np.zeros((len(a), 3), a.dtype)], 1))


@pytest.mark.parametrize("elements", [["H", "C", "N", "O"], ["H", "C", "N", "O", "F", "P"],
                                      ["H", "C", "N", "O", "F", "S", "S"]])
def test_a_bad_vocabulary_is_a_config_error(elements):
    cfg = TrainConfig.from_dict({"task": {"name": "conformers",
                                          "options": {"elements": elements}}})
    with pytest.raises(ConfigError, match="elements"):
        get_task(cfg)


def _task(options=None, hidden=16, layers=2, limit=None):
    cfg = TrainConfig.from_dict({"task": {"name": "conformers", "options": options or {},
                                          "limit": limit},
                                 "model": {"hidden": hidden, "layers": layers}})
    return get_task(cfg)


@pytest.mark.parametrize("network", ["egnn", "transformer"])
def test_warm_start_into_the_grown_vocabulary_keeps_the_function(tmp_path, network):
    from quotient_diffusion.tensor_files import save_checkpoint
    from quotient_diffusion.training import warm_start

    def task(options):
        cfg = TrainConfig.from_dict({"task": {"name": "conformers", "options": options},
                                     "model": {"network": network, "hidden": 16, "layers": 2}})
        return get_task(cfg)

    torch.manual_seed(0)
    small = task({}).build_model()
    path = tmp_path / "qm9.pt"
    save_checkpoint(path, {"ema": small.state_dict()})
    big_task = task({"elements": list(DRUGLIKE_ELEMENTS)})
    big = big_task.build_model()
    grown = warm_start(big, path)
    assert grown  # the input embedding grew
    mol = _mol("CC(=O)Nc1ccc(O)cc1F")
    torch.manual_seed(1)
    pos = torch.randn(mol.GetNumAtoms(), 3)
    g_small = collate([molecule_graph(featurize(mol), pos)])
    g_big = collate(big_task.prepare([mol]))
    assert g_big.node_attr.shape[1] == ATOM_FEATURES + 3
    t = torch.tensor([0.4])
    args = (g_small.batch, t, g_small.edge_index, g_small.edge_attr)
    with torch.no_grad():
        out_small = small.network(pos, g_small.node_attr, *args)[0]
        out_big = big.network(pos, g_big.node_attr, *args)[0]
    torch.testing.assert_close(out_big, out_small, rtol=0, atol=1e-6)


@pytest.fixture(scope="module")
def ccd_set():
    require_data("druglike/evaluation_ccd_codes.txt")
    from quotient_diffusion.data import ccd as ccd_data

    return ccd_data.load_ccd(progress=False)


def _benzene_bonds(mol) -> np.ndarray:
    """(i, j) of the bonds of benzene rings (six aromatic carbons)."""
    patt = Chem.MolFromSmarts("c1ccccc1")
    out = set()
    for match in mol.GetSubstructMatches(patt):
        for k in range(6):
            i, j = match[k], match[(k + 1) % 6]
            out.add((min(i, j), max(i, j)))
    return np.array(sorted(out))


def test_restrained_relaxation_keeps_the_pose_and_cleans_benzene_rings(ccd_set, tmp_path):
    from quotient_diffusion.data import ccd as ccd_data

    data = ccd_set
    train = np.random.RandomState(0).permutation(data.subset("train"))
    picked = [int(i) for i in train[:200] if len(_benzene_bonds(data.molecule(int(i))))][:3]
    assert len(picked) == 3
    path = tmp_path / "relaxed.pt"
    r = ccd_data.relax_ccd(data, path, picked, chunk=2, progress=False)
    assert r.done.sum() == 3 and r.failed.sum() == 0 and path.exists()
    before_spread, after_spread = [], []
    for i in picked:
        exp, rel = data.positions_of(i).astype(float), r.positions_of(data, i).astype(float)
        heavy = data.atomic_numbers_of(i) != 1
        a, b = exp[heavy] - exp[heavy].mean(0), rel[heavy] - rel[heavy].mean(0)
        assert np.sqrt(((a - b) ** 2).sum(1).mean()) <= 0.15  # restrained: no alignment needed
        assert not np.allclose(exp, rel)
        bonds = _benzene_bonds(data.molecule(i))
        before_spread.append(np.linalg.norm(exp[bonds[:, 0]] - exp[bonds[:, 1]], axis=1).std())
        after_spread.append(np.linalg.norm(rel[bonds[:, 0]] - rel[bonds[:, 1]], axis=1).std())
    assert np.mean(after_spread) < np.mean(before_spread)
    # resumable: what is done is read back, not redone; untouched molecules stay experimental
    seconds = r.seconds
    again = ccd_data.relax_ccd(data, path, picked, progress=False)
    assert again.seconds == seconds
    np.testing.assert_array_equal(again.positions, r.positions)
    other = int(train[500])
    np.testing.assert_array_equal(again.positions_of(data, other), data.positions_of(other))


def test_ccd_task_builds_batches_with_the_drug_vocabulary(ccd_set, tmp_path, monkeypatch):
    from quotient_diffusion.data import ccd as ccd_data

    monkeypatch.setattr(ccd_data, "relaxed_path", lambda _: tmp_path / "relaxed.pt")
    task = _task({"source": "ccd", "elements": list(DRUGLIKE_ELEMENTS), "num_val": 2}, limit=3)
    train, val = task.datasets()
    assert len(train) == 3 and len(val) == 2
    batch = collate([train[0], train[1], val[0]])
    assert batch.node_attr.shape[1] == ATOM_FEATURES + 3
    n = batch.num_nodes_per_graph
    assert batch.edge_index.shape[1] == int((n * (n - 1)).sum())  # full graphs
    assert task.sigma_data() == pytest.approx(2.89)
    model = task.build_model()
    t = torch.full((batch.num_graphs,), 0.5)
    with torch.no_grad():
        vec, _ = model.network(batch.pos, batch.node_attr, batch.batch, t, batch.edge_index,
                               batch.edge_attr)
    assert vec.shape == batch.pos.shape and torch.isfinite(vec).all()
    # the targets are the relaxed copies, not the experimental coordinates
    entry = int(train.entries[0])
    assert not np.allclose(train[0].pos.numpy(), ccd_set.positions_of(entry))


def test_relaxation_in_worker_processes_equals_the_serial_one(ccd_set, tmp_path):
    from quotient_diffusion.data import ccd as ccd_data

    picked = [int(i) for i in np.random.RandomState(2).permutation(ccd_set.subset("train"))[:6]]
    serial = ccd_data.relax_ccd(ccd_set, tmp_path / "a.pt", picked, progress=False)
    forked = ccd_data.relax_ccd(ccd_set, tmp_path / "b.pt", picked, chunk=4, progress=False,
                                workers=2)
    np.testing.assert_array_equal(forked.positions, serial.positions)
    np.testing.assert_array_equal(forked.done, serial.done)
    np.testing.assert_array_equal(forked.failed, serial.failed)
