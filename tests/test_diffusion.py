"""Diffusion core: interpolants, treatments and samplers against closed forms."""

import math

import pytest
import torch

from quotient_diffusion.data import Graph, collate
from quotient_diffusion.diffusion import (
    AF3Alignment,
    Conventional,
    DiffusionModel,
    GeoDiffAlignment,
    LinearInterpolant,
    PolynomialVP,
    Quotient,
    SamplerConfig,
    prior_sample,
    sample,
)
from quotient_diffusion.groups import SE3, center, random_rotations, rotate

DT = torch.float64


def flat_batch(num_mols: int, num_atoms: int) -> torch.Tensor:
    return torch.arange(num_mols).repeat_interleave(num_atoms)


@pytest.mark.parametrize("interpolant", [LinearInterpolant(), PolynomialVP()])
def test_derivatives_match_autograd(interpolant):
    t = torch.linspace(0.02, 0.98, 11, dtype=DT, requires_grad=True)
    a, b = interpolant.coefficients(t)
    da, db = interpolant.derivatives(t)
    (ga,) = torch.autograd.grad(a.sum(), t, retain_graph=True)
    (gb,) = torch.autograd.grad(b.sum(), t)
    assert torch.allclose(ga, da, atol=1e-10) and torch.allclose(gb, db, atol=1e-10)


def test_velocity_and_score_of_a_point_mass():
    """For x1 = D fixed, x_t = a eps + b D: v must equal d x_t / dt and s = -eps / a."""
    interp = PolynomialVP()
    gen = torch.Generator().manual_seed(0)
    d, eps = torch.randn(6, 3, dtype=DT, generator=gen), torch.randn(6, 3, dtype=DT, generator=gen)
    t = torch.tensor(0.37, dtype=DT)
    a, b = interp.coefficients(t)
    da, db = interp.derivatives(t)
    x = a * eps + b * d
    assert torch.allclose(interp.velocity(x, d, t), da * eps + db * d, atol=1e-12)
    assert torch.allclose(interp.score(x, d, t), -eps / a, atol=1e-12)


def gaussian_denoiser(sigma: float, interpolant):
    """Exact posterior mean for x1 ~ N(0, sigma^2 I) on the centred subspace."""

    def denoise(x, h, t):
        a, b = interpolant.coefficients(t)
        c = b * sigma**2 / (a**2 + b**2 * sigma**2)
        return c[batch_of[0]].unsqueeze(-1) * x, None

    batch_of = [None]
    return denoise, batch_of


CASES = [
    (Conventional(), "ode", "euler"),
    (Conventional(), "ode", "heun"),
    (Conventional(), "sde", "euler"),
    (Quotient(), "ode", "heun"),
    (Quotient(), "sde", "euler"),
]


@pytest.mark.parametrize("treatment,method,solver", CASES)
def test_samplers_recover_gaussian_target(treatment, method, solver):
    """|x|^2 and squared pairwise distances of the samples match the target's closed forms."""
    sigma, n_atoms, n_mols = 1.7, 5, 4000
    interp = LinearInterpolant()
    batch = flat_batch(n_mols, n_atoms)
    denoise, holder = gaussian_denoiser(sigma, interp)
    holder[0] = batch
    gen = torch.Generator().manual_seed(1)
    x0, _ = prior_sample(batch, dtype=DT, generator=gen)
    cfg = SamplerConfig(steps=200, method=method, solver=solver)
    x, _ = sample(denoise, x0, None, batch, treatment, interp, cfg, gen)
    sq = (x * x).sum(-1).view(n_mols, n_atoms).sum(-1)
    expected = sigma**2 * (3 * n_atoms - 3)
    se = sq.std() / math.sqrt(n_mols)
    assert abs(sq.mean() - expected) < 4 * se + 0.01 * expected
    xm = x.view(n_mols, n_atoms, 3)
    pair = ((xm[:, 0] - xm[:, 1]) ** 2).sum(-1)
    assert abs(pair.mean() / (6 * sigma**2) - 1) < 0.06


