"""C-alpha traces as PDB files, through biotite.

A trace of L residues becomes L ``ATOM`` records named CA (element C) in chain A, residues
numbered 1..L, residue names from a one-letter sequence (glycine when none is given, the
usual choice for generated backbones). PDB coordinates carry three decimals, so a round trip
is exact to 5e-4 A. Viewers (PyMOL, ChimeraX, Mol*) draw such files as C-alpha traces.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..output import open_output

__all__ = ["ca_atom_array", "write_ca_pdb", "read_ca_pdb"]

# the PDB format's fixed-width coordinate field (%8.3f) holds -999.999 .. 9999.999
_PDB_MIN, _PDB_MAX = -999.999, 9999.999


def ca_atom_array(ca: np.ndarray, sequence: str | None = None, chain_id: str = "A"):
    """A biotite ``AtomArray`` of C-alpha atoms for an (L, 3) trace in Angstrom."""
    import biotite.structure as struc
    from biotite.sequence import ProteinSequence

    ca = np.asarray(ca, dtype=np.float32)
    if ca.ndim != 2 or ca.shape[1] != 3:
        raise ValueError(f"expected an (L, 3) C-alpha trace, got shape {ca.shape}")
    length = ca.shape[0]
    sequence = sequence or "G" * length
    if len(sequence) != length:
        raise ValueError(f"sequence has {len(sequence)} letters for {length} residues")
    atoms = struc.AtomArray(length)
    atoms.coord = ca
    atoms.chain_id[:] = chain_id
    atoms.res_id = np.arange(1, length + 1)
    atoms.res_name = np.array([ProteinSequence.convert_letter_1to3(s) for s in sequence])
    atoms.atom_name[:] = "CA"
    atoms.element[:] = "C"
    atoms.hetero[:] = False
    return atoms


def write_ca_pdb(path: str | Path, ca: np.ndarray, sequence: str | None = None) -> Path:
    """Write a C-alpha trace to ``path`` (through :func:`quotient_diffusion.output.open_output`:
    atomically; ``-``: stdout); raises ValueError for non-finite or out-of-range coordinates
    (which the fixed-width format cannot hold)."""
    from biotite.structure.io.pdb import PDBFile

    ca = np.asarray(ca, dtype=np.float64)
    if not np.isfinite(ca).all():
        raise ValueError("cannot write non-finite coordinates to a PDB file")
    if ca.min() < _PDB_MIN or ca.max() > _PDB_MAX:
        raise ValueError("coordinates outside the PDB format's range (-999.999, 9999.999)")
    pdb = PDBFile()
    pdb.set_structure(ca_atom_array(ca, sequence))
    with open_output(path, "w") as fh:
        pdb.write(fh)
    return Path(path)


def read_ca_pdb(path: str | Path) -> np.ndarray:
    """The C-alpha coordinates (L, 3) of the first model of a PDB file."""
    from biotite.structure.io.pdb import PDBFile

    atoms = PDBFile.read(str(path)).get_structure(model=1)
    return atoms.coord[atoms.atom_name == "CA"]
