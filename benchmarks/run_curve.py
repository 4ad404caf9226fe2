"""A snapshot of a training run's learning curve, for the pages that quote it.

``qdiff train`` appends a validation record to ``<out_dir>/curve.json`` every
``run.validate_every`` steps; run folders are not committed. This script copies the records of
one run, with its config, into ``benchmarks/results/run_curve_<name>.{json,md}``, so that a number
quoted from the curve traces to a committed file. It only reads the run folder, so it may be
called while the run is going on: the snapshot is then the curve up to its last validation.

    python benchmarks/run_curve.py --run training_runs/conformers_qm9

A model made in stages, each warm-started from the one before (``qdiff train --init-from``), is
one curve: ``--run`` once per stage, in order, and ``--name``. Every record then gets its
``stage`` and ``total_step``: its step plus the total step of the checkpoint its stage started
from (``init_from_step`` in the stage's checkpoint history), and a plot of the quality columns
against ``total_step`` is written as well.

    python benchmarks/run_curve.py --name conformers_bundled --run training_runs/conformers_qm9 \
        --run training_runs/conformers_qm9_stereo --run training_runs/conformers_qm9_chiral

Reads no data and trains nothing: it takes about a second, so it has no --quick mode.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from _results import RESULTS, command, local_time, markdown_table, save_figure, write_results

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
    "val_chiral_ok",
    "val_atom_stability",
    "val_molecule_stability",
    "val_ca_ca_within_0.2",
    "val_ca_ca_mean",
)
#: the quality columns plotted (one panel each, those the run records)
PLOTTED = ("val_rmsd_heavy_median", "val_bond_mae", "val_chiral_ok", "val_atom_stability",
           "val_molecule_stability", "val_ca_ca_within_0.2")


def snapshot(run: Path) -> dict:
    """The run's config and curve records, with the time the snapshot was taken."""
    return {
        "run": str(run),
        "taken": local_time(),
        "config": json.loads((run / "config.json").read_text()),
        "curve": json.loads((run / "curve.json").read_text()),
    }


def init_from_step(run: Path) -> int:
    """The step of the checkpoint this run warm-started from (0 for a run from scratch), read
    from the history of its newest checkpoint. Runs started before histories recorded
    ``init_from_step`` name only the source file: then it is the end step of the source's last
    session that had ended when this run began (the source's history has dates and wall times)."""
    first = _history(run / "last.pt" if (run / "last.pt").is_file() else run / "final.pt")[0]
    if "init_from_step" in first or "init_from" not in first:
        return int(first.get("init_from_step", 0))
    began = datetime.fromisoformat(first["date"])
    ended = [s["end_step"] for s in _history(Path(first["init_from"]))
             if datetime.fromisoformat(s["date"]) + timedelta(seconds=s["wall_s"]) <= began]
    if not ended:
        raise SystemExit(f"run_curve: cannot tell at which step {run} left {first['init_from']}")
    return int(max(ended))


def _history(path: Path) -> list[dict]:
    """The session history of a checkpoint (one empty session when it records none)."""
    from quotient_diffusion.training import load_checkpoint

    if not path.is_file():
        raise SystemExit(f"run_curve: no checkpoint {path}")
    return load_checkpoint(path, ("history",)).get("history") or [{}]


def staged(runs: list[Path]) -> dict:
    """The snapshot of every stage, and one curve whose records carry ``stage`` and
    ``total_step`` (see the module docstring)."""
    stages, curve, offset = [], [], 0
    for k, run in enumerate(runs):
        snap = snapshot(run)
        if k > 0:
            offset += init_from_step(run)
        stages.append(snap | {"offset": offset})
        curve += [r | {"stage": k + 1, "total_step": offset + r["step"]} for r in snap["curve"]]
    return {"run": " + ".join(str(r) for r in runs), "taken": stages[-1]["taken"],
            "config": stages[-1]["config"], "stages": stages, "curve": curve}


def plot(snap: dict, path: Path) -> None:
    """One panel per quality column against the (total) step, stage boundaries dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = [c for c in PLOTTED if any(c in r for r in snap["curve"])]
    fig, axes = plt.subplots(1, len(columns), figsize=(4.2 * len(columns), 3.2))
    for ax, column in zip(np.atleast_1d(axes), columns):
        for stage in snap.get("stages", []):
            ax.axvline(stage["offset"], color="0.7", ls="--", lw=0.8)
        points = [(r.get("total_step", r["step"]), r[column]) for r in snap["curve"]
                  if column in r]
        ax.plot(*zip(*points), marker=".", lw=1)
        ax.set_xlabel("total training steps")
        ax.set_title(column)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


def to_markdown(snap: dict, command: str) -> str:
    """The curve as one markdown table (columns that the run records)."""
    optim = snap["config"]["optim"]
    model = snap["config"]["model"]
    columns = COLUMNS if "stages" not in snap else ("stage", "total_step", *COLUMNS)
    present = [c for c in columns if any(c in r for r in snap["curve"])]
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
    ]

    def cell(record: dict, column: str) -> str:
        v = record.get(column)
        integer = column in ("step", "stage", "total_step")
        return "-" if v is None else f"{v:,}" if integer else f"{v:.4g}"

    lines += markdown_table(present, ([cell(r, c) for c in present] for r in snap["curve"]))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    """Write the snapshot of one run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, action="append", required=True,
                        help="the run's out_dir; once per stage, in order")
    parser.add_argument("--name", default=None, help="results name (default: the folder name)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    args = parser.parse_args(argv)
    line = command(__file__, argv)
    if len(args.run) > 1 and not args.name:
        parser.error("a staged run (several --run) needs --name")
    for run in args.run:
        if not (run / "curve.json").is_file() or not (run / "config.json").is_file():
            parser.error(f"{run}: not a run folder (no curve.json and config.json)")
    one = len(args.run) == 1
    snap = (snapshot(args.run[0]) if one else staged(args.run)) | {"command": line}
    stem = f"run_curve_{args.name or args.run[0].name}"
    args.out.mkdir(parents=True, exist_ok=True)
    if any(c in r for c in PLOTTED for r in snap["curve"]):
        plot(snap, args.out / f"{stem}.png")
    table = to_markdown(snap, line)
    write_results(args.out, stem, snap, table)
    print(table)


if __name__ == "__main__":
    main()
