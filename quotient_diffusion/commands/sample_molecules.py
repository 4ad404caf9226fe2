"""``qdiff sample molecules -n 100 -o out.sdf``: de novo 3D molecules.

By default the molecules come from the de novo QM9 model that ships with the package
(quotient_diffusion/checkpoints/denovo_qm9.pt; benchmarks/denovo_bundled.py measures it);
``--checkpoint`` takes any model trained with the ``molecules`` task instead (task
``denovo_qm9`` before it was renamed: such checkpoints load too). The number of
atoms of each molecule is drawn from the training set's histogram (or fixed with
``--num-atoms``); atom types and coordinates are sampled jointly. The format follows the
extension of ``-o`` (or ``--format``; ``-o -`` writes SDF to stdout):

* ``.sdf``: bonds perceived from the geometry with EDM's bond-length table (the metric's); a
  molecule whose bonds fail RDKit sanitisation is written with its atoms only. Each record
  carries ``stable`` (EDM molecule stability), ``valid`` and ``smiles`` (largest fragment);
* ``.xyz`` / ``.extxyz``: extended XYZ (ASE), the same properties in each frame's comment line.

A summary (stability, validity, uniqueness) goes to stdout (to stderr with ``-o -``). Exit code:
0 done, 2 bad arguments, an unwritable output, a model that cannot be loaded or no bundled model
(an installation without quotient_diffusion/checkpoints/denovo_qm9.pt needs ``--checkpoint``),
130 interrupted (Ctrl-C: the molecules of the batches finished so far are written).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .arguments import positive_int
from .sampler_options import add_sampler_arguments, load_model, sampler_from_arguments

FORMATS = {".sdf": "sdf", ".xyz": "xyz", ".extxyz": "xyz"}
STDOUT = "-"
#: the default ODE sampler, as --help shows it (quotient_diffusion.tasks.molecules.DEFAULT_SAMPLER,
#: written out so that building the parser imports no torch; tests check they agree)
ODE_DEFAULT = "20 steps of the dpm2m solver, power grid, rho 2"


def register(kinds) -> None:
    p = kinds.add_parser(
        "molecules",
        help="sample de novo 3D molecules (atom types + coordinates); bundled QM9 model by "
             "default",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--checkpoint",
                   help="checkpoint of a 'molecules' training run (default: the bundled QM9 "
                        "model)")
    p.add_argument("-n", "--num-molecules", type=positive_int, default=100)
    p.add_argument("-o", "--output", required=True,
                   help="output file: .sdf, .xyz or .extxyz; - for stdout")
    p.add_argument("--format", choices=sorted(set(FORMATS.values())),
                   help="output format (default: from the extension of -o; sdf for stdout)")
    p.add_argument("--num-atoms", type=positive_int,
                   help="atoms per molecule (default: drawn from the training histogram)")
    p.add_argument("--batch-size", type=positive_int, default=256, help="molecules sampled at once")
    add_sampler_arguments(p, default_steps=50, ode_default=ODE_DEFAULT)
    p.set_defaults(func=run)


def _scored(molecules, args: argparse.Namespace, sampler: str) -> tuple[list[tuple], dict, dict]:
    """(Z, positions, properties) records (stable, valid, smiles, seed, sampler), stability,
    validity."""
    from ..metrics.molecules import flatten, stability, validity

    stab = stability(*flatten(molecules))
    val = validity(molecules)
    records = [(z, pos, {"stable": int(s), "valid": int(smi is not None), "smiles": smi or "",
                         "seed": args.seed, "sampler": sampler})
               for (z, pos), s, smi in zip(molecules, stab["molecule_stable"], val["smiles"])]
    return records, stab, val


def _output_format(args: argparse.Namespace) -> str | None:
    """The format asked for (None: the extension of -o names none)."""
    if args.format:
        return args.format
    if args.output == STDOUT:
        return "sdf"
    return FORMATS.get(Path(args.output).suffix.lower())


def run(args: argparse.Namespace) -> int:
    from ..output import check_output

    fmt = _output_format(args)
    if fmt is None:
        print("qdiff sample molecules: -o must end in .sdf, .xyz or .extxyz (or give --format)",
              file=sys.stderr)
        return 2
    check_output(args.output)  # before the heavy imports: a bad path fails at once

    import numpy as np

    from ..metrics.molecules import uniqueness_novelty
    from ..tasks import generate
    from ..tasks.molecules import DEFAULT_SAMPLER, MoleculeTask, draw_atom_counts

    sampler = sampler_from_arguments(args, DEFAULT_SAMPLER)  # bad options fail before loading
    task, model = load_model(args.checkpoint, MoleculeTask.name, "de novo")
    if args.num_atoms is not None:
        counts = np.full(args.num_molecules, args.num_atoms)
    else:
        counts = draw_atom_counts(task.atom_count_histogram(), args.num_molecules, args.seed)
    t0 = time.perf_counter()
    molecules, interrupted = [], False
    try:
        for batch in generate(task, model, counts, sampler, args.seed,
                              batch_size=args.batch_size):
            molecules.extend(molecule for _, molecule in batch)
    except KeyboardInterrupt:
        interrupted = True
    elapsed = time.perf_counter() - t0
    if interrupted:
        if molecules:
            task.write(_scored(molecules, args, sampler.label())[0], args.output, fmt)
        print(f"interrupted: wrote {len(molecules)} of {len(counts)} molecules to "
              f"{args.output}", file=sys.stderr)
        return 130
    records, stab, val = _scored(molecules, args, sampler.label())
    task.write(records, args.output, fmt)
    uniq = uniqueness_novelty(val["smiles"])
    print(f"wrote {len(molecules)} molecules to {args.output} "
          f"({1000 * elapsed / len(molecules):.1f} ms per molecule); atom stability "
          f"{stab['atom_stable'].mean():.3f}, molecule stability "
          f"{stab['molecule_stable'].mean():.3f}, validity {val['validity']:.3f}, "
          f"uniqueness {uniq['uniqueness']:.3f}",
          file=sys.stderr if args.output == STDOUT else sys.stdout)
    return 0
