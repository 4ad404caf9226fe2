r"""Drug-like molecules with experimental 3D geometries from the wwPDB Chemical Component
Dictionary (CCD) that biotite ships (``biotite/structure/info/components.bcif``, CC0).

Recipe (:func:`load_ccd`; docs/data.md gives the counts, ``benchmarks/ccd_data.py`` computes
them):

1. Read the three CCD categories ``chem_comp`` (one row per component), ``chem_comp_atom`` and
   ``chem_comp_bond`` as whole columns (biotite's ``get_ccd()``; about 2.3 million atoms and 2.4
   million bonds). Bonds name their atoms; they are mapped to atom rows with one sorted search
   over integer keys (component number, packed atom name), not a dictionary per component.
2. Coordinates: the target is the **experimental** ``model_Cartn_*`` set (one PDB entry per
   component, named in ``pdbx_model_coordinates_db_code``; the hydrogens in it were placed by the
   wwPDB's processing, not observed). The idealised ``pdbx_model_Cartn_*_ideal`` set (a
   rule-based 3D builder: Corina, OpenEye) is read only to recognise copies of it; it is never
   a target and is not cached. A component whose experimental set is missing, incomplete,
   without a source entry, or a copy of the ideal set is dropped: nothing is filled in from the
   ideal coordinates.
3. Filters, in this order; a component is counted at the first one it fails
   (:data:`FILTERS` names them, ``CCD.funnel`` holds the survivors after each):

   - ``released``: not obsolete (``pdbx_release_status`` REL);
   - ``not_polymer_unit``: not a building block of a polymer: ``chem_comp.type`` is
     ``NON-POLYMER`` or ``PEPTIDE-LIKE`` (every peptide/amino-acid, DNA, RNA and saccharide
     linking type is dropped), no ``mon_nstd_parent_comp_id`` (a modified residue) and a
     ``pdbx_type`` other than ATOMP/ATOMN/ATOMS;
   - ``not_named_fragment``: the name does not call it a fragment or unknown;
   - ``model_coordinates``: experimental coordinates for every atom;
   - ``model_source``: they come from a named PDB entry;
   - ``model_not_ideal_copy``: they are not the ideal set again (every bond length and every
     distance to the first atom equal to 0.01 A);
   - ``hydrogens``: the component lists hydrogen atoms;
   - ``elements``: every atom is one of ``elements`` (default H C N O F S Cl Br; deuterium and
     metals fail);
   - ``heavy_atoms``: ``min_heavy``..``max_heavy`` heavy atoms (10-60);
   - ``sanitizable``: RDKit sanitises the molecule built with the CCD's atoms, Kekule bond
     orders (``value_order``) and formal charges, every hydrogen explicit;
   - ``complete_valence``: no atom with unpaired electrons (a missing hydrogen or a bond cut
     out of a larger molecule);
   - ``one_fragment``: a single connected molecule;
   - ``geometry``: the graph matches the experimental coordinates
     (:func:`quotient_diffusion.chem.geometry.check_geometry`: every bond within 0.25 A of its
     UFF rest length, no two atoms three or more bonds apart closer than half their van der
     Waals radii);
   - ``unique``: the first component (by code) of each canonical isomeric SMILES (stereo from
     the experimental coordinates, hydrogens removed);
   - ``not_evaluation``: not an evaluation code (``$QD_DATA/druglike/evaluation_ccd_codes.txt``)
     and not the same molecule as one of them: neither the canonical SMILES without stereo nor
     the first block of the InChIKey (the skeleton: blind to stereo, protonation and mobile
     hydrogens) equal to one of theirs (theirs built from the CCD's graph, whatever their
     coordinates). The InChIKey key is stricter than the SMILES one the issue asks for: it also
     catches another charge state or tautomer of an evaluation ligand;
   - ``not_benchmark``: not a ligand of the Genentech bound-pose sets
     (``$QD_DATA/druglike/genentech_pdb_ligands_{neutral,charged}.sdf``, the validation and
     benchmark molecules) by the same two keys.

   The filters that need no molecule (all up to ``heavy_atoms``) are evaluated on whole columns;
   RDKit sees only their survivors.
4. Split by Bemis-Murcko scaffold (:func:`scaffold_split`): molecules sharing a scaffold
   (hydrogen-free, stereo-free scaffold SMILES; the empty scaffold of acyclic molecules is one
   group) go to one split. Groups larger than half a validation split go to training; the
   others are shuffled (seeded) and dealt to validation and test until each holds its fraction
   (5 % each), the rest to training.
5. Cache: one ``.pt`` file of concatenated arrays under ``$QD_CACHE`` (default
   ``~/.cache/quotient_diffusion``), written atomically by
   :func:`quotient_diffusion.tensor_files.save_checkpoint` and read with ``weights_only=True``.
   Its name carries a digest of the options, the biotite version (which fixes the CCD release)
   and the evaluation list, so a change of any of them builds a new one.

Atoms are stored heavy atoms first, then hydrogens, each in the CCD's order; bonds as pairs of
atom numbers inside their molecule with Kekule orders 1, 2, 3. :meth:`CCD.molecule` rebuilds the
RDKit molecule (hydrogens explicit, the experimental conformer, stereo from it) in that atom
order, so ``molecule(i)`` and ``positions_of(i)`` agree atom by atom.

Training targets (:func:`relax_ccd`): the experimental coordinates have noisy local geometry
(docs/data.md, "Noise of the experimental single conformers"), so the conformer task trains on
copies relaxed with MMFF94 while every heavy atom is held within :data:`RESTRAINT_A` of its
place (:func:`restrained_relaxation`). They are computed once, in chunks, into a file beside the
set's cache (:func:`relaxed_path`) that is rewritten atomically after every chunk, so an
interrupted run resumes where it stopped; only the entries asked for are relaxed. A molecule
MMFF cannot parameterise (or whose minimisation fails) keeps its experimental coordinates and
is counted in ``failed``.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch

from ..tensor_files import CheckpointError, load_checkpoint, save_checkpoint
from .paths import cache_dir, data_root

__all__ = [
    "CCD",
    "CCDTables",
    "FILTERS",
    "DEFAULT_ELEMENTS",
    "EVALUATION_CODES",
    "BENCHMARK_SDFS",
    "benchmark_molecules",
    "molecule_keys",
    "read_ccd_tables",
    "select_components",
    "graph_molecule",
    "evaluation_codes",
    "build_ccd",
    "load_ccd",
    "scaffold_split",
    "murcko_scaffold",
    "canonical_smiles",
    "RelaxedTargets",
    "restrained_relaxation",
    "relaxed_path",
    "relax_ccd",
]

CACHE_VERSION = 2  # 2: no ideal coordinates, int16 bonds
SPLIT_NAMES = ("train", "valid", "test")
#: the elements kept by default (all atoms of a molecule must be among them)
DEFAULT_ELEMENTS = ("H", "C", "N", "O", "F", "S", "Cl", "Br")
MIN_HEAVY, MAX_HEAVY = 10, 60
#: evaluation codes, relative to the data root
EVALUATION_CODES = "druglike/evaluation_ccd_codes.txt"
#: the bound-pose benchmark ligands, relative to the data root
BENCHMARK_SDFS = ("druglike/genentech_pdb_ligands_neutral.sdf",
                  "druglike/genentech_pdb_ligands_charged.sdf")
#: chem_comp.type values (lower case) of components that are whole molecules
_MOLECULE_TYPES = ("non-polymer", "peptide-like")
#: pdbx_type values of polymer atoms: amino acids, nucleotides, saccharides
_POLYMER_PDBX_TYPES = ("ATOMP", "ATOMN", "ATOMS")
_FRAGMENT_NAME = re.compile(r"\bFRAGMENT\b|\bUNKNOWN\b", re.IGNORECASE)
#: coordinates equal to the ideal ones within this (Angstrom) are a copy, not an experiment
_COPY_TOLERANCE = 0.01
_BOND_ORDERS = {"SING": 1, "DOUB": 2, "TRIP": 3}

#: (name, what it keeps), in the order they are applied
FILTERS = (
    ("released", "not obsolete"),
    ("not_polymer_unit", "not an amino acid, nucleotide, saccharide or modified residue"),
    ("not_named_fragment", "not named a fragment or unknown"),
    ("model_coordinates", "experimental coordinates for every atom"),
    ("model_source", "experimental coordinates from a named PDB entry"),
    ("model_not_ideal_copy", "experimental coordinates not a copy of the ideal ones"),
    ("hydrogens", "hydrogen atoms listed"),
    ("elements", "only the allowed elements"),
    ("heavy_atoms", "heavy-atom count in range"),
    ("sanitizable", "RDKit sanitises the CCD graph (bond orders, charges, explicit H)"),
    ("complete_valence", "no unpaired electrons (no missing H, no cut bond)"),
    ("one_fragment", "one connected molecule"),
    ("geometry", "bonds match the coordinates, no clash"),
    ("unique", "first of its canonical isomeric SMILES"),
    ("not_evaluation", "not an evaluation component, nor the same molecule"),
    ("not_benchmark", "not a Genentech benchmark ligand"),
)
_COLUMN_FILTERS = 9  # the first filters, evaluated on whole columns (then 4 on molecules)


# ------------------------------------------------------------------------------ raw tables
@dataclass
class CCDTables:
    """The CCD columns the pipeline uses, decoded once (components in CCD order)."""

    code: np.ndarray  # (C,) component ids
    comp_type: np.ndarray  # (C,) chem_comp.type
    name: np.ndarray  # (C,) chem_comp.name
    released: np.ndarray  # (C,) bool
    parent: np.ndarray  # (C,) mon_nstd_parent_comp_id ('?' when none)
    pdbx_type: np.ndarray  # (C,)
    model_missing_flag: np.ndarray  # (C,) bool, pdbx_model_coordinates_missing_flag == 'Y'
    model_entry: np.ndarray  # (C,) PDB entry of the model coordinates ('?' when none)
    atom_ptr: np.ndarray  # (C+1,) atom rows of component c: atom_ptr[c]:atom_ptr[c+1]
    atomic_number: np.ndarray  # (A,) uint8; 0 for deuterium and unknown symbols
    charge: np.ndarray  # (A,) int8
    model: np.ndarray  # (A, 3) float64, NaN where missing
    ideal: np.ndarray  # (A, 3) float64, NaN where missing
    bond_ptr: np.ndarray  # (C+1,) bond rows of component c
    bond_atoms: np.ndarray  # (B, 2) int64 atom rows (global); -1 where the atom is not listed
    bond_order: np.ndarray  # (B,) int8: 1, 2, 3; 0 for any other value_order

    @property
    def bond_comp(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.code)), np.diff(self.bond_ptr))

    @property
    def atom_comp(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.code)), np.diff(self.atom_ptr))


def _biotite_ccd():
    try:
        from biotite.structure.info import get_ccd
    except ImportError as err:  # biotite absent, or too old to bundle components.bcif
        raise ImportError(
            "the CCD data set needs biotite.structure.info.get_ccd (the CCD that biotite "
            "bundles as components.bcif; the counts in docs/data.md are biotite 1.6.0's): "
            "python3 -m pip install 'biotite>=1.0'"
        ) from err
    return get_ccd()


def _column(category, name: str, dtype=None, fill=None) -> np.ndarray:
    col = category[name]
    arr = col.as_array() if dtype is None else col.as_array(dtype)
    if fill is not None and col.mask is not None:
        arr = arr.copy()
        arr[col.mask.array != 0] = fill
    return arr


def _xyz(category, prefix: str, suffix: str = "") -> np.ndarray:
    return np.stack([_column(category, f"{prefix}{a}{suffix}", np.float64, np.nan)
                     for a in "xyz"], axis=1)


def _pack_names(names: np.ndarray) -> np.ndarray:
    """Atom names (<= 4 characters, Latin-1) as one int64 each: four bytes."""
    names = np.asarray(names)
    if names.dtype.itemsize > 16:  # more than four characters: keys would collide
        raise ValueError("a CCD atom name is longer than four characters")
    names = names.astype("<U4")
    codes = names.view(np.uint32).reshape(len(names), 4).astype(np.int64)
    if codes.max(initial=0) > 255:
        raise ValueError("an atom name of the CCD holds a character beyond Latin-1")
    return codes[:, 0] | codes[:, 1] << 8 | codes[:, 2] << 16 | codes[:, 3] << 24


def _ranges(comp_of_row: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """(C+1,) offsets of each component's rows; rows are grouped by component, in CCD order."""
    index = np.searchsorted(codes, comp_of_row)
    found = codes[np.minimum(index, len(codes) - 1)] == comp_of_row
    if not found.all():
        raise ValueError("the CCD lists atoms or bonds of an unknown component")
    if (np.diff(index) < 0).any():
        raise ValueError("the CCD's atom or bond rows are not grouped by component")
    return np.concatenate([[0], np.cumsum(np.bincount(index, minlength=len(codes)))])


