"""Where data come from and where processed data go: one rule for every data set.

* Data root: the ``data_dir`` argument (``--data-dir``, ``task.data_dir``), else ``$QD_DATA``,
  else ``../shared/data`` beside the repository. The first of these that is set is used: an
  explicit path that lacks the data is an error naming it, never silently replaced.
* Cache: the ``cache`` argument, else ``$QD_CACHE``, else ``~/.cache/quotient_diffusion``.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["data_root", "cache_dir"]

_DEFAULT_ROOT = Path(__file__).resolve().parents[3] / "shared" / "data"


def data_root(data_dir: str | os.PathLike | None = None, required: str | None = None) -> Path:
    """The shared data root; ``required`` (a path relative to it) must exist there."""
    given = data_dir or os.environ.get("QD_DATA")
    source = "--data-dir" if data_dir else ("QD_DATA" if given else "the default")
    root = Path(given) if given else _DEFAULT_ROOT
    target = root / required if required else root
    if not target.exists():
        raise FileNotFoundError(
            f"data not found: {target} does not exist (root from {source}); pass --data-dir or "
            "set QD_DATA to the shared data root (the folder holding proteins/, geom_qm9/, mnist/)"
        )
    return root


def cache_dir(cache: str | os.PathLike | None = None) -> Path:
    """Folder for processed data sets (created if needed)."""
    default = Path.home() / ".cache" / "quotient_diffusion"
    path = Path(cache or os.environ.get("QD_CACHE") or default)
    path.mkdir(parents=True, exist_ok=True)
    return path
