"""The numbers README.md and docs/ state about the data sets, computed from the data.

Each entry of the report is counted or measured here, from the same loaders the package uses:

* QM9 (``quotient_diffusion.data.qm9``, the qm9pack wheel): rows, absent indices, the
  graph/geometry matches and the molecules dropped (index, SMILES, reason, split), the EDM split
  before and after the drops, the per-coordinate standard deviation of the centred training
  geometries (the preconditioning's ``sigma_data``), the training molecules with two atoms and the
  counts of a few small molecules (HCN, acetylene, ...);
* CO2 (ASE's geometry) at the SO(3) degeneracy threshold (``groups.filtered_inverse``:
  tau = rel_tol * tr K);
* GEOM-QM9 test molecules (``$QD_DATA/geom_qm9``): how many have their DFT geometry in QM9
  (RDKit canonical SMILES without stereo, as ``tasks.conformers`` matches them);
* DB5.5 protein chains (``quotient_diffusion.data.proteins``): PDB files, chains, chains of
  50-256 residues, those without a chain break, the family split before and after removing
  duplicates, TS50, the chains of 50-128 residues the backbone benchmark used before issue 17,
  and the chains and residues the backbone model sees under configs/backbones.json (kept,
  cropped and dropped chains: ``BackboneTask.data_summary``);
* SetMNIST (``quotient_diffusion.sets``): set sizes of the training digits at threshold 127;
  the synthetic sets: the held-out data's valency histogram and mean size (1,000 sets, seed 1);
* with ``--time-cache``: the time to build each cache from the raw files (into a temporary
  cache folder) and to read it back. Timings need an idle machine; the counts do not.

    python benchmarks/data_report.py                # everything but the cache timings (~1 min)
    python benchmarks/data_report.py --time-cache   # + cache build / read times (idle machine)
    python benchmarks/data_report.py --quick        # QM9 and the synthetic sets only (~20 s)

Writes benchmarks/results/data_report.{json,md} (``--quick``: data_report_quick.*).
"""

from __future__ import annotations

import argparse
import os
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _results import RESULTS, command, local_time, write_results

from quotient_diffusion.data import proteins
from quotient_diffusion.data.qm9 import QM9, edm_split, load_qm9, qm9_csv_paths
from quotient_diffusion.groups.base import DEFAULT_REL_TOL
from quotient_diffusion.tasks import get_task
from quotient_diffusion.training import TrainConfig

SIGMA_SAMPLE = 5000  # molecules of the estimate quoted in tasks/conformers.py
#: the length cut of the backbone benchmark's results in docs/benchmarks/backbones.md (the
#: configs before issue 17); what today's configs see is ``protein_report()['backbone_model']``
BACKBONE_MAX_LENGTH = 128
BACKBONE_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "backbones.json"
#: small molecules counted in the QM9 training split (methane, water, ammonia, HCN, acetylene)
SMALL_MOLECULES = ("C", "O", "N", "C#N", "C#C")


# ------------------------------------------------------------------------------------- QM9
def qm9_rows(indices: set[int]) -> dict[int, str]:
    """SMILES of the qm9pack rows with the given QM9 indices (a line scan of the CSV files)."""
    found = {}
    prefixes = {f'"dsgdb9nsd_{i:06d}.xyz",{i},': i for i in indices}
    for path in qm9_csv_paths():
        with open(path) as fh:
            for line in fh:
                head = line[: line.find(",", line.find(",") + 1) + 1]
                if head in prefixes:
                    found[prefixes[head]] = line[len(head) :].split(",", 1)[0].strip('"')
    return found


def sigma_data(qm9: QM9, entries: np.ndarray) -> float:
    """Root mean square of the per-molecule centred coordinates (per coordinate, Angstrom)."""
    sq, n = 0.0, 0
    for i in entries:
        x = qm9.positions_of(i).astype(np.float64)
        sq += float(((x - x.mean(0)) ** 2).sum())
        n += x.size
    return (sq / n) ** 0.5


