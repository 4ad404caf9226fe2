"""The faithful AF3 sampler (issue 18): D aligned to the current sample x before the drift.

The AF3 loss min_g |D - g x1|^2 does not change when D is rotated as a whole, so the sampler
aligns D to x (Kabsch) before forming v and s. Checked in float64: the aligned D is the Kabsch
optimum (an SVD fit written here), the drift is invariant to rotating D, the sampler step is
equivariant under a joint rotation of x and the network, and with an exact denoiser whose output
is rotated at random on every call the aligned sampler gives exactly the conventional sampler's
samples, while the unaligned one does not.
"""

import numpy as np
import pytest
import torch

from quotient_diffusion.data import Graph, collate
from quotient_diffusion.diffusion import (
    AF3Alignment,
    Conventional,
    DiffusionModel,
    LinearInterpolant,
    PolynomialVP,
    SamplerConfig,
    get_treatment,
    prior_sample,
    sample,
)
from quotient_diffusion.groups import (
    SE3,
    SO3,
    axis_angle_to_matrix,
    center,
    random_rotations,
    rotate,
)
from quotient_diffusion.nn import get_network

pytestmark = pytest.mark.usefixtures("single_thread")

DT = torch.float64
SIZES = (5, 7, 4)


def random_batch(seed: int, centred: bool = True):
    gen = torch.Generator().manual_seed(seed)
    batch = torch.repeat_interleave(torch.arange(len(SIZES)), torch.tensor(SIZES))
    x = 1.5 * torch.randn(len(batch), 3, dtype=DT, generator=gen)
    d = 1.5 * torch.randn(len(batch), 3, dtype=DT, generator=gen)
    if centred:
        x, d = center(x, batch), center(d, batch)
    return gen, batch, x, d


def svd_fit(d: np.ndarray, x: np.ndarray, centre: bool) -> np.ndarray:
    """D moved onto x by the best proper rotation (about the centroids when ``centre``): with
    H = sum_n (D_n - mean D)(x_n - mean x)^T = U S V^T, R = V diag(1, 1, det(V U^T)) U^T."""
    dm = d.mean(0) if centre else np.zeros(3)
    xm = x.mean(0) if centre else np.zeros(3)
    h = (d - dm).T @ (x - xm)
    u, _, vt = np.linalg.svd(h)
    sign = np.sign(np.linalg.det(vt.T @ u.T))
    rot = vt.T @ np.diag([1.0, 1.0, sign]) @ u.T
    return (d - dm) @ rot.T + xm


