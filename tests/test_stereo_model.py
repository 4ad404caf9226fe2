"""Stereochemistry in the conformer model (issue 15, item 1): the chirality pseudoscalar and its
sign convention (requested labels, labels perceived from 3D, QM9's DFT geometries), the E/Z pair
columns, collate's offsets, SO(3) but not O(3) equivariance of the stereo EGNN, the refusal by
networks that take no stereo, warm start (the exact old function at step 0, the CLI's errors)
and `qdiff conformers` feeding a stereo model the requested labels. Float64, seeded, fast."""

from __future__ import annotations

import csv
import dataclasses
import itertools

import numpy as np
import pytest
import torch

from quotient_diffusion.chem.featurize import ATOM_FEATURES, PAIR_FEATURES, featurize
from quotient_diffusion.chem.molecules import make_conformer
from quotient_diffusion.chem.stereo import mirror, stereo_features
from quotient_diffusion.cli import main as qdiff
from quotient_diffusion.conformers import load_conformer_model
from quotient_diffusion.data import collate
from quotient_diffusion.data.qm9 import (
    QM9,
    match_smiles_to_geometry,
    parse_qm9_row,
    qm9_csv_paths,
)
from quotient_diffusion.diffusion import DiffusionModel
from quotient_diffusion.groups import random_rotations
from quotient_diffusion.nn import StereoInputs, get_network
from quotient_diffusion.nn.stereo import CHIRAL_INDEX, CHIRAL_SIGN, PAIR_STEREO, chirality
from quotient_diffusion.scatter import scatter_sum
from quotient_diffusion.tasks import get_task
from quotient_diffusion.tasks.conformers import ConformerDataset, molecule_graph
from quotient_diffusion.training import CheckpointError, TrainConfig, train, warm_start
from quotient_diffusion.training.checkpoint import load_checkpoint, save_checkpoint
from quotient_diffusion.training.loop import CHECKPOINT_VERSION

pytestmark = pytest.mark.usefixtures("single_thread")

#: tetrahedral centres with four neighbours (in rings, two centres) and with three (sulfoxide)
CHIRAL_SMILES = ("C[C@H](O)[C@@H](N)CC", "N[C@@H](C)C(=O)O", "C[C@@]1(F)CN1",
                 "O[C@H]1C[C@@H](F)C1", "C[S@](=O)CC", "[C@@H](F)(Cl)Br")


def embedded(smiles: str, seed: int = 7):
    """(molecule with hydrogens, ETKDG coordinates (N, 3)) honouring the SMILES' stereo."""
    from rdkit import Chem
    from rdkit.Chem import AllChem

    mol = Chem.AddHs(Chem.MolFromSmiles(smiles))
    assert AllChem.EmbedMolecule(mol, randomSeed=seed) == 0
    return mol, mol.GetConformer().GetPositions()


def without_stereo(mol):
    """A copy of ``mol`` with every chiral tag and bond stereo flag erased (like QM9's)."""
    from rdkit import Chem

    copy = Chem.Mol(mol)
    Chem.RemoveStereochemistry(copy)
    return copy


def chi_of(stereo, pos: np.ndarray) -> np.ndarray:
    """chi at every centre of the stereo features, for coordinates pos."""
    x = torch.as_tensor(pos, dtype=torch.float64)
    centres = torch.from_numpy(stereo.centres)
    chi = chirality(x, centres, torch.from_numpy(stereo.signs))
    return chi[centres[:, 0]].numpy()


def stereo_batch(smiles: list[str], seed: int = 7):
    """A float64 flat batch of embedded molecules with their requested stereo inputs."""
    graphs = []
    for s in smiles:
        mol, pos = embedded(s, seed)
        graphs.append(molecule_graph(featurize(mol), pos, stereo_features(mol)))
    return collate(graphs).to(dtype=torch.float64)


def stereo_egnn(seed: int = 0) -> torch.nn.Module:
    """A small stereo EGNN in float64 with coordinate gates large enough to see."""
    torch.manual_seed(seed)
    net = get_network("egnn", ATOM_FEATURES, hidden=16, layers=2, edge_features=PAIR_FEATURES,
                      stereo=True).double()
    for layer in net.layers:
        torch.nn.init.normal_(layer.coord_out.weight, std=0.3)
    return net


