"""Writing molecules with 3D coordinates to SDF (RDKit), with per-record properties."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from ..output import open_output

__all__ = ["write_conformers_sdf", "mol_with_positions"]


def mol_with_positions(mol, pos: np.ndarray):
    """Copy of an RDKit molecule carrying exactly one conformer with ``pos`` (Angstrom)."""
    from rdkit import Chem
    from rdkit.Geometry import Point3D

    out = Chem.Mol(mol)
    out.RemoveAllConformers()
    conf = Chem.Conformer(out.GetNumAtoms())
    for k, p in enumerate(np.asarray(pos, dtype=float)):
        conf.SetAtomPosition(k, Point3D(*p))
    conf.Set3D(True)
    out.AddConformer(conf, assignId=True)
    return out


def write_conformers_sdf(path: str | Path, records: Iterable[tuple]) -> int:
    """Write ``(mol, positions, name, properties)`` records to one SDF file (``-``: stdout);
    returns the number written.

    The file is written through :func:`quotient_diffusion.output.open_output`: atomically for a
    regular file, so an interrupted run never leaves a truncated SDF behind, and streamed to a
    FIFO, a device or standard output.
    """
    from rdkit import Chem

    count = 0
    with open_output(path, "w") as fh:
        writer = Chem.SDWriter(fh)
        try:
            for mol, pos, name, props in records:
                m = mol_with_positions(mol, pos)
                m.SetProp("_Name", str(name))
                for key, value in props.items():
                    m.SetProp(key, str(value))
                writer.write(m)
                count += 1
        finally:
            writer.close()
    return count
