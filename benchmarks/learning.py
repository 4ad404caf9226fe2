"""Which learning-efficiency changes help, at equal budget? (the ablation of "Learning that counts")

Question: with the same network, data, steps, batch and seeds, does each of the training changes
(EDM preconditioning, its unit loss weights, the per-layer Fourier time embedding, the radial
basis of distances, learning-rate warm-up + cosine decay, EMA warm-up) lower the validation
error and raise the task's quality metric? Variants:

* ``full``: today's defaults (every change on);
* ``legacy``: every change off (the model the project trained before);
* ``no_<change>``: the defaults with one change off (leave-one-out).

Each (variant, seed) is one `train()` run in ``runs/learning/<task>/<variant>_s<seed>``
(resumable: a rerun continues unfinished runs and skips finished ones). Reported per variant:
mean and spread (min..max) over seeds of the final EMA model's validation metrics (loss by noise
level and the task's quality metrics, recomputed at the end so that every run is scored by the
same code), the seconds per step measured in the run, and the learning curves as a plot.

    python benchmarks/learning.py --task conformers --quick      # about a minute
    python benchmarks/learning.py --task conformers --steps 2000 --seeds 0 1
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from _results import (
    RESULTS,
    ROOT,
    command,
    machine,
    markdown_table,
    save_figure,
    write_json,
    write_text,
)

from quotient_diffusion.tasks import get_task, load_trained_model
from quotient_diffusion.training import TrainConfig, load_checkpoint, train

#: the base config of each task (the conformer one is kept apart from the long-run config so that
#: the committed table stays reproducible)
CONFIGS = {"conformers": "conformers_qm9_ablation.json", "molecules": "denovo_qm9.json",
           "backbones": "backbones.json"}

#: each change as the config edits that switch it off
CHANGES: dict[str, dict[str, dict]] = {
    "precond": {"model": {"preconditioning": False, "weighting": "velocity"}},
    "unit_weight": {"model": {"weighting": "velocity"}},
    "fourier": {"network_options": {"time_features": 0}},
    "rbf": {"network_options": {"num_rbf": 0}},
    "schedule": {"optim": {"warmup_steps": 0, "lr_schedule": "constant"}},
    "ema_warmup": {"optim": {"ema_warmup": False}},
}
#: the quality metric each task's curve is judged by, and whether higher is better
HEADLINE = {"conformers": ("val_bond_mae", False),
            "molecules": ("val_atom_stability", True),
            "backbones": ("val_ca_ca_within_0.2", True)}


def variant_edits(name: str, network: str) -> list[dict]:
    """The config edits of a variant (``full``, ``legacy`` or ``no_<change>``)."""
    if name == "full":
        return []
    if name == "legacy":
        keys = [k for k in CHANGES if k != "unit_weight"]  # 'precond' sets the weights
    elif name.startswith("no_") and name[3:] in CHANGES:
        keys = [name[3:]]
    else:
        raise SystemExit(f"unknown variant {name!r}: full, legacy or no_<{'|'.join(CHANGES)}>")
    if network != "egnn":  # only the EGNN has the optional radial basis
        keys = [k for k in keys if k != "rbf"]
    return [CHANGES[k] for k in keys]


def make_config(args, variant: str, seed: int) -> TrainConfig:
    cfg = TrainConfig.load(ROOT / "configs" / CONFIGS[args.task])
    cfg.model.preconditioning, cfg.model.weighting = True, "unit"
    cfg.model.network_options = {k: v for k, v in cfg.model.network_options.items()
                                 if k not in ("time_features", "num_rbf")}
    for edit in variant_edits(variant, cfg.model.network):
        for section, values in edit.items():
            if section == "network_options":
                cfg.model.network_options.update(values)
            else:
                for key, value in values.items():
                    setattr(getattr(cfg, section), key, value)
    cfg.optim.steps = args.steps
    cfg.run.seed = seed
    cfg.run.threads = args.threads
    cfg.run.validate_every = max(args.steps // args.points, 1)
    cfg.run.checkpoint_every = cfg.run.validate_every
    cfg.run.out_dir = str(Path(args.runs) / args.task / f"{variant}_s{seed}")
    cfg.task.data_dir = args.data_dir
    if args.limit:
        cfg.task.limit = args.limit
    if args.quick:
        cfg.optim.batch_size = 16
        quick = ({"quality_chains": 2} if args.task == "backbones"  # it reads no num_val
                 else {"num_val": 32, "quality_molecules": 16})
        cfg.task.options = {**cfg.task.options, **quick}
    return cfg


def run_one(cfg: TrainConfig) -> dict:
    """Train (or resume, or reuse) one run; returns its curve and seconds per step."""
    out = Path(cfg.run.out_dir)
    curve_file = out / "curve.json"
    if (out / "final.pt").exists() and curve_file.exists():
        curve = json.loads(curve_file.read_text())
        if curve and curve[-1]["step"] >= cfg.optim.steps:
            return {"curve": curve, "seconds_per_step": json.loads(
                (out / "timing.json").read_text())["seconds_per_step"]}
    resume = (out / "last.pt").exists()
    t0 = time.perf_counter()
    start = 0
    if resume:
        start = load_checkpoint(out / "last.pt", ("step",))["step"]
    train(get_task(cfg), cfg, resume=resume, progress=False)
    seconds = (time.perf_counter() - t0) / max(cfg.optim.steps - start, 1)
    write_json(out / "timing.json", {"seconds_per_step": seconds}, indent=None)
    return {"curve": json.loads(curve_file.read_text()), "seconds_per_step": seconds}


def final_evaluation(cfg: TrainConfig) -> dict:
    """Validation metrics of the run's final EMA model, computed now (so that every variant is
    scored by the same code, whenever its curve was recorded)."""
    model, config = load_trained_model(Path(cfg.run.out_dir) / "final.pt")
    task = get_task(config)
    return task.validate(model, task.datasets()[1])


def summarise(runs: dict[str, list[dict]]) -> dict:
    """Per variant: mean, min and max over seeds of each metric of the final evaluation."""
    summary = {}
    for variant, seeds in runs.items():
        finals = [r["final"] for r in seeds]
        keys = [k for k in finals[0] if k not in ("step", "hours")]
        summary[variant] = {
            k: {"mean": float(np.mean([f[k] for f in finals])),
                "min": float(np.min([f[k] for f in finals])),
                "max": float(np.max([f[k] for f in finals]))} for k in keys}
        summary[variant]["seconds_per_step"] = {
            "mean": float(np.mean([r["seconds_per_step"] for r in seeds]))}
    return summary


def markdown(task: str, summary: dict, meta: dict) -> str:
    headline, higher = HEADLINE[task]
    keys = [k for k in next(iter(summary.values())) if k != "seconds_per_step"]
    keys = [headline] + [k for k in keys if k != headline]
    lines = [f"# Learning ablation: {task}", "",
             f"{meta['steps']} steps, batch {meta['batch_size']}, seeds {meta['seeds']}, "
             f"{meta['network']}; mean (min..max) over seeds of the final model's validation "
             f"metrics. "
             f"Headline: `{headline}` ({'higher' if higher else 'lower'} is better). "
             f"Command: `{meta['command']}`.", ""]
    rows = [[variant, *(f"{row[k]['mean']:.4g} ({row[k]['min']:.3g}..{row[k]['max']:.3g})"
                        if k in row else "" for k in keys),
             f"{row['seconds_per_step']['mean']:.3f}"] for variant, row in summary.items()]
    lines += markdown_table(["variant", *keys, "s/step"], rows)
    return "\n".join(lines) + "\n"


def plot(task: str, runs: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    headline, _ = HEADLINE[task]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for k, (variant, seeds) in enumerate(runs.items()):
        colour = f"C{k}"
        for i, run in enumerate(seeds):
            steps = [r["step"] for r in run["curve"]]
            label = variant if i == 0 else None
            axes[0].plot(steps, [r["val_mse_t0.90"] for r in run["curve"]], colour, label=label)
            if headline in run["curve"][0]:
                axes[1].plot(steps, [r[headline] for r in run["curve"]], colour)
    axes[0].set(xlabel="step", ylabel="val MSE at t = 0.9 (A^2)", yscale="log")
    axes[1].set(xlabel="step", ylabel=headline)
    axes[0].legend(fontsize=8)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle(f"learning ablation: {task}")
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", choices=sorted(CONFIGS), default="conformers")
    p.add_argument("--variants", nargs="+",
                   default=["full", "legacy", *(f"no_{c}" for c in CHANGES)])
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--points", type=int, default=8, help="validation records per curve")
    p.add_argument("--limit", type=int, help="training molecules (default: the whole split)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data-dir")
    p.add_argument("--runs", default=str(ROOT / "runs" / "learning"))
    p.add_argument("--quick", action="store_true", help="tiny budget: checks the pipeline")
    args = p.parse_args(argv)
    if args.quick:
        args.steps, args.seeds, args.points = 40, [0], 2
        args.variants = ["full", "legacy"]
        args.runs = str(Path(args.runs) / "quick")
    runs: dict[str, list[dict]] = {}
    cfg = None
    for variant in args.variants:
        for seed in args.seeds:
            cfg = make_config(args, variant, seed)
            print(f"{args.task} {variant} seed {seed}: {cfg.optim.steps} steps", flush=True)
            run = run_one(cfg)
            run["final"] = final_evaluation(cfg)
            runs.setdefault(variant, []).append(run)
    summary = summarise(runs)
    meta = {"task": args.task, "steps": args.steps, "seeds": args.seeds,
            "batch_size": cfg.optim.batch_size,
            "network": f"{cfg.model.network} {cfg.model.hidden}/{cfg.model.layers}",
            "threads": args.threads, "machine": machine(), "command": command(__file__, argv)}
    stem = RESULTS / f"learning_{args.task}{'_quick' if args.quick else ''}"
    table = markdown(args.task, summary, meta)
    write_json(stem.with_suffix(".json"), {"meta": meta, "summary": summary, "runs": runs})
    write_text(stem.with_suffix(".md"), table)
    plot(args.task, runs, stem.with_suffix(".png"))
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
