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

Options (``task.options``):

* ``min_length`` / ``max_length`` (default 50 / 256): chains shorter than ``min_length`` are
  left out; chains longer than ``max_length`` are left out too unless ``crop`` (default false)
  is true, in which case the model sees a contiguous window of ``max_length`` residues: a new
  random window each time the chain is drawn for a training step (drawn with the step's
  generator, :func:`~quotient_diffusion.training.trainable.draw_graphs`, so runs stay
  reproducible and resumable), the central window when indexed (validation, references). A
  window is conditioned as a chain of ``max_length`` residues (its ends are not termini);
  the processed split itself holds chains of 50-256 residues without chain breaks
  (:mod:`quotient_diffusion.data.proteins`), so ``max_length`` >= 256 crops nothing.
  :meth:`BackboneTask.data_summary` counts the chains and residues the model sees;
* ``noise_levels_per_chain`` K (default 1): every chain of a training batch is seen at K
  independent times, noises and rotations in one step (the model tiles the flat batch,
  :meth:`~quotient_diffusion.data.GraphBatch.repeat`);
* ``aux_loss`` (default null: none): local-geometry supervision of the denoiser output,
  :mod:`~.chain_geometry`: an object with the weights ``ca_ca`` (default 1.0), ``ca_i2``
  (0.0) and ``pairs`` (0.0), ``pair_cutoff`` (Angstrom, 8.0) and ``t_min`` (0.75: the loss
  acts for t >= t_min, t = 1 being the data), e.g. ``{"ca_ca": 1.0, "ca_i2": 0.5}``; the
  same for every treatment, weighted like the coordinate loss by w(t), logged as
  ``aux_loss`` and ``aux_<term>_mse`` (Angstrom^2) and validated as ``val_aux_loss``;
* ``cache_dir`` (processed data), ``split_seed`` (family split, default 0), ``neighbours``
  and ``window`` (the message graph), ``quality_chains`` (learning-curve samples).
