"""Top-n against i.i.d., first-n and MLP creation for one-shot QM9 graph generation.

Every creator sits in the same graph VAE (:class:`quotient_diffusion.sets.GraphSetVAE`): same
encoder, decoder, latent size, optimiser, batch size and number of steps; only the creator
differs. Data: QM9 heavy-atom graphs (C N O F; none/single/double/triple bonds, aromatic rings
kekulised), EDM's training split (:func:`quotient_diffusion.sets.load_qm9_graphs`). After training,
``samples`` graphs are drawn from the prior and scored with RDKit: validity (sanitisable and
connected), uniqueness, novelty against the training SMILES, diversity (mean pairwise Tanimoto
distance of Morgan fingerprints of the distinct valid molecules); also the test-set
reconstruction: share of test molecules rebuilt exactly (same canonical SMILES) from the
posterior mean.

    OMP_NUM_THREADS=1 python benchmarks/sets_qm9.py --quick   # about 2 minutes, tiny budget
    OMP_NUM_THREADS=1 python benchmarks/sets_qm9.py           # 20,000 steps x 4 creators x 3 seeds

Writes benchmarks/results/sets_qm9.json and .md (sets_qm9_quick.* with --quick).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch
from _results import RESULTS, command, markdown_table, utc_time, write_results

from quotient_diffusion.sets import CREATORS
from quotient_diffusion.sets.graph_vae import GraphSetVAE, GraphVAEConfig
from quotient_diffusion.sets.qm9_graphs import graph_metrics, graph_smiles, load_qm9_graphs
from quotient_diffusion.sets.training import train_set_vae

FULL = {"steps": 20_000, "batch": 64, "samples": 10_000, "test": 2_000}
QUICK = {"steps": 150, "batch": 64, "samples": 500, "test": 200}
MODEL = {"latent_dim": 32, "dim": 64, "layers": 2, "heads": 4, "kl_weight": 1e-2,
         "size_weight": 1e-1, "bond_weight": 1.0}
LR = 1e-3
KEYS = ["validity", "uniqueness", "valid_unique", "novelty", "diversity", "sanitisable",
        "test_exact_recon", "train_recon_last50", "steps_per_second"]


def run(creator: str, seed: int, train, test, budget: dict, out_dir: Path | None) -> dict:
    torch.manual_seed(seed)
    model = GraphSetVAE(GraphVAEConfig(creator=creator, max_size=train.max_size, **MODEL))
    start = time.perf_counter()
    history = train_set_vae(model, train, budget["steps"], budget["batch"], LR, seed,
                            out_dir=out_dir, extra={"data": dict(train.info)})
    seconds = time.perf_counter() - start
    samples = model.sample(budget["samples"], torch.Generator().manual_seed(10_000 + seed))
    scores = graph_metrics(samples, train.smiles)
    recon = model.reconstruct(test.batch(torch.arange(len(test))))
    exact = sum(graph_smiles(t, b)[0] == s for (t, b), s in zip(recon, test.smiles))
    return {"creator": creator, "seed": seed, **scores, "test_exact_recon": exact / len(test),
            "train_recon_last50": statistics.fmean(h["recon"] for h in history[-50:]),
            "steps_per_second": budget["steps"] / seconds, "train_seconds": seconds,
            "parameters": sum(p.numel() for p in model.parameters())}


def summarise(runs: list[dict], creators: list[str]) -> dict:
    out = {}
    for creator in creators:
        mine = [r for r in runs if r["creator"] == creator]
        out[creator] = {k: {"mean": statistics.fmean(r[k] for r in mine),
                            "std": statistics.stdev([r[k] for r in mine]) if len(mine) > 1
                            else 0.0} for k in KEYS}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny budget (about 2 minutes)")
    parser.add_argument("--seeds", type=int, nargs="+", help="default 0 1 2 (0 1 with --quick)")
    parser.add_argument("--creators", nargs="+", default=list(CREATORS), choices=list(CREATORS))
    parser.add_argument("--steps", type=int, help="override the budget's steps")
    parser.add_argument("--out", default=str(RESULTS), help="results folder")
    parser.add_argument("--checkpoints", help="folder for last.pt per run (resumable)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    budget = dict(QUICK if args.quick else FULL)
    if args.steps:
        budget["steps"] = args.steps
    seeds = args.seeds or ([0, 1] if args.quick else [0, 1, 2])
    begin = time.perf_counter()
    data = load_qm9_graphs()
    train = data.of_split("train")
    test = data.of_split("test").subset(torch.arange(budget["test"]))
    runs = []
    for seed in seeds:
        for creator in args.creators:
            ckpt = Path(args.checkpoints) / f"{creator}_seed{seed}" if args.checkpoints else None
            runs.append(run(creator, seed, train, test, budget, ckpt))
            r = runs[-1]
            print(f"qm9 {creator} seed {seed}: valid {r['validity']:.3f} unique "
                  f"{r['uniqueness']:.3f} novel {r['novelty']:.3f} diversity "
                  f"{r['diversity']:.3f} exact recon {r['test_exact_recon']:.3f} "
                  f"({r['steps_per_second']:.1f} steps/s)", flush=True)
    summary = summarise(runs, args.creators)
    result = {"command": command(__file__, argv), "date": utc_time(), "seeds": seeds,
              "budget": budget, "lr": LR, "model": MODEL, "data": data.info,
              "train_molecules": len(train), "summary": summary, "runs": runs,
              "wall_seconds": time.perf_counter() - begin, "platform": platform.platform(),
              "torch": torch.__version__}
    rows = [[c, *(f"{m[k]['mean']:.3f} ± {m[k]['std']:.3f}" for k in KEYS)]
            for c, m in summary.items()]
    md = [f"Command: `{result['command']}` ({result['wall_seconds'] / 60:.1f} min, seeds "
          f"{seeds}, {budget['steps']} steps of {budget['batch']}; mean ± std over seeds)", "",
          *markdown_table(["creator", *KEYS], rows), ""]
    name = "sets_qm9_quick" if args.quick else "sets_qm9"
    write_results(Path(args.out), name, result, "\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
