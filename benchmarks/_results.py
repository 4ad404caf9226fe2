"""What the benchmark scripts share: writing their results (JSON, Markdown, plots) and the few
facts about the run that every results file records.

Every file goes through :mod:`quotient_diffusion.output` (a hidden temporary file renamed over
the target), so an interrupted run leaves the previous results whole. The scripts are run as
``python benchmarks/NAME.py``, which puts this folder on ``sys.path``: they import this module
as ``from _results import ...`` (tests that import a script put the folder there first).
"""

from __future__ import annotations

import json
import platform
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from quotient_diffusion.output import atomic_write_figure, atomic_write_text

__all__ = ["ROOT", "RESULTS", "write_json", "write_text", "write_results", "save_figure",
           "markdown_table", "mean_std", "machine", "utc_time", "local_time", "command"]

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def write_json(path: str | Path, payload, indent: int | None = 1) -> Path:
    """``payload`` as JSON (``indent``; None: one line) with a final newline, atomically."""
    path = Path(path)
    atomic_write_text(path, json.dumps(payload, indent=indent) + "\n")
    return path


def write_text(path: str | Path, text: str) -> Path:
    """``text`` (a Markdown table, a report) written as it is, atomically."""
    path = Path(path)
    atomic_write_text(path, text)
    return path


def write_results(out: str | Path, stem: str, payload, markdown: str,
                  indent: int | None = 1) -> tuple[Path, Path]:
    """The two files of a results set: ``out/stem.json`` (``payload``) and ``out/stem.md``."""
    out = Path(out)
    return write_json(out / f"{stem}.json", payload, indent), write_text(out / f"{stem}.md",
                                                                         markdown)


def save_figure(fig, path: str | Path, dpi: int = 110) -> Path:
    """Save a matplotlib figure atomically (format from the suffix) and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    atomic_write_figure(path, fig, dpi=dpi)
    plt.close(fig)
    return path


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]],
                   align: str = "") -> list[str]:
    """The lines of a Markdown table: the header, the rule (``---:`` under the columns whose
    letter in ``align`` is ``r``, ``---`` elsewhere) and one line per row of formatted cells."""
    rule = "".join("---:|" if a == "r" else "---|" for a in align.ljust(len(header), "l"))
    return ["| " + " | ".join(header) + " |", "|" + rule,
            *("| " + " | ".join(cells) + " |" for cells in rows)]


def mean_std(values: Iterable[float]) -> tuple[float, float]:
    """Mean and (population) standard deviation, as Python floats."""
    values = list(values)
    return float(np.mean(values)), float(np.std(values))


def machine() -> str:
    """The processor's name as Python sees it (the architecture where it says nothing)."""
    return platform.processor() or platform.machine()


def utc_time() -> str:
    """Now, to the minute, in UTC: ``2026-01-31 14:05 UTC``."""
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


def local_time() -> str:
    """Now, to the second, local time: ``2026-01-31 15:05:09``."""
    return time.strftime("%Y-%m-%d %H:%M:%S")


def command(script: str, argv: Sequence[str] | None = None) -> str:
    """The command line that reruns this benchmark: ``python benchmarks/<script's file name>``
    and ``argv`` (the process's own arguments when None)."""
    args = sys.argv[1:] if argv is None else list(argv)
    return " ".join(["python", f"benchmarks/{Path(script).name}", *args])
