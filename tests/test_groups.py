"""Group actions: projection, curvature, Gram matrix and alignment (float64, seeded inputs).

Every group is checked against a dense reference built in this file from its Killing fields
(the fixed Lie-algebra basis acting at x), independently of the library's own generators.
"""

from __future__ import annotations

import pytest
import torch
from conftest import random_flat_batch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from quotient_diffusion.groups import (
    SE3,
    SO2,
    SO3,
    GroupAction,
    Translation,
    axis_angle_to_matrix,
    center,
    get_group,
    random_rotations,
)
from quotient_diffusion.scatter import scatter_sum

pytestmark = pytest.mark.usefixtures("single_thread")

DT = torch.float64
SIZES = [3, 7, 4, 12, 5]  # generic clouds: every action is free
MIXED_SIZES = [1, 2, 5, 3, 9, 1, 4]  # includes molecules with one and two atoms
TILTED_AXIS = (1.0, 2.0, -0.5)

GROUPS = {
    "T3": Translation,
    "SO3": SO3,
    "SE3": SE3,
    "SO2z": SO2,
    "SO2tilt": lambda: SO2(axis=TILTED_AXIS),
}


@pytest.fixture(params=list(GROUPS))
def named_group(request) -> tuple[str, GroupAction]:
    return request.param, GROUPS[request.param]()


def _axis(group: GroupAction) -> torch.Tensor:
    return group.axis.to(DT)


def killing_fields(name: str, group: GroupAction, x: torch.Tensor) -> torch.Tensor:
    """Reference vertical vectors u_j(x) (N, 3, k) from the fixed Lie-algebra basis."""
    eye = torch.eye(3, dtype=x.dtype)
    rot = torch.stack([torch.cross(eye[j].expand_as(x), x, dim=-1) for j in range(3)], -1)
    trans = eye.expand(x.shape[0], 3, 3)
    if name == "T3":
        return trans
    if name == "SO3":
        return rot
    if name == "SE3":
        return torch.cat([trans, rot], -1)
    a = _axis(group)
    return torch.cross(a.expand_as(x), x, dim=-1).unsqueeze(-1)


def random_element(name: str, group: GroupAction, nb: int, seed: int = 1):
    """Per-molecule (R, t) of a random element of the group (t acts on points only)."""
    gen = torch.Generator().manual_seed(seed)
    rot = random_rotations(nb, DT, gen)
    t = 3.0 * torch.randn(nb, 3, dtype=DT, generator=gen)
    if name == "T3":
        return torch.eye(3, dtype=DT).expand(nb, 3, 3), t
    if name == "SO3":
        return rot, torch.zeros_like(t)
    if name == "SE3":
        return rot, t
    angle = 2 * torch.pi * torch.rand(nb, 1, dtype=DT, generator=gen)
    return axis_angle_to_matrix(angle * _axis(group)), torch.zeros_like(t)


def apply(rot, t, x, batch):
    return torch.einsum("nij,nj->ni", rot[batch], x) + t[batch]


def per_mol_dot(a, b, batch):
    return scatter_sum((a * b).sum(-1), batch, int(batch.max()) + 1)


def dense_projection(u: torch.Tensor) -> torch.Tensor:
    """I - U (U^T U)^{-1} U^T for one molecule, u: (N, 3, k)."""
    mat = u.reshape(-1, u.shape[-1])
    return torch.eye(mat.shape[0], dtype=mat.dtype) - mat @ torch.linalg.solve(mat.T @ mat, mat.T)


# ---------------------------------------------------------------------------- projection
def test_projection_is_idempotent_and_self_adjoint(named_group):
    _, group = named_group
    x, b = random_flat_batch(SIZES, seed=2, offset=2.0)
    gen = torch.Generator().manual_seed(3)
    v, w = torch.randn(2, *x.shape, dtype=DT, generator=gen)
    pv = group.project(v, x, b)
    torch.testing.assert_close(group.project(pv, x, b), pv, rtol=0, atol=1e-12)
    lhs = per_mol_dot(pv, w, b)
    rhs = per_mol_dot(v, group.project(w, x, b), b)
    torch.testing.assert_close(lhs, rhs, rtol=0, atol=1e-11)


