"""Scores of generated or reconstructed sets.

* ``reconstruction_chamfer``: mean Chamfer distance (positions only) between sets and their
  reconstructions.
* ``synthetic_scores``: for sets sampled from a model trained on the synthetic molecule-like data,
  the 1-Wasserstein distances ``W1(P, Q) = int |F_P - F_Q|`` between generated and data
  histograms of valencies (argmax type), of set sizes and of degrees (neighbours within
  ``link_dist``); the constraint violations of :func:`.synthetic.constraint_violations` (share of
  valid sets, close pairs per set, isolated and out-of-box points per point); and diversity, the
  mean Chamfer distance between random pairs of generated sets divided by the same quantity for
  data sets (1 = as diverse as the data, 0 = one set repeated).
"""

from __future__ import annotations

import torch
from scipy.stats import wasserstein_distance

from ..data import GraphBatch
from .dataset import SetDataset
from .matching import chamfer
from .padding import from_padded, sizes_to_batch, to_padded
from .synthetic import SyntheticConfig, constraint_violations

__all__ = ["reconstruction_chamfer", "pair_diversity", "synthetic_scores"]


def reconstruction_chamfer(
    recon: torch.Tensor, mask: torch.Tensor, data: GraphBatch, pos_dim: int
) -> torch.Tensor:
    """Per-set Chamfer distance ``(B,)`` between padded reconstructions and the flat batch."""
    target, _ = to_padded(data.pos, data.batch, data.num_graphs, recon.shape[1])
    return chamfer(recon[..., :pos_dim], mask, target, mask)


def pair_diversity(pos: torch.Tensor, mask: torch.Tensor, generator: torch.Generator) -> float:
    """Mean Chamfer distance between each padded set and a random other one."""
    b = pos.shape[0]
    other = (torch.arange(b) + torch.randint(1, b, (b,), generator=generator)) % b
    return float(chamfer(pos, mask, pos[other], mask[other]).mean())


def synthetic_scores(
    rows: torch.Tensor,
    mask: torch.Tensor,
    data: SetDataset,
    cfg: SyntheticConfig,
    seed: int = 0,
) -> dict[str, float]:
    """Scores of padded generated rows ``[pos (3), type probabilities]`` against ``data``."""
    gen = torch.Generator().manual_seed(seed)
    sizes = mask.sum(1)
    pos, batch = from_padded(rows[..., :3], mask), sizes_to_batch(sizes)
    valency = from_padded(rows[..., 3:], mask).argmax(-1) + 1
    checks = constraint_violations(pos, batch, len(sizes), cfg)
    data_batch = sizes_to_batch(data.sizes)
    data_checks = constraint_violations(data.pos, data_batch, len(data), cfg)
    valid = (checks["close_pairs"] + checks["isolated"] + checks["outside"]) == 0
    data_pos, data_mask = to_padded(data.pos, data_batch, len(data))

    def w1(a: torch.Tensor, b: torch.Tensor) -> float:
        return float(wasserstein_distance(a.float().numpy(), b.float().numpy()))

    return {
        "valency_w1": w1(valency, data.feat.argmax(-1) + 1),
        "size_w1": w1(sizes, data.sizes),
        "degree_w1": w1(checks["degree"], data_checks["degree"]),
        "valid_sets": float(valid.float().mean()),
        "close_pairs_per_set": float(checks["close_pairs"].float().mean()),
        "isolated_per_point": float(checks["isolated"].sum() / sizes.sum()),
        "outside_per_point": float(checks["outside"].sum() / sizes.sum()),
        "diversity": pair_diversity(rows[..., :3], mask, gen)
        / pair_diversity(data_pos, data_mask, gen),
    }