def read_ccd_tables(codes=None) -> CCDTables:
    """The CCD columns the pipeline needs; ``codes``: only these components (any order; the
    result keeps the CCD's). About 5 s for the whole dictionary."""
    from rdkit import Chem

    block = _biotite_ccd()
    comp, atoms, bonds = block["chem_comp"], block["chem_comp_atom"], block["chem_comp_bond"]
    code = _column(comp, "id")
    if (code[1:] <= code[:-1]).any():
        raise ValueError("the CCD's components are not sorted by id")
    atom_code = _column(atoms, "comp_id")
    bond_code = _column(bonds, "comp_id")
    atom_ptr = _ranges(atom_code, code)
    bond_ptr = _ranges(bond_code, code)

    symbols = np.char.upper(_column(atoms, "type_symbol"))
    unique, inverse = np.unique(symbols, return_inverse=True)
    table = Chem.GetPeriodicTable()
    number_of = {table.GetElementSymbol(z).upper(): z for z in range(1, 119)}
    number_of.pop("D", None)  # deuterium ('D') and unknown symbols ('X') -> 0, never allowed
    atomic_number = np.asarray([number_of.get(s, 0) for s in unique.tolist()],
                               dtype=np.uint8)[inverse.reshape(-1)]

    # bonds -> atom rows: key = (component number << 32) | packed atom name, one sorted search
    atom_key = np.repeat(np.arange(len(code), dtype=np.int64), np.diff(atom_ptr)) << 32
    atom_key |= _pack_names(_column(atoms, "atom_id"))
    order = np.argsort(atom_key, kind="stable")
    sorted_keys = atom_key[order]
    bond_comp = np.repeat(np.arange(len(code), dtype=np.int64), np.diff(bond_ptr)) << 32
    bond_atoms = np.empty((len(bond_code), 2), dtype=np.int64)
    for k, column in enumerate(("atom_id_1", "atom_id_2")):
        key = bond_comp | _pack_names(_column(bonds, column))
        pos = np.minimum(np.searchsorted(sorted_keys, key), len(sorted_keys) - 1)
        bond_atoms[:, k] = np.where(sorted_keys[pos] == key, order[pos], -1)
    value_order = _column(bonds, "value_order")
    bond_order = np.zeros(len(value_order), dtype=np.int8)
    for name, value in _BOND_ORDERS.items():
        bond_order[value_order == name] = value

    tables = CCDTables(
        code=code,
        comp_type=_column(comp, "type"),
        name=_column(comp, "name"),
        released=_column(comp, "pdbx_release_status") == "REL",
        parent=_column(comp, "mon_nstd_parent_comp_id", fill="?"),
        pdbx_type=_column(comp, "pdbx_type", fill="?"),
        model_missing_flag=_column(comp, "pdbx_model_coordinates_missing_flag", fill="?") == "Y",
        model_entry=_column(comp, "pdbx_model_coordinates_db_code", fill="?"),
        atom_ptr=atom_ptr,
        atomic_number=atomic_number,
        charge=_column(atoms, "charge", np.int64, 0).astype(np.int8),
        model=_xyz(atoms, "model_Cartn_"),
        ideal=_xyz(atoms, "pdbx_model_Cartn_", "_ideal"),
        bond_ptr=bond_ptr,
        bond_atoms=bond_atoms,
        bond_order=bond_order,
    )
    return tables if codes is None else select_components(tables, codes)