def test_projection_kills_vertical_and_output_is_horizontal(named_group):
    name, group = named_group
    x, b = random_flat_batch(SIZES, seed=4, offset=2.0)
    nb = len(SIZES)
    gen = torch.Generator().manual_seed(5)
    u = killing_fields(name, group, x)
    for j in range(u.shape[-1]):  # every generator, one at a time, in every molecule
        out = group.project(u[..., j], x, b)
        assert out.abs().max() < 1e-11
    coef = torch.randn(nb, group.dim, dtype=DT, generator=gen)
    assert group.project(group.vertical(x, coef, b), x, b).abs().max() < 1e-11
    pv = group.project(torch.randn(x.shape, dtype=DT, generator=gen), x, b)
    overlaps = scatter_sum(torch.einsum("nck,nc->nk", u, pv), b, nb)
    assert overlaps.abs().max() < 1e-11


def test_projection_matches_dense_reference(named_group):
    name, group = named_group
    x, b = random_flat_batch(SIZES, seed=6, offset=2.0)
    v = torch.randn(x.shape, dtype=DT, generator=torch.Generator().manual_seed(7))
    out = group.project(v, x, b)
    for m in range(len(SIZES)):
        sel = b == m
        ref = dense_projection(killing_fields(name, group, x[sel])) @ v[sel].reshape(-1)
        torch.testing.assert_close(out[sel].reshape(-1), ref, rtol=0, atol=1e-11)


def test_projection_and_curvature_are_equivariant(named_group):
    name, group = named_group
    x, b = random_flat_batch(SIZES, seed=8, offset=2.0)
    v = torch.randn(x.shape, dtype=DT, generator=torch.Generator().manual_seed(9))
    rot, t = random_element(name, group, len(SIZES))
    gx = apply(rot, t, x, b)
    gv = apply(rot, torch.zeros_like(t), v, b)  # tangent vectors only rotate
    zero = torch.zeros_like(t)
    torch.testing.assert_close(
        group.project(gv, gx, b), apply(rot, zero, group.project(v, x, b), b), rtol=0, atol=1e-11
    )
    torch.testing.assert_close(
        group.curvature(gx, b), apply(rot, zero, group.curvature(x, b), b), rtol=0, atol=1e-11
    )


@pytest.mark.parametrize("name", ["SO3", "SE3", "T3"])
def test_rigid_motion_equivariance_of_rotation_invariant_groups(name):
    """T3, SO3 (about the origin) and SE3 commute with rotations; T3 and SE3 with translations."""
    group = get_group(name)
    x, b = random_flat_batch(SIZES, seed=10)
    v = torch.randn(x.shape, dtype=DT, generator=torch.Generator().manual_seed(11))
    rot, t = random_element("SE3", group, len(SIZES), seed=12)
    if name == "SO3":
        t = torch.zeros_like(t)
    zero = torch.zeros_like(t)
    gx, gv = apply(rot, t, x, b), apply(rot, zero, v, b)
    torch.testing.assert_close(
        group.project(gv, gx, b), apply(rot, zero, group.project(v, x, b), b), rtol=0, atol=1e-11
    )


