r"""Checks that a network on flat batches respects the symmetries it claims.

For a network ``net(pos, node_attr, batch, t, edge_index, edge_attr) -> (vec, feat)``:

* SE(3): with one rotation R_b and translation c_b per molecule b,
  net(R_b x + c_b) = (R_b vec, feat);
* permutations within molecules (edges relabelled accordingly): outputs permuted the same way;
* isolation: changing molecule 0 (its coordinates and features) leaves the outputs of every
  other molecule unchanged.

:func:`equivariance_errors` returns the largest absolute deviations; :func:`assert_equivariant`
raises ``AssertionError`` when one exceeds ``atol``. Use float64 to test to 1e-10.
"""

from __future__ import annotations

import torch

from ..groups import random_rotations

__all__ = ["equivariance_errors", "assert_equivariant", "permutation_within_molecules"]


def permutation_within_molecules(
    batch: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A random permutation ``perm`` that maps atoms only to atoms of the same molecule.

    ``batch[perm] == batch``; new atom a is old atom perm[a].
    """
    keys = batch.to(torch.float64) + 0.5 * torch.rand(
        batch.shape, generator=generator, dtype=torch.float64
    )
    return torch.argsort(keys)


def _max_err(a: torch.Tensor | None, b: torch.Tensor | None) -> float:
    if a is None or b is None:
        return 0.0
    return float((a - b).abs().max()) if a.numel() else 0.0


@torch.no_grad()
def equivariance_errors(
    net: torch.nn.Module,
    pos: torch.Tensor,
    node_attr: torch.Tensor,
    batch: torch.Tensor,
    t: torch.Tensor,
    edge_index: torch.Tensor | None = None,
    edge_attr: torch.Tensor | None = None,
    rotations: bool = True,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """Largest deviations from SE(3) equivariance ('vec_se3', 'feat_se3', only if
    ``rotations``), from permutation equivariance ('vec_perm', 'feat_perm') and from isolation
    of the molecules ('vec_isolation', 'feat_isolation')."""
    dtype = pos.dtype
    nb = int(batch.max()) + 1
    vec, feat = net(pos, node_attr, batch, t, edge_index, edge_attr)
    errors: dict[str, float] = {}

    if rotations:
        rot = random_rotations(nb, dtype, generator).to(pos.device)
        shift = torch.randn(nb, 3, dtype=dtype, generator=generator).to(pos.device)
        moved = torch.einsum("nij,nj->ni", rot[batch], pos) + shift[batch]
        vec_r, feat_r = net(moved, node_attr, batch, t, edge_index, edge_attr)
        errors["vec_se3"] = _max_err(vec_r, torch.einsum("nij,nj->ni", rot[batch], vec))
        errors["feat_se3"] = _max_err(feat_r, feat)

    perm = permutation_within_molecules(batch, generator).to(pos.device)
    edges_p = None
    if edge_index is not None:
        inverse = torch.empty_like(perm)
        inverse[perm] = torch.arange(perm.numel(), device=perm.device)
        edges_p = inverse[edge_index]
    vec_p, feat_p = net(pos[perm], node_attr[perm], batch, t, edges_p, edge_attr)
    errors["vec_perm"] = _max_err(vec_p, vec[perm])
    errors["feat_perm"] = _max_err(feat_p, None if feat is None else feat[perm])

    first = batch == 0
    pos_c = pos.clone()
    pos_c[first] = pos_c[first] + torch.randn(
        int(first.sum()), 3, dtype=dtype, generator=generator
    ).to(pos.device)
    attr_c = node_attr.clone()
    attr_c[first] = attr_c[first] + 1.0
    t_c = t.clone()
    t_c[0] = 1.0 - t_c[0]
    vec_c, feat_c = net(pos_c, attr_c, batch, t_c, edge_index, edge_attr)
    others = ~first
    errors["vec_isolation"] = _max_err(vec_c[others], vec[others])
    errors["feat_isolation"] = _max_err(
        None if feat_c is None else feat_c[others], None if feat is None else feat[others]
    )
    return errors


def assert_equivariant(
    net: torch.nn.Module,
    pos: torch.Tensor,
    node_attr: torch.Tensor,
    batch: torch.Tensor,
    t: torch.Tensor,
    edge_index: torch.Tensor | None = None,
    edge_attr: torch.Tensor | None = None,
    atol: float = 1e-10,
    rotations: bool = True,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """Raise ``AssertionError`` if any error of :func:`equivariance_errors` exceeds ``atol``
    (``rotations=False`` skips SE(3) for networks that are not equivariant); returns them."""
    errors = equivariance_errors(
        net, pos, node_attr, batch, t, edge_index, edge_attr, rotations, generator
    )
    bad = {k: v for k, v in errors.items() if not v <= atol}
    if bad:
        raise AssertionError(f"symmetry violated beyond atol={atol:g}: {bad}")
    return errors
