"""Writing molecules with 3D coordinates to SDF (RDKit), with per-record properties."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

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


def write_conformers_sdf(path: str | Path, records: Iterable[tuple]) -> None:
    """Write ``(mol, positions, name, properties)`` records to one SDF file.

    The file is written to ``<path>.tmp`` and renamed, so an interrupted run never leaves a
    truncated SDF behind.
    """
    from rdkit import Chem

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    writer = Chem.SDWriter(str(tmp))
    for mol, pos, name, props in records:
        m = mol_with_positions(mol, pos)
        m.SetProp("_Name", str(name))
        for key, value in props.items():
            m.SetProp(key, str(value))
        writer.write(m)
    writer.close()
    tmp.replace(path)
