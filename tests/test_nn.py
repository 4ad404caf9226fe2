"""Score networks: symmetry (float64 to 1e-10), isolation of molecules, graphs, dtypes."""

from __future__ import annotations

import pytest
import torch

from quotient_diffusion.data.batch import Graph, collate
from quotient_diffusion.diffusion import DiffusionModel, SamplerConfig
from quotient_diffusion.diffusion.treatments import TREATMENTS, get_treatment
from quotient_diffusion.nn import (
    EQUIVARIANT_NETWORKS,
    NETWORKS,
    full_graph,
    get_network,
    knn_graph,
    radius_graph,
)
from quotient_diffusion.nn.testing import assert_equivariant, equivariance_errors
from quotient_diffusion.nn.transformer import segment_softmax

pytestmark = pytest.mark.usefixtures("single_thread")

SIZES = [5, 1, 9, 2, 7]  # includes a single atom and a pair
EQUIVARIANT = list(EQUIVARIANT_NETWORKS)


def make_inputs(sizes, dtype=torch.float64, features=3, seed=0, edge_features=0):
    gen = torch.Generator().manual_seed(seed)
    counts = torch.tensor(sizes)
    batch = torch.repeat_interleave(torch.arange(len(sizes)), counts)
    n = int(counts.sum())
    pos = 1.5 * torch.randn(n, 3, dtype=dtype, generator=gen)
    node_attr = torch.randn(n, features, dtype=dtype, generator=gen)
    t = torch.rand(len(sizes), dtype=dtype, generator=gen)
    edges = edge_attr = None
    if edge_features:
        edges = full_graph(batch)
        edge_attr = torch.randn(edges.shape[1], edge_features, dtype=dtype, generator=gen)
    return pos, node_attr, batch, t, edges, edge_attr


def build(name, dtype=torch.float64, out_features=4, edge_features=0, seed=0, **options):
    torch.manual_seed(seed)
    net = get_network(
        name,
        in_features=3,
        out_features=out_features,
        hidden=16,
        layers=2,
        edge_features=edge_features,
        **options,
    ).to(dtype)
    # larger random weights than the (deliberately tiny) output initialisation, so that the
    # coordinate output is O(1) and the tests are not trivially passed by a zero output
    with torch.no_grad():
        for p in net.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 1.0 / p.shape[1] ** 0.5)
    return net


# ------------------------------------------------------------------------------- graphs
def test_full_graph_is_every_ordered_pair_within_molecules():
    batch = torch.tensor([0, 0, 0, 1, 2, 2])
    edges = full_graph(batch)
    expected = {(j, i) for i in range(6) for j in range(6) if i != j and batch[i] == batch[j]}
    assert {tuple(e) for e in edges.T.tolist()} == expected
    assert edges.shape[1] == len(expected)
    assert bool((edges[1][1:] >= edges[1][:-1]).all())  # targets sorted


def test_full_graph_order_matches_a_loop():
    """Molecule by molecule, row-major in (target i, source j): the order of the conformer
    task's pair features (chem.featurize), an empty molecule included."""
    sizes = [1, 3, 0, 2, 4]
    edges = full_graph(torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes)))
    expected, offset = [], 0
    for n in sizes:
        expected += [[offset + j, offset + i] for i in range(n) for j in range(n) if i != j]
        offset += n
    assert edges.T.tolist() == expected


def test_knn_and_radius_graphs_match_brute_force():
    pos, _, batch, *_ = make_inputs([6, 1, 11, 4], seed=3)
    k, cutoff = 3, 2.5
    d = torch.cdist(pos, pos)
    same = batch[:, None] == batch[None, :]
    eye = torch.eye(len(batch), dtype=torch.bool)
    knn = {tuple(e) for e in knn_graph(pos, batch, k).T.tolist()}
    expected_knn = set()
    for i in range(len(batch)):
        cand = torch.nonzero(same[i] & ~eye[i]).flatten()
        nearest = cand[torch.argsort(d[i, cand])][:k]
        expected_knn |= {(int(j), i) for j in nearest}
    assert knn == expected_knn
    rad = {tuple(e) for e in radius_graph(pos, batch, cutoff).T.tolist()}
    mask = same & ~eye & (d < cutoff)
    assert rad == {(int(j), int(i)) for i, j in torch.nonzero(mask.T).tolist()}


# ------------------------------------------------------------------------------- symmetry
@pytest.mark.parametrize("name", EQUIVARIANT)
def test_equivariant_networks_float64(name):
    net = build(name)
    pos, attr, batch, t, _, _ = make_inputs(SIZES)
    errors = assert_equivariant(
        net, pos, attr, batch, t, atol=1e-10, generator=torch.Generator().manual_seed(1)
    )
    vec, feat = net(pos, attr, batch, t)
    assert vec.abs().max() > 1e-2 and feat.abs().max() > 1e-2  # non-trivial outputs
    assert errors["vec_se3"] <= 1e-10


@pytest.mark.parametrize("name", EQUIVARIANT)
def test_equivariant_with_given_edges_and_features(name):
    net = build(name, edge_features=2)
    pos, attr, batch, t, edges, edge_attr = make_inputs(SIZES, edge_features=2)
    assert_equivariant(
        net,
        pos,
        attr,
        batch,
        t,
        edges,
        edge_attr,
        atol=1e-10,
        generator=torch.Generator().manual_seed(2),
    )