def co2_threshold() -> dict:
    """CO2's inertia tensor and the bend at which SO(3) is treated exactly.

    CO2 is ASE's (``ase.build.molecule``, the geometry tests/test_degenerate.py uses; QM9 has no
    CO2). With tau = rel_tol * tr K, the smallest eigenvalue of K (rotation about the molecular
    axis) is below tau for a nearly linear molecule. The carbon is moved sideways by d (the
    molecule re-centred) until that eigenvalue reaches tau (bisection); the O-C-O angle there
    follows.
    """
    from ase.build import molecule

    from quotient_diffusion.groups import SO3

    co2 = molecule("CO2")
    z = co2.get_atomic_numbers()
    pos = co2.get_positions().astype(np.float64)
    carbon = int(np.flatnonzero(z == 6)[0])
    oxygens = np.flatnonzero(z == 8)
    axis = pos[oxygens[1]] - pos[oxygens[0]]
    axis /= np.linalg.norm(axis)
    side = np.cross(axis, [1.0, 0.0, 0.0] if abs(axis[0]) < 0.9 else [0.0, 1.0, 0.0])
    side /= np.linalg.norm(side)

    def inertia(d: float) -> np.ndarray:
        x = pos.copy()
        x[carbon] += d * side
        x = torch.as_tensor(x - x.mean(0))
        return SO3().gram(x, torch.zeros(len(x), dtype=torch.long))[0].numpy()

    def smallest_minus_tau(d: float) -> float:
        k = inertia(d)
        return float(np.linalg.eigvalsh(k)[0] - DEFAULT_REL_TOL * np.trace(k))

    lo, hi = 0.0, 0.5
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if smallest_minus_tau(mid) > 0 else (mid, hi)
    d = 0.5 * (lo + hi)
    bent = pos.copy()
    bent[carbon] += d * side
    u, v = bent[oxygens[0]] - bent[carbon], bent[oxygens[1]] - bent[carbon]
    angle = np.degrees(np.arccos(u @ v / np.linalg.norm(u) / np.linalg.norm(v)))
    k0 = inertia(0.0)
    bonds = np.linalg.norm(pos[oxygens] - pos[carbon], axis=1)
    return {
        "c_o_bond_A": bonds.tolist(),
        "trace_K_A2": float(np.trace(k0)),
        "rel_tol": DEFAULT_REL_TOL,
        "tau_A2": float(DEFAULT_REL_TOL * np.trace(k0)),
        "carbon_offset_at_tau_A": d,
        "axial_eigenvalue_over_d2": float(np.linalg.eigvalsh(inertia(d))[0] / d**2),
        "o_c_o_angle_at_tau_deg": float(angle),
    }


def qm9_report(qm9: QM9) -> dict:
    """Rows, matches, drops, the EDM split, sigma_data, small molecules."""
    dropped = {int(i): reason for reason, ids in qm9.dropped.items() for i in ids}
    all_indices = np.sort(np.concatenate([qm9.index, np.fromiter(dropped, dtype=np.int64)]))
    split_all = edm_split(all_indices)
    split_of = dict(zip(all_indices.tolist(), split_all.tolist()))
    names = ("train", "valid", "test")
    smiles = qm9_rows(set(dropped))
    train = qm9.subset("train")
    train_smiles = [qm9.smiles[i] for i in train]
    sample = np.random.RandomState(0).permutation(train)[:SIGMA_SAMPLE]
    return {
        "rows": int(len(all_indices)),
        "max_index": int(all_indices.max()),
        "absent_indices": int(all_indices.max() - len(all_indices)),
        "matched": int(len(qm9)),
        "dropped": [
            {"index": i, "smiles": smiles.get(i), "reason": r, "split": names[split_of[i]]}
            for i, r in sorted(dropped.items())
        ],
        "split_before_drops": {n: int((split_all == k).sum()) for k, n in enumerate(names)},
        "split_after_drops": {n: int((qm9.split == k).sum()) for k, n in enumerate(names)},
        "sigma_data_train_A": sigma_data(qm9, train),
        f"sigma_data_{SIGMA_SAMPLE}_train_A": sigma_data(qm9, sample),
        "train_molecules_with_two_atoms": int((qm9.num_atoms()[train] == 2).sum()),
        "train_count_of": {s: train_smiles.count(s) for s in SMALL_MOLECULES},
    }


