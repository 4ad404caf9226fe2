"""``qdiff train --config run.json [--resume]``: train any task's model from a JSON config."""

from __future__ import annotations

import argparse
import sys


def register(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a model from a JSON config (torchrun-compatible)",
        description="Train a model. Launch with `torchrun --nproc_per_node=K -m "
        "quotient_diffusion.cli train ...` for data-parallel training.",
    )
    p.add_argument("--config", required=True, help="JSON config (see configs/ for examples)")
    p.add_argument("--resume", action="store_true", help="continue from <out_dir>/last.pt")
    p.add_argument("--out-dir", help="override run.out_dir")
    p.add_argument("--steps", type=int, help="override optim.steps")
    p.add_argument("--hours", type=float, help="stop (checkpointed, resumable) after this much "
                   "wall time; the schedule still spans optim.steps")
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


def run(args: argparse.Namespace) -> int:
    from ..training import TrainConfig, train

    try:
        config = TrainConfig.load(args.config)
    except (OSError, ValueError, TypeError) as err:
        print(f"qdiff train: bad config {args.config}: {err}", file=sys.stderr)
        return 2
    if args.out_dir:
        config.run.out_dir = args.out_dir
    if args.steps is not None:
        config.optim.steps = args.steps
    if args.data_dir:
        config.task.data_dir = args.data_dir
    try:
        final = train(config, resume=args.resume, progress=not args.no_progress, hours=args.hours)
    except (FileNotFoundError, ValueError) as err:
        print(f"qdiff train: {err}", file=sys.stderr)
        return 1
    print(f"final checkpoint: {final}")
    return 0


def export(args: argparse.Namespace) -> int:
    from ..training import export_weights

    try:
        export_weights(args.checkpoint, args.output)
    except (OSError, KeyError) as err:
        print(f"qdiff export: {err}", file=sys.stderr)
        return 1
    print(f"wrote {args.output}")
    return 0