@pytest.mark.parametrize("name", EQUIVARIANT)
@pytest.mark.parametrize("graph", [{"graph": "knn", "k": 3}, {"graph": "radius", "cutoff": 3.0}])
def test_equivariant_with_own_sparse_graph(name, graph):
    net = build(name, **graph)
    pos, attr, batch, t, _, _ = make_inputs(SIZES, seed=4)
    assert_equivariant(
        net, pos, attr, batch, t, atol=1e-10, generator=torch.Generator().manual_seed(3)
    )


@pytest.mark.parametrize("with_edges", [False, True])
def test_transformer_permutation_equivariant_and_isolated(with_edges):
    fe = 2 if with_edges else 0
    net = build("transformer", edge_features=fe)
    pos, attr, batch, t, edges, edge_attr = make_inputs(SIZES, edge_features=fe)
    errors = assert_equivariant(
        net,
        pos,
        attr,
        batch,
        t,
        edges,
        edge_attr,
        atol=1e-10,
        rotations=False,
        generator=torch.Generator().manual_seed(5),
    )
    assert "vec_se3" not in errors
    # and it is genuinely not rotation equivariant (it learns that by augmentation)
    rotated = equivariance_errors(net, pos, attr, batch, t, edges, edge_attr)
    assert rotated["vec_se3"] > 1e-3


def test_segment_softmax_is_the_block_diagonal_dense_softmax():
    gen = torch.Generator().manual_seed(6)
    batch = torch.tensor([0, 0, 0, 1, 2, 2, 2, 2])
    n = batch.numel()
    edges = full_graph(batch, self_loops=True)
    dense = torch.randn(n, n, 2, dtype=torch.float64, generator=gen)
    scores = dense[edges[1], edges[0]]
    sparse = segment_softmax(scores, edges[1], n)
    mask = (batch[:, None] == batch[None, :]).unsqueeze(-1)
    reference = torch.softmax(dense.masked_fill(~mask, float("-inf")), dim=1)
    assert torch.allclose(sparse, reference[edges[1], edges[0]], atol=1e-14)


@pytest.mark.parametrize("name", list(NETWORKS))
def test_float32_and_no_feature_output(name):
    net = build(name, dtype=torch.float32, out_features=0)
    pos, attr, batch, t, _, _ = make_inputs(SIZES, dtype=torch.float32)
    vec, feat = net(pos, attr, batch, t)
    assert feat is None and vec.dtype == torch.float32 and torch.isfinite(vec).all()
    errors = equivariance_errors(
        net,
        pos,
        attr,
        batch,
        t,
        rotations=name in EQUIVARIANT,
        generator=torch.Generator().manual_seed(4),
    )
    assert max(errors.values()) < 1e-4


@pytest.mark.parametrize("name", list(NETWORKS))
def test_single_atoms_and_coincident_atoms_are_finite(name):
    net = build(name)
    pos = torch.zeros(4, 3, dtype=torch.float64, requires_grad=True)
    batch = torch.tensor([0, 1, 1, 2])  # single atoms and two atoms at the same place
    attr = torch.ones(4, 3, dtype=torch.float64)
    t = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    vec, feat = net(pos, attr, batch, t)
    (vec.sum() + feat.sum()).backward()
    assert torch.isfinite(vec).all() and torch.isfinite(feat).all()
    assert torch.isfinite(pos.grad).all()
    if name in EQUIVARIANT:  # an equivariant vector of a single point is zero
        assert vec[0].abs().max() == 0 and vec[3].abs().max() == 0


def test_unknown_network_and_missing_edge_features():
    with pytest.raises(ValueError, match="unknown network"):
        get_network("mlp", in_features=1)
    net = build("egnn", edge_features=2)
    pos, attr, batch, t, _, _ = make_inputs(SIZES)
    with pytest.raises(ValueError, match="edge features"):
        net(pos, attr, batch, t)


# ------------------------------------------------------------------------------- diffusion
def toy_graphs(sizes, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return collate(
        [Graph(pos=torch.randn(n, 3, generator=gen), node_attr=torch.ones(n, 1)) for n in sizes]
    )


@pytest.mark.parametrize("name", list(NETWORKS))
@pytest.mark.parametrize("treatment", sorted(TREATMENTS))
def test_networks_train_in_every_treatment(name, treatment):
    """A few Adam steps on a fixed batch (fixed t and noise) lower the loss, in every treatment;
    the transformer trains with rotation augmentation."""
    torch.manual_seed(0)
    net = get_network(name, in_features=1, hidden=16, layers=2)
    model = DiffusionModel(net, get_treatment(treatment), augment_rotations=name not in EQUIVARIANT)
    graph = toy_graphs([4, 6, 1, 3])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        loss, _ = model.training_loss(graph, torch.Generator().manual_seed(0))
        opt.zero_grad()
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("name", list(NETWORKS))
@pytest.mark.parametrize("method", ["ode", "sde"])
def test_quotient_sampling_is_finite(name, method):
    torch.manual_seed(0)
    model = DiffusionModel(get_network(name, in_features=1, hidden=16, layers=2))
    graph = toy_graphs([5, 1, 2, 4])  # a single atom and a (collinear) pair
    x, _ = model.sample(
        graph, SamplerConfig(steps=4, method=method), torch.Generator().manual_seed(1)
    )
    assert x.shape == graph.pos.shape and torch.isfinite(x).all()
