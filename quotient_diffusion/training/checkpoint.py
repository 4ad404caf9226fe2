"""Checkpoints: written atomically, read safely, resumed, exported.

:func:`save_checkpoint`, :func:`load_checkpoint` and :class:`CheckpointError` come from
:mod:`quotient_diffusion.tensor_files` (atomic writes; ``weights_only`` reads that refuse
anything but tensors and plain data, with a one-line error). :func:`restore_checkpoint` resumes
a run: it loads the saved states into the model, optimiser and EMA of every training loop of the
package; :func:`export_weights` writes a deployable copy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Protocol

from ..tensor_files import CheckpointError, load_checkpoint, save_checkpoint

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "restore_checkpoint",
           "export_weights"]


class Stateful(Protocol):
    """What a checkpoint restores: a module, an optimiser, an EMA."""

    def load_state_dict(self, state: dict) -> object: ...


def restore_checkpoint(path: str | Path, targets: Mapping[str, Stateful],
                       keys: Iterable[str] = ()) -> dict:
    """Resume from the checkpoint at ``path``: load its entry ``name`` into ``target`` for every
    item of ``targets``; returns the checkpoint, which must also hold every entry of ``keys``
    (:class:`CheckpointError` otherwise)."""
    state = load_checkpoint(path, (*targets, *keys))
    for name, target in targets.items():
        target.load_state_dict(state[name])
    return state


def export_weights(source: str | Path, target: str | Path) -> None:
    """Write a deployable copy of a training checkpoint: its config, step and EMA weights, and
    the run's record where it has one (``history``, ``curve``, ``elapsed_s``), without the
    optimiser state or the raw weights; ``quotient_diffusion.tasks.load_trained_model`` reads
    it."""
    keys = ("version", "config", "step", "ema")
    state = load_checkpoint(source, keys)
    record = ("history", "curve", "elapsed_s")
    save_checkpoint(target, {key: state[key] for key in (*keys, *record) if key in state})
