"""Conformer quality against network evaluations (NFE): which ODE solver and grid, how few steps?

Question: ``qdiff conformers`` spends nearly all its time in the network (one evaluation per
Euler step, 50 by default). How few evaluations keep the conformers as good as 50 Euler steps,
and with which solver ('euler', 'heun', 'dpm2m') and time grid ('uniform', 'power', 'edm';
quotient_diffusion/diffusion/samplers.py)?

Set-up: a fixed random subset of the GEOM-QM9 test molecules that have a QM9 DFT geometry
(``reference_molecules`` of benchmarks/conformers.py), ``--conformers`` raw samples per molecule
(``raw_samples``: no stereo resampling, no MMFF), scored as benchmarks/conformers.py scores them
(``score``: the better of each sample and its mirror image, heavy-atom RMSD after RDKit's
symmetry-aware alignment, AMR-R / COV-R at 0.5 A against the single DFT conformer). Also:

* bond MAE: mean |d_sample - d_DFT| over every bond (hydrogens included), atoms matched to the
  QM9 molecule by a substructure match;
* geometry_ok: fraction of samples passing ``chem.geometry.check_geometry`` (as the command
  line flags them);
* ODE error: RMS distance per atom (Angstrom, after centring; no alignment needed since the
  prior draws are the same) from the endpoint of a converged solve of the same ODE from the same
  prior draws (Heun, ``--reference-steps`` steps). Every sampler here is deterministic given the
  prior, and the seed gives every configuration the same prior draws, so differences between
  configurations are integration error only, not sampling noise.

Noise: the 50-step Euler sampler is rerun with ``--noise-seeds`` other seeds; the standard
deviation of its AMR-R over seeds is what a change of seed does to the headline number. A
configuration is "within noise" of Euler-50 when its AMR-R exceeds Euler-50's (same prior
draws) by less than that standard deviation; the table also gives the paired difference and its
standard error over molecules. AMR-R alone is not enough: it is decided by the global shape
(early steps), bond lengths by the last steps, and a few-step sampler can keep the first and
lose the second (geometry_ok falls). So :func:`choose` takes the fewest NFE whose AMR-R and
bond MAE are both within noise of Euler-50's (noise of the bond MAE: its standard deviation
over the same seeds).

    python benchmarks/sampler_steps.py --quick                       # under a minute
    python benchmarks/sampler_steps.py --checkpoint run/last.pt      # bundled + another model

Fewer evaluations than a deployed default: ``--baseline dpm2m:power:2:10`` compares every row
with that sampler instead of Euler-50 (its seed noise then comes from ``--noise-seeds`` reruns
of it), ``--reference-steps 0`` skips the converged solve (no ODE error), and ``--name`` keeps
the results apart, e.g.

    python benchmarks/sampler_steps.py --molecules 200 --conformers 10 --reference-steps 0 \
        --baseline dpm2m:power:2:10 --noise-seeds 1 --combos dpm2m:power:2 --nfe 4 5 6 8 \
        --name sampler_steps_fewer

A combination's fourth field is the power grid's last interior time (``SamplerConfig.last_time``),
e.g. ``--combos dpm2m:power:1.5:0.99``; a baseline then reads ``dpm2m:power:1.5:0.99:8``.

Timings in the JSON are seconds of this run (one thread by default) and mean nothing on a
loaded machine; benchmarks/conformers.py times the command's pipeline against ETKDG.
Writes benchmarks/results/sampler_steps{,_quick}.json, .md and .png (``--name``: another stem).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _results import RESULTS, command, save_figure, write_results
from conformers import reference_molecules, score  # benchmarks/conformers.py

from quotient_diffusion.chem.geometry import check_geometry
from quotient_diffusion.conformers import default_checkpoint, prepare_jobs, raw_samples
from quotient_diffusion.data.qm9 import load_qm9
from quotient_diffusion.diffusion import SamplerConfig
from quotient_diffusion.tasks import load
from quotient_diffusion.training import load_checkpoint

#: (solver, schedule, rho, last interior time) combinations measured by default
COMBOS = [("euler", "uniform", None, None), ("heun", "uniform", None, None),
          ("heun", "power", 1.5, None), ("dpm2m", "uniform", None, None),
          ("dpm2m", "power", 1.5, None), ("dpm2m", "power", 2.0, None),
          ("dpm2m", "edm", None, None)]
BASELINE = SamplerConfig(steps=50)  # the command's sampler before this benchmark


def steps_for(solver: str, nfe: int) -> int:
    """Grid intervals that spend at most ``nfe`` evaluations (Heun: 2 K - 1)."""
    return max(1, (nfe + 1) // 2) if solver == "heun" else nfe


def parse_baseline(text: str) -> SamplerConfig:
    """'dpm2m:power:2:10' -> dpm2m on the power grid, rho 2, 10 steps; 'euler:uniform:50';
    'dpm2m:power:2:0.99:6' -> the same grid with last interior time 0.99, 6 steps."""
    *combo, steps = text.split(":")
    solver, schedule, rho, last_time = parse_combo(":".join(combo))
    return SamplerConfig(steps=int(steps), solver=solver, schedule=schedule, rho=rho,
                         last_time=last_time)


def parse_combo(text: str) -> tuple[str, str, float | None, float | None]:
    """'dpm2m:power:2' -> ('dpm2m', 'power', 2.0, None); 'euler:uniform' -> ('euler',
    'uniform', None, None); 'dpm2m:power:2:0.99' -> ('dpm2m', 'power', 2.0, 0.99): solver,
    schedule, rho, last interior time."""
    parts = text.split(":")
    rho = float(parts[2]) if len(parts) > 2 else None
    last_time = float(parts[3]) if len(parts) > 3 else None
    return parts[0], parts[1], rho, last_time


def bond_errors(jobs, refs, qm9) -> tuple[float, float]:
    """(mean |d - d_DFT| over all bonds and samples, fraction of samples with geometry_ok)."""
    errors, ok = [], []
    for job, ref in zip(jobs, refs):
        ref_mol = qm9.molecule(ref["entry"])
        match = ref_mol.GetSubstructMatch(job.mol)
        if len(match) != job.mol.GetNumAtoms():
            continue
        ref_pos = qm9.positions_of(ref["entry"])[list(match)]
        bonds = np.array([(b.GetBeginAtomIdx(), b.GetEndAtomIdx()) for b in job.mol.GetBonds()])
        d_ref = np.linalg.norm(ref_pos[bonds[:, 0]] - ref_pos[bonds[:, 1]], axis=-1)
        for pos in job.conformers:
            d = np.linalg.norm(pos[bonds[:, 0]] - pos[bonds[:, 1]], axis=-1)
            errors.append(np.abs(d - d_ref))
            ok.append(check_geometry(job.mol, pos).ok)
    return float(np.concatenate(errors).mean()), float(np.mean(ok))


def sample_jobs(loaded, refs, sampler: SamplerConfig, conformers: int, seed: int):
    """Prepared jobs with ``conformers`` raw samples each of the loaded (task, model), and the
    sampling time (s)."""
    jobs = prepare_jobs([r["smiles"] for r in refs])
    t0 = time.perf_counter()
    raw_samples(*loaded, jobs, conformers, sampler, seed=seed)
    return jobs, time.perf_counter() - t0


def ode_error(jobs, reference_jobs) -> float:
    """RMS distance per atom (A) between the samples and the converged endpoints."""
    sq, count = 0.0, 0
    for job, ref in zip(jobs, reference_jobs):
        for a, b in zip(job.conformers, ref.conformers):
            sq += float(((a - b) ** 2).sum())
            count += len(a)
    return (sq / count) ** 0.5


def evaluate(loaded, refs, qm9, sampler: SamplerConfig, args, seed: int,
             reference_jobs=None) -> tuple[dict, list]:
    """Scores of one sampler configuration; returns (result, jobs)."""
    jobs, elapsed = sample_jobs(loaded, refs, sampler, args.conformers, seed)
    result = score(jobs, refs, qm9)
    result["bond_mae"], result["geometry_ok"] = bond_errors(jobs, refs, qm9)
    result.update(nfe=sampler.evaluations, seconds=elapsed, solver=sampler.solver,
                  schedule=sampler.schedule, rho=sampler.rho, steps=sampler.steps, seed=seed)
    if reference_jobs is not None:
        result["ode_error"] = ode_error(jobs, reference_jobs)
    return result, jobs


def paired(per_mol: list[float], base: list[float]) -> tuple[float, float]:
    """Mean and standard error over molecules of the per-molecule AMR-R difference."""
    d = np.asarray(per_mol) - np.asarray(base)
    return float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d)))


def run_model(label: str, path: Path, refs, qm9, args) -> dict:
    """Every configuration for one checkpoint, plus the seed-noise and converged references."""
    loaded = load(path, "conformers")
    step = int(load_checkpoint(path).get("step", -1))
    print(f"== {label} ({path}, step {step})", flush=True)
    baseline = args.baseline
    ref_result, reference_jobs = None, None
    if args.reference_steps > 0:
        reference = SamplerConfig(steps=args.reference_steps, solver="heun")
        ref_result, reference_jobs = evaluate(loaded, refs, qm9, reference, args, args.seed)
    base, _ = evaluate(loaded, refs, qm9, baseline, args, args.seed, reference_jobs)
    seeds = [base] + [evaluate(loaded, refs, qm9, baseline, args, args.seed + s)[0]
                      for s in range(1, args.noise_seeds + 1)]
    noise = {key: float(np.std([r[key] for r in seeds], ddof=1)) if len(seeds) > 1 else 0.0
             for key in ("amr_recall", "bond_mae")}
    configs = [baseline] + [
        SamplerConfig(steps=steps_for(solver, nfe), solver=solver, schedule=schedule, rho=rho,
                      last_time=last_time)
        for solver, schedule, rho, last_time in args.combos for nfe in args.nfe]
    rows = []
    for cfg in configs:
        if any(r["label"] == cfg.label() for r in rows):
            continue
        if cfg is baseline:
            res = dict(base)
        else:
            res, _ = evaluate(loaded, refs, qm9, cfg, args, args.seed, reference_jobs)
        res["label"] = cfg.label()
        res["delta_amr_recall"], res["delta_se"] = paired(
            res["per_molecule_amr_recall"], base["per_molecule_amr_recall"])
        res["within_noise"] = res["delta_amr_recall"] < noise["amr_recall"]
        res["bonds_within_noise"] = res["bond_mae"] - base["bond_mae"] < noise["bond_mae"]
        rows.append(res)
        print(f"{label:>12s} {cfg.label():22s} NFE {cfg.evaluations:3d}  AMR-R "
              f"{res['amr_recall']:.4f} ({res['delta_amr_recall']:+.4f} +- "
              f"{res['delta_se']:.4f})  COV-R {res['cov_recall']:.3f}  bond MAE "
              f"{res['bond_mae']:.4f}  ODE err {res.get('ode_error', float('nan')):.3f}",
              flush=True)
    return {"path": str(path), "step": step, "baseline_sampler": baseline.label(),
            "baseline": base, "converged": ref_result,
            "seed_amr_recall": [r["amr_recall"] for r in seeds],
            "seed_bond_mae": [r["bond_mae"] for r in seeds], "noise": noise, "rows": rows}


def choose(model: dict) -> dict | None:
    """The row with the fewest NFE whose AMR-R and bond MAE are both within noise of the
    baseline's (Euler-50 unless ``--baseline``; ties: lower AMR-R)."""
    ok = [r for r in model["rows"] if r["within_noise"] and r["bonds_within_noise"]]
    return min(ok, key=lambda r: (r["nfe"], r["amr_recall"])) if ok else None


