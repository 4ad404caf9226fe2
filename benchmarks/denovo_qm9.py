"""De novo QM9 generation: which symmetry treatment learns fastest, at equal network and budget?

The same EGNN, data order, noise and optimiser are trained under the four treatments
(conventional, GeoDiff-aligned, AF3-aligned, quotient) for several seeds. Each run is evaluated
at increasing training budgets (the run continues exactly from its checkpoint, so the budgets of
one seed are one trajectory): EDM's metrics on molecules sampled with the ODE (atom counts drawn
once from the training histogram and shared by every model). Then, on the final models, sampling
speed against quality: ODE with few steps vs SDE with many.

Every record is written to the JSON as soon as it exists; a rerun skips the records already there
and resumes training from the run folders, so an interrupted run loses little.

    OMP_NUM_THREADS=1 python benchmarks/denovo_qm9.py --quick   # about 2 minutes, one core
    OMP_NUM_THREADS=1 python benchmarks/denovo_qm9.py           # the committed full run
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from quotient_diffusion.diffusion import SamplerConfig
from quotient_diffusion.metrics.molecules import evaluate
from quotient_diffusion.output import atomic_write_text
from quotient_diffusion.tasks import get_task, load_trained_model
from quotient_diffusion.tasks.molecules import (
    MoleculeTask,
    draw_atom_counts,
    generate_molecules,
    qm9_molecules,
    qm9_reference_smiles,
)
from quotient_diffusion.training import TrainConfig, train
from quotient_diffusion.training.checkpoint import load_checkpoint

RESULTS = Path(__file__).parent / "results"
DOCS = Path(__file__).parents[1] / "docs" / "benchmarks"
TREATMENTS = ("conventional", "geodiff", "af3", "quotient")
METRICS = ("atom_stability", "molecule_stability", "validity", "valid_unique", "novelty",
           "connected", "atom_type_tv", "bond_length_w1")
EDM_PUBLISHED = {"atom_stability": 0.987, "molecule_stability": 0.820, "validity": 0.919,
                 "valid_unique": 0.907}

SETTINGS = {
    "full": {"hidden": 32, "layers": 4, "batch_size": 64, "budgets": [150, 400, 1000],
             "seeds": [0, 1], "num_samples": 256, "ode_steps": 50, "reference": 2000,
             "speed": [["ode", 10], ["ode", 50], ["sde", 200]], "speed_samples": 128},
    "quick": {"hidden": 16, "layers": 2, "batch_size": 32, "budgets": [20, 60], "seeds": [0],
              "num_samples": 32, "ode_steps": 10, "reference": 200,
              "speed": [["ode", 5], ["sde", 20]], "speed_samples": 16},
}


def run_config(s: dict, treatment: str, seed: int, steps: int, out_dir: Path) -> TrainConfig:
    return TrainConfig.from_dict({
        "task": {"name": "molecules"},
        "model": {"network": "egnn", "hidden": s["hidden"], "layers": s["layers"],
                  "treatment": treatment, "interpolant": "linear", "weighting": "velocity"},
        "optim": {"lr": 1e-3, "batch_size": s["batch_size"], "steps": steps, "ema_decay": 0.99},
        "run": {"seed": seed, "out_dir": str(out_dir), "checkpoint_every": 100,
                "validate_every": 10**9, "log_every": 50},
    })


def qm9_references(count: int) -> dict:
    """What generated molecules are scored against: the training split's SMILES (novelty) and
    ``count`` QM9 test molecules, a fixed random subset (distribution distances)."""
    from quotient_diffusion.data.qm9 import load_qm9

    qm9 = load_qm9()
    test = np.random.RandomState(0).permutation(qm9.subset("test"))[:count]
    return {"train_smiles": set(qm9_reference_smiles("train")), "test": qm9_molecules(qm9, test)}


def score_samples(model, counts, sampler: SamplerConfig, refs: dict,
                  seed: int = 1234) -> tuple[dict, list]:
    """(EDM's metrics and ms per molecule of sampling alone, the molecules) of one molecule per
    entry of ``counts`` sampled by ``model``."""
    t0 = time.perf_counter()
    mols = generate_molecules(model, counts, sampler, seed=seed)
    elapsed = time.perf_counter() - t0
    out = evaluate(mols, train_smiles=refs["train_smiles"], reference=refs["test"])
    out["ms_per_molecule"] = 1000 * elapsed / len(mols)
    return out, mols


def sample_and_score(checkpoint: Path, counts, sampler: SamplerConfig, refs: dict) -> dict:
    model, _ = load_trained_model(checkpoint)
    return score_samples(model, counts, sampler, refs)[0]


def save(path: Path, payload: dict) -> None:
    atomic_write_text(path, json.dumps(payload, indent=1))


def mean_sd(values: list[float]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}"


def table(payload: dict) -> str:
    s = payload["settings"]
    lines = [f"Command: `{payload['command']}`", "",
             f"EGNN {s['hidden']} hidden / {s['layers']} layers, batch {s['batch_size']}, "
             f"seeds {s['seeds']}; {s['num_samples']} molecules per model, ODE "
             f"{s['ode_steps']} Euler steps; distribution distances against "
             f"{s['reference']} QM9 test molecules; novelty against the training split. "
             "Mean ± sd over seeds.", ""]
    head = ["steps", "treatment", "atom stab", "mol stab", "valid", "valid×unique", "novel",
            "connected", "type TV", "bond W1 (Å)", "train s/step"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for budget in s["budgets"]:
        for tr in TREATMENTS:
            recs = [r for r in payload["training"] if r["treatment"] == tr and r["steps"] == budget]
            if not recs:
                continue
            cells = [str(budget), tr] + [mean_sd([r["metrics"].get(m) for r in recs])
                                          for m in METRICS]
            cells.append(f"{np.mean([r['train_seconds_per_step'] for r in recs]):.3f}")
            lines.append("| " + " | ".join(cells) + " |")
    lines.append("| EDM (published; 3000 epochs ≈ 4.7M steps of batch 64 on a GPU) | EDM | "
                 + " | ".join(f"{EDM_PUBLISHED[m]:.3f}" if m in EDM_PUBLISHED else "—"
                              for m in METRICS) + " | — |")
    if payload.get("speed"):
        lines += ["", "Sampling speed against quality (final models, seed "
                  f"{s['seeds'][0]}, {s['speed_samples']} molecules, one CPU thread):", "",
                  "| treatment | sampler | steps | ms / molecule | atom stab | mol stab | valid |",
                  "|---|---|---|---|---|---|---|"]
        for r in payload["speed"]:
            m = r["metrics"]
            lines.append(f"| {r['treatment']} | {r['method']} | {r['steps']} | "
                         f"{m['ms_per_molecule']:.1f} | {m['atom_stability']:.3f} | "
                         f"{m['molecule_stability']:.3f} | {m['validity']:.3f} |")
    return "\n".join(lines) + "\n"


def plot(payload: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = ("atom_stability", "molecule_stability", "validity", "bond_length_w1")
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.4))
    for ax, metric in zip(axes, panels):
        for tr in TREATMENTS:
            budgets = sorted({r["steps"] for r in payload["training"] if r["treatment"] == tr})
            if not budgets:
                continue
            vals = [[r["metrics"][metric] for r in payload["training"]
                     if r["treatment"] == tr and r["steps"] == b] for b in budgets]
            mean = [np.mean(v) for v in vals]
            ax.errorbar(budgets, mean, yerr=[[m - min(v) for m, v in zip(mean, vals)],
                                             [max(v) - m for m, v in zip(mean, vals)]],
                        marker="o", capsize=3, label=tr)
        ax.set_xlabel("training steps")
        ax.set_title(metric.replace("_", " "))
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny run (about 2 minutes)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work-dir", default="runs/denovo_qm9_benchmark",
                   help="training runs (checkpoints; not committed)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    mode = "quick" if args.quick else "full"
    s = SETTINGS[mode]
    tag = "denovo_qm9_quick" if args.quick else "denovo_qm9"
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{tag}.json"
    command = "OMP_NUM_THREADS=1 python benchmarks/denovo_qm9.py" + (" --quick" if args.quick
                                                                     else "")
    payload = {"command": command, "settings": s, "training": [], "speed": []}
    if path.exists():
        old = json.loads(path.read_text())
        if old.get("settings") == json.loads(json.dumps(s)):
            payload = old
    done = {(r["treatment"], r["seed"], r["steps"]) for r in payload["training"]}

    refs = qm9_references(s["reference"])
    hist = MoleculeTask(run_config(s, "quotient", 0, 1, Path("."))).atom_count_histogram()
    counts = draw_atom_counts(hist, s["num_samples"], seed=0)
    sampler = SamplerConfig(steps=s["ode_steps"], method="ode")
    work = Path(args.work_dir) / mode

    speed_done = {(r["treatment"], r["method"], r["steps"]) for r in payload["speed"]}
    for seed in s["seeds"]:  # seed-major: an interrupted run still has whole seeds
        for tr in TREATMENTS:
            out_dir = work / f"{tr}_seed{seed}"
            for budget in s["budgets"]:
                if (tr, seed, budget) in done:
                    continue
                cfg = run_config(s, tr, seed, budget, out_dir)
                resume = (out_dir / "last.pt").exists()
                start = load_checkpoint(out_dir / "last.pt")["step"] if resume else 0
                t0 = time.perf_counter()
                final = train(get_task(cfg), cfg, resume=resume, progress=False)
                per_step = (time.perf_counter() - t0) / max(budget - start, 1)
                metrics = sample_and_score(final, counts, sampler, refs)
                payload["training"].append({"treatment": tr, "seed": seed, "steps": budget,
                                            "train_seconds_per_step": per_step,
                                            "metrics": metrics})
                save(path, payload)
                print(f"{tr} seed {seed} steps {budget}: atom {metrics['atom_stability']:.3f} "
                      f"mol {metrics['molecule_stability']:.3f} valid {metrics['validity']:.3f} "
                      f"({per_step:.3f} s/step)", flush=True)
        if seed != s["seeds"][0]:
            continue
        # sampling speed against quality, on the first seed's final models
        for tr in TREATMENTS:
            final = work / f"{tr}_seed{seed}" / "final.pt"
            for method, steps in s["speed"]:
                if (tr, method, steps) in speed_done:
                    continue
                metrics = sample_and_score(final, counts[: s["speed_samples"]],
                                           SamplerConfig(steps=steps, method=method), refs)
                payload["speed"].append({"treatment": tr, "method": method, "steps": steps,
                                         "metrics": metrics})
                save(path, payload)
                print(f"speed {tr} {method}-{steps}: {metrics['ms_per_molecule']:.1f} ms/mol, "
                      f"atom {metrics['atom_stability']:.3f}", flush=True)

    md = table(payload)
    (RESULTS / f"{tag}.md").write_text(md)
    plot(payload, RESULTS / f"{tag}.png")
    if not args.quick:
        DOCS.mkdir(parents=True, exist_ok=True)
        plot(payload, DOCS / "denovo_qm9.png")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
