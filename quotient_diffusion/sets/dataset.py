"""An in-memory collection of sets, served as flat batches (``GraphBatch``).

All sets share two flat tensors: ``pos (N, p)`` and ``feat (N, f)``; set ``k`` is rows
``offsets[k] : offsets[k] + sizes[k]``. Drawing a batch gathers its rows with one index
computation, not a loop over sets.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..data import GraphBatch
from .padding import sizes_to_batch, slot_index

__all__ = ["SetDataset"]


@dataclass
class SetDataset:
    pos: torch.Tensor
    feat: torch.Tensor
    sizes: torch.Tensor
    labels: torch.Tensor | None = None  # optional per-set label (the digit of SetMNIST)
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        if int(self.sizes.sum()) != self.pos.shape[0] or self.feat.shape[0] != self.pos.shape[0]:
            raise ValueError("sizes do not add up to the number of rows")
        self.offsets = torch.cumsum(self.sizes, 0) - self.sizes

    def __len__(self) -> int:
        return self.sizes.shape[0]

    @property
    def max_size(self) -> int:
        return int(self.sizes.max())

    def batch(self, index: torch.Tensor) -> GraphBatch:
        """The sets ``index`` (a 1D long tensor) as one flat batch, in that order."""
        sizes = self.sizes[index]
        batch = sizes_to_batch(sizes)
        rows = self.offsets[index][batch] + slot_index(batch, index.shape[0])
        return GraphBatch(
            pos=self.pos[rows], node_attr=self.feat[rows], batch=batch, num_graphs=len(index)
        )

    def subset(self, index: torch.Tensor) -> SetDataset:
        """A new data set holding the sets ``index``."""
        b = self.batch(index)
        labels = None if self.labels is None else self.labels[index]
        return SetDataset(b.pos, b.node_attr, self.sizes[index], labels, dict(self.info))