def per_molecule_sq(r: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
    return torch.zeros(len(SIZES), dtype=DT).index_add_(0, batch, (r * r).sum(-1))


@pytest.mark.parametrize("group", [SE3(), SO3()], ids=["SE3", "SO3"])
def test_aligned_prediction_is_the_kabsch_optimum(group):
    """A_x(D) equals the SVD fit, is no farther from x than any nearby rotation of it, and is
    stationary: zero 'torque' sum_n A_n x x_n (SE(3): about the centroid, the centroid of x)."""
    _, batch, x, d = random_batch(0, centred=False)
    if group.has_translations:
        x, d = center(x, batch), center(d, batch)
    aligned = AF3Alignment(group).prediction(d, x, batch)
    for m in range(len(SIZES)):
        sel = batch == m
        expected = svd_fit(d[sel].numpy(), x[sel].numpy(), group.has_translations)
        np.testing.assert_allclose(aligned[sel].numpy(), expected, rtol=0, atol=1e-12)
    torque = torch.zeros(len(SIZES), 3, dtype=DT).index_add_(
        0, batch, torch.linalg.cross(aligned, x))
    torch.testing.assert_close(torque, torch.zeros_like(torque), rtol=0, atol=1e-10)
    best = per_molecule_sq(aligned - x, batch)
    gen = torch.Generator().manual_seed(1)
    for _ in range(20):
        turn = axis_angle_to_matrix(0.05 * torch.randn(len(SIZES), 3, dtype=DT, generator=gen))
        assert (per_molecule_sq(rotate(aligned, turn, batch) - x, batch) >= best - 1e-12).all()


def drift_of(treatment, d, x, batch, t: float, sde: bool, interp=None) -> torch.Tensor:
    """The sampler's drift at (x, t) from the denoiser output d, composed as in ``sample``."""
    interp = interp or LinearInterpolant()
    tn = torch.full((len(x), 1), t, dtype=DT)
    d = treatment.prediction(d, x, batch)
    v = interp.velocity(x, d, tn)
    if not sde:
        return treatment.drift(v, x, batch)
    eta = 0.7 * interp.coefficients(tn)[0] ** 2
    return treatment.drift(v, x, batch, interp.score(x, d, tn), eta)


@pytest.mark.parametrize("sde", [False, True], ids=["ode", "sde"])
@pytest.mark.parametrize("interp", [LinearInterpolant(), PolynomialVP()], ids=["linear", "vp"])
def test_aligned_drift_is_invariant_to_rotating_d(sde, interp):
    """drift(g D) = drift(D) for one rotation g per molecule (the AF3 loss cannot tell them
    apart); without the alignment the drift changes by O(|D|)."""
    gen, batch, x, d = random_batch(2)
    g = random_rotations(len(SIZES), DT, gen)
    for t in (0.1, 0.5, 0.9):
        ref = drift_of(AF3Alignment(), d, x, batch, t, sde, interp)
        moved = drift_of(AF3Alignment(), rotate(d, g, batch), x, batch, t, sde, interp)
        torch.testing.assert_close(moved, ref, rtol=0, atol=1e-10)
        plain = AF3Alignment(align_sampler=False)
        gap = drift_of(plain, rotate(d, g, batch), x, batch, t, sde, interp) - \
            drift_of(plain, d, x, batch, t, sde, interp)
        assert float(gap.abs().max()) > 0.1


@pytest.mark.parametrize("sde", [False, True], ids=["ode", "sde"])
def test_aligned_drift_is_equivariant(sde):
    """drift(g x, D(g x)) = g drift(x, D(x)) whenever D(g x) = g' g D(x), for any g' (a network
    that is equivariant only up to a rotation of its output)."""
    gen, batch, x, d = random_batch(3)
    g, g2 = random_rotations(len(SIZES), DT, gen), random_rotations(len(SIZES), DT, gen)
    for t in (0.2, 0.8):
        ref = drift_of(AF3Alignment(), d, x, batch, t, sde)
        out = drift_of(AF3Alignment(), rotate(rotate(d, g, batch), g2, batch),
                       rotate(x, g, batch), batch, t, sde)
        torch.testing.assert_close(out, rotate(ref, g, batch), rtol=0, atol=1e-10)


def egnn_model(treatment) -> tuple[DiffusionModel, object]:
    torch.manual_seed(0)
    net = get_network("egnn", in_features=1, out_features=0, hidden=16, layers=2).double()
    # larger coordinate updates than at init, so that D differs from a multiple of x
    for p in net.parameters():
        p.data.mul_(3.0)
    graph = collate([Graph(pos=torch.zeros(n, 3, dtype=DT), node_attr=torch.ones(n, 1, dtype=DT))
                     for n in SIZES])
    return DiffusionModel(net, treatment), graph


@pytest.mark.parametrize("solver", ["euler", "heun", "dpm2m"])
def test_aligned_sampler_is_equivariant_under_a_joint_rotation(solver):
    """sample(g x0) = g sample(x0) for the EGNN (exactly equivariant), and for the same EGNN
    whose output is rotated by a fresh random rotation on every call (which breaks the
    unaligned sampler)."""
    model, graph = egnn_model(get_treatment("af3"))
    batch = graph.batch
    gen = torch.Generator().manual_seed(4)
    x0, _ = prior_sample(batch, dtype=DT, generator=gen)
    g = random_rotations(len(SIZES), DT, gen)
    cfg = SamplerConfig(steps=6, solver=solver)

    def plain(x, h, t):
        return model.denoise(x, h, t, graph)

    def spun(x, h, t):
        d, _ = model.denoise(x, h, t, graph)
        return rotate(d, random_rotations(len(SIZES), DT, gen), batch), None

    for denoise in (plain, spun):
        ref, _ = sample(denoise, x0, None, batch, model.treatment, model.interpolant, cfg)
        out, _ = sample(denoise, rotate(x0, g, batch), None, batch, model.treatment,
                        model.interpolant, cfg)
        torch.testing.assert_close(out, rotate(ref, g, batch), rtol=0, atol=1e-9)
    unaligned = AF3Alignment(align_sampler=False)
    ref, _ = sample(spun, x0, None, batch, unaligned, model.interpolant, cfg)
    out, _ = sample(spun, rotate(x0, g, batch), None, batch, unaligned, model.interpolant, cfg)
    assert float((out - rotate(ref, g, batch)).abs().max()) > 0.1


def shape_denoiser(interp):
    """An exactly equivariant, non-linear denoiser whose output is horizontal at x: radial
    shrinkage of each atom by a function of its distance to the centroid, c(t, |x_n|) x_n
    (centred afterwards; centring keeps the angular momentum at zero)."""

    def denoise(x, h, t):
        a, b = interp.coefficients(t)
        n = x.shape[0] // len(t)
        batch = torch.arange(len(t)).repeat_interleave(n)
        r = x.norm(dim=-1, keepdim=True)
        c = (b / (a**2 + b**2))[batch].unsqueeze(-1) * (1 + 0.3 * torch.tanh(r - 1.5))
        return center(c * x, batch), None

    return denoise


@pytest.mark.parametrize("method,solver", [("ode", "euler"), ("ode", "heun"), ("ode", "dpm2m"),
                                           ("sde", "euler")])
def test_aligned_sampler_undoes_any_rotation_of_an_exact_denoiser(method, solver):
    """An equivariant denoiser whose output has zero angular momentum at x (like the exact
    posterior mean of an invariant target) is left unchanged by the alignment: the af3 sampler
    reproduces the conventional one from the same draws, also when the denoiser's output is
    rotated at random on every call."""
    interp = LinearInterpolant()
    num, n = 200, 6
    batch = torch.arange(num).repeat_interleave(n)
    exact = shape_denoiser(interp)
    spin = torch.Generator().manual_seed(11)

    def spun(x, h, t):
        d, _ = exact(x, h, t)
        return rotate(d, random_rotations(num, DT, spin), batch), None

    cfg = SamplerConfig(steps=40, method=method, solver=solver)

    def run(denoise, treatment):
        gen = torch.Generator().manual_seed(12)
        x0, _ = prior_sample(batch, dtype=DT, generator=gen)
        return sample(denoise, x0, None, batch, treatment, interp, cfg, gen)[0]

    conventional = run(exact, Conventional())
    torch.testing.assert_close(run(spun, AF3Alignment()), conventional, rtol=0, atol=1e-9)
    off = run(spun, AF3Alignment(align_sampler=False)) - conventional
    assert float(off.norm(dim=-1).mean()) > 0.1