_PER_COMPONENT = ("code", "comp_type", "name", "released", "parent", "pdbx_type",
                  "model_missing_flag", "model_entry")


def select_components(t: CCDTables, codes) -> CCDTables:
    """The tables restricted to ``codes`` (unknown codes are ignored; CCD order kept)."""
    keep = np.flatnonzero(np.isin(t.code, np.asarray(list(codes), dtype=t.code.dtype)))
    atom_rows = np.concatenate([np.arange(t.atom_ptr[c], t.atom_ptr[c + 1]) for c in keep]
                               + [np.zeros(0, np.int64)])
    bond_rows = np.concatenate([np.arange(t.bond_ptr[c], t.bond_ptr[c + 1]) for c in keep]
                               + [np.zeros(0, np.int64)])
    new_row = np.full(len(t.atomic_number), -1, dtype=np.int64)
    new_row[atom_rows] = np.arange(len(atom_rows))
    bond_atoms = t.bond_atoms[bond_rows]
    bond_atoms = np.where(bond_atoms >= 0, new_row[np.maximum(bond_atoms, 0)], -1)
    return CCDTables(
        **{name: getattr(t, name)[keep] for name in _PER_COMPONENT},
        atom_ptr=np.concatenate([[0], np.cumsum(np.diff(t.atom_ptr)[keep])]),
        atomic_number=t.atomic_number[atom_rows],
        charge=t.charge[atom_rows],
        model=t.model[atom_rows],
        ideal=t.ideal[atom_rows],
        bond_ptr=np.concatenate([[0], np.cumsum(np.diff(t.bond_ptr)[keep])]),
        bond_atoms=bond_atoms,
        bond_order=t.bond_order[bond_rows],
    )


# ------------------------------------------------------------------- column-wise filters
def _per_comp(t: CCDTables, values: np.ndarray) -> np.ndarray:
    """Sum of an atom-wise quantity over each component."""
    return np.bincount(t.atom_comp, weights=values, minlength=len(t.code))


