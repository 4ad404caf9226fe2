r"""QM9 (130,831 DFT geometries) from the ``qm9pack`` wheel: parsing, graphs, split, cache.

Recipe (docs/data.md says the same):

1. Read ``qm9pack/data/qm9_part{1,2,3}.csv`` (B3LYP geometries in Angstrom, GDB SMILES). The
   coordinates hold numbers like ``0.`` and are parsed with a regular expression.
2. Molecular graph: ``AddHs(MolFromSmiles(SMILES))`` gives atoms (with hydrogens), bonds and
   formal charges. Its atom order need not be the XYZ order, so the XYZ connectivity is
   perceived from covalent radii (RDKit ``DetermineConnectivity``) and the SMILES graph is
   matched into it as a subgraph (elements equal, every SMILES bond a close contact; extra
   contacts such as the long transannular C-C of bicyclobutanes are allowed). The match gives
   the permutation from XYZ order to SMILES order. Molecules whose SMILES graph is not found in
   their own geometry (the DFT relaxation changed the bonding) are dropped and counted.
3. Split: EDM/Cormorant's, rebuilt exactly: ``included = sorted(Index - 1)``,
   ``np.random.seed(0)``, ``permutation``, cut at 100,000 / 117,748.
4. Cache: one ``.pt`` file of concatenated arrays (atoms in SMILES order) under
   ``$QD_CACHE`` (default ``~/.cache/quotient_diffusion``); a second load takes seconds. It
   holds tensors and plain data only (read with ``weights_only=True``); a damaged cache is
   rebuilt.

The molecule ``i`` is rebuilt from its cached SMILES with ``AddHs(MolFromSmiles(s))``, whose atom
order is deterministic and equals the cached coordinate order.
"""

from __future__ import annotations

import csv
import importlib.util
import re
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch

from ..chem.elements import ELEMENTS
from ..chem.molecules import make_conformer, molecule_from_xyz
from ..tensor_files import CheckpointError, load_checkpoint, save_checkpoint
from .paths import cache_dir

__all__ = ["QM9", "load_qm9", "qm9_csv_paths", "ELEMENTS", "parse_qm9_row"]

CACHE_VERSION = 2  # 2: tensors and plain data only (1: pickled numpy arrays)
SPLIT_NAMES = ("train", "valid", "test")
_NUMBER = re.compile(r"-?\d+\.?\d*(?:[eE][-+]?\d+)?")
_SYMBOL = re.compile(r"'([A-Za-z]+)'")


def qm9_csv_paths() -> list[Path]:
    """The three CSV files inside the installed ``qm9pack`` wheel (not imported: it needs
    ``pkg_resources`` at import time)."""
    spec = importlib.util.find_spec("qm9pack")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "QM9 needs the qm9pack package: python3 -m pip install 'qm9pack==1.0.3' "
            "(or install this project with the [qm9] extra)"
        )
    folder = Path(spec.origin).parent / "data"
    paths = [folder / f"qm9_part{k}.csv" for k in (1, 2, 3)]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise FileNotFoundError(f"qm9pack is installed but lacks {missing}")
    return paths


def parse_qm9_row(row: dict) -> tuple[int, str, list[str], np.ndarray]:
    """(index, SMILES, element symbols, coordinates (N, 3) in Angstrom) of one CSV row."""
    symbols = _SYMBOL.findall(row["Elements"])
    xyz = np.array([float(v) for v in _NUMBER.findall(row["XYZ_Ang"])], dtype=np.float64)
    if xyz.size != 3 * len(symbols):
        raise ValueError(f"QM9 index {row['Index']}: {len(symbols)} atoms but {xyz.size} numbers")
    return int(row["Index"]), row["SMILES"], symbols, xyz.reshape(-1, 3)


def match_smiles_to_geometry(smiles: str, symbols: list[str], xyz: np.ndarray):
    """Order the coordinates like ``AddHs(MolFromSmiles(smiles))``.

    Returns ``(mol, pos)`` with ``pos[i]`` the position of the SMILES atom ``i``, or
    ``(None, reason)`` when the graph is not found in the geometry.
    """
    from rdkit import Chem
    from rdkit.Chem import rdDetermineBonds

    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        return None, "unparsable SMILES"
    mol = Chem.AddHs(mol)
    if mol.GetNumAtoms() != len(symbols):
        return None, "atom count differs from the geometry"
    geo = molecule_from_xyz(symbols, xyz).GetMol()
    rdDetermineBonds.DetermineConnectivity(geo)
    match = _skeleton(geo).GetSubstructMatch(_skeleton(mol))
    if not match:
        return None, "SMILES graph not found in the geometry"
    return mol, xyz[list(match)]


def _skeleton(mol):
    """Copy of ``mol`` with single bonds, no charges, no aromaticity: a graph of elements."""
    from rdkit import Chem

    rw = Chem.RWMol(mol)
    for atom in rw.GetAtoms():
        atom.SetFormalCharge(0)
        atom.SetIsAromatic(False)
        atom.SetNoImplicit(True)
        atom.SetNumExplicitHs(0)
    for bond in rw.GetBonds():
        bond.SetBondType(Chem.BondType.SINGLE)
        bond.SetIsAromatic(False)
    return rw.GetMol()


