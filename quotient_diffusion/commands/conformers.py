"""``qdiff conformers SMILES_OR_FILE -n 10 -o out.sdf``: 3D conformers from molecular graphs.

The input is a SMILES string, or a file with one SMILES per line (an optional name may follow;
a CSV whose first column is the SMILES works too). Every conformer goes to one SDF with its
properties. Inputs that cannot be handled are reported on stderr with their line number; the
others still come out. Exit code: 0 all inputs done, 1 some failed, 2 nothing could be done.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .sampler_options import add_sampler_arguments, sampler_from_arguments


def register(sub) -> None:
    p = sub.add_parser(
        "conformers",
        help="generate 3D conformers for SMILES (bundled QM9 model by default)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", help="a SMILES string, or a file of SMILES (.smi, .txt, .csv)")
    p.add_argument("-n", "--num-conformers", type=int, default=10)
    p.add_argument("-o", "--output", required=True, help="output SDF file")
    p.add_argument("--checkpoint", help="model checkpoint (default: the bundled QM9 model)")
    p.add_argument("--mmff", action="store_true", help="relax every conformer with MMFF94")
    add_sampler_arguments(p, default_steps=50)
    p.set_defaults(func=run)


def _read_inputs(arg: str) -> list[str]:
    path = Path(arg)
    if path.suffix.lower() in (".smi", ".txt", ".csv") or path.is_file():
        if not path.is_file():
            raise FileNotFoundError(f"no such input file: {arg}")
        return path.read_text().splitlines()
    return [arg]


def run(args: argparse.Namespace) -> int:

    from ..chem.sdf import write_conformers_sdf
    from ..conformers import fix_stereo, generate, load_conformer_model, prepare, relax_mmff

    if args.num_conformers < 1:
        print("qdiff conformers: -n must be at least 1", file=sys.stderr)
        return 2
    try:
        lines = _read_inputs(args.input)
    except (OSError, UnicodeDecodeError) as err:
        print(f"qdiff conformers: {err}", file=sys.stderr)
        return 2
    jobs = prepare(lines)
    if not jobs:
        print("qdiff conformers: the input holds no SMILES", file=sys.stderr)
        return 2
    for job in jobs:
        where = f"line {job.line}" if len(lines) > 1 else "input"
        if job.error:
            print(f"qdiff conformers: {where} ({job.text}): {job.error}", file=sys.stderr)
        for w in job.warnings:
            print(f"qdiff conformers: {where} ({job.text}): warning: {w}", file=sys.stderr)
    ok = [j for j in jobs if j.error is None]
    if not ok:
        return 2
    try:
        model, config = load_conformer_model(args.checkpoint)
    except (OSError, ValueError, KeyError) as err:
        print(f"qdiff conformers: cannot load the model: {err}", file=sys.stderr)
        return 2
    sampler = sampler_from_arguments(args)
    t0 = time.perf_counter()
    generate(model, jobs, args.num_conformers, sampler, seed=args.seed)
    elapsed = time.perf_counter() - t0
    records = []
    for job in ok:
        for k, pos in enumerate(job.conformers):
            pos, stereo_ok = fix_stereo(job.mol, pos)
            props = {"input_line": job.line, "smiles": job.text, "conformer": k,
                     "stereo_ok": int(stereo_ok), "seed": args.seed,
                     "model": f"{config['model']['network']}/{config['model']['treatment']}",
                     "sampler": f"{args.method}-{args.steps}"}
            if args.mmff:
                pos, energy = relax_mmff(job.mol, pos)
                props["mmff_energy_kcal_mol"] = energy if energy is not None else "n/a"
            if job.warnings:
                props["warning"] = "; ".join(job.warnings)
            records.append((job.mol, pos, job.name, props))
    write_conformers_sdf(args.output, records)
    n_conf = len(records)
    print(f"wrote {n_conf} conformers of {len(ok)} molecule(s) to {args.output} "
          f"({1000 * elapsed / max(n_conf, 1):.1f} ms per conformer)")
    return 0 if len(ok) == len(jobs) else 1