def run_net(net, graph, pos):
    t = torch.full((graph.num_graphs,), 0.6, dtype=torch.float64)
    vec, _ = net(pos, graph.node_attr, graph.batch, t, graph.edge_index, graph.edge_attr,
                 stereo=StereoInputs.from_extras(graph.extras))
    return vec


# ---------------------------------------------------------------------------- sign convention
@pytest.mark.parametrize("smiles", CHIRAL_SMILES)
def test_chirality_sign_requested_equals_perceived_and_flips_in_the_mirror(smiles):
    """On an RDKit geometry of the requested stereoisomer, sigma det > 0 at every centre both for
    the SMILES' labels and for the labels RDKit perceives from 3D on a stereo-free copy (the
    same centres, neighbours and signs), and < 0 for the mirror image."""
    mol, pos = embedded(smiles)
    requested = stereo_features(mol)
    perceived = stereo_features(without_stereo(mol), from_3d=True)
    assert len(requested.centres) >= 1
    np.testing.assert_array_equal(requested.centres, perceived.centres)
    np.testing.assert_array_equal(requested.signs, perceived.signs)
    for stereo in (requested, perceived):
        assert (chi_of(stereo, pos) > 0.05).all()
        assert (chi_of(stereo, mirror(pos)) < -0.05).all()
        assert (np.abs(chi_of(stereo, pos)) <= 1).all()


def test_enantiomers_get_opposite_signs_and_non_stereo_atoms_none():
    r_mol, _ = embedded("C[C@H](O)CC")
    s_mol, _ = embedded("C[C@@H](O)CC")
    r, s = stereo_features(r_mol), stereo_features(s_mol)
    np.testing.assert_array_equal(r.centres, s.centres)
    assert r.signs.tolist() == [1] and s.signs.tolist() == [-1]
    flat = stereo_features(embedded("CC(C)O")[0])  # no stereo centre, tag or not
    assert flat.centres.shape == (0, 4) and flat.pairs.shape == (0, 3)


def qm9_molecules_with_centres(count: int):
    """(SMILES, mol with its DFT geometry, positions) for the first QM9 rows (every 7th) with a
    centre perceived from 3D."""
    csv.field_size_limit(1 << 30)
    with open(qm9_csv_paths()[0], newline="") as fh:
        for row in itertools.islice(csv.DictReader(fh), 0, 20000, 7):
            _, smiles, symbols, xyz = parse_qm9_row(row)
            mol, pos = match_smiles_to_geometry(smiles, symbols, xyz)
            if mol is None:
                continue
            mol.AddConformer(make_conformer(pos), assignId=True)
            if len(stereo_features(mol, from_3d=True).centres):
                yield smiles, mol, pos
                count -= 1
                if count == 0:
                    return


def test_training_labels_from_qm9_dft_geometries_have_positive_chirality():
    """The training path: a QM9 molecule (no stereo in its SMILES) gets its labels from its DFT
    geometry, and chi > 0 there, < 0 on its mirror image."""
    found = list(qm9_molecules_with_centres(3))
    assert len(found) == 3
    for _, mol, pos in found:
        stereo = stereo_features(mol, from_3d=True)
        assert (chi_of(stereo, pos) > 0.05).all() and (chi_of(stereo, mirror(pos)) < -0.05).all()
    # the same through the task's data set (stereo=True), as training sees them
    qm9 = QM9(index=np.arange(1, 4), smiles=[smiles for smiles, _, _ in found],
              split=np.zeros(3, dtype=np.int8),
              atom_ptr=np.cumsum([0] + [len(pos) for _, _, pos in found]),
              atomic_numbers=np.concatenate([[a.GetAtomicNum() for a in mol.GetAtoms()]
                                             for _, mol, _ in found]).astype(np.uint8),
              positions=np.concatenate([pos for _, _, pos in found]).astype(np.float32),
              dropped={})
    batch = collate(list(ConformerDataset(qm9, np.arange(3), stereo=True)))
    centres = batch.extras[CHIRAL_INDEX]
    chi = chirality(batch.pos.double(), centres, batch.extras[CHIRAL_SIGN])[centres[:, 0]]
    assert len(centres) >= 3 and (chi > 0.05).all()
    assert CHIRAL_INDEX not in ConformerDataset(qm9, np.arange(3))[0].extras


