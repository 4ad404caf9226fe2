"""Issue 17 items 1-2: the local-geometry auxiliary loss, several noise levels per chain, crops.

Symmetry checks run in float64. Everything is seeded and small (under a few seconds each, the
training smoke about ten)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from quotient_diffusion.data import GraphBatch, collate
from quotient_diffusion.data.proteins import ProteinChain, ProteinSplits
from quotient_diffusion.groups import SE3, random_rotations
from quotient_diffusion.tasks.backbones import BackboneGraphs, BackboneTask, backbone_graph
from quotient_diffusion.tasks.chain_geometry import (
    ChainGeometryLoss,
    contact_pairs,
    sequence_pairs,
)

ALL_TERMS = {"ca_ca": 1.0, "ca_i2": 0.5, "pairs": 0.25, "pair_cutoff": 10.0, "t_min": 0.3}


def random_walk(length: int, rng: np.random.Generator) -> np.ndarray:
    """A C-alpha-like trace: steps of 3.8 A in random directions (Angstrom)."""
    steps = rng.normal(size=(length, 3))
    steps *= 3.8 / np.linalg.norm(steps, axis=1, keepdims=True)
    return np.cumsum(steps, 0)


def chain_batch(lengths=(12, 7, 20), seed=0, scale=10.0) -> GraphBatch:
    rng = np.random.default_rng(seed)
    graph = collate([backbone_graph(random_walk(n, rng)) for n in lengths])
    return graph.to(dtype=torch.float64) if scale is None else GraphBatch(
        pos=graph.pos.double() / scale, node_attr=graph.node_attr.double(), batch=graph.batch,
        num_graphs=graph.num_graphs)


def rigid_motion(x: torch.Tensor, batch: torch.Tensor, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    nb = int(batch.max()) + 1
    rot = random_rotations(nb, torch.float64, gen)
    shift = torch.randn(nb, 3, dtype=torch.float64, generator=gen)
    return torch.einsum("nij,nj->ni", rot[batch], x) + shift[batch]


# ---------------------------------------------------------------------------- the loss
def test_pairs_stay_inside_chains():
    batch = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2])
    i, j = sequence_pairs(batch, 1)
    assert list(zip(i.tolist(), j.tolist())) == [(0, 1), (1, 2), (3, 4), (5, 6), (6, 7), (7, 8)]
    i, j = sequence_pairs(batch, 2)
    assert list(zip(i.tolist(), j.tolist())) == [(0, 2), (5, 7), (6, 8)]
    x = torch.arange(9, dtype=torch.float64)[:, None].repeat(1, 3)  # |x_i - x_j| = sqrt3 |i-j|
    i, j = contact_pairs(x, batch, cutoff=100.0)
    assert list(zip(i.tolist(), j.tolist())) == [(5, 8)]  # |i - j| >= 3, same chain
    assert contact_pairs(x, batch, cutoff=3 * 3**0.5 - 1e-6)[0].numel() == 0


def test_zero_at_the_data_positive_otherwise():
    g = chain_batch()
    loss = ChainGeometryLoss(10.0, **ALL_TERMS)
    t = torch.full((g.num_graphs,), 0.9, dtype=torch.float64)
    value, logs = loss(g.pos.clone(), g.pos, t, g)
    assert value.shape == (3,) and torch.equal(value, torch.zeros(3, dtype=torch.float64))
    assert set(logs) == {"aux_ca_ca_mse", "aux_ca_i2_mse", "aux_pairs_mse"}
    noisy = g.pos + 0.02 * torch.randn(g.pos.shape, dtype=torch.float64,
                                       generator=torch.Generator().manual_seed(3))
    value, logs = loss(noisy, g.pos, t, g)
    assert (value > 0).all() and all(v > 0 for v in logs.values())
    for name, weight in (("ca_ca", 1.0), ("ca_i2", 1.0), ("pairs", 1.0)):  # each term alone
        single = ChainGeometryLoss(10.0, **{"ca_ca": 0.0, name: weight})
        assert (single(noisy, g.pos, t, g)[0] > 0).all()


def test_invariant_under_rigid_motions_of_the_output():
    g = chain_batch()
    loss = ChainGeometryLoss(10.0, **ALL_TERMS)
    t = torch.full((g.num_graphs,), 0.8, dtype=torch.float64)
    den = g.pos + 0.05 * torch.randn(g.pos.shape, dtype=torch.float64,
                                     generator=torch.Generator().manual_seed(1))
    value = loss(den, g.pos, t, g)[0]
    moved = loss(rigid_motion(den, g.batch, 5), g.pos, t, g)[0]
    target_moved = loss(den, rigid_motion(g.pos, g.batch, 6), t, g)[0]
    mirrored = loss(-den, g.pos, t, g)[0]
    assert torch.allclose(moved, value, rtol=1e-10, atol=1e-14)
    assert torch.allclose(target_moved, value, rtol=1e-10, atol=1e-14)
    assert torch.allclose(mirrored, value, rtol=1e-12, atol=1e-15)


def test_gradient_is_horizontal_at_the_output():
    """An SE(3)-invariant function of D has a gradient in H_D: zero sum and zero angular
    momentum per chain, i.e. it equals its horizontal projection at D (the group's P_D)."""
    group = SE3()
    g = chain_batch()
    loss = ChainGeometryLoss(10.0, **ALL_TERMS)
    t = torch.full((g.num_graphs,), 0.9, dtype=torch.float64)
    den = (g.pos + 0.05 * torch.randn(g.pos.shape, dtype=torch.float64,
                                      generator=torch.Generator().manual_seed(2)))
    den = rigid_motion(den, g.batch, 7).requires_grad_(True)  # not centred, arbitrary frame
    loss(den, g.pos, t, g)[0].sum().backward()
    grad = den.grad
    assert grad.abs().max() > 1e-3
    projected = group.project(grad, den.detach(), g.batch)
    assert torch.allclose(projected, grad, atol=1e-12)
    nb = g.num_graphs
    momentum = torch.zeros(nb, 3, dtype=torch.float64).index_add_(0, g.batch, grad)
    angular = torch.zeros(nb, 3, dtype=torch.float64).index_add_(
        0, g.batch, torch.cross(den.detach(), grad, dim=-1))
    assert momentum.abs().max() < 1e-12 and angular.abs().max() < 1e-12
    # ... but not horizontal at another point of the space (x_t): the quotient loss's P_{x_t}
    # and the auxiliary gradient agree only as x_t -> a scaled copy of D (docs/theory.md)
    centred = group.remove_translations(den.detach(), g.batch)
    for noise, bound in ((0.3, None), (1e-4, 1e-3)):
        xt = 0.9 * centred + noise * torch.randn(den.shape, dtype=torch.float64,
                                                 generator=torch.Generator().manual_seed(4))
        vertical = grad - group.project(grad, xt, g.batch)
        ratio = float(vertical.norm() / grad.norm())
        if bound is None:
            assert ratio > 1e-3
        else:
            assert ratio < bound


def test_time_weight_is_zero_at_high_noise():
    """t = 0 is the prior (pure noise) and t = 1 the data in this project."""
    loss = ChainGeometryLoss(10.0, t_min=0.4)
    t = torch.tensor([0.0, 0.2, 0.399, 0.4, 0.7, 1.0], dtype=torch.float64)
    assert loss.time_weight(t).tolist() == [0, 0, 0, 1, 1, 1]
    g = chain_batch((9, 9, 9, 9, 9, 9))
    den = g.pos * 1.1
    value = loss(den, g.pos, t, g)[0]
    assert (value[:3] == 0).all() and (value[3:] > 0).all()


def test_model_adds_the_weighted_aux_loss_for_every_treatment():
    from quotient_diffusion.diffusion import DiffusionModel, get_treatment

    class Shrink(torch.nn.Module):  # D = 0.9 x_t: wrong distances, no parameters needed
        def forward(self, pos, node_attr, batch, t, edge_index=None, edge_attr=None):
            return -0.1 * pos, None

    g = chain_batch(scale=None)
    for name in ("conventional", "geodiff", "af3", "quotient"):
        kwargs = dict(treatment=get_treatment(name), coord_scale=10.0)
        plain = DiffusionModel(Shrink(), **kwargs)
        aux = ChainGeometryLoss(10.0, ca_ca=1.0, t_min=0.0)
        model = DiffusionModel(Shrink(), auxiliary_loss=aux, **kwargs)
        t = torch.tensor([0.5, 0.9, 0.95], dtype=torch.float64)
        base, base_logs = plain.training_loss(g, torch.Generator().manual_seed(0), t)
        total, logs = model.training_loss(g, torch.Generator().manual_seed(0), t)
        assert logs["aux_loss"] > 0 and "aux_ca_ca_mse" in logs
        assert total.item() == pytest.approx(base.item() + logs["aux_loss"], rel=1e-9)
        assert logs["coord_loss"] == pytest.approx(base_logs["coord_loss"], rel=1e-12)


# ------------------------------------------------------------------- noise levels per chain
def test_repeat_tiles_the_flat_batch():
    g = collate([backbone_graph(torch.randn(n, 3)) for n in (3, 5)])
    g.edge_index = torch.tensor([[0, 1, 4], [1, 0, 3]])
    g.edge_attr = torch.arange(3.0)[:, None]
    g.extras = {"chiral_index": torch.tensor([[0, 1], [3, 7]]), "mass": torch.arange(8.0),
                "names": ["a", "b"]}
    r = g.repeat(3)
    assert r.num_graphs == 6 and r.pos.shape == (24, 3)
    assert r.batch.tolist() == [0] * 3 + [1] * 5 + [2] * 3 + [3] * 5 + [4] * 3 + [5] * 5
    assert torch.equal(r.pos, g.pos.repeat(3, 1)) and torch.equal(r.node_attr[8:16], g.node_attr)
    assert r.edge_index.tolist() == [[0, 1, 4, 8, 9, 12, 16, 17, 20],
                                     [1, 0, 3, 9, 8, 11, 17, 16, 19]]
    assert r.edge_attr.shape == (9, 1)
    assert r.extras["chiral_index"].tolist() == [[0, 1], [3, 7], [8, 9], [11, 15], [16, 17],
                                                 [19, 23]]
    assert torch.equal(r.extras["mass"], torch.arange(8.0).repeat(3))
    assert r.extras["names"] == ["a", "b"] * 3
    assert g.repeat(1) is g
    with pytest.raises(ValueError):
        g.repeat(0)


def test_noise_levels_give_independent_times_per_chain():
    from quotient_diffusion.diffusion import DiffusionModel

    class Zero(torch.nn.Module):
        def forward(self, pos, node_attr, batch, t, edge_index=None, edge_attr=None):
            return torch.zeros_like(pos), None

    seen = {}

    def spy(den, x1, t, graph):
        seen.update(t=t.clone(), batch=graph.batch.clone(), x1=x1.clone(), nb=graph.num_graphs)
        return torch.zeros_like(t), {}

    g = chain_batch((6, 9), scale=None)
    model = DiffusionModel(Zero(), coord_scale=10.0, auxiliary_loss=spy, noise_levels=4)
    model.train()
    model.training_loss(g, torch.Generator().manual_seed(0))
    assert seen["nb"] == 8 and seen["t"].shape == (8,)
    assert len(set(seen["t"].tolist())) == 8  # K = 4 independent times for each chain
    sizes = torch.bincount(seen["batch"]).tolist()
    assert sizes == [6, 9] * 4
    x1 = SE3().remove_translations(g.pos, g.batch) / 10.0
    assert torch.allclose(seen["x1"], x1.repeat(4, 1))  # copies of the same chains
    # fixed times (validation) and eval mode: each chain once
    model.training_loss(g, torch.Generator().manual_seed(0), torch.tensor([0.5, 0.5]).double())
    assert seen["nb"] == 2
    model.eval()
    model.training_loss(g, torch.Generator().manual_seed(0))
    assert seen["nb"] == 2


# ------------------------------------------------------------------------------- crops
def fake_chain(name: str, length: int, seed: int) -> ProteinChain:
    ca = random_walk(length, np.random.default_rng(seed)).astype(np.float32)
    coords = np.full((length, 4, 3), np.nan, dtype=np.float32)
    coords[:, 1] = ca
    return ProteinChain(name, "A" * length, coords)


def window_start(window: np.ndarray, ca: np.ndarray) -> int:
    """Where ``window`` sits in ``ca`` (asserting it is a contiguous slice)."""
    starts = [s for s in range(len(ca) - len(window) + 1)
              if np.array_equal(ca[s : s + len(window)], window)]
    assert len(starts) == 1, "not a contiguous window of the chain"
    return starts[0]


def test_crops_are_contiguous_seeded_and_cover_long_chains():
    long, short = fake_chain("L_l_u:A", 300, 0), fake_chain("S_l_u:A", 60, 1)
    graphs = BackboneGraphs([long, short], max_length=128)
    fixed = graphs[0].pos.numpy()
    assert fixed.shape == (128, 3) and window_start(fixed, long.ca) == 86  # central window
    assert graphs[1].pos.shape == (60, 3)
    starts = set()
    for step in range(300):
        drawn = graphs.draw([0, 1, 0], torch.Generator().manual_seed(step))
        again = graphs.draw([0, 1, 0], torch.Generator().manual_seed(step))
        assert all(torch.equal(a.pos, b.pos) for a, b in zip(drawn, again))  # seeded
        assert drawn[0].pos.shape == (128, 3) and drawn[1].pos.shape == (60, 3)
        assert torch.equal(drawn[1].pos, graphs[1].pos)
        assert drawn[0].node_attr.shape == (128, graphs[0].node_attr.shape[1])
        starts.update(window_start(d.pos.numpy(), long.ca) for d in (drawn[0], drawn[2]))
    assert min(starts) == 0 and max(starts) == 300 - 128  # both ends reached
    assert len(starts) > 120  # of the 173 positions
    # a draw of short chains only leaves the step's generator untouched
    gen = torch.Generator().manual_seed(9)
    graphs.draw([1, 1], gen)
    assert torch.equal(gen.get_state(), torch.Generator().manual_seed(9).get_state())


def fake_splits() -> ProteinSplits:
    return ProteinSplits(train=[fake_chain("A_l_u:A", 300, 0), fake_chain("B_l_u:A", 90, 1),
                                fake_chain("C_l_u:A", 30, 2)],
                         val=[fake_chain("D_l_u:A", 140, 3)], test=[], ts50=[])


def backbone_config(tmp_path, **options):
    from quotient_diffusion.training import TrainConfig

    return TrainConfig.from_dict({
        "task": {"name": "backbones", "options": {"neighbours": 6, "window": 2, **options}},
        "model": {"network": "egnn", "hidden": 16, "layers": 2, "treatment": "quotient"},
        "optim": {"batch_size": 2, "steps": 4, "lr": 1e-3},
        "run": {"seed": 0, "out_dir": str(tmp_path / "run"), "checkpoint_every": 4,
                "validate_every": 4, "log_every": 2},
    })


def test_datasets_and_summary_follow_the_options(tmp_path, monkeypatch):
    from quotient_diffusion.tasks import get_task

    monkeypatch.setattr(BackboneTask, "splits", lambda self: fake_splits())
    drop = get_task(backbone_config(tmp_path, max_length=128))
    train, val = drop.datasets()
    assert [len(c) for c in train.chains] == [90] and len(val) == 0  # old behaviour
    crop = get_task(backbone_config(tmp_path, max_length=128, crop=True,
                                    noise_levels_per_chain=3))
    train, val = crop.datasets()
    assert [len(c) for c in train.chains] == [300, 90] and val[0].pos.shape == (128, 3)
    s = crop.data_summary()
    assert s["train"] == {"chains": 3, "residues": 420, "kept_chains": 2, "kept_residues": 390,
                          "cropped_chains": 1, "dropped_short": 1, "dropped_long": 0,
                          "window_residues": 218}
    assert s["residues_per_step"] == pytest.approx(2 * 3 * 109)
    assert drop.data_summary()["train"]["dropped_long"] == 1


@pytest.mark.parametrize("options, message", [
    ({"aux_loss": {"ca_ca": 1.0, "bonds": 1.0}}, "unknown aux loss key"),
    ({"aux_loss": {"ca_i2": -1.0}}, "aux_loss.ca_i2: must not be negative"),
    ({"aux_loss": {"t_min": 1.5}}, "aux_loss.t_min"),
    ({"aux_loss": {"ca_ca": "yes"}}, "aux_loss.ca_ca: expected a number"),
    ({"noise_levels_per_chain": 0}, "noise_levels_per_chain"),
    ({"crop": 1}, "task.options.crop: expected true or false"),
])
def test_bad_options_are_config_errors(tmp_path, options, message):
    from quotient_diffusion.tasks import get_task
    from quotient_diffusion.training import ConfigError

    with pytest.raises(ConfigError, match=message):
        get_task(backbone_config(tmp_path, **options))


def test_training_smoke_with_aux_loss_crops_and_noise_levels(tmp_path, monkeypatch):
    from quotient_diffusion.tasks import get_task, load_trained_model
    from quotient_diffusion.training import train

    monkeypatch.setattr(BackboneTask, "splits", lambda self: fake_splits())
    config = backbone_config(tmp_path, min_length=50, max_length=64, crop=True,
                             noise_levels_per_chain=2, quality_chains=1,
                             aux_loss={"ca_ca": 1.0, "ca_i2": 0.5, "pairs": 0.25,
                                       "t_min": 0.3})
    final = train(get_task(config), config, progress=False)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    logged = [r for r in records if "aux_loss" in r]
    assert len(logged) == 2 and all(np.isfinite(r["aux_loss"]) for r in logged)
    assert all(r["loss"] >= r["coord_loss"] for r in logged)
    assert any("aux_ca_ca_mse" in r for r in logged)
    assert "val_aux_loss" in records[-1] and np.isfinite(records[-1]["val_aux_loss"])
    model, _ = load_trained_model(final)  # the hook holds no weights: the checkpoint loads
    assert model.auxiliary_loss is not None and model.noise_levels == 2


def test_defaults_unchanged_and_the_configs_enable_the_options(tmp_path):
    from pathlib import Path

    from quotient_diffusion.tasks import get_task
    from quotient_diffusion.training import TrainConfig

    plain = get_task(backbone_config(tmp_path))
    model = plain.build_model()
    assert plain.auxiliary_loss() is None and model.auxiliary_loss is None
    assert model.noise_levels == 1 and plain.options.crop is False
    configs = Path(__file__).resolve().parents[1] / "configs"
    for name in ("backbones.json", "backbones_egnn.json"):
        task = get_task(TrainConfig.load(configs / name))
        aux = task.auxiliary_loss()
        assert aux.weights == {"ca_ca": 1.0, "ca_i2": 0.5, "pairs": 0.25}
        assert aux.t_min == 0.75 and aux.pair_cutoff == 8.0
        assert task.noise_levels() == 4 and task.options.max_length == 256
