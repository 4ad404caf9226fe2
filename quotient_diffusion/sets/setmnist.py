"""SetMNIST: each MNIST digit as the 2D set of its bright pixels.

Recipe (the DSPN / Top-n construction with a fixed threshold): pixel ``(row, col)`` of a 28 x 28
image with intensity ``> threshold`` (default 127 of 255) becomes the point
``(col / 27, (27 - row) / 27)`` in ``[0, 1]^2`` (x to the right, y up). No noise, no
subsampling; sets have 1 to a few hundred points (about 100 at the default threshold). Only the
first ``limit`` images of a split are read from the gzip stream.

The files are the original IDX files ``{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz`` under
``<data root>/mnist``; the data root is ``--data-dir``, else ``$QD_DATA``, else ``../shared/data``
next to the repository.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch

from ..data.paths import data_root
from .dataset import SetDataset

__all__ = ["read_idx", "load_setmnist", "images_to_sets"]

_PREFIX = {"train": "train", "test": "t10k"}


def read_idx(path: Path, limit: int | None = None) -> np.ndarray:
    """The first ``limit`` records of a gzipped IDX file (uint8), shaped by its header."""
    with gzip.open(path, "rb") as fh:
        header = fh.read(4)
        if header[:2] != b"\x00\x00" or header[2] != 0x08:
            raise ValueError(f"{path} is not an unsigned-byte IDX file")
        dims = [int.from_bytes(fh.read(4), "big") for _ in range(header[3])]
        count = dims[0] if limit is None else min(limit, dims[0])
        record = int(np.prod(dims[1:], dtype=np.int64)) if len(dims) > 1 else 1
        data = np.frombuffer(fh.read(count * record), dtype=np.uint8)
    return data.reshape([count] + dims[1:])


def images_to_sets(images: np.ndarray, threshold: int = 127) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat points ``(N, 2)`` and set sizes ``(K,)`` of ``K`` images ``(K, 28, 28)``."""
    k, row, col = np.nonzero(images > threshold)  # row-major: image after image
    side = images.shape[-1] - 1
    pos = np.stack([col / side, (side - row) / side], axis=1)
    sizes = np.bincount(k, minlength=images.shape[0])
    return torch.as_tensor(pos, dtype=torch.float32), torch.as_tensor(sizes, dtype=torch.long)


def load_setmnist(
    split: str = "train",
    limit: int | None = None,
    threshold: int = 127,
    data_dir: str | os.PathLike | None = None,
) -> SetDataset:
    """SetMNIST ``split`` ('train' or 't10k'/'test') as a :class:`SetDataset` with digit labels.

    Images with no pixel above the threshold (none at 127 in MNIST) are dropped.
    """
    prefix = _PREFIX.get(split, split)
    folder = data_root(data_dir, required="mnist") / "mnist"
    images = read_idx(folder / f"{prefix}-images-idx3-ubyte.gz", limit)
    labels = read_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", limit)
    pos, sizes = images_to_sets(images, threshold)
    keep = sizes > 0
    data = SetDataset(
        pos,
        torch.zeros(pos.shape[0], 0),
        sizes,
        torch.as_tensor(labels.astype(np.int64)),
        {"name": "setmnist", "split": split, "threshold": threshold},
    )
    return data if bool(keep.all()) else data.subset(torch.nonzero(keep).squeeze(1))