def geom_report(qm9: QM9) -> dict:
    """GEOM-QM9 test molecules whose DFT geometry is in QM9."""
    from quotient_diffusion.tasks.conformers import canonical_no_stereo, geom_qm9_test_smiles

    test = geom_qm9_test_smiles()
    qm9_keys = {canonical_no_stereo(s) for s in qm9.smiles}
    keys = [canonical_no_stereo(s) for s in test]
    return {
        "test_molecules": len(test),
        "in_qm9": sum(k in qm9_keys for k in keys),
        "distinct_in_qm9": len({k for k in keys if k in qm9_keys}),
    }


# --------------------------------------------------------------------------------- proteins
def protein_report(data_dir: str | None) -> dict:
    """DB5.5 chain counts through each filter, the family split, TS50."""
    root = proteins.paths.data_root(data_dir, required=proteins.DB55_FILE)
    files, chains = 0, []
    with tarfile.open(root / proteins.DB55_FILE) as tar:
        for member in tar:
            if member.name.endswith(".pdb"):
                files += 1
                text = tar.extractfile(member).read().decode()
                chains += proteins.parse_pdb_chains(text, Path(member.name).stem)
    in_range = [c for c in chains if 50 <= len(c) <= 256]
    kept = sorted((c for c in in_range if proteins.count_gaps(c.ca) == 0), key=lambda c: c.name)
    split = proteins.family_split(kept)
    deduped = [proteins.drop_duplicates(s) for s in split]
    names = ("train", "val", "test")
    loaded = proteins.load_protein_splits(data_dir)
    short = {n: sum(50 <= len(c) <= BACKBONE_MAX_LENGTH for c in getattr(loaded, n)) for n in names}
    config = TrainConfig.load(BACKBONE_CONFIG)
    if data_dir:
        config.task.data_dir = data_dir
    seen = get_task(config).data_summary(loaded)
    return {
        "pdb_files": files,
        "chains": len(chains),
        "chains_50_256": len(in_range),
        "chains_50_256_without_break": len(kept),
        "family_split": {n: len(s) for n, s in zip(names, split)},
        "family_split_deduplicated": {n: len(s) for n, s in zip(names, deduped)},
        "loader_agrees": [len(getattr(loaded, n)) for n in names] == [len(s) for s in deduped],
        "ts50": len(loaded.ts50),
        f"chains_50_{BACKBONE_MAX_LENGTH}": short,
        "backbone_model": {"config": str(BACKBONE_CONFIG.relative_to(BACKBONE_CONFIG.parents[1])),
                           **seen},
    }


# ------------------------------------------------------------------------------------- sets
def setmnist_report() -> dict:
    """Set sizes of the SetMNIST training and test digits (threshold 127)."""
    from quotient_diffusion.sets.setmnist import load_setmnist

    out = {}
    for split in ("train", "test"):
        sizes = load_setmnist(split).sizes.numpy()
        out[split] = {
            "digits": int(len(sizes)),
            "min": int(sizes.min()),
            "max": int(sizes.max()),
            "mean": float(sizes.mean()),
        }
    return out


def synthetic_report() -> dict:
    """The held-out synthetic sets of benchmarks/sets.py (1,000 sets, data seed 1)."""
    from quotient_diffusion.sets.synthetic import generate_synthetic

    data = generate_synthetic(1000, seed=1)
    valency = data.feat.argmax(1).numpy()
    histogram = np.bincount(valency, minlength=4) / len(valency)
    return {
        "sets": 1000,
        "seed": 1,
        "valency_histogram": histogram.round(4).tolist(),
        "mean_size": float(data.sizes.float().mean()),
    }