def edm_split(indices: np.ndarray) -> np.ndarray:
    """Split code per molecule (0 train, 1 valid, 2 test): EDM/Cormorant's permutation."""
    included = np.sort(indices - 1)
    perm = np.random.RandomState(0).permutation(len(included))
    code = np.empty(len(included), dtype=np.int8)
    code[perm[:100_000]] = 0
    code[perm[100_000:117_748]] = 1
    code[perm[117_748:]] = 2
    # `code` is indexed by position in `included`; map back to the order of `indices`
    position = np.searchsorted(included, indices - 1)
    return code[position]


@dataclass
class QM9:
    """QM9 as concatenated arrays (atoms in SMILES order, molecules in QM9 index order)."""

    index: np.ndarray  # (M,) QM9 index, 1-based
    smiles: list[str]  # GDB SMILES (no stereo)
    split: np.ndarray  # (M,) 0 train, 1 valid, 2 test
    atom_ptr: np.ndarray  # (M+1,) offsets into the atom arrays
    atomic_numbers: np.ndarray  # (A,) uint8
    positions: np.ndarray  # (A, 3) float32, Angstrom
    dropped: dict  # reason -> list of QM9 indices that failed the graph/geometry match

    def __len__(self) -> int:
        return len(self.index)

    def num_atoms(self) -> np.ndarray:
        return np.diff(self.atom_ptr)

    def positions_of(self, i: int) -> np.ndarray:
        return self.positions[self.atom_ptr[i] : self.atom_ptr[i + 1]]

    def atomic_numbers_of(self, i: int) -> np.ndarray:
        return self.atomic_numbers[self.atom_ptr[i] : self.atom_ptr[i + 1]]

    def molecule(self, i: int):
        """RDKit molecule (with hydrogens and the DFT conformer) of entry ``i``."""
        from rdkit import Chem

        mol = Chem.AddHs(Chem.MolFromSmiles(self.smiles[i]))
        mol.AddConformer(make_conformer(self.positions_of(i)), assignId=True)
        return mol

    def subset(self, split: str) -> np.ndarray:
        """Entry numbers of one split ('train', 'valid' or 'test')."""
        return np.flatnonzero(self.split == SPLIT_NAMES.index(split))


def _build(limit: int | None = None, progress: bool = True) -> QM9:
    from rdkit import RDLogger
    from tqdm.auto import tqdm

    RDLogger.DisableLog("rdApp.*")
    csv.field_size_limit(1 << 30)
    index, smiles, numbers, positions, sizes = [], [], [], [], []
    dropped: dict[str, list[int]] = {}
    all_indices = []
    bar = tqdm(total=limit or 130_831, desc="QM9: parsing and matching", disable=not progress)
    for path in qm9_csv_paths():
        with open(path, newline="") as fh:
            for row in csv.DictReader(fh):
                idx, smi, symbols, xyz = parse_qm9_row(row)
                all_indices.append(idx)
                mol, pos = match_smiles_to_geometry(smi, symbols, xyz)
                bar.update(1)
                if mol is None:
                    dropped.setdefault(pos, []).append(idx)
                else:
                    index.append(idx)
                    smiles.append(smi)
                    numbers.append([a.GetAtomicNum() for a in mol.GetAtoms()])
                    positions.append(pos)
                    sizes.append(len(pos))
                if limit and len(all_indices) >= limit:
                    break
        if limit and len(all_indices) >= limit:
            break
    bar.close()
    idx_all = np.asarray(all_indices)
    split_all = edm_split(idx_all) if not limit else np.zeros(len(idx_all), np.int8)
    split_of = dict(zip(idx_all.tolist(), split_all.tolist()))
    kept = np.asarray(index)
    return QM9(
        index=kept,
        smiles=smiles,
        split=np.asarray([split_of[i] for i in kept.tolist()], dtype=np.int8),
        atom_ptr=np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
        atomic_numbers=np.concatenate([np.asarray(n, np.uint8) for n in numbers]),
        positions=np.concatenate(positions).astype(np.float32),
        dropped=dropped,
    )


def _to_plain(data: QM9) -> dict:
    """The fields of ``data`` as tensors and plain Python data (safe to load)."""
    return {f.name: torch.from_numpy(np.ascontiguousarray(v)) if isinstance(v, np.ndarray)
            else v for f in fields(QM9) for v in [getattr(data, f.name)]}


def _from_plain(state: dict) -> QM9:
    return QM9(**{k: v.numpy() if isinstance(v, torch.Tensor) else v for k, v in state.items()})


def load_qm9(refresh: bool = False, progress: bool = True) -> QM9:
    """The processed QM9 set, built once (about a minute) and then read from the cache."""
    path = cache_dir() / f"qm9_v{CACHE_VERSION}.pt"
    if path.exists() and not refresh:
        try:
            return _from_plain(load_checkpoint(path, [f.name for f in fields(QM9)]))
        except CheckpointError:
            pass  # a damaged cache: build it again
    data = _build(progress=progress)
    save_checkpoint(path, _to_plain(data))
    return data
