"""Degenerate configurations: one atom, two atoms, collinear, nearly collinear and planar clouds.

Policy (docs/theory.md, "Degenerate configurations"): every inverse of the Gram matrix goes
through ``filtered_inverse``: eigenvalues lambda >= tau = rel_tol * scale are inverted exactly,
smaller ones are mapped to lambda / tau^2 (a linear fade to 0). Hence for SO(3)/SE(3), with
K the inertia tensor of the centred cloud and f the filtered inverse,

    <x, h(x)> = -sum_i lambda_i f(lambda_i) = -(number of eigenvalues above tau)
                                              - sum over the others of (lambda_i / tau)^2,

which is -3 for a free action, -2 for a collinear cloud (the orbit is a 2-sphere), between -3
and -2 for nearly collinear clouds, and 0 for a single atom.
"""

from __future__ import annotations

import pytest
import torch
from conftest import ase_positions, random_flat_batch

from quotient_diffusion.groups import (
    SE3,
    SO2,
    SO3,
    center,
    random_rotations,
)
from quotient_diffusion.scatter import scatter_sum

pytestmark = pytest.mark.usefixtures("single_thread")

LINEAR = ["CO2", "HCN", "C2H2"]
DTYPES = [torch.float32, torch.float64]
PERTURBATIONS = [1e-6, 1e-5, 1e-4, 1e-3, 1e-2]


def rigidly_moved(x: torch.Tensor, seed: int) -> torch.Tensor:
    """x rotated by a random rotation and shifted (no longer axis-aligned or centred)."""
    gen = torch.Generator().manual_seed(seed)
    rot = random_rotations(1, torch.float64, gen)[0].to(x.dtype)
    shift = torch.randn(3, dtype=torch.float64, generator=gen).to(x.dtype)
    return x @ rot.T + shift


