r"""Protein backbone generation (C-alpha only), conditioned on chain length and residue index.

A chain of L residues is a graph whose nodes are its C-alphas (Angstrom; the model sees them
divided by ``coord_scale`` = 10 A, so per-coordinate spreads are O(1)).

* node features (``NODE_FEATURES`` = 18) of residue i (0-based) of a chain of length L:
  [sin(2 pi i / P_k), cos(2 pi i / P_k)]_{k=1..8} with periods P_k = 2^k, then i / (L - 1) and
  L / 100;
* the message graph is rebuilt from the current (noisy) coordinates at every call, by
  :class:`ChainGraphNetwork` around the chosen network: the union of the sequence window
  |i - j| <= w (w = ``window``, default 8) and the k nearest residues in space (``neighbours``,
  default 16; 0 = the full graph of each chain). Edge features (``EDGE_FEATURES`` = 19): the
  one-hot of the sequence offset j - i clipped to [-9, 9], so the network knows which residues
  are bonded and in which direction. Cost: about L (k + 2w) edges per chain instead of L^2.

Options (``task.options``): ``min_length`` / ``max_length`` (training chains kept, default
50 / 256), ``cache_dir`` (processed data), ``split_seed`` (family split, default 0),
``neighbours`` and ``window`` (the message graph).
Networks: any of :mod:`quotient_diffusion.nn` ('egnn', 'e3nn'; 'transformer' with
``model.augment_rotations = true``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..data import Graph
from ..data.proteins import ProteinChain, load_protein_splits
from .base import Task

__all__ = [
    "BackboneTask",
    "BackboneGraphs",
    "residue_features",
    "chain_edges",
    "offset_features",
    "backbone_graph",
    "ChainGraphNetwork",
    "NODE_FEATURES",
    "EDGE_FEATURES",
    "OFFSET_WINDOW",
]

PERIODS = 2.0 ** np.arange(1, 9)
NODE_FEATURES = 2 * len(PERIODS) + 2
OFFSET_WINDOW = 8
EDGE_FEATURES = 2 * OFFSET_WINDOW + 3  # offsets -9..9
COORD_SCALE = 10.0


def residue_features(length: int) -> torch.Tensor:
    """(L, NODE_FEATURES) sinusoidal residue index, relative position and chain length."""
    i = torch.arange(length, dtype=torch.float64)
    angles = 2 * np.pi * i[:, None] / torch.as_tensor(PERIODS)
    rel = i / max(length - 1, 1)
    size = torch.full((length,), length / 100.0, dtype=torch.float64)
    return torch.cat([angles.sin(), angles.cos(), rel[:, None], size[:, None]], -1).float()


def offset_features(edge_index: torch.Tensor) -> torch.Tensor:
    """One-hot (E, EDGE_FEATURES) of the sequence offset j - i of edges (source j, target i)
    inside contiguous chains of a flat batch (global index differences are sequence offsets)."""
    offset = (edge_index[0] - edge_index[1]).clamp(-OFFSET_WINDOW - 1, OFFSET_WINDOW + 1)
    return torch.nn.functional.one_hot(offset + OFFSET_WINDOW + 1, EDGE_FEATURES)


def chain_edges(
    pos: torch.Tensor, batch: torch.Tensor, neighbours: int, window: int
) -> torch.Tensor:
    """(2, E) edges (source, target), targets sorted: sequence window |i - j| <= ``window``
    union the ``neighbours`` nearest residues of the same chain (0: every residue)."""
    from ..nn import full_graph, knn_graph

    n = pos.shape[0]
    if neighbours <= 0:
        return full_graph(batch)
    spatial = knn_graph(pos, batch, neighbours)
    device = pos.device
    shifts = torch.cat([torch.arange(-window, 0, device=device),
                        torch.arange(1, window + 1, device=device)])
    target = torch.arange(n, device=device).repeat_interleave(len(shifts))
    source = target + shifts.repeat(n)
    inside = (source >= 0) & (source < n)
    target, source = target[inside], source[inside]
    same = batch[source] == batch[target]
    keys = torch.cat([spatial[1] * n + spatial[0], target[same] * n + source[same]])
    keys = torch.unique(keys)  # sorted: targets come out sorted
    return torch.stack([keys % n, torch.div(keys, n, rounding_mode="floor")])


def backbone_graph(ca: torch.Tensor | np.ndarray | None, length: int | None = None) -> Graph:
    """The graph of one chain: C-alpha positions (zeros when ``ca`` is None: a template of
    ``length`` residues to sample) and node features (the message graph is built later)."""
    pos = torch.zeros(length, 3) if ca is None else torch.as_tensor(ca, dtype=torch.float32)
    return Graph(pos=pos, node_attr=residue_features(pos.shape[0]))


class ChainGraphNetwork(torch.nn.Module):
    """A network of :mod:`quotient_diffusion.nn` on the backbone message graph: builds the
    edges and their offset features from the current coordinates, then calls ``network``.
    The graph is invariant under rotations, so equivariant networks stay equivariant."""

    def __init__(self, network: torch.nn.Module, neighbours: int = 16, window: int = 8):
        super().__init__()
        self.network, self.neighbours, self.window = network, neighbours, window

    def forward(self, pos, node_attr, batch, t, edge_index=None, edge_attr=None):
        with torch.no_grad():
            edge_index = chain_edges(pos, batch, self.neighbours, self.window)
            edge_attr = offset_features(edge_index).to(pos.dtype)
        return self.network(pos, node_attr, batch, t, edge_index, edge_attr)


class BackboneGraphs(Sequence):
    """Chains as graphs, built when indexed."""

    def __init__(self, chains: Sequence[ProteinChain]):
        self.chains = list(chains)

    def __len__(self) -> int:
        return len(self.chains)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return backbone_graph(self.chains[i].ca)


class BackboneTask(Task):
    """DB5.5 chains (family split) as C-alpha graphs; see the module docstring."""

    name = "backbones"
    OPTIONS = {"min_length": int, "max_length": int, "cache_dir": str | None, "split_seed": int,
               "neighbours": int, "window": int, "quality_chains": int}

    def _options(self) -> dict:
        o = self.config.task.options
        return {
            "min_length": o.get("min_length", 50),
            "max_length": o.get("max_length", 256),
            "cache_dir": o.get("cache_dir"),
            "split_seed": o.get("split_seed", 0),
            "neighbours": o.get("neighbours", 16),
            "window": o.get("window", 8),
        }

    def splits(self):
        """The processed chains (:class:`quotient_diffusion.data.proteins.ProteinSplits`)."""
        o = self._options()
        return load_protein_splits(self.config.task.data_dir, o["cache_dir"], o["split_seed"])

    def datasets(self) -> tuple[BackboneGraphs, BackboneGraphs]:
        o = self._options()
        splits = self.splits()

        def keep(chains):
            return [c for c in chains if o["min_length"] <= len(c) <= o["max_length"]]

        train = keep(splits.train)[: self.config.task.limit]
        return BackboneGraphs(train), BackboneGraphs(keep(splits.val))

    def coord_scale(self) -> float:
        return COORD_SCALE

    @torch.no_grad()
    def quality(self, model, graphs, seed: int = 0) -> dict:
        """Consecutive CA-CA distances of ``quality_chains`` sampled chains (default 4; ODE,
        100 steps) with the lengths of the first validation chains: fraction within 0.2 A of
        3.80 A, and their mean."""
        from ..diffusion import SamplerConfig
        from ..metrics.proteins import bond_statistics
        from ..proteins.generate import generate_backbones

        count = min(self.config.task.options.get("quality_chains", 4), len(graphs))
        lengths = [graphs[i].pos.shape[0] for i in range(count)]
        traces = generate_backbones(model, lengths, SamplerConfig(steps=100), seed)
        stats = bond_statistics(traces, tolerance=0.2)
        return {"val_ca_ca_within_0.2": stats["ca_ca_ideal_fraction"],
                "val_ca_ca_mean": stats["ca_ca_mean"]}

    def build_network(self) -> torch.nn.Module:
        from ..nn import get_network

        m, o = self.config.model, self._options()
        network = get_network(m.network, in_features=NODE_FEATURES, out_features=0,
                              hidden=m.hidden, layers=m.layers, edge_features=EDGE_FEATURES,
                              **m.network_options)
        return ChainGraphNetwork(network, o["neighbours"], o["window"])