# ---------------------------------------------------------------------------- E/Z columns
def dihedral(pos: np.ndarray, a: int, b: int, c: int, d: int) -> float:
    """|dihedral a-b-c-d| in degrees."""
    b0, b1, b2 = pos[a] - pos[b], pos[c] - pos[b], pos[d] - pos[c]
    b1 = b1 / np.linalg.norm(b1)
    v, w = b0 - b0 @ b1 * b1, b2 - b2 @ b1 * b1
    return abs(np.degrees(np.arctan2(np.cross(b1, v) @ w, v @ w)))


@pytest.mark.parametrize("smiles", ["F/C=C/F", "F/C=C\\F", "C/C(F)=C/C", "C/C=N/O",
                                    "C/C=C/C=C\\C"])
def test_cis_trans_columns_match_the_geometry(smiles):
    """Every substituent pair across a stereo double bond is marked cis or trans, in both
    orders, as its dihedral on an RDKit geometry says, from the SMILES and from 3D alike; no
    other edge carries a mark."""
    mol, pos = embedded(smiles)
    for stereo in (stereo_features(mol), stereo_features(without_stereo(mol), from_3d=True)):
        graph = molecule_graph(featurize(mol), pos, stereo)
        source, target = graph.edge_index
        marks = graph.extras[PAIR_STEREO]
        marked = marks.sum(-1) > 0
        assert (marks.sum(-1) <= 1).all() and marked.sum() == len(stereo.pairs) > 0
        for j, i, (cis, trans) in zip(source[marked], target[marked], marks[marked]):
            bond = next(b for b in mol.GetBonds()
                        if b.GetBondTypeAsDouble() == 2 and {b.GetBeginAtomIdx(), b.GetEndAtomIdx()}
                        <= {n.GetIdx() for k in (int(i), int(j))
                            for n in mol.GetAtomWithIdx(k).GetNeighbors()})
            u, v = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
            p, q = (int(i), int(j)) if mol.GetBondBetweenAtoms(int(i), u) else (int(j), int(i))
            angle = dihedral(pos, p, u, v, q)
            assert (cis == 1 and angle < 30) or (trans == 1 and angle > 150), (p, q, angle)


# ---------------------------------------------------------------------------- collate
def test_collate_offsets_centres_and_keeps_pair_columns_on_their_edges():
    mols = [embedded(s) for s in ("C[C@H](O)[C@@H](N)CC", "F/C=C/F", "CCO", "N[C@@H](C)C(=O)O")]
    feats = [stereo_features(m) for m, _ in mols]
    graphs = [molecule_graph(featurize(m), p, f) for (m, p), f in zip(mols, feats)]
    batch = collate(graphs)
    offsets = np.cumsum([0] + [g.num_nodes for g in graphs])[:-1]
    expected = np.concatenate([f.centres + o for f, o in zip(feats, offsets)])
    np.testing.assert_array_equal(batch.extras[CHIRAL_INDEX].numpy(), expected)
    np.testing.assert_array_equal(batch.extras[CHIRAL_SIGN].numpy(),
                                  np.concatenate([f.signs for f in feats]))
    # the pair columns stay aligned with the offset edges
    assert torch.equal(batch.extras[PAIR_STEREO],
                       torch.cat([g.extras[PAIR_STEREO] for g in graphs]))
    # chi of the batch = chi of each molecule alone
    pos = batch.pos.double()
    chi = chirality(pos, batch.extras[CHIRAL_INDEX], batch.extras[CHIRAL_SIGN])
    alone = np.concatenate([chi_of(f, p) for f, (_, p) in zip(feats, mols)])
    np.testing.assert_allclose(chi[batch.extras[CHIRAL_INDEX][:, 0]].numpy(), alone, atol=1e-6)
    assert int((chi != 0).sum()) == len(expected)