def _ideal_copy(t: CCDTables) -> np.ndarray:
    """(C,) True where the model coordinates repeat the ideal ones up to a rigid motion:
    every bond length and every distance to the component's first atom agree to 0.01 A."""
    comp = t.atom_comp
    first = t.atom_ptr[:-1][comp]
    dev = np.full(len(t.code), -np.inf)
    with np.errstate(invalid="ignore"):
        d_model = np.linalg.norm(t.model - t.model[first], axis=1)
        d_ideal = np.linalg.norm(t.ideal - t.ideal[first], axis=1)
        np.maximum.at(dev, comp, np.abs(d_model - d_ideal))
        ok = (t.bond_atoms >= 0).all(1)
        i, j = t.bond_atoms[ok, 0], t.bond_atoms[ok, 1]
        b_model = np.linalg.norm(t.model[i] - t.model[j], axis=1)
        b_ideal = np.linalg.norm(t.ideal[i] - t.ideal[j], axis=1)
        np.maximum.at(dev, t.bond_comp[ok], np.abs(b_model - b_ideal))
    copy = np.nan_to_num(dev, nan=np.inf) <= _COPY_TOLERANCE  # NaN: no ideal set, no copy
    return copy & (np.diff(t.atom_ptr) > 0)


def column_filters(t: CCDTables, elements=DEFAULT_ELEMENTS, min_heavy: int = MIN_HEAVY,
                   max_heavy: int = MAX_HEAVY) -> list[tuple[str, np.ndarray]]:
    """The filters that need no molecule, each a (C,) boolean of components that pass it
    (independently of the others), in :data:`FILTERS` order."""
    from rdkit import Chem

    table = Chem.GetPeriodicTable()
    allowed = np.zeros(256, dtype=bool)
    allowed[[table.GetAtomicNumber(e) for e in elements]] = True
    z = t.atomic_number
    n_atoms = np.diff(t.atom_ptr)
    heavy = _per_comp(t, (z != 1).astype(float))
    comp_type = np.char.lower(t.comp_type.astype(str))
    return [
        ("released", t.released),
        ("not_polymer_unit", np.isin(comp_type, _MOLECULE_TYPES) & (t.parent == "?")
         & ~np.isin(t.pdbx_type, _POLYMER_PDBX_TYPES)),
        ("not_named_fragment", np.array([not _FRAGMENT_NAME.search(s) for s in t.name.tolist()],
                                        dtype=bool)),
        ("model_coordinates", ~t.model_missing_flag & (n_atoms > 0)
         & (_per_comp(t, np.isnan(t.model).any(1).astype(float)) == 0)),
        ("model_source", ~np.isin(t.model_entry, ("?", "."))),
        ("model_not_ideal_copy", ~_ideal_copy(t)),
        ("hydrogens", _per_comp(t, (z == 1).astype(float)) > 0),
        ("elements", _per_comp(t, (~allowed[z]).astype(float)) == 0),
        ("heavy_atoms", (heavy >= min_heavy) & (heavy <= max_heavy)),
    ]


# ------------------------------------------------------------------------ one molecule
_BOND_TYPES = None


def _bond_type(order: int):
    global _BOND_TYPES
    if _BOND_TYPES is None:
        from rdkit import Chem

        _BOND_TYPES = {1: Chem.BondType.SINGLE, 2: Chem.BondType.DOUBLE,
                       3: Chem.BondType.TRIPLE}
    return _BOND_TYPES[order]


def build_molecule(numbers, charges, bonds, orders, positions=None):
    """An RDKit molecule with these atoms (atomic numbers, formal charges; every hydrogen
    explicit, none implicit), Kekule bonds (local atom pairs, orders 1-3) and, if given, one
    conformer (Angstrom) from which stereo is assigned. Not sanitised."""
    from rdkit import Chem

    mol = Chem.RWMol()
    for z, q in zip(numbers.tolist(), charges.tolist()):
        atom = Chem.Atom(z)
        atom.SetFormalCharge(q)
        atom.SetNoImplicit(True)
        mol.AddAtom(atom)
    for (i, j), o in zip(bonds.tolist(), orders.tolist()):
        mol.AddBond(i, j, _bond_type(o))
    if positions is not None:
        conf = Chem.Conformer(len(numbers))
        conf.SetPositions(np.asarray(positions, dtype=np.float64))
        conf.Set3D(True)
        mol.AddConformer(conf, assignId=True)
    return mol.GetMol()


def canonical_smiles(mol, stereo: bool = True) -> str:
    """Canonical SMILES without hydrogens (``stereo``: isomeric, from the molecule's stereo)."""
    from rdkit import Chem

    heavy = Chem.RemoveHs(mol)
    if not stereo:
        heavy = Chem.Mol(heavy)
        Chem.RemoveStereochemistry(heavy)
    return Chem.MolToSmiles(heavy, isomericSmiles=stereo)


def murcko_scaffold(mol) -> str:
    """Bemis-Murcko scaffold SMILES (no hydrogens, no stereo); '' for an acyclic molecule."""
    from rdkit import Chem
    from rdkit.Chem.Scaffolds import MurckoScaffold

    heavy = Chem.RemoveHs(mol)
    Chem.RemoveStereochemistry(heavy)
    return Chem.MolToSmiles(MurckoScaffold.GetScaffoldForMol(heavy), isomericSmiles=False)


def _molecule_checks(numbers, charges, bonds, orders, positions):
    """(first failed check or None, molecule) for one component, in :data:`FILTERS` order."""
    from rdkit import Chem
    from rdkit.Chem import Descriptors

    from ..chem.geometry import check_geometry

    if (orders == 0).any() or (bonds < 0).any():
        return "sanitizable", None
    mol = build_molecule(numbers, charges, bonds, orders, positions)
    try:
        Chem.SanitizeMol(mol)
    except Exception:  # RDKit raises several types (valence, kekulisation, ...)
        return "sanitizable", None
    if Descriptors.NumRadicalElectrons(mol):
        return "complete_valence", mol
    if len(Chem.GetMolFrags(mol)) > 1:
        return "one_fragment", mol
    if not check_geometry(mol, positions).ok:
        return "geometry", mol
    Chem.AssignStereochemistryFrom3D(mol)
    return None, mol


