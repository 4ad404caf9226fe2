"""Stereochemistry of raw conformer samples: requested labels right, mirror-fixable, or wrong.

Question: of a model's raw samples (before the mirror / resample repair of ``qdiff conformers``),
how many carry every requested tetrahedral (R/S) and double-bond (E/Z) label, how many are
mirror images of a right one (every centre inverted, E/Z right), and how many are wrong in a way
no reflection mends (centres inverted and not, a flat centre, a wrong E/Z)? A model without
stereo inputs (task option ``stereo`` false, like the QM9 model bundled before 2026-12-03) is
reflection-equivariant: it cannot prefer an enantiomer, and its ok and mirror fractions on
single-centre molecules are equal up to noise; a stereo model (docs/conformers.md, the bundled
one) should move samples into "ok".

Molecules: the GEOM-QM9 test molecules with a QM9 DFT geometry (``reference_molecules`` of
benchmarks/conformers.py), given as their GEOM SMILES (which carry stereo), with at least one
requested label; a fixed random subset of ``--molecules``. Labels: requested from the SMILES,
realised by RDKit from each sample's 3D coordinates (quotient_diffusion.chem.stereo).

Every run adds (or replaces) one row, named ``--label``, in
benchmarks/results/conformer_stereo.json and the table conformer_stereo.md.

    python benchmarks/conformer_stereo.py --quick                # bundled model, about a minute
    python benchmarks/conformer_stereo.py --checkpoint runs/stereo/final.pt --label stereo
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from _results import ROOT, command, markdown_table, write_results

from quotient_diffusion.chem.stereo import compare_stereo, realised_stereo, requested_stereo
from quotient_diffusion.conformers import (
    DEFAULT_SAMPLER,
    default_checkpoint,
    prepare_jobs,
    raw_samples,
)
from quotient_diffusion.diffusion import SamplerConfig, resolve_sampler
from quotient_diffusion.tasks import load

VERDICTS = ("ok", "mirror", "wrong")


def conformer_benchmark() -> ModuleType:
    """benchmarks/conformers.py as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location("conformer_benchmark",
                                                  Path(__file__).with_name("conformers.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def stereo_molecules(data_dir: str | None, count: int, seed: int = 0) -> list[dict]:
    """GEOM-QM9 test molecules with a DFT geometry and a requested label: a fixed random
    subset of ``count`` (all when fewer), each with its prepared job."""
    refs = conformer_benchmark().reference_molecules(data_dir, 10**9)
    jobs = prepare_jobs([r["smiles"] for r in refs])
    chosen = [{"smiles": r["smiles"], "job": job, "wanted": requested_stereo(job.mol)}
              for r, job in zip(refs, jobs) if job.error is None]
    chosen = [c for c in chosen if c["wanted"]]
    print(f"{len(chosen)} of them have requested stereo labels")
    order = np.random.RandomState(seed).permutation(len(chosen))[:count]
    return [chosen[i] for i in sorted(order)]


def label_counts(wanted, got) -> tuple[int, int, int, int]:
    """(centres right, centres, double bonds right, double bonds) of one sample."""
    centres = sum(got.centres.get(k) == v for k, v in wanted.centres.items())
    bonds = sum(got.bonds.get(k) == v for k, v in wanted.bonds.items())
    return centres, len(wanted.centres), bonds, len(wanted.bonds)


def evaluate(path: Path, molecules: list[dict], sampler: SamplerConfig, args) -> dict:
    """Sample raw conformers of every molecule and classify each (module docstring)."""
    torch.set_num_threads(args.threads)
    task, model = load(path, "conformers")
    jobs = [m["job"] for m in molecules]
    t0 = time.perf_counter()
    raw_samples(task, model, jobs, args.conformers, sampler, seed=args.seed)
    elapsed = time.perf_counter() - t0
    verdicts = {v: 0 for v in VERDICTS}
    by_kind = {"one centre": dict.fromkeys(VERDICTS, 0), "several centres":
               dict.fromkeys(VERDICTS, 0), "E/Z only": dict.fromkeys(VERDICTS, 0)}
    wrong_ez = 0
    counts = np.zeros(4)
    for m in molecules:
        wanted = m["wanted"]
        kind = ("E/Z only" if not wanted.centres else
                "one centre" if len(wanted.centres) == 1 else "several centres")
        for pos in m["job"].conformers:
            got = realised_stereo(m["job"].mol, pos)
            verdict = compare_stereo(wanted, got)
            verdicts[verdict] += 1
            by_kind[kind][verdict] += 1
            c_ok, c_all, b_ok, b_all = label_counts(wanted, got)
            counts += (c_ok, c_all, b_ok, b_all)
            wrong_ez += b_ok < b_all
    samples = sum(verdicts.values())
    return {
        "samples": samples,
        "molecules": len(molecules),
        "molecules_with_centres": sum(bool(m["wanted"].centres) for m in molecules),
        "molecules_with_double_bonds": sum(bool(m["wanted"].bonds) for m in molecules),
        **{f"frac_{v}": verdicts[v] / samples for v in VERDICTS},
        "frac_wrong_ez": wrong_ez / samples,
        "centre_accuracy": counts[0] / max(counts[1], 1),
        "double_bond_accuracy": counts[2] / max(counts[3], 1),
        "by_kind": {kind: {"samples": sum(c.values()),
                           **{f"frac_{v}": c[v] / max(sum(c.values()), 1) for v in VERDICTS}}
                    for kind, c in by_kind.items()},
        "stereo_model": task.options.stereo,
        "ms_per_conformer": 1000 * elapsed / max(samples, 1),
    }


def markdown(rows: dict) -> str:
    lines = ["Raw conformer samples (no mirror / resample repair) on GEOM-QM9 test molecules "
             "with requested stereo: fraction with every requested label right (ok), with every "
             "centre inverted and E/Z right (mirror), and otherwise (wrong; 'E/Z wrong' is the "
             "part of it with a wrong double bond). Per-label accuracies over all centres and "
             "double bonds.", "",
             *markdown_table(
                 ["model", "stereo inputs", "molecules x samples (with R/S, with E/Z)", "ok",
                  "mirror", "wrong", "E/Z wrong", "R/S label accuracy", "E/Z label accuracy",
                  "ok / mirror / wrong, one centre", "ok / mirror / wrong, several centres",
                  "sampler"], [])]
    for label, row in rows.items():
        r, meta = row["result"], row["meta"]
        one, several = r["by_kind"]["one centre"], r["by_kind"]["several centres"]

        def trio(c: dict) -> str:
            return " / ".join(f"{100 * c[f'frac_{v}']:.0f}%" for v in VERDICTS)

        lines.append(
            f"| {label} | {'yes' if r['stereo_model'] else 'no'} | {r['molecules']} x "
            f"{meta['conformers']} ({r['molecules_with_centres']}, "
            f"{r['molecules_with_double_bonds']}) | {100 * r['frac_ok']:.1f}% "
            f"| {100 * r['frac_mirror']:.1f}% "
            f"| {100 * r['frac_wrong']:.1f}% | {100 * r['frac_wrong_ez']:.1f}% "
            f"| {100 * r['centre_accuracy']:.1f}% | {100 * r['double_bond_accuracy']:.1f}% "
            f"| {trio(one)} | {trio(several)} | {meta['sampler']} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--checkpoint", default=None, help="conformer model (default: the bundled one)")
    p.add_argument("--label", default=None, help="row name (default: bundled, or the file stem)")
    p.add_argument("--quick", action="store_true", help="100 molecules x 5 samples")
    p.add_argument("--molecules", type=int, default=10**9, help="default: all")
    p.add_argument("--conformers", type=int, default=10)
    p.add_argument("--steps", type=int, default=None,
                   help="sampler steps (default: the command's, 10 dpm2m; 50 for the SDE)")
    p.add_argument("--method", choices=("ode", "sde"), default="ode")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = p.parse_args()
    if args.quick:
        args.molecules, args.conformers = 100, 5
    path = Path(args.checkpoint) if args.checkpoint else default_checkpoint()
    label = args.label or ("bundled" if args.checkpoint is None else path.stem)
    molecules = stereo_molecules(args.data_dir, args.molecules)
    sampler = resolve_sampler(DEFAULT_SAMPLER, args.steps or 50, args.steps, method=args.method)
    result = evaluate(path, molecules, sampler, args)
    meta = {"checkpoint": str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path),
            "quick": args.quick, "conformers": args.conformers, "sampler": sampler.label(),
            "seed": args.seed, "threads": args.threads,
            "command": command(__file__)}
    out = Path(args.out)
    json_path = out / "conformer_stereo.json"
    rows = json.loads(json_path.read_text())["rows"] if json_path.exists() else {}
    rows[label] = {"meta": meta, "result": result}
    table = markdown(rows)
    write_results(out, "conformer_stereo", {"rows": rows}, table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