# ---------------------------------------------------------------------------- symmetries
def test_stereo_egnn_is_so3_equivariant():
    graph = stereo_batch(["C[C@H](O)[C@@H](N)CC", "F/C=C/F", "O[C@H]1C[C@@H](F)C1"])
    net = stereo_egnn()
    gen = torch.Generator().manual_seed(1)
    rot = random_rotations(graph.num_graphs, torch.float64, gen)
    assert torch.allclose(torch.linalg.det(rot), torch.ones(graph.num_graphs, dtype=torch.float64))
    shift = torch.randn(graph.num_graphs, 3, dtype=torch.float64, generator=gen)
    moved = torch.einsum("nij,nj->ni", rot[graph.batch], graph.pos) + shift[graph.batch]
    vec = run_net(net, graph, graph.pos)
    expected = torch.einsum("nij,nj->ni", rot[graph.batch], vec)
    assert (run_net(net, graph, moved) - expected).abs().max() < 1e-10
    assert vec.abs().max() > 1e-3


def test_reflection_commutes_only_without_stereo_centres():
    """Mirror in, mirror out holds for molecules without tetrahedral centres (an E/Z bond is a
    reflection-invariant input) and fails for molecules with one, molecule by molecule."""
    smiles = ["C[C@H](O)[C@@H](N)CC", "F/C=C/F", "CCO", "N[C@@H](C)C(=O)O"]
    graph = stereo_batch(smiles)
    net = stereo_egnn()
    flip = torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64)
    rot = random_rotations(1, torch.float64, torch.Generator().manual_seed(2))[0]
    reflection = rot * flip  # an improper orthogonal matrix: det -1
    assert torch.linalg.det(reflection) < 0
    vec = run_net(net, graph, graph.pos)
    vec_mirrored = run_net(net, graph, graph.pos @ reflection.T)
    error = scatter_sum((vec_mirrored - vec @ reflection.T).abs().sum(-1), graph.batch,
                        graph.num_graphs)
    chiral = torch.tensor([True, False, False, True])
    assert (error[~chiral] < 1e-10).all() and (error[chiral] > 1e-4).all(), error


def test_networks_without_stereo_refuse_it():
    with pytest.raises(ValueError, match="takes no stereo"):
        get_network("transformer", ATOM_FEATURES, hidden=16, layers=1,
                    edge_features=PAIR_FEATURES, stereo=True)
    graph = stereo_batch(["C[C@H](O)CC"])
    plain = get_network("egnn", ATOM_FEATURES, hidden=16, layers=1,
                        edge_features=PAIR_FEATURES).double()
    model = DiffusionModel(plain)
    t = torch.full((1,), 0.5, dtype=torch.float64)
    with pytest.raises(ValueError, match="network takes none"):
        model.denoise(graph.pos, None, t, graph)
    with pytest.raises(ValueError, match="stereo=True"):
        stereo_egnn()(graph.pos, graph.node_attr, graph.batch, t, graph.edge_index,
                      graph.edge_attr)
    cfg = TrainConfig.from_dict({"task": {"name": "conformers", "options": {"stereo": True}},
                                 "model": {"network": "transformer", "hidden": 16,
                                           "layers": 1}})
    with pytest.raises(ValueError, match="takes no stereo"):
        get_task(cfg).build_model()


# ---------------------------------------------------------------------------- chirality push
def push_egnn(seed: int = 0) -> torch.nn.Module:
    """A small stereo EGNN with the chirality branch, its output layers randomised (float64)."""
    torch.manual_seed(seed)
    net = get_network("egnn", ATOM_FEATURES, hidden=16, layers=2, edge_features=PAIR_FEATURES,
                      stereo=True, chirality_push=True).double()
    for layer in net.layers:
        torch.nn.init.normal_(layer.coord_out.weight, std=0.3)
        torch.nn.init.normal_(layer.push.out.weight, std=0.5)
    return net


