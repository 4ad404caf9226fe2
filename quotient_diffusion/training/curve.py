"""Learning curves: the validation records of a run (across all its sessions), as JSON and a plot.

A record is ``{"step", "hours", "val_loss", "val_mse_t0.50", ..., <task quality metrics>}``
(``hours``: training wall time summed over sessions). The curve lives inside the checkpoint, so
a resumed run continues it; :func:`write_curve` renders it to ``curve.json`` and ``curve.png``.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..output import atomic_write_figure, atomic_write_text

__all__ = ["write_curve", "plot_curve"]


def plot_curve(records: list[dict], path: Path, title: str) -> None:
    """One panel per metric against the step (log-scale y for losses and errors)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in records[0] if k not in ("step", "hours")]
    cols = min(3, len(keys))
    rows = -(-len(keys) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3 * rows), squeeze=False)
    steps = [r["step"] for r in records]
    for ax, key in zip(axes.flat, keys):
        values = [r.get(key) for r in records]
        ax.plot(steps, values, marker="o", ms=3)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("step")
        if ("loss" in key or "mse" in key or "rmsd" in key or "mae" in key) and all(
            v is not None and v > 0 for v in values
        ):
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    atomic_write_figure(path, fig, dpi=100)
    plt.close(fig)


def write_curve(records: list[dict], out_dir: str | Path, title: str) -> None:
    """``curve.json`` and ``curve.png`` in ``out_dir`` (nothing when there are no records)."""
    if not records:
        return
    out = Path(out_dir)
    atomic_write_text(out / "curve.json", json.dumps(records, indent=1) + "\n")
    plot_curve(records, out / "curve.png", title)