def perturbed(x: torch.Tensor, size: float, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return x + size * torch.randn(x.shape, dtype=torch.float64, generator=gen).to(x.dtype)


def dense_matrix(fn, x: torch.Tensor) -> torch.Tensor:
    """The 3N x 3N matrix of the linear map v -> fn(v) (one molecule)."""
    n = x.numel()
    basis = torch.eye(n, dtype=x.dtype).reshape(n, *x.shape)
    return torch.stack([fn(e).reshape(-1) for e in basis], 1)


def finite(t: torch.Tensor) -> bool:
    return bool(torch.isfinite(t).all())


def inertia(xc: torch.Tensor) -> torch.Tensor:
    return (xc * xc).sum() * torch.eye(3, dtype=xc.dtype) - xc.T @ xc


# ---------------------------------------------------------------------------- finiteness
def degenerate_clouds(dtype: torch.dtype) -> dict[str, torch.Tensor]:
    clouds = {
        "one atom": torch.tensor([[0.3, -1.2, 2.0]], dtype=dtype),
        "one atom at origin": torch.zeros(1, 3, dtype=dtype),
        "two atoms": torch.tensor([[0.1, 0.2, 0.3], [1.0, -0.4, 1.1]], dtype=dtype),
        "coincident atoms": torch.ones(3, 3, dtype=dtype),
        "benzene": ase_positions("C6H6", dtype),
    }
    for i, name in enumerate(LINEAR):
        x = ase_positions(name, dtype)
        clouds[name] = x  # along z: SO(2) about z has G = 0 exactly
        clouds[name + " moved"] = rigidly_moved(x, seed=i)
        for j, size in enumerate(PERTURBATIONS):
            clouds[f"{name} +{size:g}"] = perturbed(rigidly_moved(x, seed=i), size, 10 * i + j)
    return clouds


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("group", [SE3(), SO3(), SO2()], ids=repr)
def test_never_nan_or_inf(group, dtype):
    gen = torch.Generator().manual_seed(0)
    for name, x in degenerate_clouds(dtype).items():
        v = torch.randn(x.shape, dtype=torch.float64, generator=gen).to(dtype)
        outs = {
            "project": group.project(v, x),
            "curvature": group.curvature(x),
            "generic_project": group.generic_project(v, x),
            "generic_curvature": group.generic_curvature(x),
            "align": group.align(x, x + 0.1 * v),
        }
        for key, out in outs.items():
            assert out.dtype == dtype
            assert finite(out), (name, key)


# ---------------------------------------------------------------------------- exact cases
@pytest.mark.parametrize("dtype", DTYPES)
def test_single_atom_has_no_shape(dtype):
    x = torch.tensor([[0.3, -1.2, 2.0]], dtype=dtype)
    v = torch.tensor([[1.0, 2.0, 3.0]], dtype=dtype)
    assert SE3().project(v, x).abs().max() == 0
    assert SE3().curvature(x).abs().max() == 0


@pytest.mark.parametrize("dtype", DTYPES)
def test_two_atoms_keep_only_the_bond_stretch(dtype):
    x = torch.tensor([[0.1, 0.2, 0.3], [1.0, -0.4, 1.1]], dtype=torch.float64)
    group = SE3()
    p = dense_matrix(lambda v: group.project(v.to(dtype), x.to(dtype)).double(), x)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    e = (x[1] - x[0]) / (x[1] - x[0]).norm()
    stretch = torch.cat([-e, e]) / 2**0.5
    torch.testing.assert_close(p, torch.outer(stretch, stretch), rtol=0, atol=tol)
    h = group.curvature(x.to(dtype)).double()
    xc = center(x)
    torch.testing.assert_close(h, -2 * xc / (xc * xc).sum(), rtol=0, atol=tol)


@pytest.mark.parametrize("name", LINEAR)
@pytest.mark.parametrize("dtype", DTYPES)
def test_collinear_molecules(name, dtype):
    """<x, h> = -2, h = -2 x_c / |x_c|^2, P is the projection of rank 3N - 5."""
    group = SE3()
    x64 = rigidly_moved(ase_positions(name), seed=3)
    x = x64.to(dtype)
    # float32 coordinates of a rotated linear molecule are only collinear to ~1e-7 Angstrom
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    xc = center(x64)
    h = group.curvature(x).double()
    assert abs((xc * h).sum().item() + 2.0) < tol
    torch.testing.assert_close(h, -2 * xc / (xc * xc).sum(), rtol=0, atol=tol)
    p = dense_matrix(lambda v: group.project(v.to(dtype), x).double(), x64)
    torch.testing.assert_close(p @ p, p, rtol=0, atol=tol)
    torch.testing.assert_close(p, p.T, rtol=0, atol=tol)
    assert round(p.trace().item()) == 3 * x.shape[0] - 5
    # it kills the translations and the two real rotations (axes perpendicular to the molecule)
    axis = xc[0] - xc[1]
    axis = axis / axis.norm()
    w1 = torch.linalg.cross(axis, torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64))
    w1 = w1 / w1.norm()
    w2 = torch.linalg.cross(axis, w1)
    for w in (w1, w2):
        u = torch.linalg.cross(w.expand_as(xc), xc, dim=-1)
        assert group.project(u.to(dtype), x).abs().max() < tol
    for t in torch.eye(3, dtype=torch.float64):
        assert group.project(t.expand_as(x64).to(dtype), x).abs().max() < tol