def test_chirality_push_is_so3_equivariant_and_mirrors_with_flipped_signs():
    """Rotations: vec(R x) = R vec(x). A reflection M with every sigma negated gives
    M vec(x), molecule by molecule; with the signs kept it does not where centres exist."""
    graph = stereo_batch(["C[C@H](O)[C@@H](N)CC", "O[C@H]1C[C@@H](F)C1", "CCO"])
    net = push_egnn()
    gen = torch.Generator().manual_seed(4)
    rot = random_rotations(graph.num_graphs, torch.float64, gen)
    vec = run_net(net, graph, graph.pos)
    moved = torch.einsum("nij,nj->ni", rot[graph.batch], graph.pos)
    expected = torch.einsum("nij,nj->ni", rot[graph.batch], vec)
    assert (run_net(net, graph, moved) - expected).abs().max() < 1e-10
    reflection = rot[0] * torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64)
    flipped = dataclasses.replace(graph, extras={**graph.extras,
                                                 CHIRAL_SIGN: -graph.extras[CHIRAL_SIGN]})
    mirrored = run_net(net, flipped, graph.pos @ reflection.T)
    assert (mirrored - vec @ reflection.T).abs().max() < 1e-10
    kept = run_net(net, graph, graph.pos @ reflection.T)
    assert (kept - vec @ reflection.T).abs().max() > 1e-4


def test_chirality_push_ignores_the_order_of_the_reference_neighbours():
    """Relabelling (a, b, c) by an odd permutation and negating sigma describes the same
    request: the network's output is unchanged."""
    graph = stereo_batch(["C[C@H](O)[C@@H](N)CC", "N[C@@H](C)C(=O)O"])
    net = push_egnn(1)
    centres = graph.extras[CHIRAL_INDEX].reshape(-1, 4)
    swapped = centres[:, [0, 1, 3, 2]]
    relabelled = dataclasses.replace(graph, extras={
        **graph.extras, CHIRAL_INDEX: swapped, CHIRAL_SIGN: -graph.extras[CHIRAL_SIGN]})
    assert (run_net(net, relabelled, graph.pos) - run_net(net, graph, graph.pos)).abs().max() \
        < 1e-10


def test_chirality_push_moves_towards_the_requested_configuration_and_keeps_the_centroid():
    """With a positive coefficient everywhere, a small step along the branch's displacement
    raises chi at every centre (n_k are the gradient directions of chi), and the displacement
    of each centre's atoms sums to zero."""
    from quotient_diffusion.nn.stereo import ChiralityPush, centre_chirality

    graph = stereo_batch(["C[C@H](O)[C@@H](N)CC", "O[C@H]1C[C@@H](F)C1", "C[S@](=O)CC"])
    stereo = StereoInputs.from_extras(graph.extras)
    push = ChiralityPush(8).double()
    torch.nn.init.zeros_(push.hidden.weight)
    torch.nn.init.ones_(push.hidden.bias)
    torch.nn.init.ones_(push.out.weight)
    gen = torch.Generator().manual_seed(5)
    h = torch.randn(graph.pos.shape[0], 8, dtype=torch.float64, generator=gen)
    for x in (graph.pos, -graph.pos):  # requested and mirrored geometries
        step = push(h, x, stereo)
        before = centre_chirality(x, stereo.centres, stereo.signs)
        after = centre_chirality(x + 1e-4 * step, stereo.centres, stereo.signs)
        assert (after > before).all()
        assert scatter_sum(step, graph.batch, graph.num_graphs).abs().max() < 1e-12
    assert torch.equal(ChiralityPush(8)(h.float(), graph.pos.float(), stereo),
                       torch.zeros(graph.pos.shape, dtype=torch.float32))  # starts at zero


def test_chirality_push_needs_a_stereo_network():
    with pytest.raises(ValueError, match="chirality_push needs a stereo network"):
        get_network("egnn", ATOM_FEATURES, hidden=16, layers=1, edge_features=PAIR_FEATURES,
                    chirality_push=True)


# ---------------------------------------------------------------------------- warm start
def conformer_config(stereo: bool, hidden: int = 16, out_dir: str = "run") -> TrainConfig:
    return TrainConfig.from_dict({
        "task": {"name": "conformers", "options": {"stereo": stereo}},
        "model": {"network": "egnn", "hidden": hidden, "layers": 2,
                  "preconditioning": False, "weighting": "velocity"},
        "run": {"out_dir": out_dir},
    })