def molecule_keys(mol) -> tuple[str, str]:
    """The two identity keys of a molecule: canonical SMILES without stereo (hydrogens
    removed) and the first block of its InChIKey (skeleton: no stereo, protonation or mobile-H
    layer)."""
    from rdkit import Chem

    return canonical_smiles(mol, stereo=False), Chem.MolToInchiKey(mol)[:14]


def _key_sets(mols) -> tuple[set[str], set[str]]:
    """The SMILES keys and the InChIKey keys of ``mols``."""
    keys = [molecule_keys(m) for m in mols]
    return {k[0] for k in keys}, {k[1] for k in keys}


def graph_molecule(t: CCDTables, c: int):
    """Sanitised molecule of component ``c`` from its graph alone (no coordinates); None when
    RDKit cannot build it."""
    from rdkit import Chem

    s, e = t.atom_ptr[c], t.atom_ptr[c + 1]
    bs, be = t.bond_ptr[c], t.bond_ptr[c + 1]
    bonds, orders = t.bond_atoms[bs:be] - s, t.bond_order[bs:be]
    if e == s or (orders == 0).any() or (t.bond_atoms[bs:be] < 0).any():
        return None
    mol = build_molecule(t.atomic_number[s:e], t.charge[s:e], bonds, orders)
    try:
        Chem.SanitizeMol(mol)
    except Exception:
        return None
    return mol