@pytest.mark.parametrize("name", LINEAR)
def test_nearly_collinear_molecules(name):
    """Perturbed by 1e-6..1e-2 A: the two real rotations are still removed exactly, <x, h>
    follows the fade formula, and h tends continuously to its collinear value."""
    group = SE3()
    base = rigidly_moved(ase_positions(name), seed=4)
    h_line = group.curvature(base)
    for j, size in enumerate(PERTURBATIONS):
        x = perturbed(base, size, seed=j)
        xc = center(x)
        lam, vecs = torch.linalg.eigh(inertia(xc))
        tau = group.rel_tol * lam.sum()
        assert lam[0] < tau < lam[1]  # one near-degenerate direction: the molecular axis
        h = group.curvature(x)
        expected = -(2.0 + (lam[0] / tau) ** 2)
        assert abs((xc * h).sum().item() - expected.item()) < 1e-9
        p = group.project
        for k in (1, 2):  # rotations about the two large principal axes
            u = torch.linalg.cross(vecs[:, k].expand_as(xc), xc, dim=-1)
            assert p(u, x).abs().max() < 1e-10
            assert (p(p(u + x, x), x) - p(u + x, x)).abs().max() < 1e-10
        # continuity: the change from the collinear value is of the order of the perturbation
        assert (h - h_line).abs().max() < 50 * size


@pytest.mark.parametrize("dtype", DTYPES)
def test_planar_benzene_is_regular(dtype):
    """A planar cloud is not degenerate: K has eigenvalues (I, I, 2I); exact results."""
    x64 = rigidly_moved(ase_positions("C6H6"), seed=5)
    x = x64.to(dtype)
    xc = center(x64)
    k = inertia(xc)
    lam = torch.linalg.eigvalsh(k)
    torch.testing.assert_close(lam[2], lam[0] + lam[1], rtol=1e-12, atol=0)
    tol = 1e-4 if dtype == torch.float32 else 1e-11
    h = SE3().curvature(x).double()
    kinv = torch.linalg.inv(k)
    ref = xc @ (kinv - kinv.trace() * torch.eye(3, dtype=torch.float64))
    torch.testing.assert_close(h, ref, rtol=0, atol=tol)
    assert abs((xc * h).sum().item() + 3.0) < tol
    for w in torch.eye(3, dtype=torch.float64):
        u = torch.linalg.cross(w.expand_as(xc), xc, dim=-1)
        assert SE3().project(u.to(dtype), x).abs().max() < tol


# ---------------------------------------------------------------------------- mixed batches
def test_mixed_batch_leaves_normal_molecules_exact():
    gen = torch.Generator().manual_seed(6)
    normal, _ = random_flat_batch([7], seed=7)
    mols = [
        ("CO2", rigidly_moved(ase_positions("CO2"), 8), False),
        ("normal", normal, True),
        ("one atom", torch.tensor([[1.0, 2.0, 3.0]], dtype=torch.float64), False),
        ("benzene", rigidly_moved(ase_positions("C6H6"), 9), True),
        ("HCN near", perturbed(rigidly_moved(ase_positions("HCN"), 10), 1e-5, 11), False),
        ("two atoms", torch.tensor([[0.0, 0.0, 0.0], [0.0, 1.1, 0.0]], dtype=torch.float64), False),
        ("water", ase_positions("H2O"), True),
        ("C2H2", ase_positions("C2H2"), False),
    ]
    x = torch.cat([m[1] for m in mols])
    b = torch.cat([torch.full((m[1].shape[0],), i) for i, m in enumerate(mols)])
    v = torch.randn(x.shape, dtype=torch.float64, generator=gen)
    for group in (SE3(), SO3()):
        out_p, out_h = group.project(v, x, b), group.curvature(x, b)
        out32_p = group.project(v.float(), x.float(), b).double()
        out32_h = group.curvature(x.float(), b).double()
        assert finite(out_p) and finite(out_h) and finite(out32_p) and finite(out32_h)
        for i, (name, xs, regular) in enumerate(mols):
            sel = b == i
            # identical to the molecule on its own
            torch.testing.assert_close(out_p[sel], group.project(v[sel], xs), rtol=0, atol=1e-13)
            torch.testing.assert_close(out_h[sel], group.curvature(xs), rtol=0, atol=1e-13)
            if not regular:
                continue
            # and equal to the exact (unfiltered) formulas
            xr = center(xs) if isinstance(group, SE3) else xs
            vr = center(v[sel]) if isinstance(group, SE3) else v[sel]
            kinv = torch.linalg.inv(inertia(xr))
            w = kinv @ torch.linalg.cross(xr, vr, dim=-1).sum(0)
            ref_p = vr - torch.linalg.cross(w.expand_as(xr), xr, dim=-1)
            ref_h = xr @ (kinv - kinv.trace() * torch.eye(3, dtype=torch.float64))
            torch.testing.assert_close(out_p[sel], ref_p, rtol=0, atol=1e-11, msg=name)
            torch.testing.assert_close(out_h[sel], ref_h, rtol=0, atol=1e-11, msg=name)
            torch.testing.assert_close(out32_p[sel], ref_p, rtol=1e-4, atol=1e-4, msg=name)
            torch.testing.assert_close(out32_h[sel], ref_h, rtol=1e-4, atol=1e-4, msg=name)