def save_model(path, cfg: TrainConfig, seed: int = 0):
    """A randomly initialised model of ``cfg`` (visible coordinate gates) saved like `train`."""
    torch.manual_seed(seed)
    model = get_task(cfg).build_model()
    for layer in model.network.layers:
        torch.nn.init.normal_(layer.coord_out.weight, std=0.3)
    save_checkpoint(path, {"version": CHECKPOINT_VERSION, "config": cfg.to_dict(), "step": 0,
                           "model": model.state_dict(), "ema": model.state_dict(), "optim": {}})
    return model


def test_warm_start_of_a_stereo_model_computes_the_old_function(tmp_path):
    """A stereo=true model initialised from a stereo=false checkpoint: its message weights gain
    four zero columns and it denoises a batch with stereo centres and E/Z bonds exactly as the
    old model denoises the same batch without stereo inputs (float64)."""
    old = save_model(tmp_path / "plain.pt", conformer_config(False)).double()
    new = get_task(conformer_config(True)).build_model()
    grown = warm_start(new, tmp_path / "plain.pt")
    assert grown == [f"network.layers.{k}.message_edge.weight" for k in range(2)]
    for key in grown:
        weight = new.state_dict()[key]
        assert weight.shape[1] == old.state_dict()[key].shape[1] + 4
        assert (weight[:, -4:] == 0).all()
    new = new.double()
    graph = stereo_batch(["C[C@H](O)[C@@H](N)CC", "F/C=C/F", "N[C@@H](C)C(=O)O"])
    plain_graph = dataclasses.replace(graph, extras={})
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(graph.pos.shape, dtype=torch.float64, generator=gen)
    t = torch.rand(graph.num_graphs, dtype=torch.float64, generator=gen)
    den_new, _ = new.denoise(x, None, t, graph)
    den_old, _ = old.denoise(x, None, t, plain_graph)
    assert (den_new - den_old).abs().max() < 1e-12
    assert (den_old - x).abs().max() > 1e-3  # not a trivial function


def test_warm_start_adds_the_chirality_branch_without_changing_the_function(tmp_path):
    """A stereo model without the branch warm-starts into one with it: no weight is padded,
    the branch weights keep their zero start, and the denoiser is the old one exactly."""
    cfg = conformer_config(True)
    old = save_model(tmp_path / "stereo.pt", cfg).double()
    pushed = TrainConfig.from_dict({**cfg.to_dict(), "model": {
        **cfg.to_dict()["model"], "network_options": {"chirality_push": True}}})
    new = get_task(pushed).build_model()
    assert warm_start(new, tmp_path / "stereo.pt") == []
    new = new.double()
    graph = stereo_batch(["C[C@H](O)[C@@H](N)CC", "N[C@@H](C)C(=O)O"])
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(graph.pos.shape, dtype=torch.float64, generator=gen)
    t = torch.rand(graph.num_graphs, dtype=torch.float64, generator=gen)
    assert (new.denoise(x, None, t, graph)[0] - old.denoise(x, None, t, graph)[0]).abs().max() \
        < 1e-12


def test_warm_start_refuses_incompatible_weights(tmp_path):
    save_model(tmp_path / "wide.pt", conformer_config(False, hidden=16))
    with pytest.raises(CheckpointError, match="cannot initialise network.embed.weight"):
        warm_start(get_task(conformer_config(True, hidden=8)).build_model(),
                   tmp_path / "wide.pt")
    with pytest.raises(CheckpointError, match="no checkpoint"):
        warm_start(get_task(conformer_config(True)).build_model(), tmp_path / "missing.pt")


