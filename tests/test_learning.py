"""The learning machinery: preconditioning against its closed forms, loss weights, the learning-rate
schedule, EMA warm-up, wall-time-bounded sessions and the upgrade of version-1 checkpoints."""

from __future__ import annotations

import json
import math

import pytest
import torch

from quotient_diffusion.conformers import default_checkpoint
from quotient_diffusion.data import Graph, collate
from quotient_diffusion.diffusion import DiffusionModel, get_interpolant
from quotient_diffusion.diffusion.treatments import Conventional
from quotient_diffusion.tasks import get_task, load_trained_model
from quotient_diffusion.training import TrainConfig, train
from quotient_diffusion.training.checkpoint import load_checkpoint
from quotient_diffusion.training.config import OptimConfig
from quotient_diffusion.training.ema import EMA
from quotient_diffusion.training.loop import upgrade_config
from quotient_diffusion.training.schedule import learning_rate


class ConstantField(torch.nn.Module):
    """A 'network' whose output F is a fixed field (to read the denoiser's formula back)."""

    def __init__(self, field: torch.Tensor):
        super().__init__()
        self.field = field
        self.seen = None

    def forward(self, pos, node_attr, batch, t, edge_index=None, edge_attr=None):
        self.seen = pos
        return self.field, None


def _graph(n: int = 7) -> Graph:
    gen = torch.Generator().manual_seed(0)
    return collate([Graph(pos=torch.randn(n, 3, generator=gen, dtype=torch.float64),
                          node_attr=torch.zeros(n, 0, dtype=torch.float64))])