def markdown(results: dict, meta: dict) -> str:
    base_name = meta.get("baseline", BASELINE.label())
    ode = (f"ODE error = RMS distance per atom to the converged solve (Heun, "
           f"{meta['reference_steps']} steps) from the same prior draws."
           if meta["reference_steps"] > 0 else "No converged solve (ODE error n/a).")
    lines = [f"Conformer quality against network evaluations: {meta['molecules']} GEOM-QM9 test "
             f"molecules, {meta['conformers']} raw samples each (no stereo resampling), "
             f"seed {meta['seed']}, same prior draws for every row. AMR-R/COV-R against the QM9 "
             f"DFT geometry; ΔAMR-R = row minus {base_name} (paired over molecules, ± standard "
             f"error); {ode}", ""]
    for label, model in results.items():
        noise = model["noise"]
        converged = model["converged"]
        lines += [f"### {label} (step {model['step']})", "",
                  f"{base_name} over seeds: AMR-R "
                  f"{', '.join(f'{v:.4f}' for v in model['seed_amr_recall'])} A (std "
                  f"{noise['amr_recall']:.4f}: the noise), bond MAE "
                  f"{', '.join(f'{v:.4f}' for v in model['seed_bond_mae'])} A (std "
                  f"{noise['bond_mae']:.4f})." + (
                      "" if converged is None else
                      f" Converged ODE: AMR-R {converged['amr_recall']:.4f}, bond MAE "
                      f"{converged['bond_mae']:.4f} A."), "",
                  "| sampler | NFE | AMR-R (A) | ΔAMR-R (A) | COV-R (%) | AMR-P (A) | "
                  "bond MAE (A) | geometry_ok (%) | ODE error (A) | AMR-R within noise | bond MAE "
                  "within noise |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in sorted(model["rows"], key=lambda r: (r["label"].rsplit("-", 1)[0], r["nfe"])):
            lines.append(
                f"| {r['label']} | {r['nfe']} | {r['amr_recall']:.4f} | "
                f"{r['delta_amr_recall']:+.4f} ± {r['delta_se']:.4f} | "
                f"{100 * r['cov_recall']:.1f} | {r['amr_precision']:.4f} | {r['bond_mae']:.4f} | "
                f"{100 * r['geometry_ok']:.1f} | "
                f"{'n/a' if r.get('ode_error') is None else format(r['ode_error'], '.3f')} | "
                f"{'yes' if r['within_noise'] else 'no'} | "
                f"{'yes' if r['bonds_within_noise'] else 'no'} |")
        best = choose(model)
        if best is not None:
            lines += ["", f"Fewest NFE with AMR-R and bond MAE within noise of {base_name}: "
                          f"**{best['label']}** ({best['nfe']} NFE, "
                          f"AMR-R {best['amr_recall']:.4f}, Δ {best['delta_amr_recall']:+.4f})."]
        lines.append("")
    return "\n".join(lines)


def plot(results: dict, path: Path) -> None:
    """AMR-R (top) and bond MAE (bottom) against NFE, one column per model, with Euler-50's
    value +- its seed standard deviation as a grey band (the baseline's, Euler-50 by
    default)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = (("amr_recall", "AMR-R (A)"), ("bond_mae", "bond MAE vs DFT (A)"))
    fig, axes = plt.subplots(2, len(results), figsize=(5.5 * len(results), 8), squeeze=False)
    for column, (label, model) in enumerate(results.items()):
        series: dict[str, list] = {}
        for r in model["rows"]:
            series.setdefault(r["label"].rsplit("-", 1)[0], []).append(r)
        for row, (key, name) in enumerate(metrics):
            ax = axes[row, column]
            for combo, rows in series.items():
                rows.sort(key=lambda r: r["nfe"])
                ax.plot([r["nfe"] for r in rows], [r[key] for r in rows], marker="o", ms=3,
                        label=combo)
            base, noise = model["baseline"][key], model["noise"][key]
            ax.axhspan(base - noise, base + noise, color="grey", alpha=0.25, lw=0,
                       label=f"{model.get('baseline_sampler', 'Euler-50')} ± seed std")
            lo = min(r[key] for r in model["rows"])
            ax.set_ylim(lo - 0.1 * base, base * 1.6)
            ax.set_xlabel("network evaluations (NFE)")
            ax.set_ylabel(name)
            ax.set_title(f"{label} (step {model['step']})", fontsize=9)
            ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="12 molecules, 2 samples, 3 combos")
    p.add_argument("--checkpoint", action="append", default=[],
                   help="another conformer checkpoint (repeatable); the bundled one always runs")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--molecules", type=int, default=50)
    p.add_argument("--conformers", type=int, default=3)
    p.add_argument("--nfe", type=int, nargs="+", default=[5, 8, 10, 12, 15, 20, 30],
                   help="evaluation budgets per combination (the baseline always runs)")
    p.add_argument("--combos", type=parse_combo, nargs="+", default=COMBOS,
                   help="solver:schedule[:rho[:last_time]] (default: every combination of "
                        "COMBOS)")
    p.add_argument("--reference-steps", type=int, default=100)
    p.add_argument("--noise-seeds", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--baseline", type=parse_baseline, default=BASELINE,
                   help="solver:schedule[:rho]:steps every row is compared with "
                        "(default euler:uniform:50)")
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--name", default="sampler_steps", help="results file stem under --out")
    args = p.parse_args(argv)
    name = args.name
    if args.reference_steps < 0:
        p.error("--reference-steps must be >= 0 (0: no converged solve)")
    if args.quick:
        args.molecules, args.conformers, args.nfe = 12, 2, [5, 10]
        args.combos = [("euler", "uniform", None, None), ("heun", "uniform", None, None),
                       ("dpm2m", "power", 2.0, 0.99)]
        args.reference_steps, args.noise_seeds = 20, 1
        name += "_quick"
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    refs = reference_molecules(args.data_dir, args.molecules)
    qm9 = load_qm9()
    models = {"bundled": default_checkpoint()}
    for path in args.checkpoint:
        models[Path(path).stem] = Path(path)
    results = {label: run_model(label, path, refs, qm9, args) for label, path in models.items()}
    for model in results.values():  # per-molecule lists: only the paired deltas need them
        for r in [model["baseline"], model["converged"], *model["rows"]]:
            if r is not None:
                r.pop("per_molecule_amr_recall", None)
    meta = {"molecules": args.molecules, "conformers": args.conformers, "seed": args.seed,
            "reference_steps": args.reference_steps, "noise_seeds": args.noise_seeds,
            "baseline": args.baseline.label(),
            "threads": args.threads, "cpu_seconds_wall": time.perf_counter() - t0,
            "command": command(__file__, argv)}
    out = Path(args.out)
    table = markdown(results, meta)
    write_results(out, name, {"meta": meta, "results": results}, table)
    plot(results, out / f"{name}.png")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
