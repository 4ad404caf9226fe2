"""How good is the bundled de novo QM9 model, and which sampler should be its default?

The model is ``qdiff sample molecules``'s default (quotient_diffusion/checkpoints/denovo_qm9.pt;
``--checkpoint`` measures another one, a training run's resumable last.pt included).

* Part A (the model): ``--samples`` molecules (default 1000; the committed run uses 10,000)
  sampled with the command's default sampler (``tasks.molecules.DEFAULT_SAMPLER``), scored with
  EDM's metrics as benchmarks/denovo_qm9.py scores them (``score_samples``): atom and molecule
  stability, RDKit validity, valid x unique, novelty against the training split, connectedness,
  atom-type TV and bond-length W1 against ``--reference`` QM9 test molecules, and milliseconds
  of sampling per molecule. The published EDM and GeoLDM rows are the anchors.
* Part B (the sampler): ``--sampler-samples`` molecules (default 500) under each ODE solver
  (euler, heun, dpm2m; quotient_diffusion/diffusion/samplers.py) and grid at several step
  counts, and the SDE (Euler-Maruyama) at two. Every row has the same atom counts (drawn once
  from the training histogram) and the same seed, so the ODE rows start from the same prior
  draws and differ by integration error only.

Every record goes to benchmarks/results/<name>.json and .md as soon as it is finished; a rerun
with the same checkpoint file (SHA-256) and settings skips the records already there. The first
``--sdf`` molecules of part A are written to <name>.sdf as the command writes them (bonds
perceived with EDM's table). Timings are one process with ``--threads`` torch threads; the JSON
records the load average, since timings taken next to other work are slower and not comparable.

    OMP_NUM_THREADS=1 python benchmarks/denovo_bundled.py --quick     # under a minute
    OMP_NUM_THREADS=1 python benchmarks/denovo_bundled.py --samples 10000
    OMP_NUM_THREADS=1 python benchmarks/denovo_bundled.py --quick \\
        --checkpoint training_runs/denovo_qm9/last.pt --name denovo_bundled_quick

The first run on a machine builds the training split's SMILES cache for novelty (about a
minute, ``tasks.molecules.qm9_reference_smiles``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import torch
from conformers import describe_checkpoint  # benchmarks/conformers.py
from denovo_qm9 import EDM_PUBLISHED, METRICS, qm9_references, save, score_samples

from quotient_diffusion.commands.sample_molecules import _scored
from quotient_diffusion.diffusion import SamplerConfig
from quotient_diffusion.errors import InputError
from quotient_diffusion.output import atomic_write_text, check_output
from quotient_diffusion.tasks import checkpoint_path, load
from quotient_diffusion.tasks.molecules import DEFAULT_SAMPLER, MoleculeTask, draw_atom_counts
from quotient_diffusion.training import load_checkpoint

RESULTS = Path(__file__).resolve().parent / "results"
#: GeoLDM (Xu et al. 2023, Table 1, QM9): atom stab / mol stab / valid / valid x unique
GEOLDM_PUBLISHED = {"atom_stability": 0.989, "molecule_stability": 0.894, "validity": 0.938,
                    "valid_unique": 0.927}
#: part B: (method, solver, schedule, steps); the SDE is Euler-Maruyama on the uniform grid
SAMPLERS = [("ode", "euler", "uniform", k) for k in (10, 20, 50, 100)] + [
    ("ode", "heun", "uniform", 10), ("ode", "heun", "uniform", 25),
    ("ode", "dpm2m", "uniform", 10), ("ode", "dpm2m", "uniform", 20),
    ("ode", "dpm2m", "power", 10), ("ode", "dpm2m", "power", 20), ("ode", "dpm2m", "power", 50),
    ("ode", "dpm2m", "edm", 20),
    ("sde", "euler", "uniform", 50), ("sde", "euler", "uniform", 200)]
QUICK_SAMPLERS = [("ode", "euler", "uniform", 10), ("sde", "euler", "uniform", 20)]
#: --quick: (samples, sampler samples, reference molecules, SDF molecules)
QUICK = (12, 12, 100, 5)
SEED = 1234  # the sampling seed of every row (benchmarks/denovo_qm9.py's)
COLUMNS = [("atom_stability", "atom stab (%)", 100), ("molecule_stability", "mol stab (%)", 100),
           ("validity", "valid (%)", 100), ("valid_unique", "valid×unique (%)", 100),
           ("novelty", "novel (%)", 100), ("connected", "connected (%)", 100),
           ("atom_type_tv", "type TV", 1), ("bond_length_w1", "bond W1 (Å)", 1)]
assert [c[0] for c in COLUMNS] == list(METRICS)


class UsageError(Exception):
    """A bad argument, checkpoint or output folder (one line on stderr, exit status 2)."""


def sampler_of(method: str, solver: str, schedule: str, steps: int) -> SamplerConfig:
    return SamplerConfig(steps=steps, method=method, solver=solver, schedule=schedule)


def references(config, count: int) -> dict:
    """What the samples are scored against: for a QM9 model, the QM9 training SMILES and
    ``count`` QM9 test molecules (``qm9_references``); for a model of another source (the g2
    molecules of the tests), its own training and validation molecules."""
    if config.task.options.get("source", "qm9") == "qm9":
        return qm9_references(count)
    from quotient_diffusion.metrics.molecules import validity

    train, val = MoleculeTask(config).datasets()
    smiles = validity([train.molecule(i) for i in range(len(train))])["smiles"]
    return {"train_smiles": {s for s in smiles if s is not None},
            "test": [val.molecule(i) for i in range(min(count, len(val)))]}


def describe(path: Path, config) -> dict:
    """The checkpoint: file, SHA-256, training steps (done and planned), network."""
    m = config.model
    return {"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "trained": describe_checkpoint(path),
            "step": int(load_checkpoint(path, ("step",))["step"]),
            "planned_steps": config.optim.steps, "task": config.task.name,
            "source": config.task.options.get("source", "qm9"),
            "network": f"{m.network} {m.hidden}/{m.layers}", "treatment": m.treatment}


def machine(threads: int) -> dict:
    load = os.getloadavg()
    return {"platform": platform.platform(), "processor": platform.processor() or "unknown",
            "cpu_count": os.cpu_count(), "torch_threads": threads,
            "load_average_at_start": [round(x, 2) for x in load],
            "note": (f"load average {load[0]:.2f} on {os.cpu_count()} cores at the start: "
                     "timings taken next to other work are slower and not comparable")}


def _cell(metrics: dict, key: str, scale: float) -> str:
    value = metrics.get(key)
    if value is None:
        return "—"
    return f"{100 * value:.1f}" if scale == 100 else f"{value:.3f}"


def markdown(payload: dict) -> str:
    s, ck = payload["settings"], payload["checkpoint"]
    lines = [f"Command: `{payload['command']}`", "",
             f"Checkpoint `{ck['path']}`: {ck['network']} ({ck['treatment']}), trained "
             f"{ck['trained']} of {ck['planned_steps']:,} planned; sha256 {ck['sha256'][:12]}.",
             f"Distribution distances against {s['reference']} QM9 test molecules, novelty "
             f"against the training split; {payload['machine']['torch_threads']} torch "
             f"thread(s), {payload['machine']['note']}.", "",
             f"## A. The model ({s['samples']:,} molecules, default sampler "
             f"{s['default_sampler']})", ""]
    head = ["model", "sampler", "samples"] + [c[1] for c in COLUMNS] + ["ms / molecule"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in payload["main"]:
        m = r["metrics"]
        lines.append("| " + " | ".join(["this checkpoint", r["sampler"], f"{r['samples']:,}"]
                                       + [_cell(m, k, sc) for k, _, sc in COLUMNS]
                                       + [f"{m['ms_per_molecule']:.1f}"]) + " |")
    for name, anchor in (("EDM (published)", EDM_PUBLISHED),
                         ("GeoLDM (published)", GEOLDM_PUBLISHED)):
        lines.append("| " + " | ".join([name, "—", "10,000"]
                                       + [_cell(anchor, k, sc) for k, _, sc in COLUMNS]
                                       + ["—"]) + " |")
    if payload["samplers"]:
        n = s["sampler_samples"]
        lines += ["", f"## B. Samplers ({n:,} molecules each; same atom counts and seed)", "",
                  f"Binomial standard error of a rate at {n} molecules: at most "
                  f"{100 * 0.5 / n ** 0.5:.1f} points.", ""]
        head = ["sampler", "method", "NFE"] + [c[1] for c in COLUMNS] + ["ms / molecule"]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in payload["samplers"]:
            m = r["metrics"]
            label = r["sampler"] + (" (default)" if r["sampler"] == s["default_sampler"]
                                    else "")
            lines.append("| " + " | ".join([label, r["config"]["method"], str(r["nfe"])]
                                           + [_cell(m, k, sc) for k, _, sc in COLUMNS]
                                           + [f"{m['ms_per_molecule']:.1f}"]) + " |")
    return "\n".join(lines) + "\n"


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--checkpoint", help="model to measure (default: the bundled one)")
    p.add_argument("--samples", type=int, help="part A molecules (default 1000)")
    p.add_argument("--sampler-samples", type=int, help="part B molecules per sampler (500)")
    p.add_argument("--reference", type=int, help="QM9 test molecules for TV / W1 (2000)")
    p.add_argument("--sdf", type=int, help="part A molecules written to <name>.sdf (100; 0: none)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--quick", action="store_true",
                   help=f"{QUICK[0]} molecules, {len(QUICK_SAMPLERS)} samplers: a smoke test")
    p.add_argument("--name", help="results file stem (default denovo_bundled[_quick])")
    p.add_argument("--out", default=str(RESULTS), help="results folder (benchmarks/results)")
    args = p.parse_args(argv)
    defaults = QUICK if args.quick else (1000, 500, 2000, 100)
    for key, value in zip(("samples", "sampler_samples", "reference", "sdf"), defaults):
        if getattr(args, key) is None:
            setattr(args, key, value)
    for key in ("samples", "sampler_samples", "reference", "threads"):
        if getattr(args, key) < 1:
            raise UsageError(f"--{key.replace('_', '-')} must be at least 1")
    if args.sdf < 0:
        raise UsageError("--sdf must be at least 0")
    args.name = args.name or ("denovo_bundled_quick" if args.quick else "denovo_bundled")
    return args


def run(args: argparse.Namespace, argv: list[str] | None) -> int:
    out = Path(args.out)
    try:
        check_output(out, "dir")
    except InputError as err:
        raise UsageError(str(err)) from None
    path = checkpoint_path(args.checkpoint, MoleculeTask.name)
    if not path.is_file():
        raise UsageError(f"no bundled de novo model ({path}); pass --checkpoint"
                         if args.checkpoint is None else f"--checkpoint {path}: no such file")
    torch.set_num_threads(args.threads)
    try:
        task, model = load(path, MoleculeTask.name)
    except (OSError, ValueError) as err:
        raise UsageError(f"cannot load the model: {err}") from None
    config = task.config
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / f"{args.name}.json", out / f"{args.name}.md"
    words = argv if argv is not None else sys.argv[1:]
    settings = {"samples": args.samples, "sampler_samples": args.sampler_samples,
                "reference": args.reference, "seed": SEED, "counts_seed": 0,
                "default_sampler": DEFAULT_SAMPLER.label()}
    payload = {"question": "How good is the bundled de novo QM9 model, and which sampler "
                           "should be its default?",
               "command": " ".join(["OMP_NUM_THREADS=1 python benchmarks/denovo_bundled.py",
                                    *words]),
               "settings": settings, "checkpoint": describe(path, config),
               "machine": machine(args.threads), "main": [], "samplers": []}
    if json_path.exists():
        old = json.loads(json_path.read_text())
        if (old.get("settings") == settings
                and old.get("checkpoint", {}).get("sha256") == payload["checkpoint"]["sha256"]):
            payload["main"], payload["samplers"] = old["main"], old["samplers"]
        else:
            print(f"{json_path}: other settings or checkpoint; starting afresh", flush=True)

    def finish(part: str, sampler: SamplerConfig, metrics: dict, wall: float, n: int) -> None:
        payload[part].append({"sampler": sampler.label(), "config": asdict(sampler),
                              "nfe": sampler.evaluations, "samples": n, "metrics": metrics,
                              "wall_s": wall, "load_average": round(os.getloadavg()[0], 2)})
        save(json_path, payload)
        atomic_write_text(md_path, markdown(payload))
        print(f"{part} {sampler.label()}: atom {metrics['atom_stability']:.3f} mol "
              f"{metrics['molecule_stability']:.3f} valid {metrics['validity']:.3f} "
              f"({metrics['ms_per_molecule']:.1f} ms/mol)", flush=True)

    refs = references(config, args.reference)
    hist = task.atom_count_histogram()
    counts = draw_atom_counts(hist, max(args.samples, args.sampler_samples), seed=0)
    if not any(r["sampler"] == DEFAULT_SAMPLER.label() for r in payload["main"]):
        t0 = time.perf_counter()
        metrics, mols = score_samples(model, counts[: args.samples], DEFAULT_SAMPLER, refs, SEED)
        if args.sdf:
            first = mols[: args.sdf]
            records = _scored(first, SimpleNamespace(seed=SEED), DEFAULT_SAMPLER.label())[0]
            task.write(records, out / f"{args.name}.sdf", "sdf")
        finish("main", DEFAULT_SAMPLER, metrics, time.perf_counter() - t0, args.samples)
    done = {r["sampler"] for r in payload["samplers"]}
    for spec in QUICK_SAMPLERS if args.quick else SAMPLERS:
        sampler = sampler_of(*spec)
        if sampler.label() in done:
            continue
        t0 = time.perf_counter()
        metrics, _ = score_samples(model, counts[: args.sampler_samples], sampler, refs, SEED)
        finish("samplers", sampler, metrics, time.perf_counter() - t0, args.sampler_samples)
    md = markdown(payload)
    atomic_write_text(md_path, md)
    print(md)
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        return run(parse(argv), argv)
    except UsageError as err:
        print(f"denovo_bundled: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