# ------------------------------------------------------------------------------------ caches
def time_caches(data_dir: str | None) -> dict:
    """Seconds to build the QM9 and protein caches from the raw files, and to read them back."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        previous = os.environ.get("QD_CACHE")
        os.environ["QD_CACHE"] = tmp
        try:
            for name, load in (
                ("qm9", lambda: load_qm9(progress=False)),
                ("proteins", lambda: proteins.load_protein_splits(data_dir, cache_dir=tmp)),
            ):
                start = time.perf_counter()
                load()
                built = time.perf_counter() - start
                start = time.perf_counter()
                load()
                out[name] = {"build_s": built, "read_s": time.perf_counter() - start}
        finally:
            if previous is None:
                del os.environ["QD_CACHE"]
            else:
                os.environ["QD_CACHE"] = previous
    out["threads"] = torch.get_num_threads()
    out["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
    return out


# ------------------------------------------------------------------------------------ report
def to_markdown(report: dict) -> str:
    """The report as a short markdown page (what the docs quote)."""
    q = report["qm9"]
    lines = [
        "# Data report",
        "",
        f"Command: `{report['meta']['command']}` "
        f"({report['meta']['seconds']:.0f} s, {report['meta']['date']})",
        "",
        "## QM9",
        "",
        f"- qm9pack rows: {q['rows']:,} (indices 1..{q['max_index']:,}; "
        f"{q['absent_indices']:,} absent)",
        f"- graph/geometry matched: {q['matched']:,} of {q['rows']:,}; dropped:",
    ]
    for d in q["dropped"]:
        lines.append(f"  - {d['index']} `{d['smiles']}` ({d['reason']}; {d['split']} split)")
    b, a = q["split_before_drops"], q["split_after_drops"]
    lines += [
        f"- EDM split: {b['train']:,} / {b['valid']:,} / {b['test']:,} before the drops, "
        f"{a['train']:,} / {a['valid']:,} / {a['test']:,} after",
        f"- sigma_data (per-coordinate RMS of centred training geometries): "
        f"{q['sigma_data_train_A']:.4f} A over the training split, "
        f"{q[f'sigma_data_{SIGMA_SAMPLE}_train_A']:.4f} A over {SIGMA_SAMPLE:,} of them",
        f"- training molecules with two atoms: {q['train_molecules_with_two_atoms']}; "
        "counts in the training split: "
        + ", ".join(f"`{s}` {n}" for s, n in q["train_count_of"].items()),
    ]
    c = report["co2"]
    lines += [
        "",
        "## CO2 at the SO(3) degeneracy threshold",
        "",
        f"- CO2 (ASE's geometry): C=O {c['c_o_bond_A'][0]:.4f} A, tr K = "
        f"{c['trace_K_A2']:.3f} A^2, tau = {c['rel_tol']:g} tr K = {c['tau_A2']:.2e} A^2; the "
        f"axial eigenvalue reaches tau when the carbon moves sideways by "
        f"{c['carbon_offset_at_tau_A']:.4f} A (eigenvalue / d^2 = "
        f"{c['axial_eigenvalue_over_d2']:.4f}), an O-C-O angle of "
        f"{c['o_c_o_angle_at_tau_deg']:.1f} degrees",
    ]
    if "geom_qm9" in report:
        g = report["geom_qm9"]
        lines += [
            "",
            "## GEOM-QM9 test molecules",
            "",
            f"- {g['in_qm9']} of {g['test_molecules']:,} have their DFT geometry in QM9 "
            f"(canonical SMILES without stereo; {g['distinct_in_qm9']} distinct)",
        ]
    if "proteins" in report:
        p = report["proteins"]
        s, d, short = (
            p["family_split"],
            p["family_split_deduplicated"],
            p[f"chains_50_{BACKBONE_MAX_LENGTH}"],
        )
        lines += [
            "",
            "## DB5.5 protein chains",
            "",
            f"- {p['pdb_files']:,} PDB files, {p['chains']:,} chains, "
            f"{p['chains_50_256']:,} of 50-256 residues, "
            f"{p['chains_50_256_without_break']:,} of them without a chain break",
            f"- family split {s['train']} / {s['val']} / {s['test']}; without duplicates "
            f"{d['train']} / {d['val']} / {d['test']} (the loader agrees: "
            f"{p['loader_agrees']}); TS50: {p['ts50']} chains",
            f"- of these, 50-128 residues (the backbone benchmark before issue 17): "
            f"{short['train']} / {short['val']} / {short['test']}",
        ]
        if "backbone_model" in p:
            m = p["backbone_model"]
            lines += [
                f"- the backbone model under `{m['config']}` (lengths {m['min_length']}-"
                f"{m['max_length']}, crop {str(m['crop']).lower()}, "
                f"{m['noise_levels_per_chain']} noise level(s) per chain, about "
                f"{m['residues_per_step']:.0f} residues per step):",
            ]
            for n in ("train", "val", "test"):
                q = m[n]
                lines.append(
                    f"  - {n}: {q['kept_chains']} of {q['chains']} chains, "
                    f"{q['kept_residues']:,} of {q['residues']:,} residues "
                    f"({q['cropped_chains']} cropped, {q['dropped_short']} too short, "
                    f"{q['dropped_long']} too long); one draw of every chain shows "
                    f"{q['window_residues']:,} residues"
                )
    if "setmnist" in report:
        lines += ["", "## SetMNIST (threshold 127)", ""]
        for split, m in report["setmnist"].items():
            lines.append(
                f"- {split}: {m['digits']:,} digits, sets of {m['min']} to {m['max']} "
                f"points, {m['mean']:.1f} on average"
            )
    s = report["synthetic"]
    lines += [
        "",
        "## Synthetic sets (held-out data of benchmarks/sets.py)",
        "",
        f"- {s['sets']:,} sets (seed {s['seed']}): valency histogram "
        f"{tuple(s['valency_histogram'])}, mean size {s['mean_size']:.2f}",
    ]
    if "cache_seconds" in report:
        t = report["cache_seconds"]
        lines += [
            "",
            "## Cache build and read times",
            "",
            f"{t['threads']} torch threads; load average at the end {t['loadavg_end']}.",
            "",
        ]
        for name in ("qm9", "proteins"):
            lines.append(
                f"- {name}: built in {t[name]['build_s']:.1f} s, read back in "
                f"{t[name]['read_s']:.2f} s"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    """Compute the report and write it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="QM9 and synthetic sets only")
    parser.add_argument(
        "--time-cache",
        action="store_true",
        help="also time building and reading the QM9 and protein caches",
    )
    parser.add_argument("--data-dir", default=None, help="shared data root (default: QD_DATA)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    report: dict = {
        "meta": {
            "command": command(__file__, argv),
            "date": local_time(),
            "quick": args.quick,
        }
    }
    qm9 = load_qm9(progress=False)
    report["qm9"] = qm9_report(qm9)
    report["co2"] = co2_threshold()
    if not args.quick:
        report["geom_qm9"] = geom_report(qm9)
        report["proteins"] = protein_report(args.data_dir)
        report["setmnist"] = setmnist_report()
    report["synthetic"] = synthetic_report()
    if args.time_cache:
        report["cache_seconds"] = time_caches(args.data_dir)
    report["meta"]["seconds"] = time.perf_counter() - started
    stem = "data_report_quick" if args.quick else "data_report"
    table = to_markdown(report)
    write_results(args.out, stem, report, table, indent=2)
    print(table)


if __name__ == "__main__":
    main()
