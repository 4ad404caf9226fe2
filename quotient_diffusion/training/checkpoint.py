"""Atomic checkpoints: a run killed at any moment resumes from the last complete file.

The file is written to ``<name>.tmp`` and moved over the old one with :func:`os.replace`
(atomic on POSIX), so a crash mid-write never corrupts the previous checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

__all__ = ["save_checkpoint", "load_checkpoint", "export_weights"]


def save_checkpoint(path: str | Path, state: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    with open(tmp, "rb") as fh:  # make sure the bytes are on disk before the rename
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    return torch.load(path, map_location="cpu", weights_only=False)


def export_weights(source: str | Path, target: str | Path) -> None:
    """Write a deployable copy of a training checkpoint: its config, step and EMA weights only
    (no optimiser state, no raw weights), which :func:`~.loop.load_trained_model` reads."""
    state = load_checkpoint(source)
    save_checkpoint(target, {key: state[key] for key in ("version", "config", "step", "ema")})
