"""Synthetic molecule-like sets, and a vectorised check of their constraints.

Each set is a small "molecule": ``n ~ U{min_size..max_size}`` points in the box ``[0, box]^3``,
each with a valency ``v in {1, 2, 3, 4}`` drawn i.i.d. from ``valency_probs`` (default
``(0.4, 0.15, 0.15, 0.3)``, like H, O, N, C). The points are grown as a tree: the first lies
uniformly in the box; every next one links to a random earlier point that still has a free
valency (fewer links than its valency), at distance ``U[min_dist, link_dist]`` in a uniformly
random direction, and is kept only if it lies in the box at distance ``>= min_dist`` from every
point (64 proposals per link). A set whose growth gets stuck is drawn again from scratch, which
favours high valencies: the valency histogram of the data (reported by the benchmark) is
therefore not exactly ``valency_probs``.

Constraints that every set satisfies: all points in the box, all pairwise distances
``>= min_dist = 1``, every point (of a set of at least two) has a neighbour within
``link_dist = 2``, valencies in ``1..4`` and no point has more tree links than its valency.
Features are the one-hot valency (4 channels).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from .dataset import SetDataset
from .padding import to_padded

__all__ = ["SyntheticConfig", "generate_synthetic", "constraint_violations"]


@dataclass(frozen=True)
class SyntheticConfig:
    min_size: int = 6
    max_size: int = 20
    box: float = 5.0
    min_dist: float = 1.0
    link_dist: float = 2.0
    valency_probs: tuple[float, ...] = (0.4, 0.15, 0.15, 0.3)
    proposals: int = 64

    def to_dict(self) -> dict:
        return asdict(self)


def _grow(rng: np.random.Generator, cfg: SyntheticConfig) -> tuple[np.ndarray, np.ndarray] | None:
    """One tree-grown set ``(pos (n, 3), valency (n,))``, or None when the growth got stuck."""
    n = int(rng.integers(cfg.min_size, cfg.max_size + 1))
    valency = rng.choice(np.arange(1, len(cfg.valency_probs) + 1), size=n, p=cfg.valency_probs)
    pos = np.empty((n, 3))
    pos[0] = rng.uniform(0, cfg.box, 3)
    links = np.zeros(n, dtype=int)
    for i in range(1, n):
        free = np.flatnonzero(links[:i] < valency[:i])
        if free.size == 0:
            return None
        parent = rng.choice(free)
        direction = rng.normal(size=(cfg.proposals, 3))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        radius = rng.uniform(cfg.min_dist, cfg.link_dist, (cfg.proposals, 1))
        cand = pos[parent] + radius * direction
        dist = np.linalg.norm(cand[:, None, :] - pos[None, :i, :], axis=-1).min(1)
        ok = np.flatnonzero(((cand >= 0) & (cand <= cfg.box)).all(1) & (dist >= cfg.min_dist))
        if ok.size == 0:
            return None
        pos[i] = cand[ok[0]]
        links[parent] += 1
        links[i] = 1
    return pos, valency


def generate_synthetic(
    num_sets: int, seed: int = 0, cfg: SyntheticConfig | None = None
) -> SetDataset:
    """``num_sets`` molecule-like sets (positions and one-hot valencies), reproducible by seed."""
    cfg = cfg or SyntheticConfig()
    rng = np.random.default_rng(seed)
    sets: list[tuple[np.ndarray, np.ndarray]] = []
    while len(sets) < num_sets:
        grown = _grow(rng, cfg)
        if grown is not None:
            sets.append(grown)
    pos = torch.as_tensor(np.concatenate([p for p, _ in sets]), dtype=torch.float32)
    val = torch.as_tensor(np.concatenate([v for _, v in sets]), dtype=torch.long)
    feat = torch.nn.functional.one_hot(val - 1, len(cfg.valency_probs)).float()
    sizes = torch.tensor([len(v) for _, v in sets], dtype=torch.long)
    return SetDataset(pos, feat, sizes, None, {"name": "synthetic", "config": cfg.to_dict()})


def constraint_violations(
    pos: torch.Tensor, batch: torch.Tensor, num_sets: int, cfg: SyntheticConfig | None = None
) -> dict[str, torch.Tensor]:
    """Per-set counts ``(num_sets,)`` of broken constraints, for a flat batch of positions.

    ``close_pairs``: unordered pairs closer than ``min_dist``; ``isolated``: points (of sets of
    two or more) with no other point within ``link_dist``; ``outside``: points out of the box.
    Also ``degree``: per point, the number of other points within ``link_dist`` (flat, ``(N,)``).
    """
    cfg = cfg or SyntheticConfig()
    x, mask = to_padded(pos, batch, num_sets)
    d = torch.cdist(x, x)
    pair = mask[:, :, None] & mask[:, None, :]
    pair &= ~torch.eye(x.shape[1], dtype=torch.bool, device=x.device)
    close = ((d < cfg.min_dist) & pair).sum((1, 2)) // 2
    near = (d <= cfg.link_dist) & pair
    degree = near.sum(2)
    multi = mask.sum(1, keepdim=True) > 1
    isolated = ((degree == 0) & mask & multi).sum(1)
    outside = (((x < 0) | (x > cfg.box)).any(-1) & mask).sum(1)
    return {"close_pairs": close, "isolated": isolated, "outside": outside, "degree": degree[mask]}
