"""QM9 graph generation with set creators: data round trip, symmetric bonds, matching loss
invariance, RDKit metrics on hand-checked graphs, checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from quotient_diffusion.data.paths import cache_dir
from quotient_diffusion.sets import CREATORS, train_set_vae
from quotient_diffusion.sets.graph_vae import GraphSetVAE, GraphVAEConfig, load_graph_model
from quotient_diffusion.sets.qm9_graphs import (
    graph_metrics,
    graph_smiles,
    graphs_from_smiles,
    load_qm9_graphs,
    tanimoto_diversity,
)

pytestmark = pytest.mark.usefixtures("single_thread")

# QM9-like molecules: aromatic rings (kekulised), triple bonds, F, rings, and one zwitterion
SMILES = ["CC(=O)N", "OCC#N", "CC(C)O", "c1ccoc1", "FC(F)(F)C#C", "Cc1ncc[nH]1",
          "C1CC2CC2O1", "O=C1NC=CC1=O", "[NH3+]CC([O-])=O"]


def tiny_model(creator: str = "topn", seed: int = 0) -> GraphSetVAE:
    torch.manual_seed(seed)
    return GraphSetVAE(GraphVAEConfig(creator=creator, latent_dim=8, dim=16, layers=1, heads=2))


def test_graphs_round_trip_to_the_same_smiles():
    from rdkit import Chem

    data = graphs_from_smiles(SMILES)
    assert len(data) == len(SMILES) - 1 and data.info["dropped_charged"] == 1
    assert torch.equal(data.bonds, data.bonds.transpose(1, 2))
    for k in range(len(data)):
        n = int(data.sizes[k])
        assert (data.types[k, n:] == -1).all() and (data.bonds[k, n:] == 0).all()
        smiles, connected = graph_smiles(data.types[k, :n].tolist(), data.bonds[k, :n, :n])
        assert connected and smiles == data.smiles[k] == Chem.CanonSmiles(SMILES[k])
    # the aromatic ring is stored kekulised: two double bonds in furan
    furan = data.bonds[3]
    assert int((furan == 2).sum()) // 2 == 2 and int((furan == 1).sum()) // 2 == 3


def test_cached_qm9_graphs_round_trip():
    path = cache_dir() / "qm9_graphs_v1.pt"
    if not path.exists():
        pytest.skip("the QM9 graph cache is not built (benchmarks/sets_qm9.py builds it)")
    data = load_qm9_graphs()
    assert data.max_size == 9 and len(data) > 129_000
    for k in torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[:200].tolist():
        n = int(data.sizes[k])
        assert graph_smiles(data.types[k, :n].tolist(), data.bonds[k, :n, :n])[0] == \
            data.smiles[k]


@pytest.mark.parametrize("creator", sorted(CREATORS))
def test_bond_logits_are_symmetric(creator):
    model = tiny_model(creator).eval()
    z = torch.randn(3, 8, generator=torch.Generator().manual_seed(1))
    types, bonds, mask = model.decode(z, torch.tensor([4, 9, 1]),
                                      torch.Generator().manual_seed(2))
    assert types.shape == (3, 9, 4) and bonds.shape == (3, 9, 9, 4)
    torch.testing.assert_close(bonds, bonds.transpose(1, 2))
    for t, b in model.sample(5, torch.Generator().manual_seed(3)):
        assert np.array_equal(b, b.T) and (np.diag(b) == 0).all() and len(t) == b.shape[0]


def test_loss_is_invariant_to_permuting_the_target_atoms():
    data = graphs_from_smiles(SMILES[:8])
    batch = data.batch(torch.arange(len(data)))
    model = tiny_model().eval()
    z = torch.randn(len(data), 8, generator=torch.Generator().manual_seed(0))
    types, bonds, _ = model.decode(z, batch.num_nodes_per_graph, n_max=9)
    gen = torch.Generator().manual_seed(4)
    perm = torch.arange(9).repeat(len(data), 1)
    for k, n in enumerate(batch.num_nodes_per_graph.tolist()):
        perm[k, :n] = torch.randperm(n, generator=gen)
    shuffled = batch.permute(perm)
    assert not torch.equal(shuffled.types, batch.types)
    for a, b in zip(model.graph_reconstruction(types, bonds, batch),
                    model.graph_reconstruction(types, bonds, shuffled)):
        torch.testing.assert_close(a, b)


def test_metrics_on_hand_checked_graphs():
    ethanol = ([0, 0, 2], np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]]))
    ethane = ([0, 0], np.array([[0, 1], [1, 0]]))
    pentavalent = ([0] * 6, np.pad(np.ones((1, 5), int), ((0, 5), (1, 0))))
    pentavalent = (pentavalent[0], pentavalent[1] + pentavalent[1].T)
    two_methanes = ([0, 0], np.zeros((2, 2), int))
    graphs = [ethanol, ethanol, ethane, pentavalent, two_methanes]
    out = graph_metrics(graphs, train_smiles=["CC"])
    assert out["validity"] == pytest.approx(3 / 5)  # pentavalent C invalid, two pieces invalid
    assert out["sanitisable"] == pytest.approx(4 / 5)
    assert out["uniqueness"] == pytest.approx(2 / 3)
    assert out["novelty"] == pytest.approx(1 / 2)  # CCO is new, CC is a training molecule
    assert out["diversity"] == pytest.approx(tanimoto_diversity(["CC", "CCO"]))
    assert 0 < out["diversity"] <= 1
    assert tanimoto_diversity(["CCO"]) == 0.0 and tanimoto_diversity(["CCO", "OCC"]) == 0.0


def test_training_is_seeded_and_checkpoints_load(tmp_path):
    data = graphs_from_smiles(SMILES)
    runs = []
    for _ in range(2):
        model = tiny_model("iid")
        runs.append(train_set_vae(model, data, 3, 4, 1e-3, seed=5, out_dir=tmp_path))
    assert runs[0] == runs[1]
    loaded, state = load_graph_model(tmp_path / "last.pt")
    assert state["step"] == 3
    for a, b in zip(loaded.state_dict().values(), model.state_dict().values()):
        torch.testing.assert_close(a, b)
