"""Protein backbone structures: building biotite atom arrays, reading and writing PDB files."""

from .io import ca_atom_array, read_ca_pdb, write_ca_pdb

__all__ = ["ca_atom_array", "write_ca_pdb", "read_ca_pdb"]