def test_batched_equals_per_molecule(named_group):
    _, group = named_group
    x, b = random_flat_batch(MIXED_SIZES, seed=13, offset=1.0)
    gen = torch.Generator().manual_seed(14)
    v, y = torch.randn(2, *x.shape, dtype=DT, generator=gen)
    y = x + 0.3 * y
    outs = {
        "project": group.project(v, x, b),
        "curvature": group.curvature(x, b),
        "align": group.align(x, y, b),
        "generic_project": group.generic_project(v, x, b),
        "generic_curvature": group.generic_curvature(x, b),
    }
    gram = group.gram(x, b)
    for m in range(len(MIXED_SIZES)):
        sel = b == m
        xs, vs, ys = x[sel], v[sel], y[sel]
        single = {
            "project": group.project(vs, xs),
            "curvature": group.curvature(xs),
            "align": group.align(xs, ys),
            "generic_project": group.generic_project(vs, xs),
            "generic_curvature": group.generic_curvature(xs),
        }
        for key, val in single.items():
            torch.testing.assert_close(outs[key][sel], val, rtol=0, atol=1e-12, msg=key)
        torch.testing.assert_close(gram[m], group.gram(xs)[0], rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------- curvature
def test_curvature_is_minus_half_grad_logdet(named_group):
    """Closed form against autograd of -1/2 log det G, with G built here from Killing fields."""
    name, group = named_group
    x, b = random_flat_batch(SIZES, seed=15, offset=2.0)
    xg = x.clone().requires_grad_(True)
    total = 0.0 * xg.sum()
    for m in range(len(SIZES)):
        u = killing_fields(name, group, xg[b == m])
        mat = u.reshape(-1, u.shape[-1])
        total = total + torch.logdet(mat.T @ mat)
    (grad,) = torch.autograd.grad(total, xg)
    torch.testing.assert_close(group.curvature(x, b), -0.5 * grad, rtol=0, atol=1e-11)


@pytest.mark.parametrize(
    "name, expected", [("SO3", -3.0), ("SE3", -3.0), ("SO2z", -1.0), ("SO2tilt", -1.0), ("T3", 0)]
)
def test_curvature_trace_identity(name, expected):
    """<x, h(x)> = -dim of the orbit (SO(3): centred clouds; SE(3): any cloud)."""
    group = GROUPS[name]()
    x, b = random_flat_batch(SIZES, seed=16, offset=0.0 if name == "SO3" else 2.0)
    if name == "SO3":
        x = center(x, b)
    ip = per_mol_dot(x, group.curvature(x, b), b)
    torch.testing.assert_close(ip, torch.full_like(ip, expected), rtol=0, atol=1e-11)


def test_curvature_is_horizontal(named_group):
    _, group = named_group
    x, b = random_flat_batch(SIZES, seed=17, offset=2.0)
    h = group.curvature(x, b)
    torch.testing.assert_close(group.project(h, x, b), h, rtol=0, atol=1e-11)


def test_so3_curvature_formula():
    """h_n = (K^{-1} - tr(K^{-1}) I) x_n with the unit-mass inertia tensor K."""
    x, b = random_flat_batch([6], seed=18)
    x = center(x, b)
    k = (x * x).sum() * torch.eye(3, dtype=DT) - x.T @ x
    kinv = torch.linalg.inv(k)
    ref = x @ (kinv - kinv.trace() * torch.eye(3, dtype=DT))
    torch.testing.assert_close(SO3().curvature(x), ref, rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------- generic path
def test_generic_path_equals_closed_forms(named_group):
    _, group = named_group
    x, b = random_flat_batch(MIXED_SIZES, seed=19, offset=2.0)
    v = torch.randn(x.shape, dtype=DT, generator=torch.Generator().manual_seed(20))
    torch.testing.assert_close(
        group.generic_project(v, x, b), group.project(v, x, b), rtol=0, atol=1e-11
    )
    torch.testing.assert_close(
        group.generic_curvature(x, b), group.curvature(x, b), rtol=0, atol=1e-11
    )
    torch.testing.assert_close(group.generic_gram(x, b), group.gram(x, b), rtol=0, atol=1e-11)


def _levi_civita() -> torch.Tensor:
    eps = torch.zeros(3, 3, 3, dtype=DT)
    for i, j, k in ((0, 1, 2), (1, 2, 0), (2, 0, 1)):
        eps[i, j, k], eps[i, k, j] = 1.0, -1.0
    return eps


def homogeneous_generators(name: str, group: GroupAction, x: torch.Tensor) -> torch.Tensor:
    """Lie-algebra basis of the group as 4x4 matrices acting on homogeneous points, written from
    the definitions (Levi-Civita cross-product matrices, unit translations): (k, 4, 4). SE3's
    rotations are taken about the centroid c, [[E_j, -E_j c], [0, 0]], as the library's basis."""
    cross = _levi_civita().permute(1, 0, 2)  # cross[j] = E_j, E_j v = e_j x v
    zero = torch.zeros(4, 4, dtype=DT)

    def rot_about(e: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        g = zero.clone()
        g[:3, :3], g[:3, 3] = e, -e @ c
        return g

    def trans(j: int) -> torch.Tensor:
        g = zero.clone()
        g[j, 3] = 1.0
        return g

    origin = torch.zeros(3, dtype=DT)
    if name == "T3":
        return torch.stack([trans(j) for j in range(3)])
    if name == "SO3":
        return torch.stack([rot_about(cross[j], origin) for j in range(3)])
    if name == "SE3":
        c = x.mean(0)
        rotations = [rot_about(cross[j], c) for j in range(3)]
        return torch.stack([trans(j) for j in range(3)] + rotations)
    axis = _axis(group)
    return rot_about(torch.einsum("j,jik->ik", axis, cross), origin).unsqueeze(0)


def test_gram_and_generators_match_independent_lie_algebra(named_group):
    """U built here as g_j x (homogeneous generators applied to the points), G = U^T U: the
    library's generators, generic_gram and gram (closed form or not) all equal them; and the
    group action is their exponential, act(x, theta e_j) = exp(theta g_j) x."""
    name, group = named_group
    x, b = random_flat_batch(SIZES, seed=35, offset=2.0)
    gram, generic = group.gram(x, b), group.generic_gram(x, b)
    lib_u = group.generators(x, b)
    for m in range(len(SIZES)):
        xs = x[b == m]
        homog = torch.cat([xs, torch.ones(len(xs), 1, dtype=DT)], -1)
        gens = homogeneous_generators(name, group, xs)
        u = torch.einsum("kij,nj->nik", gens, homog)[:, :3]  # (N, 3, k)
        torch.testing.assert_close(lib_u[b == m], u, rtol=0, atol=1e-12)
        ref = u.reshape(-1, u.shape[-1]).T @ u.reshape(-1, u.shape[-1])
        torch.testing.assert_close(generic[m], ref, rtol=1e-13, atol=1e-11)
        torch.testing.assert_close(gram[m], ref, rtol=1e-13, atol=1e-11)
    theta = 0.7
    for j in range(group.dim):
        params = torch.zeros(len(SIZES), group.dim, dtype=DT)
        params[:, j] = theta
        moved = group.act(x, params, b)
        for m in range(len(SIZES)):
            xs = x[b == m]
            homog = torch.cat([xs, torch.ones(len(xs), 1, dtype=DT)], -1)
            expo = torch.linalg.matrix_exp(theta * homogeneous_generators(name, group, xs)[j])
            torch.testing.assert_close(moved[b == m], (homog @ expo.T)[:, :3], rtol=0, atol=1e-9)


def test_closed_form_grams(named_group):
    """Closed-form Gram matrices.

    T3: N I; SO3: inertia tensor about the origin; SE3: diag(N I, K of the centred cloud);
    SO2: sum of |x_perp|^2.
    """
    name, group = named_group
    x, b = random_flat_batch(SIZES, seed=21, offset=2.0)
    for m, n in enumerate(SIZES):
        xs = x[b == m]
        eye = torch.eye(3, dtype=DT)
        if name == "T3":
            ref = n * eye
        elif name == "SO3":
            ref = (xs * xs).sum() * eye - xs.T @ xs
        elif name == "SE3":
            xc = xs - xs.mean(0)
            ref = torch.block_diag(n * eye, (xc * xc).sum() * eye - xc.T @ xc)
        else:
            a = _axis(group)
            perp = xs - (xs @ a)[:, None] * a
            ref = (perp * perp).sum().reshape(1, 1)
        torch.testing.assert_close(group.gram(x, b)[m], ref, rtol=1e-13, atol=1e-11)
        u = killing_fields(name, group, xs).reshape(3 * n, -1)
        # same span and the same determinant as the Killing-field Gram matrix
        torch.testing.assert_close(
            torch.logdet(group.gram(xs)[0]), torch.logdet(u.T @ u), rtol=1e-12, atol=1e-12
        )


def test_generic_align_equals_closed_form_near_orbit(named_group):
    name, group = named_group
    x, b = random_flat_batch(SIZES, seed=22, offset=2.0)
    gen = torch.Generator().manual_seed(23)
    nb = len(SIZES)
    if name.startswith("SO2"):
        theta = 0.8 * torch.randn(nb, 1, dtype=DT, generator=gen)
    else:
        theta = 0.5 * torch.randn(nb, group.dim, dtype=DT, generator=gen)
    y = group.act(x, theta, b) + 0.05 * torch.randn(x.shape, dtype=DT, generator=gen)
    torch.testing.assert_close(
        group.generic_align(x, y, b), group.align(x, y, b), rtol=0, atol=1e-9
    )


def test_act_is_a_retraction(named_group):
    """d/de act(x, e e_j) at e = 0 equals the j-th generator."""
    _, group = named_group
    x, b = random_flat_batch(SIZES, seed=24, offset=2.0)
    eps = 1e-6
    for j in range(group.dim):
        theta = torch.zeros(len(SIZES), group.dim, dtype=DT)
        theta[:, j] = eps
        fd = (group.act(x, theta, b) - group.act(x, -theta, b)) / (2 * eps)
        torch.testing.assert_close(fd, group.generators(x, b)[..., j], rtol=0, atol=1e-8)


# ---------------------------------------------------------------------------- alignment
def _rotation_between(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The linear map R with y_n = R x_n (least squares), for one molecule."""
    return torch.linalg.lstsq(x, y).solution.T


def _scipy_rotation(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Proper rotation minimising sum |R x_n - y_n|^2 from scipy's SVD solver (independent)."""
    from scipy.spatial.transform import Rotation

    rot, _ = Rotation.align_vectors(y.numpy(), x.numpy())
    return torch.as_tensor(rot.as_matrix(), dtype=x.dtype)


@pytest.mark.parametrize("name", ["SO3", "SE3"])
@pytest.mark.parametrize("mirror", [False, True])
def test_align_is_a_proper_rotation_and_optimal(name, mirror):
    """Optimality of Kabsch, checked directly. With the aligned cloud x'_n = R x_n and the
    cross-covariance M = sum_n y_n x'_n^T, the objective sum y . exp([w]) x' has gradient
    sum_n x'_n x y_n (= 0: M symmetric, first order) and Hessian tr(M) I - sym(M) (PSD, second
    order: rules out the three other critical rotations); det R = +1; R equals scipy's fit."""
    group = get_group(name)
    x, b = random_flat_batch([8], seed=25)
    if name == "SO3":
        x = center(x, b)
    gen = torch.Generator().manual_seed(26)
    rot = random_rotations(1, DT, gen)[0]
    y = x @ rot.T + 0.1 * torch.randn(x.shape, dtype=DT, generator=gen)
    if mirror:  # best orthogonal map is now a reflection
        y = y * torch.tensor([1.0, 1.0, -1.0], dtype=DT)
    if name == "SE3":
        y = y + torch.tensor([1.0, -2.0, 0.5], dtype=DT)
    out = group.align(x, y)
    xc, oc = x - x.mean(0), out - out.mean(0)
    r = _rotation_between(xc, oc)
    torch.testing.assert_close(r @ r.T, torch.eye(3, dtype=DT), rtol=0, atol=1e-10)
    assert abs(torch.linalg.det(r).item() - 1.0) < 1e-10
    if name == "SE3":
        torch.testing.assert_close(out.mean(0), y.mean(0), rtol=0, atol=1e-12)
    yc = y - y.mean(0) if name == "SE3" else y  # SO3 rotates about the origin
    xs = xc if name == "SE3" else x
    aligned = xs @ r.T
    torque = torch.cross(aligned, yc, dim=-1).sum(0)
    assert torque.abs().max() < 1e-10 * (1 + yc.abs().max() ** 2)
    m = yc.T @ aligned
    hessian = m.trace() * torch.eye(3, dtype=DT) - 0.5 * (m + m.T)
    assert torch.linalg.eigvalsh(hessian).min() > -1e-10
    torch.testing.assert_close(r, _scipy_rotation(xs, yc), rtol=0, atol=1e-9)
    if mirror:  # the reflection would have done better than any rotation
        refl = (x @ rot.T) * torch.tensor([1.0, 1.0, -1.0], dtype=DT)
        if name == "SE3":
            refl = refl - refl.mean(0) + y.mean(0)
        assert ((refl - y) ** 2).sum() < ((out - y) ** 2).sum()


@pytest.mark.parametrize("name", ["SO2z", "SO2tilt"])
def test_so2_align_is_optimal(name):
    group = GROUPS[name]()
    x, b = random_flat_batch([9], seed=27, offset=1.0)
    gen = torch.Generator().manual_seed(28)
    y = x + 0.8 * torch.randn(x.shape, dtype=DT, generator=gen)
    out = group.align(x, y)
    best = ((out - y) ** 2).sum()
    angles = torch.linspace(0, 2 * torch.pi, 2001, dtype=DT)[:, None] * _axis(group)
    trial = ((torch.einsum("rij,nj->rni", axis_angle_to_matrix(angles), x) - y) ** 2).sum((1, 2))
    assert best <= trial.min() + 1e-10
    # the result lies on the orbit: same axial components and distances to the axis
    a = _axis(group)
    torch.testing.assert_close(out @ a, x @ a, rtol=0, atol=1e-12)
    torch.testing.assert_close(out.norm(dim=-1), x.norm(dim=-1), rtol=0, atol=1e-12)


def test_align_is_equivariant(named_group):
    """align(x, g y) = g align(x, y), molecule by molecule in a flat batch."""
    name, group = named_group
    x, b = random_flat_batch(SIZES, seed=29, offset=0.0 if name == "SO3" else 2.0)
    if name == "SO3":
        x = center(x, b)
    gen = torch.Generator().manual_seed(30)
    y = x + 0.7 * torch.randn(x.shape, dtype=DT, generator=gen)
    rot, t = random_element(name, group, len(SIZES), seed=31)
    lhs = group.align(x, apply(rot, t, y, b), b)
    rhs = apply(rot, t, group.align(x, y, b), b)
    torch.testing.assert_close(lhs, rhs, rtol=0, atol=1e-10)


def test_align_result_lies_on_orbit_of_x(named_group):
    """The aligned cloud has the same invariants as x (pairwise distances; centroid for SO3)."""
    name, group = named_group
    x, b = random_flat_batch(SIZES, seed=32, offset=2.0)
    y = x + torch.randn(x.shape, dtype=DT, generator=torch.Generator().manual_seed(33))
    out = group.align(x, y, b)
    for m in range(len(SIZES)):
        sel = b == m
        torch.testing.assert_close(
            torch.cdist(out[sel], out[sel]), torch.cdist(x[sel], x[sel]), rtol=0, atol=1e-11
        )
    if name.startswith(("SO3", "SO2")):  # rotations about the origin keep |x|^2
        torch.testing.assert_close(per_mol_dot(out, out, b), per_mol_dot(x, x, b))


# ---------------------------------------------------------------------------- translations
WITH_TRANSLATIONS = {"T3", "SE3"}  # the groups that contain the translations of R^3


def test_remove_translations_centres_exactly_the_groups_with_translations(named_group):
    """With translations: x_n minus its molecule's mean (built here molecule by molecule);
    without: x unchanged. Horizontal vectors already lie in the subspace it keeps."""
    name, group = named_group
    assert group.has_translations == (name in WITH_TRANSLATIONS)
    x, b = random_flat_batch(SIZES, seed=40, offset=2.0)
    out = group.remove_translations(x, b)
    if group.has_translations:
        ref = torch.cat([x[b == m] - x[b == m].mean(0) for m in range(len(SIZES))])
        torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
    else:
        assert torch.equal(out, x)
    pv = group.project(torch.randn(x.shape, dtype=DT, generator=torch.Generator().manual_seed(41)),
                       x, b)
    torch.testing.assert_close(group.remove_translations(pv, b), pv, rtol=0, atol=1e-12)


def test_augment_moves_along_the_orbit_with_the_haar_average(named_group):
    """augment(x) lies on the orbit of x (its alignment onto itself is exact), and its mean over
    many draws is the Haar average E[g] x: 0 for SO(3) and SE(3), the axial part (a . x) a for
    SO(2), x itself for T3 (no rotations)."""
    name, group = named_group
    copies, n = 4000, 5
    cloud, _ = random_flat_batch([n], seed=42)
    cloud = group.remove_translations(cloud)  # SE(3) augments centred clouds
    x = cloud.repeat(copies, 1)
    b = torch.arange(copies).repeat_interleave(n)
    out = group.augment(x, b, torch.Generator().manual_seed(43))
    torch.testing.assert_close(group.align(x, out, b), out, rtol=0, atol=1e-10)
    if name == "T3":
        expected = cloud
    elif name.startswith("SO2"):
        a = _axis(group)
        expected = (cloud @ a).unsqueeze(-1) * a
    else:
        expected = torch.zeros_like(cloud)
    mean = out.view(copies, n, 3).mean(0)
    bound = 5 * cloud.norm(dim=-1).max() / copies**0.5  # 5 standard errors or more
    assert (mean - expected).abs().max() < bound


# ---------------------------------------------------------------------------- registry
def test_get_group_and_errors():
    assert isinstance(get_group("se3"), SE3)
    assert isinstance(get_group("T3"), Translation)
    assert isinstance(get_group("SO2"), SO2)
    with pytest.raises(ValueError):
        get_group("SU2")
    with pytest.raises(ValueError):
        SO2(axis=(0.0, 0.0, 0.0))
    x = torch.zeros(4, 3, dtype=DT)
    with pytest.raises(ValueError):
        SO3().project(x, x, torch.zeros(3, dtype=torch.long))


# ---------------------------------------------------------------------------- property-based
@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    sizes=st.lists(st.integers(min_value=3, max_value=12), min_size=1, max_size=6),
    seed=st.integers(min_value=0, max_value=2**31 - 1),
    scale=st.floats(min_value=0.05, max_value=20.0),
    name=st.sampled_from(list(GROUPS)),
)
def test_projection_properties_hold_for_any_batch(sizes, seed, scale, name):
    """Idempotent, kills the generators, curvature horizontal, for any sizes and length scale."""
    group = GROUPS[name]()
    x, b = random_flat_batch(sizes, seed=seed, scale=scale, offset=scale)
    gram = group.gram(x, b)
    lam_min = torch.linalg.eigvalsh(gram)[:, 0]
    assume(bool((lam_min > 2 * group.rel_tol * group.degeneracy_scale(gram, x, b)).all()))
    v = torch.randn(x.shape, dtype=DT, generator=torch.Generator().manual_seed(seed + 1))
    pv = group.project(v, x, b)
    tol = 1e-9 * (1 + v.abs().max())
    assert (group.project(pv, x, b) - pv).abs().max() < tol
    u = killing_fields(name, group, x)
    overlaps = scatter_sum(torch.einsum("nck,nc->nk", u, pv), b, len(sizes))
    assert overlaps.abs().max() < tol * (1 + x.abs().max())
    h = group.curvature(x, b)
    assert (group.project(h, x, b) - h).abs().max() < 1e-9 * (1 + h.abs().max())


def test_axis_angle_to_matrix_is_accurate_for_all_angles():
    """Regression: torch.linalg.matrix_exp lost ~2e-10 at small angles; Rodrigues must not."""
    angles = torch.tensor([0.0, 1e-9, 1e-5, 9.9e-3, 1.01e-2, 0.0463, 0.5, 3.0, 10.0], dtype=DT)
    rot = axis_angle_to_matrix(angles[:, None] * torch.tensor([0.0, 0.0, 1.0], dtype=DT))
    torch.testing.assert_close(rot[:, 0, 0], torch.cos(angles), rtol=0, atol=1e-15)
    torch.testing.assert_close(rot[:, 1, 0], torch.sin(angles), rtol=0, atol=1e-15)
    omega = torch.randn(100, 3, dtype=DT, generator=torch.Generator().manual_seed(34))
    omega = omega * torch.logspace(-8, 1, 100, dtype=DT)[:, None]
    rot = axis_angle_to_matrix(omega)
    eye = torch.eye(3, dtype=DT).expand(100, 3, 3)
    torch.testing.assert_close(rot @ rot.transpose(-1, -2), eye, rtol=0, atol=1e-14)
    # a batch gives the same matrices as one at a time, to a few ulps: differently batched
    # floating-point work need not agree bit for bit (other vectorised kernels, FMA)
    single = torch.stack([axis_angle_to_matrix(w) for w in omega])
    torch.testing.assert_close(rot, single, rtol=0, atol=1e-15)
