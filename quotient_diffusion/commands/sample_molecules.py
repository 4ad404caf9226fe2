"""``qdiff sample molecules --checkpoint model.pt -n 100 -o out.sdf``: de novo 3D molecules.

The number of atoms of each molecule is drawn from the training set's histogram (or fixed with
``--num-atoms``); atom types and coordinates are sampled jointly by a model trained with the
``denovo_qm9`` task. The format follows the extension of ``-o``:

* ``.sdf``: bonds perceived from the geometry with EDM's bond-length table (the metric's); a
  molecule whose bonds fail RDKit sanitisation is written with its atoms only. Each record
  carries ``stable`` (EDM molecule stability), ``valid`` and ``smiles`` (largest fragment);
* ``.xyz`` / ``.extxyz``: extended XYZ (ASE), the same properties in each frame's comment line.

A summary (stability, validity, uniqueness) goes to stdout. Exit code: 0 done, 1 the model could
not be loaded, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .sampler_options import add_sampler_arguments, sampler_from_arguments

FORMATS = {".sdf": "sdf", ".xyz": "xyz", ".extxyz": "xyz"}


def register(kinds) -> None:
    p = kinds.add_parser(
        "molecules",
        help="sample de novo 3D molecules (atom types + coordinates) from a denovo_qm9 model",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--checkpoint", required=True, help="checkpoint of a denovo_qm9 training run")
    p.add_argument("-n", "--num-molecules", type=int, default=100)
    p.add_argument("-o", "--output", required=True, help="output file: .sdf, .xyz or .extxyz")
    p.add_argument("--num-atoms", type=int, help="atoms per molecule (default: drawn from the "
                   "training histogram)")
    p.add_argument("--batch-size", type=int, default=256, help="molecules sampled at once")
    add_sampler_arguments(p, default_steps=50)
    p.set_defaults(func=run)


def _rdkit_record(z, pos, props: dict):
    """A sanitised molecule with table bonds, else the bare atoms; properties attached."""
    from ..metrics.molecules import build_molecule, xyz_molecule

    mol = build_molecule(z, pos, "table")
    if mol is None:
        mol = xyz_molecule(z, pos).GetMol()
        mol.UpdatePropertyCache(strict=False)
    for key, value in props.items():
        mol.SetProp(key, str(value))
    return mol


def write_molecules(path: Path, molecules, props: list[dict]) -> None:
    """Write (Z, positions) molecules to SDF or extended XYZ (by extension), atomically."""
    fmt = FORMATS[path.suffix.lower()]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    if fmt == "sdf":
        from rdkit import Chem

        writer = Chem.SDWriter(str(tmp))
        for k, ((z, pos), p) in enumerate(zip(molecules, props)):
            mol = _rdkit_record(z, pos, p)
            mol.SetProp("_Name", f"sample_{k}")
            writer.write(mol)
        writer.close()
    else:
        from ase import Atoms
        from ase.io import write

        frames = [Atoms(numbers=z, positions=pos, info=dict(p)) for (z, pos), p in
                  zip(molecules, props)]
        write(str(tmp), frames, format="extxyz")
    tmp.replace(path)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..metrics.molecules import flatten, stability, uniqueness_novelty, validity
    from ..tasks.denovo import DenovoTask, draw_atom_counts, generate_molecules
    from ..training import load_trained_model

    out = Path(args.output)
    if out.suffix.lower() not in FORMATS:
        print("qdiff sample molecules: -o must end in .sdf, .xyz or .extxyz", file=sys.stderr)
        return 2
    if args.num_molecules < 1 or (args.num_atoms is not None and args.num_atoms < 1):
        print("qdiff sample molecules: -n and --num-atoms must be at least 1", file=sys.stderr)
        return 2
    try:
        model, config = load_trained_model(args.checkpoint)
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        print(f"qdiff sample molecules: cannot load the model: {err}", file=sys.stderr)
        return 1
    if config.task.name != DenovoTask.name:
        print(f"qdiff sample molecules: {args.checkpoint} was trained for task "
              f"{config.task.name!r}, not {DenovoTask.name!r}", file=sys.stderr)
        return 1
    if args.num_atoms is not None:
        counts = np.full(args.num_molecules, args.num_atoms)
    else:
        counts = draw_atom_counts(DenovoTask(config).atom_count_histogram(), args.num_molecules,
                                  args.seed)
    sampler = sampler_from_arguments(args)
    t0 = time.perf_counter()
    molecules = generate_molecules(model, counts, sampler, args.seed, args.batch_size)
    elapsed = time.perf_counter() - t0
    stab = stability(*flatten(molecules))
    val = validity(molecules)
    props = [{"stable": int(s), "valid": int(smi is not None), "smiles": smi or "",
              "seed": args.seed, "sampler": f"{args.method}-{args.steps}"}
             for s, smi in zip(stab["molecule_stable"], val["smiles"])]
    write_molecules(out, molecules, props)
    uniq = uniqueness_novelty(val["smiles"])
    print(f"wrote {len(molecules)} molecules to {out} ({1000 * elapsed / len(molecules):.1f} ms "
          f"per molecule); atom stability {stab['atom_stable'].mean():.3f}, molecule stability "
          f"{stab['molecule_stable'].mean():.3f}, validity {val['validity']:.3f}, "
          f"uniqueness {uniq['uniqueness']:.3f}")
    return 0
