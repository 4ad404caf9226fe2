"""``qdiff sets train|sample``: train a set VAE with any set creator, and sample from it.

qdiff sets train --dataset setmnist --creator topn --steps 2000 --out runs/setmnist-topn
qdiff sets train --dataset synthetic --creator topn --out runs/syn --resume
qdiff sets sample --checkpoint runs/syn/last.pt -n 16 -o samples.json   # or samples.png, -

Exit codes: 0 done; 1 the data could not be read; 2 bad arguments, an unwritable output, a
checkpoint that cannot be loaded (or none for --resume); 130 interrupted (Ctrl-C: training
writes last.pt at the last finished step).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .arguments import non_negative_float, positive_float, positive_int, seed

DEFAULT_LOSS = {"setmnist": "chamfer", "synthetic": "hungarian"}


def register(sub) -> None:
    p = sub.add_parser(
        "sets",
        help="one-shot set generation (Top-n and baselines)",
        description="Train and sample set VAEs (SetMNIST, synthetic molecule-like sets).",
    )
    actions = p.add_subparsers(dest="sets_command", metavar="ACTION")

    t = actions.add_parser("train", help="train a set VAE; checkpoint <out>/last.pt")
    t.add_argument("--dataset", choices=sorted(DEFAULT_LOSS), default="setmnist")
    t.add_argument("--creator", choices=["topn", "iid", "firstn", "mlp"], default="topn")
    t.add_argument("--out", required=True, help="run folder (last.pt is written there)")
    t.add_argument("--steps", type=positive_int, default=2000)
    t.add_argument("--batch-size", type=positive_int, default=16)
    t.add_argument("--lr", type=positive_float, default=5e-4)
    t.add_argument("--seed", type=seed, default=0)
    t.add_argument("--dim", type=positive_int, default=64)
    t.add_argument("--layers", type=positive_int, default=2)
    t.add_argument("--latent-dim", type=positive_int, default=16)
    t.add_argument(
        "--loss",
        choices=["chamfer", "hungarian"],
        help="matching loss (default: chamfer for setmnist, hungarian for synthetic)",
    )
    t.add_argument(
        "--kl-weight",
        type=non_negative_float,
        default=None,
        help="default 1e-3 (setmnist), 1e-2 (synthetic)",
    )
    t.add_argument("--limit", type=positive_int, default=10000, help="SetMNIST: first LIMIT digits")
    t.add_argument("--num-sets", type=positive_int, default=3000, help="synthetic: number of sets")
    t.add_argument("--data-dir", help="data root holding mnist/ (else QD_DATA, ../shared/data)")
    t.add_argument("--checkpoint-every", type=positive_int, default=200)
    t.add_argument("--resume", action="store_true", help="continue from <out>/last.pt")
    t.add_argument("--threads", type=positive_int, default=1, help="torch intra-op threads")
    t.add_argument("--no-progress", action="store_true")
    t.set_defaults(func=run_train)

    s = actions.add_parser("sample", help="sample sets from a trained checkpoint")
    s.add_argument("--checkpoint", required=True)
    s.add_argument("-n", "--num", type=positive_int, default=16, help="number of sets")
    s.add_argument("-o", "--output", required=True,
                   help=".json (points), .png (picture) or - (JSON to stdout)")
    s.add_argument("--seed", type=seed, default=0)
    s.set_defaults(func=run_sample)
    p.set_defaults(func=lambda args: p.print_help() or 0)


def _load_data(args: argparse.Namespace):
    from ..sets import SyntheticConfig, generate_synthetic, load_setmnist

    if args.dataset == "setmnist":
        data = load_setmnist("train", args.limit, data_dir=args.data_dir)
        return data, {"pos_dim": 2, "num_types": 0, "max_size": 28 * 28}
    cfg = SyntheticConfig()
    data = generate_synthetic(args.num_sets, seed=0, cfg=cfg)  # one fixed data set
    return data, {"pos_dim": 3, "num_types": len(cfg.valency_probs), "max_size": cfg.max_size}


def run_train(args: argparse.Namespace) -> int:
    from ..output import check_output

    check_output(args.out, "dir")  # before the heavy imports: a bad path fails at once

    import torch

    from ..sets import SetVAE, SetVAEConfig, train_set_vae
    from ..sets.training import CHECKPOINT_KEYS
    from ..training import CheckpointError, load_checkpoint

    last = Path(args.out) / "last.pt"
    saved = None
    if args.resume:
        try:
            saved = load_checkpoint(last, CHECKPOINT_KEYS)["model_config"]
        except CheckpointError as err:
            print(f"qdiff sets train: --resume: cannot load the model: {err}", file=sys.stderr)
            return 2
    torch.set_num_threads(args.threads)
    try:
        data, shape = _load_data(args)
    except (FileNotFoundError, ValueError) as err:
        print(f"qdiff sets train: {err}", file=sys.stderr)
        return 1
    if args.dataset == "setmnist":  # a reference set as large as the largest digit suffices
        shape["max_size"] = data.max_size
    kl = (
        args.kl_weight
        if args.kl_weight is not None
        else (1e-3 if args.dataset == "setmnist" else 1e-2)
    )
    config = SetVAEConfig(
        creator=args.creator,
        latent_dim=args.latent_dim,
        dim=args.dim,
        layers=args.layers,
        loss=args.loss or DEFAULT_LOSS[args.dataset],
        kl_weight=kl,
        **shape,
    )
    if saved is not None:
        config = SetVAEConfig(**saved)
    torch.manual_seed(args.seed)
    model = SetVAE(config)
    try:
        history = train_set_vae(
            model,
            data,
            args.steps,
            args.batch_size,
            args.lr,
            args.seed,
            args.out,
            args.checkpoint_every,
            args.resume,
            not args.no_progress,
            extra={"dataset": args.dataset, "data_info": data.info},
        )
    except KeyboardInterrupt:
        step = load_checkpoint(last, ("step",))["step"]
        print(f"interrupted: checkpoint {last} at step {step} of {args.steps}; continue with "
              "--resume", file=sys.stderr)
        return 130
    if history:
        print(f"final reconstruction loss {history[-1]['recon']:.5f}")
    print(f"checkpoint: {last}")
    return 0


def run_sample(args: argparse.Namespace) -> int:
    from ..output import STDOUT, atomic_write_text, check_output

    check_output(args.output)  # before the heavy imports: a bad path fails at once

    import torch

    from ..sets import load_set_model
    from ..training import CheckpointError

    try:
        model, state = load_set_model(args.checkpoint)
    except CheckpointError as err:
        print(f"qdiff sets sample: cannot load the model: {err}", file=sys.stderr)
        return 2
    try:
        rows, mask = model.sample(args.num, torch.Generator().manual_seed(args.seed))
    except KeyboardInterrupt:
        print(f"interrupted: wrote 0 of {args.num} sets", file=sys.stderr)
        return 130
    p = model.config.pos_dim
    sets = []
    for k in range(args.num):
        record = {"pos": rows[k, mask[k], :p].tolist()}
        if model.config.num_types:  # valency = type index + 1 for the synthetic sets
            record["type"] = rows[k, mask[k], p:].argmax(-1).tolist()
        sets.append(record)
    if args.output != STDOUT and Path(args.output).suffix == ".png":
        _plot(sets, p, args.output)
    else:
        atomic_write_text(
            args.output,
            json.dumps(
                {"checkpoint": str(args.checkpoint), "dataset": state.get("dataset"), "sets": sets}
            ),
        )
    where = sys.stderr if args.output == STDOUT else sys.stdout
    print(f"wrote {args.num} sets to {args.output}", file=where)
    return 0


def _plot(sets: list[dict], pos_dim: int, path: str | Path) -> None:
    import matplotlib

    from ..output import atomic_write_figure

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(8, len(sets))
    rows = -(-len(sets) // cols)
    fig = plt.figure(figsize=(1.5 * cols, 1.5 * rows))
    for i, record in enumerate(sets):
        ax = fig.add_subplot(rows, cols, i + 1, projection="3d" if pos_dim == 3 else None)
        xyz = list(zip(*record["pos"])) or [[]] * pos_dim
        colour = {"c": record["type"], "cmap": "viridis"} if "type" in record else {"c": "k"}
        ax.scatter(*xyz, s=3, **colour)
        ax.set_xticks([])
        ax.set_yticks([])
        if pos_dim == 3:
            ax.set_zticks([])
    fig.tight_layout()
    atomic_write_figure(path, fig, dpi=100)
    plt.close(fig)
