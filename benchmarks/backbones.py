"""Protein C-alpha backbones: the four symmetry treatments at equal budget, ODE and SDE sampling.

Question: with the same network, data, optimiser and number of steps, how do conventional,
GeoDiff-aligned, AF3-aligned and quotient training (each with its own sampler) compare on
backbone quality proxies (no ESMFold/ProteinMPNN offline)?

Protocol (defaults = the committed results; ``--quick`` is a smoke run under 3 minutes):

* data: DB5.5 chains, family split (quotient_diffusion.data.proteins), training chains as the
  config's task options say (``min_length``-``max_length`` residues, longer ones cropped with
  ``crop``; the JSON's ``training_data`` counts them: ``BackboneTask.data_summary``); the
  natural reference chains (angle distributions, R_g law, test row) are the uncropped chains of
  ``min_length``-``max_length`` residues;
* for every treatment and seed: train the config's model (configs/backbones.json: the
  transformer with rotation augmentation; configs/backbones_egnn.json: the EGNN) for the same
  number of steps, then sample one chain per length for ``--num-lengths`` lengths of natural
  test chains (same lengths and seed for every treatment) with the Euler ODE and the
  Euler-Maruyama SDE (``--sample-steps`` each);
* metrics (quotient_diffusion.metrics.proteins): angle distributions and the R_g law against
  the training chains; novelty against a fixed subset of ``--novelty-reference`` training
  chains; the natural test chains are the reference row.

Writes benchmarks/results/backbones{tag}.json, docs/benchmarks/backbones{tag}_table.md and
the plots docs/benchmarks/backbones{tag}_{dihedrals,rg}.png, where tag is '_<network>' (and
'_quick'). Run with OMP_NUM_THREADS=1.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _results import (
    RESULTS,
    ROOT,
    command,
    machine,
    markdown_table,
    mean_std,
    save_figure,
    write_json,
    write_text,
)

from quotient_diffusion.diffusion import SamplerConfig
from quotient_diffusion.metrics.proteins import (
    backbone_report,
    dihedrals,
    fit_rg_power_law,
    radius_of_gyration,
)
from quotient_diffusion.tasks import generate_all, get_task, load
from quotient_diffusion.training import TrainConfig, export_weights, train

TREATMENTS = ("conventional", "geodiff", "af3", "quotient")
METHODS = ("ode", "sde")
COLUMNS = [  # (key, header, format)
    ("ca_ca_mean", "CA-CA (A)", "{:.2f}"),
    ("ca_ca_std", "CA-CA sd", "{:.2f}"),
    ("ca_ca_ideal_fraction", "CA-CA ok", "{:.2f}"),
    ("clashes_per_residue", "clash/res", "{:.3f}"),
    ("rg_ratio_mean", "Rg/Rg_nat", "{:.2f}"),
    ("helix_fraction", "helix", "{:.2f}"),
    ("strand_fraction", "strand", "{:.2f}"),
    ("bond_angle_w1", "W1 angle", "{:.1f}"),
    ("dihedral_w1", "W1 dihedral", "{:.1f}"),
    ("pairwise_tm", "pair TM", "{:.2f}"),
    ("novelty_max_tm", "max TM train", "{:.2f}"),
]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run (< 3 minutes)")
    p.add_argument("--config", default=str(ROOT / "configs" / "backbones.json"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--train-steps", type=int, default=None,
                   help="training steps (default: the config's optim.steps)")
    p.add_argument("--sample-steps", type=int, default=40)
    p.add_argument("--num-lengths", type=int, default=12,
                   help="chains sampled per run: lengths of this many test chains, evenly "
                        "spread over the sorted test lengths")
    p.add_argument("--novelty-reference", type=int, default=40)
    p.add_argument("--data-dir", help="shared data root (else QD_DATA / ../shared/data)")
    p.add_argument("--export-checkpoint", help="write the seed-0 quotient model (EMA) here")
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.train_steps, args.sample_steps = [0], 30, 10
        args.novelty_reference, args.num_lengths = 5, 4
    return args


def seed_stats(rows: list[dict]) -> dict:
    """Mean and standard deviation over seeds of every numeric metric."""
    keys = [k for k, v in rows[0].items() if isinstance(v, (int, float))]
    return {k: mean_std(r[k] for r in rows) for k in keys}


def table(results: dict) -> str:
    nat = results["natural"]
    rows = [["natural test chains", "-", *(fmt.format(nat[k]) for k, _, fmt in COLUMNS)]]
    for name in TREATMENTS:
        for method in METHODS:
            stats = results["summary"][name][method]
            rows.append([name, method, *(f"{fmt.format(stats[k][0])} ± {fmt.format(stats[k][1])}"
                                         for k, _, fmt in COLUMNS)])
    return "\n".join(markdown_table(["model", "sampler", *(h for _, h, _ in COLUMNS)], rows))


def plots(results: dict, samples: dict, train: list, stem: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bins = np.linspace(-180, 180, 73)
    fig, axes = plt.subplots(1, len(METHODS), figsize=(11, 3.8), sharey=True)
    ref = np.concatenate([dihedrals(x) for x in train])
    for ax, method in zip(axes, METHODS):
        ax.hist(ref, bins, density=True, color="0.75", label="natural (train)")
        for name in TREATMENTS:
            phi = np.concatenate([dihedrals(x) for x in samples[name][method]])
            ax.hist(phi, bins, density=True, histtype="step", lw=1.4, label=name)
        ax.set_title(f"C-alpha virtual dihedrals, {method.upper()}")
        ax.set_xlabel("dihedral (degrees)")
    axes[0].set_ylabel("density")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    dihedral_png = save_figure(fig, stem.with_name(stem.name + "_dihedrals.png"), dpi=110)

    fig, ax = plt.subplots(figsize=(5.5, 4))
    r0, nu = results["rg_law"]
    lengths = np.array([len(x) for x in train])
    ax.scatter(lengths, [radius_of_gyration(x) for x in train], s=8, c="0.6",
               label="natural (train)")
    grid = np.linspace(lengths.min(), lengths.max(), 50)
    ax.plot(grid, r0 * grid**nu, "k--", lw=1, label=f"fit {r0:.2f} L^{nu:.2f}")
    for name in TREATMENTS:
        xs = samples[name]["ode"]
        ax.scatter([len(x) for x in xs], [radius_of_gyration(x) for x in xs], s=10, label=name)
    ax.set_xlabel("chain length L")
    ax.set_ylabel("radius of gyration (A)")
    ax.set_title("R_g against length (ODE samples, all seeds)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    rg_png = save_figure(fig, stem.with_name(stem.name + "_rg.png"), dpi=110)
    return [dihedral_png.name, rg_png.name]


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)
    base = TrainConfig.load(args.config)
    if args.data_dir:
        base.task.data_dir = args.data_dir
    task = get_task(base)
    splits = task.splits()
    o = task.options
    in_range = lambda cs: [c.ca.astype(np.float64) for c in cs  # noqa: E731
                           if o.min_length <= len(c) <= o.max_length]
    train_ca, test_ca = in_range(splits.train), in_range(splits.test)
    steps = args.train_steps or base.optim.steps
    pick = np.linspace(0, len(test_ca) - 1, min(args.num_lengths, len(test_ca))).round()
    lengths = [len(test_ca[i]) for i in np.argsort([len(x) for x in test_ca])[pick.astype(int)]]
    rng = np.random.default_rng(0)
    novelty_ref = [train_ca[i] for i in rng.choice(len(train_ca), args.novelty_reference, False)]
    rg_law = fit_rg_power_law(train_ca)  # natural chains of the lengths sampled
    report = lambda xs: backbone_report(xs, train_ca, rg_law, novelty_ref)  # noqa: E731

    t0 = time.perf_counter()
    results = {
        "question": "four symmetry treatments at equal budget, ODE and SDE sampling",
        "command": "OMP_NUM_THREADS=1 " + command(__file__),
        "config": base.to_dict(),
        "train_steps": steps,
        "sample_steps": args.sample_steps,
        "seeds": args.seeds,
        "num_train_chains": len(train_ca),
        "training_data": task.data_summary(splits),
        "sample_lengths": lengths,
        "rg_law": list(rg_law),
        "machine": f"{machine()}, torch {torch.__version__}, 1 thread",
        "natural": report(test_ca),
        "runs": [],
    }
    samples = {name: {m: [] for m in METHODS} for name in TREATMENTS}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for name in TREATMENTS:
                config = TrainConfig.from_dict(base.to_dict())
                config.model.treatment = name
                config.optim.steps = steps
                config.run.seed = seed
                config.run.out_dir = f"{tmp}/{name}_{seed}"
                config.run.validate_every = config.run.checkpoint_every = 10**9
                start = time.perf_counter()
                final = train(get_task(config), config, progress=False)
                train_time = time.perf_counter() - start
                if args.export_checkpoint and seed == args.seeds[0] and name == "quotient":
                    export_weights(final, args.export_checkpoint)
                task, model = load(final, "backbones")
                for method in METHODS:
                    start = time.perf_counter()
                    xs = generate_all(task, model, lengths,
                                      SamplerConfig(steps=args.sample_steps, method=method),
                                      seed=seed, batch_size=32)
                    sample_time = time.perf_counter() - start
                    finite = all(np.isfinite(x).all() for x in xs)
                    row = {"treatment": name, "method": method, "seed": seed,
                           "train_time_s": train_time, "sample_time_s": sample_time,
                           "finite": finite, **(report(xs) if finite else {})}
                    results["runs"].append(row)
                    samples[name][method] += xs
                    print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v)
                                      for k, v in row.items()}), flush=True)
    results["summary"] = {
        name: {m: seed_stats([r for r in results["runs"]
                            if r["treatment"] == name and r["method"] == m])
               for m in METHODS}
        for name in TREATMENTS
    }
    results["wall_time_s"] = time.perf_counter() - t0
    suffix = f"_{base.model.network}" + ("_quick" if args.quick else "")
    out_json = write_json(RESULTS / f"backbones{suffix}.json", results)
    docs = ROOT / "docs" / "benchmarks"
    pngs = plots(results, samples, train_ca, docs / f"backbones{suffix}")
    md = write_text(
        docs / f"backbones{suffix}_table.md",
        f"<!-- written by benchmarks/backbones.py; command: {results['command']} -->\n\n"
        f"{table(results)}\n\n"
        f"Wall time {results['wall_time_s'] / 60:.1f} min; plots: {', '.join(pngs)}\n"
    )
    print(table(results))
    print(f"wrote {out_json}, {md}; wall time {results['wall_time_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