Networks: any of :mod:`quotient_diffusion.nn` ('egnn', 'e3nn'; 'transformer' with
``model.augment_rotations = true``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data import Graph
from ..data.pdb import write_ca_pdb
from ..data.proteins import ProteinChain, load_protein_splits
from ..diffusion import SamplerConfig
from ..training.validation import ConfigError, check_options
from .base import Task
from .chain_geometry import AUX_DEFAULTS, AUX_OPTIONS, ChainGeometryLoss
from .sampling import generate_all

__all__ = [
    "BackboneTask",
    "BackboneOptions",
    "ChainGeometryLoss",
    "BackboneGraphs",
    "crop_start",
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


def crop_start(length: int, window: int, u: float | None = None) -> int:
    """First residue of a window of ``window`` residues in a chain of ``length``: the central
    window for ``u`` None, else floor(u * (length - window + 1)) for u in [0, 1) (uniform over
    every window position); 0 when the chain fits."""
    spare = length - window
    if spare <= 0:
        return 0
    if u is None:
        return spare // 2
    return min(int(u * (spare + 1)), spare)


class BackboneGraphs(Sequence):
    """Chains as graphs, built when indexed. With ``max_length``, a longer chain becomes a
    contiguous window of ``max_length`` residues: the central one when indexed, a random one
    (uniform over positions, from the generator) in :meth:`draw`."""

    def __init__(self, chains: Sequence[ProteinChain], max_length: int | None = None):
        self.chains = list(chains)
        self.max_length = max_length

    def __len__(self) -> int:
        return len(self.chains)

    def _graph(self, i: int, u: float | None = None) -> Graph:
        ca = self.chains[i].ca
        if self.max_length is not None and len(ca) > self.max_length:
            start = crop_start(len(ca), self.max_length, u)
            ca = ca[start : start + self.max_length]
        return backbone_graph(ca)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return self._graph(i)

    def draw(self, indices: Sequence[int], generator: torch.Generator | None = None) -> list[Graph]:
        """The graphs of ``indices`` for one training step, each chain longer than
        ``max_length`` cropped to a new random window. Draws one uniform number from
        ``generator`` per long chain and none otherwise (a set without long chains leaves the
        step's random stream as plain indexing does)."""
        long = [k for k, i in enumerate(indices) if self.max_length is not None
                and len(self.chains[i]) > self.max_length]
        u = torch.rand(len(long), dtype=torch.float64, generator=generator).tolist() if long else []
        draws = dict(zip(long, u))
        return [self._graph(i, draws.get(k)) for k, i in enumerate(indices)]


@dataclass(frozen=True)
class BackboneOptions:
    """The task options of the module docstring; ``aux_loss`` comes out with its defaults
    filled in."""

    min_length: int = 50
    max_length: int = 256
    cache_dir: str | None = None
    split_seed: int = 0
    neighbours: int = 16
    window: int = 8
    quality_chains: int = 4
    crop: bool = False
    noise_levels_per_chain: int = 1
    aux_loss: dict | None = None

    def __post_init__(self):
        if not 1 <= self.min_length <= self.max_length:
            raise ConfigError("task.options: need 1 <= min_length <= max_length, got "
                              f"{self.min_length} and {self.max_length}")
        if self.noise_levels_per_chain < 1:
            raise ConfigError("task.options.noise_levels_per_chain: must be at least 1, got "
                              f"{self.noise_levels_per_chain}")
        if self.aux_loss is None:
            return
        check_options("task.options.aux_loss", self.aux_loss, AUX_OPTIONS, "aux loss key(s):")
        aux = {**AUX_DEFAULTS, **self.aux_loss}
        for key in ("ca_ca", "ca_i2", "pairs"):
            if aux[key] < 0:
                raise ConfigError(f"task.options.aux_loss.{key}: must not be negative, "
                                  f"got {aux[key]}")
        if not 0 <= aux["t_min"] <= 1:
            raise ConfigError(f"task.options.aux_loss.t_min: must lie in [0, 1], got "
                              f"{aux['t_min']}")
        if aux["pair_cutoff"] <= 0:
            raise ConfigError("task.options.aux_loss.pair_cutoff: must be positive, got "
                              f"{aux['pair_cutoff']}")
        object.__setattr__(self, "aux_loss", aux)


class BackboneTask(Task):
    """DB5.5 chains (family split) as C-alpha graphs; see the module docstring.
    :meth:`prepare` takes chain lengths, records are centred (L, 3) traces in Angstrom, and
    :meth:`write` writes them as PDB files."""

    name = "backbones"
    Options = BackboneOptions
    bundled = "backbones.pt"

    def prepare(self, lengths: Sequence[int]) -> list[Graph]:
        if any(n < 2 for n in lengths):
            raise ValueError("chain lengths must be at least 2")
        return [backbone_graph(None, n) for n in lengths]

    def write(self, records: Sequence[tuple[str, np.ndarray]], path: str | Path) -> int:
        """``(name, trace)`` records as ``path/<name>.pdb`` (C-alpha ``ATOM`` records, glycine,
        chain A); ValueError for coordinates a PDB file cannot hold."""
        for name, trace in records:
            write_ca_pdb(Path(path) / f"{name}.pdb", trace)
        return len(records)

    def splits(self):
        """The processed chains (:class:`quotient_diffusion.data.proteins.ProteinSplits`)."""
        o = self.options
        return load_protein_splits(self.config.task.data_dir, o.cache_dir, o.split_seed)

    def _kept(self, chains: Sequence[ProteinChain]) -> list[ProteinChain]:
        """The chains the model sees: at least ``min_length`` residues, and at most
        ``max_length`` unless ``crop``."""
        o = self.options
        return [c for c in chains if o.min_length <= len(c)
                and (o.crop or len(c) <= o.max_length)]

    def datasets(self) -> tuple[BackboneGraphs, BackboneGraphs]:
        o = self.options
        splits = self.splits()
        window = o.max_length if o.crop else None
        train = self._kept(splits.train)[: self.config.task.limit]
        return BackboneGraphs(train, window), BackboneGraphs(self._kept(splits.val), window)

    def data_summary(self, splits=None) -> dict:
        """How many chains and residues the model sees under the config, per split ('train'
        with ``task.limit`` applied, 'val', 'test'): ``chains`` / ``residues`` in the split,
        ``kept_chains`` / ``kept_residues`` (every residue a kept chain can show, all windows
        together), ``cropped_chains``, ``dropped_short`` / ``dropped_long``, and
        ``window_residues`` (the residues of one draw of every kept chain: its length, or
        ``max_length`` when cropped); plus ``residues_per_step`` (batch size x noise levels x
        the mean window of the training chains) and the options that decide it."""
        o = self.options
        splits = splits if splits is not None else self.splits()
        m = o.max_length
        out: dict = {key: getattr(o, key) for key in ("min_length", "max_length", "crop",
                                             "noise_levels_per_chain")}
        for name in ("train", "val", "test"):
            chains = getattr(splits, name)
            lengths = np.array([len(c) for c in chains], dtype=int)
            kept = np.array([o.min_length <= n and (o.crop or n <= m) for n in lengths],
                            dtype=bool)
            if name == "train" and self.config.task.limit is not None:
                kept &= np.cumsum(kept) <= self.config.task.limit
            window = np.minimum(lengths[kept], m)
            out[name] = {
                "chains": len(chains), "residues": int(lengths.sum()),
                "kept_chains": int(kept.sum()), "kept_residues": int(lengths[kept].sum()),
                "cropped_chains": int((lengths[kept] > m).sum()),
                "dropped_short": int((lengths < o.min_length).sum()),
                "dropped_long": 0 if o.crop else int((lengths > m).sum()),
                "window_residues": int(window.sum()),
            }
        train = out["train"]
        mean_window = train["window_residues"] / max(train["kept_chains"], 1)
        out["residues_per_step"] = (self.config.optim.batch_size * o.noise_levels_per_chain
                                    * mean_window)
        return out

    def auxiliary_loss(self) -> ChainGeometryLoss | None:
        """The local-geometry loss of ``aux_loss`` (:mod:`~.chain_geometry`), or None."""
        aux = self.options.aux_loss
        return None if aux is None else ChainGeometryLoss(COORD_SCALE, **aux)

    def noise_levels(self) -> int:
        return self.options.noise_levels_per_chain

    def coord_scale(self) -> float:
        return COORD_SCALE

    @torch.no_grad()
    def quality(self, model, graphs, seed: int = 0) -> dict:
        """Consecutive CA-CA distances of ``quality_chains`` sampled chains (default 4; ODE,
        100 steps) with the lengths of the first validation chains: fraction within 0.2 A of
        3.80 A, and their mean."""
        from ..metrics.proteins import bond_statistics

        count = min(self.options.quality_chains, len(graphs))
        lengths = [graphs[i].pos.shape[0] for i in range(count)]
        traces = generate_all(self, model, lengths, SamplerConfig(steps=100), seed,
                              batch_size=16)
        stats = bond_statistics(traces, tolerance=0.2)
        return {"val_ca_ca_within_0.2": stats["ca_ca_ideal_fraction"],
                "val_ca_ca_mean": stats["ca_ca_mean"]}

    def build_network(self) -> torch.nn.Module:
        from ..nn import get_network

        m, o = self.config.model, self.options
        network = get_network(m.network, in_features=NODE_FEATURES, out_features=0,
                              hidden=m.hidden, layers=m.layers, edge_features=EDGE_FEATURES,
                              **m.network_options)
        return ChainGraphNetwork(network, o.neighbours, o.window)