# ------------------------------------------------------------------------------ the set
@dataclass
class CCD:
    """The drug-like CCD set as concatenated arrays (molecules in CCD code order)."""

    code: list[str]  # CCD component ids
    smiles: list[str]  # canonical isomeric SMILES (stereo from the experimental coordinates)
    smiles_no_stereo: list[str]  # canonical SMILES without stereo (an identity key)
    inchikey: list[str]  # first block of the InChIKey (skeleton; the other identity key)
    scaffold: list[str]  # Bemis-Murcko scaffold SMILES ('' for acyclic molecules)
    entry: list[str]  # PDB entry of the experimental coordinates
    split: np.ndarray  # (M,) int8: 0 train, 1 valid, 2 test
    atom_ptr: np.ndarray  # (M+1,) int64 offsets into the atom arrays
    atomic_numbers: np.ndarray  # (A,) uint8, heavy atoms first, then hydrogens
    formal_charges: np.ndarray  # (A,) int8
    positions: np.ndarray  # (A, 3) float32: experimental (model) coordinates, Angstrom
    bond_ptr: np.ndarray  # (M+1,) int64 offsets into the bond arrays
    bonds: np.ndarray  # (B, 2) int16 atom numbers inside the molecule
    bond_orders: np.ndarray  # (B,) int8 Kekule orders 1, 2, 3
    funnel: list  # [[filter name, components left after it], ...], starting with ["all", C]
    dropped: dict  # filter name -> codes it removed (in CCD order)
    evaluation: dict  # the excluded sets: counts, their keys, how many each key removed
    options: dict  # elements, heavy-atom range, fractions, seed, biotite, build_seconds

    def __len__(self) -> int:
        return len(self.code)

    def num_atoms(self) -> np.ndarray:
        return np.diff(self.atom_ptr)

    def num_heavy_atoms(self) -> np.ndarray:
        heavy = (self.atomic_numbers != 1).astype(np.int64)
        return np.add.reduceat(heavy, self.atom_ptr[:-1]) if len(self) else np.zeros(0, int)

    def positions_of(self, i: int) -> np.ndarray:
        return self.positions[self.atom_ptr[i] : self.atom_ptr[i + 1]]

    def atomic_numbers_of(self, i: int) -> np.ndarray:
        return self.atomic_numbers[self.atom_ptr[i] : self.atom_ptr[i + 1]]

    def bonds_of(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(bonds (b, 2) local atom numbers, Kekule orders (b,)) of molecule ``i``."""
        s, e = self.bond_ptr[i], self.bond_ptr[i + 1]
        return self.bonds[s:e], self.bond_orders[s:e]

    def molecule(self, i: int):
        """RDKit molecule of entry ``i``: sanitised, hydrogens explicit, one conformer (the
        experimental coordinates, in the order of ``positions_of(i)``), stereo from it."""
        from rdkit import Chem

        s, e = self.atom_ptr[i], self.atom_ptr[i + 1]
        bonds, orders = self.bonds_of(i)
        mol = build_molecule(self.atomic_numbers[s:e], self.formal_charges[s:e], bonds, orders,
                             self.positions[s:e])
        Chem.SanitizeMol(mol)
        Chem.AssignStereochemistryFrom3D(mol)
        return mol

    def subset(self, split: str) -> np.ndarray:
        """Entry numbers of one split ('train', 'valid' or 'test')."""
        return np.flatnonzero(self.split == SPLIT_NAMES.index(split))


def scaffold_split(scaffolds: list[str], fractions=(0.9, 0.05, 0.05), seed: int = 0) -> np.ndarray:
    """Split code per molecule (0 train, 1 valid, 2 test); every scaffold in one split.

    Groups of one scaffold larger than half the validation target go to training (the acyclic
    group among them); the others are shuffled with ``seed`` (from their sorted order, so the
    result depends only on the scaffolds and the seed) and dealt: a group goes to validation
    while it fits under its target, else to test while that fits, else to training.
    """
    n = len(scaffolds)
    keys, inverse, counts = np.unique(np.asarray(scaffolds, dtype=object).astype(str),
                                      return_inverse=True, return_counts=True)
    targets = [fractions[1] * n, fractions[2] * n]
    group_split = np.zeros(len(keys), dtype=np.int8)
    small = np.flatnonzero(counts <= targets[0] / 2)
    filled = [0, 0]
    for g in small[np.random.RandomState(seed).permutation(len(small))]:
        for k in (0, 1):
            if filled[k] + counts[g] <= targets[k]:
                group_split[g] = k + 1
                filled[k] += counts[g]
                break
    return group_split[inverse.reshape(-1)] if n else np.zeros(0, np.int8)


def evaluation_codes(data_dir=None) -> list[str]:
    """The CCD codes reserved for evaluation (never trained or validated on)."""
    path = data_root(data_dir, required=EVALUATION_CODES) / EVALUATION_CODES
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def benchmark_molecules(data_dir=None) -> list:
    """The Genentech bound-pose ligands (RDKit molecules with hydrogens), neutral then charged."""
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    root = data_root(data_dir, required=BENCHMARK_SDFS[0])
    mols = []
    for name in BENCHMARK_SDFS:
        mols += [m for m in Chem.SDMolSupplier(str(root / name), removeHs=False) if m is not None]
    return mols


@dataclass
class _Molecule:
    """A component that passed the molecule filters: its number in the tables, the atom order
    (heavy atoms first), its bonds in that order and the sanitised molecule."""

    comp: int
    order: np.ndarray
    bonds: np.ndarray
    mol: object


def _build_molecules(t: CCDTables, candidates: np.ndarray, progress: bool):
    """The molecule filters on ``candidates``: (passed molecules, {filter: failed comps})."""
    from tqdm.auto import tqdm

    failed = {name: [] for name, _ in FILTERS[_COLUMN_FILTERS:_COLUMN_FILTERS + 4]}
    passed = []
    for c in tqdm(candidates, desc="CCD: building molecules", disable=not progress):
        s, e = t.atom_ptr[c], t.atom_ptr[c + 1]
        bs, be = t.bond_ptr[c], t.bond_ptr[c + 1]
        z = t.atomic_number[s:e]
        order = np.argsort(z == 1, kind="stable")  # heavy atoms first, then hydrogens
        local = np.empty(e - s, dtype=np.int64)
        local[order] = np.arange(e - s)
        rows = t.bond_atoms[bs:be]
        bonds = np.where(rows >= 0, local[np.maximum(rows - s, 0)], -1)
        reason, mol = _molecule_checks(z[order], t.charge[s:e][order], bonds,
                                       t.bond_order[bs:be], t.model[s:e][order])
        if reason is None:
            passed.append(_Molecule(int(c), order, bonds, mol))
        else:
            failed[reason].append(int(c))
    return passed, failed


def _exclude(molecules: list[_Molecule], keys: list[tuple[str, str]], codes: list[str],
             eval_codes: set[str], eval_keys, bench_keys):
    """Indices of ``molecules`` that survive the evaluation exclusion, those that also survive
    the benchmark exclusion, and the counts of what each key removed."""
    removed = {"by_code": 0, "by_smiles": 0, "by_inchikey": 0}
    after_eval = []
    for k, (m, (smi, inchi)) in enumerate(zip(molecules, keys)):
        if codes[m.comp] in eval_codes:
            removed["by_code"] += 1
        elif smi in eval_keys[0]:
            removed["by_smiles"] += 1
        elif inchi in eval_keys[1]:
            removed["by_inchikey"] += 1
        else:
            after_eval.append(k)
    in_smiles = [keys[k][0] in bench_keys[0] for k in after_eval]
    in_inchi = [keys[k][1] in bench_keys[1] for k in after_eval]
    final = [k for k, a, b in zip(after_eval, in_smiles, in_inchi) if not (a or b)]
    bench_removed = {"by_smiles": int(sum(in_smiles)),
                     "by_inchikey_only": int(sum(b and not a for a, b in zip(in_smiles, in_inchi)))}
    return after_eval, final, removed, bench_removed


def _concatenate(t: CCDTables, molecules: list[_Molecule]) -> dict:
    """The atom and bond arrays of ``molecules``, concatenated (atoms heavy first)."""
    def cat(parts, dtype, shape=()):
        return np.concatenate(parts).astype(dtype) if parts else np.zeros((0, *shape), dtype)

    atoms = [np.arange(t.atom_ptr[m.comp], t.atom_ptr[m.comp + 1])[m.order] for m in molecules]
    rows = [np.arange(t.bond_ptr[m.comp], t.bond_ptr[m.comp + 1]) for m in molecules]
    rows_all = cat(rows, np.int64)
    atoms_all = cat(atoms, np.int64)
    return {
        "atom_ptr": np.concatenate([[0], np.cumsum([len(a) for a in atoms])]).astype(np.int64),
        "atomic_numbers": t.atomic_number[atoms_all].astype(np.uint8),
        "formal_charges": t.charge[atoms_all].astype(np.int8),
        "positions": t.model[atoms_all].astype(np.float32).reshape(-1, 3),
        "bond_ptr": np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64),
        "bonds": cat([m.bonds for m in molecules], np.int16, (2,)),
        "bond_orders": t.bond_order[rows_all].astype(np.int8),
    }


def build_ccd(tables: CCDTables | None = None, eval_codes=(), benchmark=(),
              elements=DEFAULT_ELEMENTS, min_heavy: int = MIN_HEAVY, max_heavy: int = MAX_HEAVY,
              fractions=(0.9, 0.05, 0.05), seed: int = 0, progress: bool = True) -> CCD:
    """Apply the filters (module docstring) to ``tables`` (default: the whole CCD), exclude
    the components ``eval_codes`` and the RDKit molecules ``benchmark`` (with every molecule
    sharing a key of :func:`molecule_keys` with them), split by scaffold."""
    import biotite
    from rdkit import RDLogger

    RDLogger.DisableLog("rdApp.*")
    clock = [time.perf_counter()]
    seconds = {}

    def lap(name: str) -> None:
        clock.append(time.perf_counter())
        seconds[name] = round(clock[-1] - clock[-2], 1)

    t = read_ccd_tables() if tables is None else tables
    lap("read")
    code = t.code.astype(str)
    names = code.tolist()  # plain str: the cache holds no numpy scalars
    funnel = [["all", int(len(code))]]
    dropped: dict[str, list[str]] = {}

    # 1. the filters on whole columns
    alive = np.ones(len(code), dtype=bool)
    for name, passed in column_filters(t, elements, min_heavy, max_heavy):
        dropped[name] = code[alive & ~passed].tolist()
        alive &= passed
        funnel.append([name, int(alive.sum())])
    lap("column_filters")

    # 2. the molecule filters, on their survivors only
    molecules, failed = _build_molecules(t, np.flatnonzero(alive), progress)
    for name, comps in failed.items():
        dropped[name] = code[comps].tolist()
        funnel.append([name, funnel[-1][1] - len(comps)])
    lap("molecules")

    # 3. one molecule per canonical isomeric SMILES (the first by code)
    smiles = [canonical_smiles(m.mol) for m in molecules]
    first = {}
    for k, smi in enumerate(smiles):
        first.setdefault(smi, k)
    unique = sorted(first.values())
    dropped["unique"] = [names[m.comp] for k, m in enumerate(molecules) if first[smiles[k]] != k]
    funnel.append(["unique", len(unique)])
    molecules, smiles = [molecules[k] for k in unique], [smiles[k] for k in unique]
    lap("smiles")

    # 4. exclusions: the evaluation components and the benchmark ligands, by code and both keys
    eval_codes = sorted(set(eval_codes))
    eval_index = np.flatnonzero(np.isin(code, eval_codes)) if eval_codes else np.zeros(0, int)
    eval_mols = [m for c in eval_index for m in [graph_molecule(t, c)] if m is not None]
    eval_keys, bench_keys = _key_sets(eval_mols), _key_sets(benchmark)
    keys = [molecule_keys(m.mol) for m in molecules]
    lap("keys")
    after_eval, final, removed, bench_removed = _exclude(molecules, keys, names, set(eval_codes),
                                                         eval_keys, bench_keys)
    for name, survivors, pool in (("not_evaluation", after_eval, range(len(molecules))),
                                  ("not_benchmark", final, after_eval)):
        left = set(survivors)
        dropped[name] = [names[molecules[k].comp] for k in pool if k not in left]
        funnel.append([name, len(survivors)])
    molecules = [molecules[k] for k in final]
    smiles, keys = [smiles[k] for k in final], [keys[k] for k in final]

    # 5. the scaffold split
    scaffolds = [murcko_scaffold(m.mol) for m in molecules]
    lap("scaffolds")
    return CCD(
        code=[names[m.comp] for m in molecules],
        smiles=smiles,
        smiles_no_stereo=[k[0] for k in keys],
        inchikey=[k[1] for k in keys],
        scaffold=scaffolds,
        entry=[str(t.model_entry[m.comp]) for m in molecules],
        split=scaffold_split(scaffolds, fractions, seed).astype(np.int8),
        **_concatenate(t, molecules),
        funnel=funnel,
        dropped=dropped,
        evaluation={"codes_listed": len(eval_codes), "codes_in_ccd": int(len(eval_index)),
                    "codes_built": len(eval_mols), "smiles": sorted(eval_keys[0]),
                    "inchikeys": sorted(eval_keys[1]), "removed": removed,
                    "benchmark_molecules": len(benchmark),
                    "benchmark_smiles": sorted(bench_keys[0]),
                    "benchmark_inchikeys": sorted(bench_keys[1]),
                    "benchmark_removed": bench_removed},
        options={"elements": list(elements), "min_heavy": min_heavy, "max_heavy": max_heavy,
                 "fractions": list(fractions), "seed": seed, "biotite": biotite.__version__,
                 "build_seconds": seconds},
    )


# ------------------------------------------------------------------------------- cache
def _to_plain(data: CCD) -> dict:
    """The fields of ``data`` as tensors and plain Python data (safe to load)."""
    return {f.name: torch.from_numpy(np.ascontiguousarray(v)) if isinstance(v, np.ndarray)
            else v for f in fields(CCD) for v in [getattr(data, f.name)]}


def _from_plain(state: dict) -> CCD:
    return CCD(**{f.name: v.numpy() if isinstance(v, torch.Tensor) else v
                  for f in fields(CCD) for v in [state[f.name]]})


def cache_path(data_dir=None, cache=None, elements=DEFAULT_ELEMENTS, min_heavy: int = MIN_HEAVY,
               max_heavy: int = MAX_HEAVY, fractions=(0.9, 0.05, 0.05), seed: int = 0) -> Path:
    """Where :func:`load_ccd` keeps the set built with these options."""
    import biotite

    root = data_root(data_dir, required=EVALUATION_CODES)
    excluded = hashlib.sha256()
    for name in (EVALUATION_CODES, *BENCHMARK_SDFS):
        excluded.update((root / name).read_bytes())
    key = json.dumps({"version": CACHE_VERSION, "biotite": biotite.__version__,
                      "elements": list(elements), "heavy": [min_heavy, max_heavy],
                      "fractions": list(fractions), "seed": seed,
                      "excluded": excluded.hexdigest()}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return cache_dir(cache) / f"ccd_v{CACHE_VERSION}-{digest}.pt"


def load_ccd(data_dir=None, cache=None, refresh: bool = False, progress: bool = True,
             elements=DEFAULT_ELEMENTS, min_heavy: int = MIN_HEAVY, max_heavy: int = MAX_HEAVY,
             fractions=(0.9, 0.05, 0.05), seed: int = 0) -> CCD:
    """The drug-like CCD set, built once (a few minutes) and then read from the cache.
    ``data_dir`` locates the evaluation codes and benchmark ligands (``$QD_DATA`` by
    default)."""
    path = cache_path(data_dir, cache, elements, min_heavy, max_heavy, fractions, seed)
    if path.exists() and not refresh:
        try:
            return _from_plain(load_checkpoint(path, [f.name for f in fields(CCD)]))
        except CheckpointError:
            pass  # a damaged cache: build it again
    data = build_ccd(eval_codes=evaluation_codes(data_dir),
                     benchmark=benchmark_molecules(data_dir), elements=elements,
                     min_heavy=min_heavy, max_heavy=max_heavy, fractions=fractions, seed=seed,
                     progress=progress)
    save_checkpoint(path, _to_plain(data))
    return data


# ------------------------------------------------------------- restrained relaxed targets
#: flat-bottom width of the heavy-atom restraint (A), its force constant (kcal/mol/A^2) and
#: the iteration cap of the restrained MMFF94 relaxation (benchmarks/ccd_data.py's settings)
RESTRAINT_A = 0.1
RESTRAINT_K = 100.0
RELAX_MAX_ITERS = 2000
RELAX_VERSION = 1
_RELAX_KEYS = ("positions", "done", "failed", "unconverged", "settings", "seconds")


def restrained_relaxation(mol, tolerance: float = RESTRAINT_A, force: float = RESTRAINT_K,
                          max_iters: int = RELAX_MAX_ITERS) -> tuple[np.ndarray, bool] | None:
    """(positions (n, 3) float64, converged) of an MMFF94 minimisation of the molecule's
    conformer with every heavy atom held within ``tolerance`` A of its start (flat-bottomed
    restraint of constant ``force``); None where MMFF has no parameters."""
    from rdkit import Chem
    from rdkit.Chem import rdForceFieldHelpers as ff_helpers

    mol = Chem.Mol(mol)  # the force field moves the conformer it is built on
    props = ff_helpers.MMFFGetMoleculeProperties(mol)
    if props is None:
        return None
    ff = ff_helpers.MMFFGetMoleculeForceField(mol, props)
    if ff is None:
        return None
    for atom in mol.GetAtoms():
        if atom.GetAtomicNum() > 1:
            ff.MMFFAddPositionConstraint(atom.GetIdx(), tolerance, force)
    ff.Initialize()
    status = ff.Minimize(maxIts=max_iters)
    return np.asarray(ff.Positions(), dtype=np.float64).reshape(-1, 3), status == 0


@dataclass
class RelaxedTargets:
    """Restrained-relaxed coordinates of a :class:`CCD` set, in its atom order."""

    positions: np.ndarray  # (A, 3) float32: relaxed where done and not failed, else experimental
    done: np.ndarray  # (M,) bool: relaxation attempted
    failed: np.ndarray  # (M,) bool: no MMFF parameters or a failed minimisation
    unconverged: np.ndarray  # (M,) bool: stopped at the iteration cap (positions kept)
    settings: dict  # restraint width, force constant, iteration cap, version
    seconds: float  # relaxation time spent so far (all chunks)

    def positions_of(self, data: CCD, i: int) -> np.ndarray:
        return self.positions[data.atom_ptr[i] : data.atom_ptr[i + 1]]


def relaxed_path(ccd_cache: Path) -> Path:
    """The relaxed targets' file beside the set's cache file ``ccd_cache``."""
    ccd_cache = Path(ccd_cache)
    return ccd_cache.with_name(f"{ccd_cache.stem}.relaxed_v{RELAX_VERSION}.pt")


def _relax_settings() -> dict:
    return {"tolerance": RESTRAINT_A, "force": RESTRAINT_K, "max_iters": RELAX_MAX_ITERS,
            "version": RELAX_VERSION}


def _read_relaxed(path: Path, data: CCD) -> RelaxedTargets | None:
    if not path.exists():
        return None
    try:
        state = load_checkpoint(path, _RELAX_KEYS)
    except CheckpointError:
        return None  # damaged: start again
    if (state["settings"] != _relax_settings()
            or tuple(state["positions"].shape) != data.positions.shape
            or len(state["done"]) != len(data)):
        return None
    return RelaxedTargets(**{k: v.numpy() if isinstance(v, torch.Tensor) else v
                             for k, v in state.items() if k in _RELAX_KEYS})


def _write_relaxed(path: Path, r: RelaxedTargets) -> None:
    save_checkpoint(path, {f.name: torch.from_numpy(np.ascontiguousarray(v))
                           if isinstance(v, np.ndarray) else v
                           for f in fields(RelaxedTargets) for v in [getattr(r, f.name)]})


_WORKER_DATA: CCD | None = None  # the set a relaxation worker process reads (set at fork)


def _relax_entry(i: int) -> tuple[int, np.ndarray | None, bool]:
    """(entry, relaxed positions or None where it failed, converged) of entry ``i`` of the set
    in :data:`_WORKER_DATA`."""
    from rdkit import RDLogger

    RDLogger.DisableLog("rdApp.*")
    data = _WORKER_DATA
    try:
        out = restrained_relaxation(data.molecule(i))
    except Exception:  # RDKit raises for a few exotic valences: count, keep the start
        out = None
    n = int(data.atom_ptr[i + 1] - data.atom_ptr[i])
    if out is None or not np.isfinite(out[0]).all() or out[0].shape != (n, 3):
        return i, None, False
    return i, out[0].astype(np.float32), bool(out[1])


def relax_ccd(data: CCD, path: str | Path, entries=None, chunk: int = 500,
              progress: bool = True, workers: int = 1) -> RelaxedTargets:
    """The restrained-relaxed targets of ``data`` (see the module docstring), read from
    ``path`` and completed there for ``entries`` (default: every molecule), ``chunk`` molecules
    per atomic rewrite of the file; entries relaxed before are not redone. ``workers`` > 1
    relaxes in that many forked processes (the result does not depend on it)."""
    import multiprocessing

    from tqdm.auto import tqdm

    global _WORKER_DATA
    path = Path(path)
    r = _read_relaxed(path, data)
    if r is None:
        m = len(data)
        r = RelaxedTargets(positions=data.positions.copy(), done=np.zeros(m, bool),
                           failed=np.zeros(m, bool), unconverged=np.zeros(m, bool),
                           settings=_relax_settings(), seconds=0.0)
    wanted = np.arange(len(data)) if entries is None else np.unique(np.asarray(entries, int))
    todo = wanted[~r.done[wanted]]
    if not len(todo):
        return r
    _WORKER_DATA = data
    pool = (multiprocessing.get_context("fork").Pool(workers) if workers > 1 else None)
    relax = pool.imap_unordered if pool else map
    bar = tqdm(total=len(todo), desc="CCD: restrained MMFF relaxation", disable=not progress)
    try:
        for start in range(0, len(todo), chunk):
            began = time.perf_counter()
            entries_now = todo[start : start + chunk].tolist()
            for i, positions, converged in relax(_relax_entry, entries_now):
                if positions is None:
                    r.failed[i] = True
                else:
                    s, e = data.atom_ptr[i], data.atom_ptr[i + 1]
                    r.positions[s:e] = positions
                    r.unconverged[i] = not converged
                r.done[i] = True
                bar.update(1)
            r.seconds += time.perf_counter() - began
            bar.set_postfix(failed=int(r.failed.sum()))
            _write_relaxed(path, r)
    finally:
        bar.close()
        if pool:
            pool.terminate()
        _WORKER_DATA = None
    return r
