"""Cost of the group operations used at every training and sampling step.

Times ``project(v, x) + curvature(x)`` for SE(3), closed form and generic (Gram matrix from the
generators, curvature by autograd), on flat batches of random molecules, and reports the median
over repeats per batch and per molecule. Three sizes show linear scaling in molecules and in
atoms: 10,000 x 20 atoms, 20,000 x 20 atoms and 10,000 x 40 atoms.

    python benchmarks/group_cost.py            # full run (about 15 s on an idle machine)
    python benchmarks/group_cost.py --quick    # a few seconds, smaller batches

Writes benchmarks/results/group_cost{,_quick}.json and .md and prints the table.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from _results import RESULTS, machine, utc_time, write_results

from quotient_diffusion.groups import SE3, center

FULL_SIZES = [(10_000, 20), (20_000, 20), (10_000, 40)]
QUICK_SIZES = [(1_000, 20), (2_000, 20), (1_000, 40)]


def make_batch(molecules: int, atoms: int, dtype: torch.dtype, seed: int = 0):
    """``molecules`` random centred clouds of ``atoms`` atoms as one flat batch (x, v, batch)."""
    gen = torch.Generator().manual_seed(seed)
    batch = torch.arange(molecules).repeat_interleave(atoms)
    x = center(1.5 * torch.randn(molecules * atoms, 3, generator=gen, dtype=dtype), batch)
    v = torch.randn(molecules * atoms, 3, generator=gen, dtype=dtype)
    return x, v, batch


def time_it(fn, repeats: int, warmup: int = 1) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls of ``fn`` after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def run(sizes, repeats: int, dtype: torch.dtype) -> list[dict]:
    group = SE3()
    methods = {
        "SE3 closed form": lambda v, x, b: (group.project(v, x, b), group.curvature(x, b)),
        "SE3 generic": lambda v, x, b: (
            group.generic_project(v, x, b),
            group.generic_curvature(x, b),
        ),
    }
    rows = []
    for molecules, atoms in sizes:
        x, v, b = make_batch(molecules, atoms, dtype)
        for name, fn in methods.items():
            times = time_it(lambda fn=fn, v=v, x=x, b=b: fn(v, x, b), repeats)
            med = statistics.median(times)
            rows.append(
                {
                    "method": name,
                    "molecules": molecules,
                    "atoms_per_molecule": atoms,
                    "total_atoms": molecules * atoms,
                    "repeats": repeats,
                    "median_ms": 1e3 * med,
                    "min_ms": 1e3 * min(times),
                    "us_per_molecule": 1e6 * med / molecules,
                    "ns_per_atom": 1e9 * med / (molecules * atoms),
                }
            )
            print(f"  {name:16s} {molecules:6d} x {atoms:3d}: {1e3 * med:9.1f} ms", flush=True)
    return rows


def to_markdown(rows: list[dict], meta: dict) -> str:
    lines = [
        "# Cost of project + curvature (SE(3)), per batch and per molecule",
        "",
        f"dtype {meta['dtype']}, torch {meta['torch']}, {meta['threads']} thread(s), "
        f"median of {meta['repeats']} repeats after one warm-up; {meta['when']}"
        + (" (--quick: small batches)." if meta["quick"] else "."),
        "",
        "| method | molecules | atoms/molecule | atoms | median ms | us/molecule | ns/atom "
        "| time / first size |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    first = {}
    for r in rows:
        base = first.setdefault(r["method"], r["median_ms"])
        lines.append(
            f"| {r['method']} | {r['molecules']} | {r['atoms_per_molecule']} | "
            f"{r['total_atoms']} | {r['median_ms']:.1f} | {r['us_per_molecule']:.2f} | "
            f"{r['ns_per_atom']:.1f} | {r['median_ms'] / base:.2f} |"
        )
    lines += [
        "",
        "Linear scaling means a ratio of about 2 for twice the molecules or twice the atoms.",
        "Timings on a shared machine vary; compare rows of one run, not across runs.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small batches, 3 repeats")
    parser.add_argument("--repeats", type=int, default=None, help="default 11 (3 with --quick)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    repeats = args.repeats or (3 if args.quick else 11)
    sizes = QUICK_SIZES if args.quick else FULL_SIZES
    meta = {
        "dtype": args.dtype,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "repeats": repeats,
        "quick": args.quick,
        "machine": machine(),
        "when": utc_time(),
    }
    with torch.no_grad():
        rows = run(sizes, repeats, dtype)
    table = to_markdown(rows, meta)
    name = "group_cost_quick" if args.quick else "group_cost"  # --quick never replaces the full run
    write_results(args.out, name, {"meta": meta, "rows": rows}, table, indent=2)
    print()
    print(table)


if __name__ == "__main__":
    main()
