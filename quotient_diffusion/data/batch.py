"""Flat graph batches: atoms of all molecules concatenated, no padding.

A :class:`GraphBatch` holds

* ``pos``: (num_atoms, 3) coordinates;
* ``node_attr``: (num_atoms, F) invariant node features (one-hot atom types, residue index...);
* ``batch``: (num_atoms,) molecule index of each atom, sorted, in ``0..num_graphs-1``;
* ``edge_index``: optional (2, E) directed edges (source, target) in global atom numbering;
* ``edge_attr``: optional (E, F_e) edge features (bond types for graph-conditioned tasks);
* ``extras``: a dict of per-graph, per-node or per-edge tensors a task needs (for example
  ``num_nodes``). An extra whose name ends in ``_index`` holds atom numbers of its own
  molecule, like ``edge_index``: :func:`collate` adds the molecule's atom offset to it (for
  example ``chiral_index``, the stereo centres and their neighbours of
  :mod:`quotient_diffusion.nn.stereo`).

:meth:`GraphBatch.repeat` tiles a batch (every molecule several times, for several noise levels
per molecule in one training step) without a Python loop over molecules or atoms.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

__all__ = ["GraphBatch", "Graph", "collate", "INDEX_SUFFIX"]

#: extras whose name ends so hold atom numbers, offset by :func:`collate`
INDEX_SUFFIX = "_index"


@dataclass
class Graph:
    """One molecule: the per-molecule record that :func:`collate` concatenates."""

    pos: torch.Tensor
    node_attr: torch.Tensor
    edge_index: torch.Tensor | None = None
    edge_attr: torch.Tensor | None = None
    extras: dict = field(default_factory=dict)

    @property
    def num_nodes(self) -> int:
        return self.pos.shape[0]


@dataclass
class GraphBatch:
    pos: torch.Tensor
    node_attr: torch.Tensor
    batch: torch.Tensor
    num_graphs: int
    edge_index: torch.Tensor | None = None
    edge_attr: torch.Tensor | None = None
    extras: dict = field(default_factory=dict)

    @property
    def num_nodes_per_graph(self) -> torch.Tensor:
        return torch.bincount(self.batch, minlength=self.num_graphs)

    def repeat(self, copies: int) -> GraphBatch:
        """The batch tiled ``copies`` times: copy c of molecule g is molecule c * B + g (B =
        ``num_graphs``), its atoms are atoms c * N + i (N atoms in all), so ``batch`` stays
        sorted. Edges, and tensor extras (per atom, per molecule, per edge or per anything
        :func:`collate` concatenates) are tiled along dim 0; ``*_index`` extras and
        ``edge_index`` get each copy's atom offset; list extras are repeated."""
        if copies < 1:
            raise ValueError(f"copies must be at least 1, got {copies}")
        if copies == 1:
            return self
        n, device = self.pos.shape[0], self.batch.device
        copy = torch.arange(copies, device=device)

        def tile(t: torch.Tensor) -> torch.Tensor:
            return t.repeat(copies, *([1] * (t.dim() - 1)))

        def shifted(t: torch.Tensor, dim: int) -> torch.Tensor:
            """``t`` with copy c's atom offset c * n added, copies stacked along ``dim``."""
            shape = [1] * (t.dim() + 1)
            shape[dim] = copies
            return (t.unsqueeze(dim) + (copy * n).view(shape)).flatten(dim, dim + 1)

        extras = {}
        for key, value in self.extras.items():
            if not torch.is_tensor(value):
                extras[key] = list(value) * copies
            elif key.endswith(INDEX_SUFFIX):
                extras[key] = shifted(value, 0)
            else:
                extras[key] = tile(value)
        return GraphBatch(
            pos=tile(self.pos),
            node_attr=tile(self.node_attr),
            batch=(self.batch.unsqueeze(0) + (copy * self.num_graphs)[:, None]).reshape(-1),
            num_graphs=self.num_graphs * copies,
            edge_index=None if self.edge_index is None else shifted(self.edge_index, 1),
            edge_attr=None if self.edge_attr is None else tile(self.edge_attr),
            extras=extras,
        )

    def to(self, device=None, dtype=None) -> GraphBatch:
        """Move to a device; ``dtype`` casts the floating tensors (positions, features)."""

        def move(t):
            if t is None:
                return None
            if dtype is not None and t.is_floating_point():
                return t.to(device=device, dtype=dtype)
            return t.to(device=device)

        return GraphBatch(
            pos=move(self.pos),
            node_attr=move(self.node_attr),
            batch=move(self.batch),
            num_graphs=self.num_graphs,
            edge_index=move(self.edge_index),
            edge_attr=move(self.edge_attr),
            extras={k: move(v) if torch.is_tensor(v) else v for k, v in self.extras.items()},
        )


def collate(graphs: Sequence[Graph]) -> GraphBatch:
    """Concatenate molecules into one flat batch (edge indices are offset per molecule).

    Tensor extras are concatenated along dim 0 when every graph has them; others become lists.
    Tensor extras named ``*_index`` (atom numbers) get each molecule's atom offset added.
    """
    if not graphs:
        raise ValueError("cannot collate an empty list of graphs")
    sizes = torch.tensor([g.num_nodes for g in graphs])
    offsets = torch.cumsum(sizes, 0) - sizes
    batch = torch.repeat_interleave(torch.arange(len(graphs)), sizes)
    has_edges = graphs[0].edge_index is not None
    edge_index = edge_attr = None
    if has_edges:
        edge_index = torch.cat([g.edge_index + o for g, o in zip(graphs, offsets.tolist())], 1)
        if graphs[0].edge_attr is not None:
            edge_attr = torch.cat([g.edge_attr for g in graphs], 0)
    extras = {}
    for key in graphs[0].extras:
        values = [g.extras[key] for g in graphs]
        if all(torch.is_tensor(v) for v in values):
            if key.endswith(INDEX_SUFFIX):
                values = [v + o for v, o in zip(values, offsets.tolist())]
            extras[key] = torch.cat([v.reshape(1) if v.dim() == 0 else v for v in values], 0)
        else:
            extras[key] = values
    return GraphBatch(
        pos=torch.cat([g.pos for g in graphs], 0),
        node_attr=torch.cat([g.node_attr for g in graphs], 0),
        batch=batch,
        num_graphs=len(graphs),
        edge_index=edge_index,
        edge_attr=edge_attr,
        extras=extras,
    )
