"""A snapshot of a training run's learning curve, for the pages that quote it.

``qdiff train`` appends a validation record to ``<out_dir>/curve.json`` every
``run.validate_every`` steps; run folders are not committed. This script copies the records of
one run, with its config, into ``benchmarks/results/run_curve_<name>.{json,md}``, so that a number
quoted from the curve traces to a committed file. It only reads the run folder, so it may be
called while the run is going on: the snapshot is then the curve up to its last validation.

    python benchmarks/run_curve.py --run training_runs/conformers_qm9

Reads no data and trains nothing: it takes well under a second, so it has no --quick mode.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
#: curve columns shown in the markdown table (all columns are kept in the JSON)
COLUMNS = (
    "step",
    "hours",
    "val_loss",
    "val_mse_t0.90",
    "val_mse_t0.97",
    "val_bond_mae",
    "val_bonds_within_0.1",
    "val_rmsd_heavy_median",
)


def snapshot(run: Path) -> dict:
    """The run's config and curve records, with the time the snapshot was taken."""
    return {
        "run": str(run),
        "taken": time.strftime("%Y-%m-%d %H:%M:%S"),
        "config": json.loads((run / "config.json").read_text()),
        "curve": json.loads((run / "curve.json").read_text()),
    }


def to_markdown(snap: dict, command: str) -> str:
    """The curve as one markdown table (columns that the run records)."""
    optim = snap["config"]["optim"]
    model = snap["config"]["model"]
    present = [c for c in COLUMNS if any(c in r for r in snap["curve"])]
    lines = [
        f"# Learning curve of `{snap['run']}`",
        "",
        f"Command: `{command}` (snapshot taken {snap['taken']}).  ",
        f"Model: {model['network']} {model['hidden']} / {model['layers']}, treatment "
        f"{model['treatment']}; {optim['steps']:,} steps planned, batch {optim['batch_size']}, "
        f"lr {optim['lr']} ({optim.get('lr_schedule', 'constant')}), EMA {optim['ema_decay']}. "
        "`hours`: wall time of the run's sessions up to that validation (training and "
        "validation).",
        "",
        "| " + " | ".join(present) + " |",
        "|" + "---|" * len(present),
    ]
    for r in snap["curve"]:
        cells = []
        for c in present:
            v = r.get(c)
            cells.append("-" if v is None else f"{v:,}" if c == "step" else f"{v:.4g}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    """Write the snapshot of one run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="the run's out_dir")
    parser.add_argument("--name", default=None, help="results name (default: the folder name)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    args = parser.parse_args(argv)
    command = " ".join(
        ["python benchmarks/run_curve.py", *(sys.argv[1:] if argv is None else argv)]
    )
    snap = snapshot(args.run) | {"command": command}
    stem = f"run_curve_{args.name or args.run.name}"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps(snap, indent=1) + "\n")
    (args.out / f"{stem}.md").write_text(to_markdown(snap, command))
    print(to_markdown(snap, command))


if __name__ == "__main__":
    main()
