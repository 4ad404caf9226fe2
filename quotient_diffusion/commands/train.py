"""``qdiff train --config run.json [--resume | --init-from CKPT]``: train any task's model from
a JSON config.

``--init-from CKPT`` starts a new run from another checkpoint's EMA weights: entries of equal
shape are copied, a Linear weight whose input grew gets the old weight in its leading columns
and zeros in the new ones (so a conformer model extended with ``task.options.stereo`` starts as
exactly the old model).

Exit codes: 0 trained; 1 training failed; 2 a bad config, output folder or checkpoint (also
``--resume`` with no checkpoint, or with a config whose model differs from the checkpoint's;
``--init-from`` with weights that do not fit the config's model, or together with
``--resume``); 130 stopped by Ctrl-C, with a resumable ``last.pt``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .arguments import positive_float, positive_int

if TYPE_CHECKING:  # annotations only: building the parser imports no torch
    from ..tasks import Task
    from ..training import TrainConfig


def register(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a model from a JSON config (torchrun-compatible)",
        description="Train a model. Launch with `torchrun --nproc_per_node=K -m "
        "quotient_diffusion.cli train ...` for data-parallel training.",
    )
    p.add_argument("--config", required=True, help="JSON config (see configs/ for examples)")
    p.add_argument("--resume", action="store_true", help="continue from <out_dir>/last.pt")
    p.add_argument("--init-from", metavar="CKPT",
                   help="start a new run from this checkpoint's EMA weights (equal shapes "
                   "copied, grown Linear inputs zero-padded, new zero-start branches such as "
                   "chirality_push kept at zero)")
    p.add_argument("--out-dir", help="override run.out_dir")
    p.add_argument("--steps", type=positive_int, help="override optim.steps")
    p.add_argument("--hours", type=positive_float, help="stop (checkpointed, resumable) after "
                   "this much wall time; the schedule still spans optim.steps")
    p.add_argument("--data-dir", help="override task.data_dir (else QD_DATA)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)

    e = sub.add_parser(
        "export",
        help="slim a training checkpoint to its config and EMA weights (for shipping)",
    )
    e.add_argument("checkpoint", help="a checkpoint written by `qdiff train`")
    e.add_argument("output", help="where to write the slim copy")
    e.set_defaults(func=export)


def _check_resume(config, out_dir: Path) -> str | None:
    """Why ``--resume`` cannot continue ``out_dir/last.pt`` with ``config`` (None: it can)."""
    from ..tasks import checkpoint_config, get_task
    from ..training import load_checkpoint
    from ..training.validation import model_differences

    state = load_checkpoint(out_dir / "last.pt", ("config", "step"))
    saved = checkpoint_config(state)  # a renamed task under today's name, as in the config
    get_task(saved)  # its task section is checked too
    differences = model_differences(saved, config)
    if differences:
        return "the config's model differs from the checkpoint's: " + "; ".join(differences)
    return None


def _check_init(task: Task, path: str) -> str | None:
    """Why ``--init-from path`` cannot initialise the task's model (None: it can)."""
    from ..training import CheckpointError, warm_start

    try:
        warm_start(task.build_model(), path)
    except (CheckpointError, ValueError) as err:
        return str(err)
    return None


def _read_config(args: argparse.Namespace) -> tuple[TrainConfig, Task]:
    """The config of ``--config`` with the command line's overrides, and the task built on it;
    :class:`~quotient_diffusion.training.ConfigError` if either is invalid."""
    from ..tasks import get_task
    from ..training import TrainConfig

    config = TrainConfig.load(args.config)
    if args.out_dir:
        config.run.out_dir = args.out_dir
    if args.steps is not None:
        config.optim.steps = args.steps
    if args.data_dir:
        config.task.data_dir = args.data_dir
    return config, get_task(config)


def run(args: argparse.Namespace) -> int:
    from ..output import check_output
    from ..training import CheckpointError, ConfigError, load_checkpoint, train
    from ..training.loop import resolve_device

    try:
        config, task = _read_config(args)
    except ConfigError as err:
        print(f"qdiff train: bad config {args.config}: {err}", file=sys.stderr)
        return 2
    out_dir = Path(config.run.out_dir)
    check_output(out_dir, "dir")
    try:
        resolve_device(config.run.device)  # 'cuda' on a machine without one
    except ConfigError as err:
        print(f"qdiff train: {err}", file=sys.stderr)
        return 2
    if args.resume and args.init_from:
        print("qdiff train: --resume and --init-from cannot be combined (a resumed run "
              "continues its own weights)", file=sys.stderr)
        return 2
    if args.init_from:
        problem = _check_init(task, args.init_from)
        if problem:
            print(f"qdiff train: --init-from: {problem}", file=sys.stderr)
            return 2
    if args.resume:
        try:
            problem = _check_resume(config, out_dir)
        except (CheckpointError, ConfigError) as err:
            problem = f"cannot load the model: {err}"
        if problem:
            print(f"qdiff train: --resume: {problem}", file=sys.stderr)
            return 2
    try:
        final = train(task, config, resume=args.resume, progress=not args.no_progress,
                      hours=args.hours, init_from=args.init_from)
    except (FileNotFoundError, ValueError) as err:
        print(f"qdiff train: {err}", file=sys.stderr)
        return 1
    if final.name == "last.pt" and args.hours is None:  # stopped early by a signal
        step = load_checkpoint(final, ("step",))["step"]
        print(f"interrupted: checkpoint {final} at step {step} of {config.optim.steps}; "
              "continue with --resume", file=sys.stderr)
        return 130
    print(f"final checkpoint: {final}")
    return 0


def export(args: argparse.Namespace) -> int:
    from ..output import check_output
    from ..training import CheckpointError, export_weights

    check_output(args.output)
    try:
        export_weights(args.checkpoint, args.output)
    except CheckpointError as err:
        print(f"qdiff export: cannot load the model: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.output}", file=sys.stderr if args.output == "-" else sys.stdout)
    return 0
