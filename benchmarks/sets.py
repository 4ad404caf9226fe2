"""Top-n against i.i.d., first-n and MLP set creation, at equal budgets, over several seeds.

Every creator sits in the same set VAE (:class:`quotient_diffusion.sets.SetVAE`): same encoder,
decoder, latent size, optimiser, batch size and number of steps; only the creator differs.

* SetMNIST reconstruction: train on the first ``mnist_train`` training digits, report the mean
  Chamfer distance (coordinates in [0, 1]) between the first ``mnist_test`` test digits and their
  reconstructions from the posterior mean (Chamfer training loss).
* Synthetic molecule-like sets: train on ``synthetic_train`` sets (Hungarian loss on positions
  plus cross-entropy on valencies), sample ``synthetic_samples`` sets from the prior and compare
  them with held-out data: W1 of valency, set-size and degree histograms, constraint violations,
  diversity (:func:`quotient_diffusion.sets.synthetic_scores`).

    OMP_NUM_THREADS=1 python benchmarks/sets.py            # full run (about 35 min, one core)
    OMP_NUM_THREADS=1 python benchmarks/sets.py --quick    # about 2 min, tiny budgets

Writes benchmarks/results/sets.json and sets.md (tables) and
docs/benchmarks/sets_reconstructions.png (test digits and their reconstructions, seed 0).
MNIST is read from --data-dir, else $QD_DATA, else ../shared/data.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch
from _results import RESULTS, ROOT, markdown_table, save_figure, write_json, write_text

from quotient_diffusion.sets import (
    CREATORS,
    SetVAE,
    SetVAEConfig,
    SyntheticConfig,
    generate_synthetic,
    load_setmnist,
    reconstruction_chamfer,
    synthetic_scores,
    train_set_vae,
)

FIGURE = ROOT / "docs" / "benchmarks" / "sets_reconstructions.png"
FULL = {
    "mnist_train": 5000,
    "mnist_test": 1000,
    "mnist_steps": 1000,
    "mnist_batch": 16,
    "synthetic_train": 3000,
    "synthetic_test": 1000,
    "synthetic_samples": 1000,
    "synthetic_steps": 1000,
    "synthetic_batch": 32,
}
QUICK = {
    "mnist_train": 300,
    "mnist_test": 100,
    "mnist_steps": 40,
    "mnist_batch": 16,
    "synthetic_train": 300,
    "synthetic_test": 200,
    "synthetic_samples": 200,
    "synthetic_steps": 60,
    "synthetic_batch": 32,
}
MNIST_MODEL = {
    "pos_dim": 2,
    "num_types": 0,
    "latent_dim": 16,
    "dim": 64,
    "layers": 1,
    "heads": 4,
    "loss": "chamfer",
    "kl_weight": 1e-3,
}
SYNTHETIC_MODEL = {
    "pos_dim": 3,
    "num_types": 4,
    "latent_dim": 16,
    "dim": 64,
    "layers": 2,
    "heads": 4,
    "loss": "hungarian",
    "kl_weight": 1e-2,
}
FIGURE_DIGITS = 8
LR = 5e-4


def setmnist_run(creator: str, seed: int, train, test, budget: dict) -> dict:
    """Train one SetMNIST model; test Chamfer and the first reconstructions for the figure."""
    torch.manual_seed(seed)
    max_size = max(train.max_size, test.max_size)
    model = SetVAE(SetVAEConfig(creator=creator, max_size=max_size, **MNIST_MODEL))
    start = time.perf_counter()
    history = train_set_vae(model, train, budget["mnist_steps"], budget["mnist_batch"], LR, seed)
    seconds = time.perf_counter() - start
    gen = torch.Generator().manual_seed(10_000 + seed)
    scores, figure = [], None
    for chunk in torch.arange(len(test)).split(100):
        batch = test.batch(chunk)
        recon, mask = model.reconstruct(batch, gen)
        scores.append(reconstruction_chamfer(recon, mask, batch, 2))
        if figure is None:
            figure = [recon[k, mask[k]].tolist() for k in range(FIGURE_DIGITS)]
    tail = history[-50:]
    return {
        "creator": creator,
        "seed": seed,
        "test_chamfer": float(torch.cat(scores).mean()),
        "train_recon_last50": statistics.fmean(h["recon"] for h in tail),
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_seconds": seconds,
        "figure": figure,
    }


def synthetic_run(creator: str, seed: int, train, test, cfg, budget: dict) -> dict:
    """Train one generator of synthetic sets and score prior samples against held-out data."""
    torch.manual_seed(seed)
    model = SetVAE(SetVAEConfig(creator=creator, max_size=cfg.max_size, **SYNTHETIC_MODEL))
    start = time.perf_counter()
    train_set_vae(model, train, budget["synthetic_steps"], budget["synthetic_batch"], LR, seed)
    seconds = time.perf_counter() - start
    rows, mask = model.sample(budget["synthetic_samples"], torch.Generator().manual_seed(seed))
    scores = synthetic_scores(rows, mask, test, cfg, seed)
    return {
        "creator": creator,
        "seed": seed,
        **scores,
        "parameters": sum(p.numel() for p in model.parameters()),
        "train_seconds": seconds,
    }


def summarise(runs: list[dict], keys: list[str]) -> dict:
    """Mean and sample standard deviation over seeds, per creator and metric."""
    out = {}
    for creator in CREATORS:
        mine = [r for r in runs if r["creator"] == creator]
        out[creator] = {
            k: {
                "mean": statistics.fmean(r[k] for r in mine),
                "std": statistics.stdev([r[k] for r in mine]) if len(mine) > 1 else 0.0,
            }
            for k in keys
        }
    return out


def relative_gain(summary: dict, key: str) -> float:
    """``(iid - topn) / iid`` of a lower-is-better metric (the paper's 'x% better')."""
    iid, topn = summary["iid"][key]["mean"], summary["topn"][key]["mean"]
    return (iid - topn) / iid if iid else float("nan")


def table(summary: dict, keys: list[str], digits: int = 4) -> str:
    rows = [[creator, *(f"{metrics[k]['mean']:.{digits}f} ± {metrics[k]['std']:.{digits}f}"
                        for k in keys)] for creator, metrics in summary.items()]
    return "\n".join(markdown_table(["creator", *keys], rows))


def plot(test, runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [("data", [test.batch(torch.tensor([k])).pos.tolist() for k in range(FIGURE_DIGITS)])]
    rows += [(r["creator"], r["figure"]) for r in runs if r["seed"] == 0]
    fig, axes = plt.subplots(len(rows), FIGURE_DIGITS, figsize=(FIGURE_DIGITS, len(rows)))
    for i, (name, sets) in enumerate(rows):
        for j, points in enumerate(sets):
            ax = axes[i, j]
            xy = torch.tensor(points).reshape(-1, 2)
            ax.scatter(xy[:, 0], xy[:, 1], s=2, c="k")
            ax.set_xlim(-0.05, 1.05)
            ax.set_ylim(-0.05, 1.05)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_aspect("equal")
        axes[i, 0].set_ylabel(name, rotation=0, ha="right", va="center")
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny budgets (about 2 minutes)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--data-dir", help="data root holding mnist/ (else QD_DATA)")
    parser.add_argument("--out", default=str(RESULTS), help="results folder")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    budget = QUICK if args.quick else FULL
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = "sets_quick" if args.quick else "sets"
    begin = time.perf_counter()

    train = load_setmnist("train", budget["mnist_train"], data_dir=args.data_dir)
    test = load_setmnist("test", budget["mnist_test"], data_dir=args.data_dir)
    mnist_runs = []
    for seed in args.seeds:
        for creator in CREATORS:
            mnist_runs.append(setmnist_run(creator, seed, train, test, budget))
            print(
                f"setmnist {creator} seed {seed}: chamfer {mnist_runs[-1]['test_chamfer']:.5f}",
                flush=True,
            )

    cfg = SyntheticConfig()
    syn_train = generate_synthetic(budget["synthetic_train"], seed=0, cfg=cfg)
    syn_test = generate_synthetic(budget["synthetic_test"], seed=1, cfg=cfg)
    syn_runs = []
    for seed in args.seeds:
        for creator in CREATORS:
            syn_runs.append(synthetic_run(creator, seed, syn_train, syn_test, cfg, budget))
            r = syn_runs[-1]
            print(
                f"synthetic {creator} seed {seed}: valency W1 {r['valency_w1']:.4f} "
                f"valid {r['valid_sets']:.3f}",
                flush=True,
            )

    mnist_keys = ["test_chamfer", "train_recon_last50", "parameters", "train_seconds"]
    syn_keys = [
        "valency_w1",
        "size_w1",
        "degree_w1",
        "valid_sets",
        "close_pairs_per_set",
        "isolated_per_point",
        "outside_per_point",
        "diversity",
        "train_seconds",
    ]
    mnist_summary, syn_summary = summarise(mnist_runs, mnist_keys), summarise(syn_runs, syn_keys)
    data_valency = torch.bincount(syn_test.feat.argmax(-1), minlength=4).float()
    result = {
        "command": "OMP_NUM_THREADS=1 python benchmarks/sets.py"
        + (" --quick" if args.quick else ""),
        "seeds": args.seeds,
        "budget": budget,
        "lr": LR,
        "setmnist_model": MNIST_MODEL,
        "synthetic_model": SYNTHETIC_MODEL,
        "synthetic_config": cfg.to_dict(),
        "synthetic_test_valency_histogram": (data_valency / data_valency.sum()).tolist(),
        "setmnist": {
            "summary": mnist_summary,
            "runs": [{k: v for k, v in r.items() if k != "figure"} for r in mnist_runs],
        },
        "synthetic": {"summary": syn_summary, "runs": syn_runs},
        "topn_vs_iid": {
            "setmnist_chamfer": relative_gain(mnist_summary, "test_chamfer"),
            "synthetic_valency_w1": relative_gain(syn_summary, "valency_w1"),
            "synthetic_size_w1": relative_gain(syn_summary, "size_w1"),
            "synthetic_degree_w1": relative_gain(syn_summary, "degree_w1"),
        },
        "wall_seconds": time.perf_counter() - begin,
        "platform": platform.platform(),
        "torch": torch.__version__,
    }
    write_json(out / f"{name}.json", result)
    md = [
        f"Command: `{result['command']}` ({result['wall_seconds'] / 60:.1f} min, "
        f"seeds {args.seeds}; mean ± std over seeds)",
        "",
        "SetMNIST (test Chamfer, lower is better):",
        "",
        table(mnist_summary, mnist_keys[:2], 5),
        "",
        "Synthetic molecule-like sets (W1 and violations lower is better; valid_sets higher; "
        "diversity near 1):",
        "",
        table(syn_summary, syn_keys[:-1], 3),
        "",
        "Top-n vs i.i.d., relative gain (iid - topn) / iid: "
        + ", ".join(f"{k} {v:+.1%}" for k, v in result["topn_vs_iid"].items()),
    ]
    write_text(out / f"{name}.md", "\n".join(md) + "\n")
    print("\n".join(md))
    if not args.quick:
        plot(test, mnist_runs, FIGURE)
    else:
        plot(test, mnist_runs, out / "sets_quick_reconstructions.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
