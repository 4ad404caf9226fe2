"""Writing molecules with 3D coordinates to SDF (RDKit), with per-record properties."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ..output import open_output
from .molecules import mol_with_positions

__all__ = ["write_conformers_sdf"]


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