def test_wrong_curvature_sign_misses_the_gaussian_target():
    """The quotient SDE with '+eta h' (or none) does not reproduce E|x|^2; '-eta h' does."""
    sigma, n_atoms, n_mols = 1.0, 4, 4000
    interp = LinearInterpolant()
    batch = flat_batch(n_mols, n_atoms)
    denoise, holder = gaussian_denoiser(sigma, interp)
    holder[0] = batch
    means = {}
    for sign in (-1.0, 0.0, 1.0):
        gen = torch.Generator().manual_seed(2)
        x0, _ = prior_sample(batch, dtype=DT, generator=gen)
        cfg = SamplerConfig(steps=200, method="sde", noise_scale=3.0)
        x, _ = sample(denoise, x0, None, batch, Quotient(curvature_sign=sign), interp, cfg, gen)
        means[sign] = float((x * x).sum(-1).view(n_mols, n_atoms).sum(-1).mean())
    expected = sigma**2 * (3 * n_atoms - 3)
    assert abs(means[-1.0] / expected - 1) < 0.04
    assert means[0.0] / expected < 0.93 and means[1.0] / expected < means[0.0] / expected


def random_batch(gen, sizes=(4, 7, 5)):
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    x1 = center(torch.randn(len(batch), 3, dtype=DT, generator=gen), batch)
    xt = center(torch.randn(len(batch), 3, dtype=DT, generator=gen), batch)
    d = center(torch.randn(len(batch), 3, dtype=DT, generator=gen), batch)
    return batch, x1, xt, d


def test_quotient_loss_ignores_vertical_vectors():
    gen = torch.Generator().manual_seed(3)
    batch, x1, xt, d = random_batch(gen)
    group = SE3()
    treat = Quotient(group)
    coef = torch.randn(3, 6, dtype=DT, generator=gen)
    vertical = group.vertical(xt, coef, batch)
    assert torch.allclose(treat.loss(d + vertical, x1, xt, batch), treat.loss(d, x1, xt, batch))
    # ... and is never larger than the conventional loss
    assert (treat.loss(d, x1, xt, batch) <= Conventional().loss(d, x1, xt, batch) + 1e-12).all()


@pytest.mark.parametrize("treatment", [GeoDiffAlignment(), AF3Alignment()])
def test_alignment_losses_ignore_rotations_of_the_target(treatment):
    gen = torch.Generator().manual_seed(4)
    batch, x1, xt, d = random_batch(gen)
    rot = random_rotations(3, DT, gen)
    before = treatment.loss(d, x1, xt, batch)
    after = treatment.loss(d, rotate(x1, rot, batch), xt, batch)
    assert torch.allclose(before, after, atol=1e-10)
    if isinstance(treatment, AF3Alignment):  # aligned to D itself: never worse than no alignment
        assert (before <= Conventional().loss(d, x1, xt, batch) + 1e-12).all()


class ScaleNet(torch.nn.Module):
    """A tiny equivariant network: vec = (w(t) - 1) x with w an MLP of t."""

    def __init__(self, out_features: int = 0):
        super().__init__()
        self.mlp = torch.nn.Sequential(
            torch.nn.Linear(1, 16), torch.nn.SiLU(), torch.nn.Linear(16, 1)
        )
        self.out_features = out_features
        self.feat = torch.nn.Linear(1, out_features) if out_features else None

    def forward(self, pos, node_attr, batch, t, edge_index=None, edge_attr=None):
        w = self.mlp(t.unsqueeze(-1))[batch]
        feat = self.feat(t.unsqueeze(-1))[batch] if self.feat is not None else None
        return (w - 1) * pos, feat


@pytest.mark.parametrize("name", ["conventional", "geodiff", "af3", "quotient"])
def test_training_reduces_loss_and_sampling_runs(name):
    from quotient_diffusion.diffusion import get_treatment

    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(5)
    graphs = [
        Graph(
            pos=torch.randn(n, 3) * 1.5,
            node_attr=torch.zeros(n, 1),
            extras={"features": torch.randn(n, 2)},
        )
        for n in (3, 5, 4, 6)
    ]
    graph = collate(graphs)
    model = DiffusionModel(ScaleNet(2), get_treatment(name), feature_dim=2, augment_rotations=True)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        loss, logs = model.training_loss(graph, generator=gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(logs["loss"])
    assert sum(losses[-10:]) < sum(losses[:10])
    x, h = model.sample(graph, SamplerConfig(steps=10, method="sde"), generator=gen)
    assert x.shape == graph.pos.shape and h.shape == (graph.pos.shape[0], 2)
    assert torch.isfinite(x).all() and torch.isfinite(h).all()
