"""QM9 molecular graphs as padded sets, and the RDKit metrics of generated graphs.

Data (the Top-n paper's third experiment): heavy atoms only, atom types ``C N O F`` (one-hot, 4
channels), bond types ``0 none, 1 single, 2 double, 3 triple``; aromatic rings are kekulised
(``Chem.Kekulize(clearAromaticFlags=True)``) so that aromatic bonds become single/double. Hydrogens
are implicit: RDKit gives them back from the default valences when the graph is rebuilt. QM9's
GDB SMILES that carry formal charges (zwitterions, about 1.3%) cannot be written with these types
and are dropped, and counted in ``info["dropped_charged"]``.

Layout: **padded**. A molecule has at most 9 heavy atoms, so every molecule is stored as
``types (M, 9)`` (``-1`` on padding), ``bonds (M, 9, 9)`` (symmetric, 0 on padding and on the
diagonal) and ``sizes (M,)``; a batch is a slice of these (:class:`GraphSetBatch`), with no
gather of flat rows. The arrays of all of QM9 take about 12 MB. Built from
:func:`quotient_diffusion.data.qm9.load_qm9` (its SMILES and EDM split) once and cached as
``qm9_graphs_v1.pt`` in the cache folder.

Metrics (:func:`graph_metrics`), all with RDKit on the argmax graph:

* **validity**: the graph rebuilt as a molecule (:func:`graph_to_mol`) passes ``SanitizeMol``
  (no atom above its allowed valence) *and* is connected (one fragment);
* **uniqueness**: distinct canonical SMILES among the valid / number valid;
* **novelty**: distinct valid SMILES absent from the training SMILES / number of distinct valid;
* **diversity**: mean pairwise Tanimoto *distance* ``1 - T`` of Morgan fingerprints (radius 2,
  2048 bits) over the distinct valid molecules. The Top-n paper says Top-n gives "more diverse"
  (arXiv v1) / "more valid" (ICLR version) QM9 molecules than i.i.d. creation; the stored copies of
  the paper did not show how it measures diversity, so this common measure stands in for it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
import torch

__all__ = [
    "ATOM_TYPES",
    "BOND_TYPES",
    "MAX_ATOMS",
    "GraphSetBatch",
    "QM9Graphs",
    "graphs_from_smiles",
    "load_qm9_graphs",
    "graph_to_mol",
    "graph_smiles",
    "graph_metrics",
    "tanimoto_diversity",
]

ATOM_TYPES = ("C", "N", "O", "F")
ATOMIC_NUMBERS = (6, 7, 8, 9)
BOND_TYPES = ("none", "single", "double", "triple")
MAX_ATOMS = 9
CACHE_VERSION = 1


@dataclass
class GraphSetBatch:
    """A padded batch of molecular graphs: ``types (B, n)`` (``-1`` on padding), ``bonds
    (B, n, n)``, ``mask (B, n)``; ``num_nodes_per_graph`` as the set models expect."""

    types: torch.Tensor
    bonds: torch.Tensor
    mask: torch.Tensor

    @property
    def num_graphs(self) -> int:
        return self.types.shape[0]

    @property
    def num_nodes_per_graph(self) -> torch.Tensor:
        return self.mask.sum(1)

    def permute(self, perm: torch.Tensor) -> GraphSetBatch:
        """The same graphs with their atoms reordered: slot ``i`` takes atom ``perm[b, i]``
        (``perm`` must keep padding slots in place)."""
        t = self.types.gather(1, perm)
        rows = self.bonds.gather(1, perm[:, :, None].expand_as(self.bonds))
        bonds = rows.gather(2, perm[:, None, :].expand_as(self.bonds))
        return GraphSetBatch(t, bonds, self.mask.gather(1, perm))


@dataclass
class QM9Graphs:
    """Padded molecular graphs (see the module docstring) with canonical SMILES and split."""

    types: torch.Tensor  # (M, MAX_ATOMS) long, -1 on padding
    bonds: torch.Tensor  # (M, MAX_ATOMS, MAX_ATOMS) long
    sizes: torch.Tensor  # (M,) long
    smiles: list[str]  # canonical RDKit SMILES of each molecule
    split: torch.Tensor  # (M,) 0 train, 1 valid, 2 test
    info: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return self.sizes.shape[0]

    @property
    def max_size(self) -> int:
        return self.types.shape[1]

    def batch(self, index: torch.Tensor) -> GraphSetBatch:
        types = self.types[index]
        return GraphSetBatch(types, self.bonds[index], types >= 0)

    def subset(self, index: torch.Tensor) -> QM9Graphs:
        index = torch.as_tensor(index, dtype=torch.long)
        return QM9Graphs(self.types[index], self.bonds[index], self.sizes[index],
                         [self.smiles[i] for i in index.tolist()], self.split[index],
                         dict(self.info))

    def of_split(self, name: str) -> QM9Graphs:
        code = ("train", "valid", "test").index(name)
        return self.subset(torch.nonzero(self.split == code)[:, 0])


def _graph_of(mol) -> tuple[list[int], list[tuple[int, int, int]]] | None:
    """Atom types and kekulised bonds ``(i, j, order)`` of an RDKit molecule, or None when it
    holds a charge or an element outside ``C N O F``."""
    from rdkit import Chem

    mol = Chem.RWMol(mol)
    Chem.Kekulize(mol, clearAromaticFlags=True)
    types = []
    for atom in mol.GetAtoms():
        if atom.GetFormalCharge() != 0 or atom.GetAtomicNum() not in ATOMIC_NUMBERS:
            return None
        types.append(ATOMIC_NUMBERS.index(atom.GetAtomicNum()))
    order = {Chem.BondType.SINGLE: 1, Chem.BondType.DOUBLE: 2, Chem.BondType.TRIPLE: 3}
    bonds = []
    for bond in mol.GetBonds():
        if bond.GetBondType() not in order:
            return None
        bonds.append((bond.GetBeginAtomIdx(), bond.GetEndAtomIdx(), order[bond.GetBondType()]))
    return types, bonds


def graphs_from_smiles(smiles: Sequence[str], split: Sequence[int] | None = None) -> QM9Graphs:
    """Padded graphs of the heavy atoms of ``smiles``; unusable molecules are dropped and
    counted in ``info`` (``dropped_charged``: charges or other elements; ``dropped_large``)."""
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    m = len(smiles)
    types = torch.full((m, MAX_ATOMS), -1, dtype=torch.long)
    bonds = torch.zeros((m, MAX_ATOMS, MAX_ATOMS), dtype=torch.long)
    keep, canonical = [], []
    dropped = {"dropped_charged": 0, "dropped_large": 0, "dropped_unparsable": 0}
    for k, s in enumerate(smiles):
        mol = Chem.MolFromSmiles(s)
        if mol is None:
            dropped["dropped_unparsable"] += 1
            continue
        if mol.GetNumAtoms() > MAX_ATOMS:
            dropped["dropped_large"] += 1
            continue
        graph = _graph_of(mol)
        if graph is None:
            dropped["dropped_charged"] += 1
            continue
        t, bs = graph
        types[k, : len(t)] = torch.tensor(t)
        for i, j, b in bs:
            bonds[k, i, j] = bonds[k, j, i] = b
        keep.append(k)
        canonical.append(Chem.MolToSmiles(mol))
    index = torch.tensor(keep, dtype=torch.long)
    split_t = torch.zeros(m, dtype=torch.int8) if split is None else torch.as_tensor(
        np.asarray(split), dtype=torch.int8)
    types = types[index]
    return QM9Graphs(types, bonds[index], (types >= 0).sum(1), canonical, split_t[index],
                     {"name": "qm9_graphs", "molecules_in": m, **dropped})


def load_qm9_graphs(refresh: bool = False, progress: bool = False) -> QM9Graphs:
    """All of QM9 as padded heavy-atom graphs, built once from the QM9 cache (about a minute
    on one core) and then read from ``qm9_graphs_v1.pt``."""
    from ..data.paths import cache_dir
    from ..data.qm9 import load_qm9
    from ..tensor_files import CheckpointError, load_checkpoint, save_checkpoint

    path = cache_dir() / f"qm9_graphs_v{CACHE_VERSION}.pt"
    keys = ("types", "bonds", "sizes", "smiles", "split", "info")
    if path.exists() and not refresh:
        try:
            return QM9Graphs(**load_checkpoint(path, keys))
        except CheckpointError:
            pass
    qm9 = load_qm9(progress=progress)
    data = graphs_from_smiles(qm9.smiles, qm9.split)
    save_checkpoint(path, {k: getattr(data, k) for k in keys})
    return data


def graph_to_mol(types: Sequence[int], bonds: np.ndarray | torch.Tensor):
    """The sanitised RDKit molecule of a graph (atom types 0..3, a symmetric bond-type matrix
    over the same atoms), or None when RDKit rejects it (an atom over its valence)."""
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    order = {1: Chem.BondType.SINGLE, 2: Chem.BondType.DOUBLE, 3: Chem.BondType.TRIPLE}
    bonds = np.asarray(bonds)
    mol = Chem.RWMol()
    for t in types:
        mol.AddAtom(Chem.Atom(ATOMIC_NUMBERS[int(t)]))
    for i, j in combinations(range(len(types)), 2):
        if int(bonds[i, j]) in order:
            mol.AddBond(i, j, order[int(bonds[i, j])])
    try:
        Chem.SanitizeMol(mol)
    except Exception:  # RDKit raises several types (valence, kekulisation)
        return None
    return mol.GetMol()


def graph_smiles(types: Sequence[int], bonds) -> tuple[str | None, bool]:
    """(canonical SMILES or None when not sanitisable, connected) of one graph."""
    from rdkit import Chem

    mol = graph_to_mol(types, bonds)
    if mol is None:
        return None, False
    return Chem.MolToSmiles(mol), len(Chem.GetMolFrags(mol)) == 1


def tanimoto_diversity(smiles: Iterable[str]) -> float:
    """Mean pairwise Tanimoto distance ``1 - T`` of Morgan fingerprints (radius 2, 2048 bits)."""
    from rdkit import Chem, DataStructs
    from rdkit.Chem import rdFingerprintGenerator

    gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    fps = [gen.GetFingerprint(Chem.MolFromSmiles(s)) for s in smiles]
    if len(fps) < 2:
        return 0.0
    total = sum(sum(1.0 - t for t in DataStructs.BulkTanimotoSimilarity(fps[i], fps[i + 1:]))
                for i in range(len(fps) - 1))
    return total / (len(fps) * (len(fps) - 1) / 2)


def graph_metrics(graphs: Sequence[tuple[Sequence[int], object]],
                  train_smiles: Iterable[str] | None = None) -> dict:
    """Validity (sanitisable and connected), sanitisable share, uniqueness, novelty (if
    ``train_smiles``), diversity (see the module docstring) of ``(types, bonds)`` graphs."""
    n = max(len(graphs), 1)
    results = [graph_smiles(t, b) for t, b in graphs]
    valid = [s for s, connected in results if s is not None and connected]
    distinct = sorted(set(valid))
    out = {
        "validity": len(valid) / n,
        "sanitisable": sum(s is not None for s, _ in results) / n,
        "uniqueness": len(distinct) / len(valid) if valid else 0.0,
        "valid_unique": len(distinct) / n,
        "diversity": tanimoto_diversity(distinct),
        "num_graphs": len(graphs),
    }
    if train_smiles is not None:
        ref = set(train_smiles)
        out["novelty"] = len([s for s in distinct if s not in ref]) / len(distinct) if distinct \
            else 0.0
    return out
