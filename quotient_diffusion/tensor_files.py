"""Files of tensors and plain data (checkpoints, data caches): written atomically, read safely.

:func:`save_checkpoint` writes through :func:`quotient_diffusion.output.open_output` (a hidden
temporary file, fsync, rename), so a run killed at any moment keeps its previous file.
:func:`load_checkpoint` reads with ``torch.load(weights_only=True)``: tensors and plain data
(dicts, lists, numbers, strings) only, so a file can never run code when it is opened. Every way
a file can fail to be a checkpoint (missing, a folder, empty, text, random bytes, a truncated
archive, a pickle that would import a function, a missing entry) is one
:class:`CheckpointError` with a one-line message.

This sits below every package that reads such files (``data`` for its caches, ``training`` for
its checkpoints); :mod:`quotient_diffusion.training.checkpoint` adds resuming and exporting.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from collections.abc import Iterable
from pathlib import Path

import torch

from .errors import InputError
from .output import open_output

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint"]

_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")


class CheckpointError(InputError):
    """A file that cannot be read as a checkpoint; the message is one line."""


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Write ``state`` (tensors and plain data) to ``path`` atomically."""
    with open_output(path, "wb") as fh:
        torch.save(state, fh)


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__


def _read(path: Path) -> object:
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}")
    if not path.is_file():
        raise CheckpointError(f"{path} is not a file")
    try:
        if path.stat().st_size == 0:
            raise CheckpointError(f"{path} is empty")
        if not zipfile.is_zipfile(path):
            raise CheckpointError(f"{path} is not a PyTorch checkpoint (not a zip archive)")
        return torch.load(path, map_location="cpu", weights_only=True)
    except CheckpointError:
        raise
    except pickle.UnpicklingError as err:
        found = _GLOBAL.search(str(err))
        what = f"it would import {found.group(1)}" if found else _first_line(err)
        raise CheckpointError(
            f"refusing to load {path}: it holds more than tensors and plain data ({what})"
        ) from None
    except Exception as err:  # torch reports a damaged archive with many exception types
        raise CheckpointError(f"{path} is not a readable checkpoint ({_first_line(err)})") from None


def load_checkpoint(path: str | Path, keys: Iterable[str] = ()) -> dict:
    """The dict saved at ``path`` (on the CPU), which must hold every entry of ``keys``; raises
    :class:`CheckpointError` for anything else."""
    path = Path(path)
    state = _read(path)
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} holds a {type(state).__name__}, not a checkpoint dict")
    missing = [key for key in keys if key not in state]
    if missing:
        raise CheckpointError(f"{path} is not a complete checkpoint: no {', '.join(missing)}")
    return state