def test_cli_init_from_errors_are_one_line_exit_2(tmp_path, capsys):
    save_model(tmp_path / "wide.pt", conformer_config(False, hidden=16))
    config = tmp_path / "narrow.json"
    conformer_config(True, hidden=8, out_dir=str(tmp_path / "run")).save(config)
    assert qdiff(["train", "--config", str(config), "--init-from",
                  str(tmp_path / "wide.pt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--init-from" in err[0] and "cannot initialise" in err[0]
    assert qdiff(["train", "--config", str(config), "--resume", "--init-from",
                  str(tmp_path / "wide.pt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot be combined" in err[0]
    with pytest.raises(ValueError, match="cannot be combined"):
        stereo = conformer_config(True)
        train(get_task(stereo), stereo, resume=True, init_from=tmp_path / "wide.pt")


def test_train_init_from_starts_a_new_run_from_the_ema_weights(tmp_path):
    """One toy step from a checkpoint: the weights start at the checkpoint's EMA weights (one
    Adam step moves each by about lr), the history names the source, the step count restarts."""
    cfg = TrainConfig.from_dict({
        "task": {"name": "toy", "options": {"num_train": 16, "num_val": 4}},
        "model": {"network": "egnn", "hidden": 16, "layers": 2},
        "optim": {"batch_size": 4, "steps": 1, "lr": 1e-4, "warmup_steps": 0},
        "run": {"out_dir": str(tmp_path / "run"), "seed": 5, "validate_every": 1000,
                "threads": 1},
    })
    torch.manual_seed(0)
    source = get_task(cfg).build_model().state_dict()
    save_checkpoint(tmp_path / "source.pt", {"version": CHECKPOINT_VERSION, "step": 7,
                                             "config": cfg.to_dict(), "ema": source})
    state = load_checkpoint(train(get_task(cfg), cfg, progress=False,
                                  init_from=tmp_path / "source.pt"))
    assert state["step"] == 1 and state["history"][0]["init_from"].endswith("source.pt")
    assert state["history"][0]["init_from_step"] == 7
    assert state["history"][0]["init_from_history"] == []  # the source recorded none
    drift = max(float((state["model"][k] - v).abs().max()) for k, v in source.items()
                if v.is_floating_point())
    assert drift < 1e-3


# ---------------------------------------------------------------------------- qdiff conformers
def test_cli_conformers_gives_a_stereo_model_the_requested_labels(tmp_path):
    """A tiny untrained stereo model, three sampling steps: every network call gets the
    requested centre and sign of each copy (@ and @@ differ), and for F/C=C/F no centre and the
    trans mark on the F-F pair, cis on no F-F pair."""
    ckpt = tmp_path / "stereo.pt"
    save_model(ckpt, conformer_config(True))
    _, model = load_conformer_model(ckpt)
    calls: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, StereoInputs]] = []

    def record(module, args, kwargs):
        _, node_attr, batch, _, edge_index, _ = args
        calls.append((node_attr, batch, edge_index, kwargs["stereo"]))

    def run(smiles: str, count: int) -> None:
        calls.clear()
        code = qdiff(["conformers", smiles, "-n", str(count), "-o", str(tmp_path / "o.sdf"),
                      "--checkpoint", str(ckpt), "--steps", "3"])
        assert code in (0, 1, 2) and calls

    hook = model.network.register_forward_pre_hook(record, with_kwargs=True)
    try:
        for smiles, sign in (("C[C@H](O)CC", 1), ("C[C@@H](O)CC", -1)):
            run(smiles, 2)
            for _, batch, _, stereo in calls:
                copies = int(batch.max()) + 1
                offsets = torch.arange(copies) * int((batch == 0).sum())
                assert torch.equal(stereo.centres[:, 0], offsets + 1)  # atom 1 of each copy
                assert stereo.signs.tolist() == [sign] * copies
        run("F/C=C/F", 2)
        for node_attr, batch, edge_index, stereo in calls:
            copies = int(batch.max()) + 1
            fluorine = node_attr[:, 4] > 0  # element block H, C, N, O, F
            ff = fluorine[edge_index[0]] & fluorine[edge_index[1]]
            assert stereo.centres.shape[0] == 0
            assert int(stereo.pairs[ff, 1].sum()) == 2 * copies and stereo.pairs[ff, 0].sum() == 0
            assert int(stereo.pairs.sum()) == 8 * copies
    finally:
        hook.remove()
