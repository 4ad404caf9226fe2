"""Data sets as flat graph batches (no padding)."""

from .batch import Graph, GraphBatch, collate

__all__ = ["Graph", "GraphBatch", "collate"]