def test_generic_path_follows_the_same_policy():
    """Generic (Gram + autograd) and closed forms agree on degenerate molecules too."""
    gen = torch.Generator().manual_seed(12)
    for group in (SE3(), SO3(), SO2()):
        for name, x in degenerate_clouds(torch.float64).items():
            v = torch.randn(x.shape, dtype=torch.float64, generator=gen)
            torch.testing.assert_close(
                group.generic_project(v, x), group.project(v, x), rtol=0, atol=1e-9, msg=name
            )
            torch.testing.assert_close(
                group.generic_curvature(x), group.curvature(x), rtol=0, atol=1e-9, msg=name
            )


# ---------------------------------------------------------------------------- sampling
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dt", [1e-3, 1e-2])
def test_random_walk_from_co2_stays_finite(dtype, dt):
    """The quotient SDE's moves (projected noise, -(sigma^2/2) h drift) started exactly at
    the linear CO2 geometry (many copies in one batch) never produce NaN/inf and stay bounded."""
    copies, steps, sigma = 64, 300, 0.5
    group = SE3()
    x0 = ase_positions("CO2", dtype)
    n = x0.shape[0]
    b = torch.arange(copies).repeat_interleave(n)
    x = x0.repeat(copies, 1)
    gen = torch.Generator().manual_seed(13)
    for _ in range(steps):
        z = torch.randn(x.shape, dtype=torch.float64, generator=gen).to(dtype)
        x = (
            x
            - 0.5 * sigma**2 * group.curvature(x, b) * dt
            + sigma * dt**0.5 * group.project(z, x, b)
        )
        assert finite(x)
    assert x.abs().max() < 20.0
    # the walk leaves the collinear set: the molecules bend
    lam = torch.linalg.eigvalsh(
        scatter_sum(
            (center(x, b) ** 2).sum(-1)[:, None, None] * torch.eye(3, dtype=dtype)
            - center(x, b)[:, :, None] * center(x, b)[:, None, :],
            b,
            copies,
        )
    )
    assert (lam[:, 0] > group.rel_tol * lam.sum(-1)).float().mean() > 0.5


@pytest.mark.parametrize("name", LINEAR)
@pytest.mark.parametrize("size", [0.0, 1e-4, 1e-2])
def test_policy_is_equivariant(name, size):
    """The filter depends only on eigenvalues: rotated and shifted inputs give rotated outputs."""
    group = SE3()
    x = perturbed(ase_positions(name), size, seed=14)
    gen = torch.Generator().manual_seed(15)
    v = torch.randn(x.shape, dtype=torch.float64, generator=gen)
    rot = random_rotations(1, torch.float64, gen)[0]
    shift = torch.randn(3, dtype=torch.float64, generator=gen)
    gx = x @ rot.T + shift
    torch.testing.assert_close(
        group.project(v @ rot.T, gx), group.project(v, x) @ rot.T, rtol=0, atol=1e-10
    )
    torch.testing.assert_close(group.curvature(gx), group.curvature(x) @ rot.T, rtol=0, atol=1e-9)