@pytest.mark.parametrize("interpolant", ["linear", "vp"])
def test_preconditioned_denoiser_matches_closed_form(interpolant):
    """D = c_skip x + c_out F(c_in x) with V = a^2 + b^2 s^2, c_skip = b s^2 / V,
    c_out = a s / sqrt V, c_in = 1 / sqrt V (F and x mean-free, so centring changes nothing)."""
    graph = _graph()
    gen = torch.Generator().manual_seed(1)
    field = torch.randn(7, 3, generator=gen, dtype=torch.float64)
    field = field - field.mean(0)
    x = torch.randn(7, 3, generator=gen, dtype=torch.float64)
    x = x - x.mean(0)
    sigma = 1.7
    net = ConstantField(field)
    model = DiffusionModel(net, Conventional(), get_interpolant(interpolant),
                           preconditioning=True, weighting="unit", sigma_data=sigma)
    for t in (0.05, 0.5, 0.95):
        a, b = model.interpolant.coefficients(torch.tensor(t, dtype=torch.float64))
        var = a**2 + b**2 * sigma**2
        den, _ = model.denoise(x, None, torch.tensor([t], dtype=torch.float64), graph)
        expected = b * sigma**2 / var * x + a * sigma / var.sqrt() * field
        torch.testing.assert_close(den, expected, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(net.seen, x / var.sqrt(), rtol=1e-12, atol=1e-12)
    if interpolant == "linear":  # at the data end (a = 0) D = x whatever F says
        den, _ = model.denoise(x, None, torch.tensor([1.0], dtype=torch.float64), graph)
        torch.testing.assert_close(den, x, rtol=1e-12, atol=1e-12)


def test_unit_weight_is_the_loss_of_F():
    """D - x1 = c_out (F - F*), so w = 1 / c_out^2 makes the loss |F - F*|^2: a unit error of F
    costs the same at every t."""
    model = DiffusionModel(ConstantField(torch.zeros(7, 3, dtype=torch.float64)), Conventional(),
                           preconditioning=True, weighting="unit", sigma_data=1.3)
    for t in (0.1, 0.5, 0.9, 0.99):
        tt = torch.tensor([t], dtype=torch.float64)
        skip, out, _ = model.scalings(tt, 1.3)
        # a residual of c_out * 1 per coordinate (a unit error of F) weighs 1 after weighting
        assert float(model.loss_weight(tt, 1.3) * out**2) == pytest.approx(1.0, rel=1e-9)


def test_velocity_weight_is_right_for_vp():
    """|v(D) - v(x1)|^2 = w |D - x1|^2 with w = (a' b / a - b')^2 for any interpolant."""
    for name in ("linear", "vp"):
        interp = get_interpolant(name)
        t = torch.tensor([[0.3]], dtype=torch.float64)
        x = torch.randn(5, 3, dtype=torch.float64)
        d1, d2 = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
        lhs = ((interp.velocity(x, d1, t) - interp.velocity(x, d2, t)) ** 2).sum()
        rhs = interp.velocity_weight(t) * ((d1 - d2) ** 2).sum()
        assert float(lhs) == pytest.approx(float(rhs), rel=1e-10)
    assert float(get_interpolant("linear").velocity_weight(t)) == pytest.approx(1 / 0.7**2)


def test_unit_weighting_requires_preconditioning():
    with pytest.raises(ValueError, match="preconditioning"):
        DiffusionModel(ConstantField(torch.zeros(1, 3)), weighting="unit")


def test_learning_rate_schedule():
    optim = OptimConfig(lr=1.0, steps=1000, warmup_steps=100, min_lr_ratio=0.1)
    assert learning_rate(optim, 0) == pytest.approx(0.01)
    assert learning_rate(optim, 49) == pytest.approx(0.5 * (0.1 + 0.9 * 0.5 * (1 + math.cos(
        math.pi * 0.049))))
    assert learning_rate(optim, 500) == pytest.approx(0.1 + 0.9 * 0.5)
    assert learning_rate(optim, 1000) == pytest.approx(0.1)
    assert learning_rate(optim, 5000) == pytest.approx(0.1)  # past the end: the floor
    optim.lr_schedule = "constant"
    assert learning_rate(optim, 500) == 1.0


def test_ema_warmup_forgets_the_initial_weights():
    """d_k = min(d, (1 + k) / (10 + k)): after 2,000 updates at d = 0.999 the initial weights keep
    a weight prod_k d_k, far below the 0.999^2000 = 13.5% of a constant decay."""
    lin = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        lin.weight.fill_(1.0)
    ema = EMA(lin, 0.999, warmup=True)
    with torch.no_grad():
        lin.weight.fill_(0.0)
    for k in range(2000):
        ema.update(lin, k)
    expected = math.prod(min(0.999, (1 + k) / (10 + k)) for k in range(2000))
    assert float(ema.shadow.weight) == pytest.approx(expected, rel=1e-4)
    assert float(ema.shadow.weight) < 0.01 < 0.999**2000


def _tiny(tmp_path, steps: int) -> TrainConfig:
    return TrainConfig.from_dict({
        "task": {"name": "toy", "options": {"num_train": 64, "num_val": 8}},
        "model": {"network": "egnn", "hidden": 16, "layers": 2},
        "optim": {"batch_size": 8, "steps": steps, "warmup_steps": 2},
        "run": {"out_dir": str(tmp_path / "run"), "checkpoint_every": 1000,
                "validate_every": 2, "log_every": 1000, "threads": 1},
    })


def test_hours_bound_stops_with_a_resumable_checkpoint_and_history(tmp_path):
    cfg = _tiny(tmp_path, steps=1000)
    last = train(get_task(cfg), cfg, progress=False, hours=1e-9)  # out of time after the first step
    state = load_checkpoint(last)
    assert last.name == "last.pt" and state["step"] == 1
    cfg.optim.steps = 4
    final = train(get_task(cfg), cfg, resume=True, progress=False)
    state = load_checkpoint(final)
    assert final.name == "final.pt" and state["step"] == 4
    assert [(h["start_step"], h["end_step"]) for h in state["history"]] == [(0, 1), (1, 4)]
    curve = json.loads((tmp_path / "run" / "curve.json").read_text())
    assert [r["step"] for r in curve] == [2, 4] == [r["step"] for r in state["curve"]]
    assert all("val_mse_t0.50" in r for r in curve)
    assert (tmp_path / "run" / "curve.png").stat().st_size > 0


def test_version_1_checkpoints_load_as_they_were_trained():
    """The bundled models were trained before preconditioning; they must rebuild the same net."""
    old = {"model": {"network": "egnn", "network_options": {}}}
    new = upgrade_config(old, 1)["model"]
    assert new["preconditioning"] is False and new["weighting"] == "velocity"
    assert new["network_options"] == {"time_features": 0, "num_rbf": 0}
    assert upgrade_config(old, 2) is old
    model, config = load_trained_model(default_checkpoint())
    assert config.model.preconditioning is False and not model.preconditioning
