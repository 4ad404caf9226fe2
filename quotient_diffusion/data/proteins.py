r"""Protein chains for backbone generation: Docking Benchmark 5.5 and TS50.

Pipeline (:func:`load_protein_splits`), cached as one ``.npz`` so that a second load takes
well under a second:

1. parse every PDB file of ``$QD_DATA/proteins/db5.5_structures.tar.gz`` with biotite (first
   model, first alternate location), keep canonical amino acids, split into chains and extract
   the backbone atoms N, CA, C, O (NaN where an atom is missing; every kept residue has a CA);
2. keep chains of ``min_length..max_length`` residues (50-256) without gaps: a *gap* is a
   consecutive C-alpha distance above ``MAX_CA_CA`` = 4.2 A (a trans peptide gives 3.80 A, a cis
   one 2.9 A; one missing residue already gives 5-7 A). Kept chains are contiguous, so the
   residue index of the model is the position in the chain;
3. split train / validation / test by *protein family*, never by file: complexes are joined when
   they share a chain (every complex appears bound and unbound) or two of their chains are
   similar (3-mer Jaccard similarity >= ``FAMILY_SIMILARITY``); the connected components are
   dealt to the splits (seeded, 80/10/10 by chain count), so no protein is on both sides;
4. drop duplicates inside each split: chains with 3-mer Jaccard similarity
   >= ``DUPLICATE_SIMILARITY`` (the bound and unbound copies of one protein) keep only their
   longest member.

TS50 (``$QD_DATA/proteins/ts50.json``, 50 chains given as N/CA/C/O arrays) is an extra held-out
test set.

The 3-mer Jaccard similarity of sequences s, s' is |K(s) & K(s')| / |K(s) | K(s')| with K the
set of overlapping 3-mers; it is computed for all pairs at once with a sparse matrix product.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..output import open_output
from . import paths

__all__ = [
    "BACKBONE_ATOMS",
    "MAX_CA_CA",
    "ProteinChain",
    "ProteinSplits",
    "parse_pdb_chains",
    "count_gaps",
    "keep_chain",
    "kmer_similarity",
    "family_split",
    "drop_duplicates",
    "read_db55",
    "read_ts50",
    "load_protein_splits",
]

BACKBONE_ATOMS = ("N", "CA", "C", "O")
MAX_CA_CA = 4.2
FAMILY_SIMILARITY = 0.5
DUPLICATE_SIMILARITY = 0.9
CACHE_VERSION = 1
DB55_FILE = "proteins/db5.5_structures.tar.gz"
TS50_FILE = "proteins/ts50.json"


@dataclass
class ProteinChain:
    """One chain: ``coords`` (L, 4, 3) float32 N/CA/C/O in Angstrom; ``name`` is 'FILE:CHAIN'."""

    name: str
    sequence: str
    coords: np.ndarray

    @property
    def ca(self) -> np.ndarray:
        """C-alpha trace, (L, 3)."""
        return self.coords[:, 1]

    @property
    def complex_id(self) -> str:
        """PDB id of the complex ('1A2K' for '1A2K_l_b.pdb:C'); the name itself for TS50."""
        return self.name.split("_")[0]

    def __len__(self) -> int:
        return self.coords.shape[0]


@dataclass
class ProteinSplits:
    """Training, validation and test chains (DB5.5, split by family) and TS50."""

    train: list[ProteinChain]
    val: list[ProteinChain]
    test: list[ProteinChain]
    ts50: list[ProteinChain]


# ---------------------------------------------------------------------------------- parsing
def parse_pdb_chains(text: str, name: str) -> list[ProteinChain]:
    """All chains of canonical amino acids in a PDB text, with their backbone atoms.

    Residues without a C-alpha are dropped; missing N, C or O are NaN.
    """
    import biotite.structure as struc
    from biotite.sequence import ProteinSequence
    from biotite.structure.io.pdb import PDBFile

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "elements were guessed from atom name"
        atoms = PDBFile.read(io.StringIO(text)).get_structure(model=1)
    atoms = atoms[struc.filter_canonical_amino_acids(atoms) & ~atoms.hetero]
    chains = []
    for chain_id in np.unique(atoms.chain_id):
        chain = atoms[atoms.chain_id == chain_id]
        starts = struc.get_residue_starts(chain)
        residue = np.cumsum(np.isin(np.arange(len(chain)), starts)) - 1  # residue of each atom
        coords = np.full((len(starts), 4, 3), np.nan, dtype=np.float32)
        for k, atom in enumerate(BACKBONE_ATOMS):
            sel = chain.atom_name == atom
            coords[residue[sel], k] = chain.coord[sel]
        has_ca = ~np.isnan(coords[:, 1, 0])
        letters = [ProteinSequence.convert_letter_3to1(r) for r in chain.res_name[starts]]
        sequence = "".join(np.array(letters)[has_ca])
        chains.append(ProteinChain(f"{name}:{chain_id}", sequence, coords[has_ca]))
    return chains


def count_gaps(ca: np.ndarray, max_ca_ca: float = MAX_CA_CA) -> int:
    """Number of consecutive C-alpha distances above ``max_ca_ca`` (chain breaks)."""
    return int((np.linalg.norm(np.diff(ca, axis=0), axis=-1) > max_ca_ca).sum())


def keep_chain(chain: ProteinChain, min_length: int = 50, max_length: int = 256) -> bool:
    """Length within [min_length, max_length] and no gap."""
    return min_length <= len(chain) <= max_length and count_gaps(chain.ca) == 0


# ------------------------------------------------------------------------ similarity, split
def kmer_similarity(sequences: list[str], k: int = 3) -> np.ndarray:
    """All-pairs k-mer Jaccard similarity |K_i & K_j| / |K_i | K_j| (dense (n, n) array)."""
    from scipy import sparse

    vocab: dict[str, int] = {}
    rows, cols = [], []
    for i, s in enumerate(sequences):
        kmers = {s[j : j + k] for j in range(len(s) - k + 1)}
        cols.extend(vocab.setdefault(m, len(vocab)) for m in kmers)
        rows.extend([i] * len(kmers))
    m = sparse.csr_matrix(
        (np.ones(len(rows)), (rows, cols)), shape=(len(sequences), max(len(vocab), 1))
    )
    inter = (m @ m.T).toarray()
    sizes = np.asarray(m.sum(1)).ravel()
    union = sizes[:, None] + sizes[None, :] - inter
    return inter / np.maximum(union, 1)


def _components(adjacency: np.ndarray) -> np.ndarray:
    from scipy.sparse.csgraph import connected_components

    return connected_components(adjacency, directed=False)[1]


def family_split(
    chains: list[ProteinChain],
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    similarity: float = FAMILY_SIMILARITY,
) -> tuple[list[ProteinChain], list[ProteinChain], list[ProteinChain]]:
    """Deal families (components of 'same complex or similar sequence') to train/val/test.

    Families are visited in a seeded random order and each goes to the split furthest below
    its target share of chains; no family is cut.
    """
    sim = kmer_similarity([c.sequence for c in chains])
    complexes = np.array([c.complex_id for c in chains])
    family = _components((sim >= similarity) | (complexes[:, None] == complexes[None, :]))
    sizes = np.bincount(family)
    order = np.random.default_rng(seed).permutation(len(sizes))
    target = np.asarray(fractions) / np.sum(fractions) * len(chains)
    filled = np.zeros(3)
    assign = np.empty(len(sizes), dtype=int)
    for f in order:
        s = int(np.argmax(target - filled))
        assign[f] = s
        filled[s] += sizes[f]
    parts = assign[family]
    return tuple([c for c, p in zip(chains, parts) if p == s] for s in range(3))


def drop_duplicates(
    chains: list[ProteinChain], similarity: float = DUPLICATE_SIMILARITY
) -> list[ProteinChain]:
    """Keep the longest chain (then the first name) of every group of near-identical sequences."""
    if not chains:
        return []
    group = _components(kmer_similarity([c.sequence for c in chains]) >= similarity)
    best: dict[int, ProteinChain] = {}
    for g, c in zip(group.tolist(), chains):
        if g not in best or (len(c), best[g].name) > (len(best[g]), c.name):
            best[g] = c
    return sorted(best.values(), key=lambda c: c.name)


# ------------------------------------------------------------------------------- readers
def read_db55(
    tar_path: str | Path, min_length: int = 50, max_length: int = 256
) -> list[ProteinChain]:
    """Gap-free chains of min_length..max_length residues from the DB5.5 tarball (~15 s)."""
    chains = []
    with tarfile.open(tar_path) as tar:
        for member in tar:
            if not member.name.endswith(".pdb"):
                continue
            text = tar.extractfile(member).read().decode()
            name = Path(member.name).stem
            chains.extend(
                c for c in parse_pdb_chains(text, name) if keep_chain(c, min_length, max_length)
            )
    return sorted(chains, key=lambda c: c.name)


def read_ts50(json_path: str | Path) -> list[ProteinChain]:
    """TS50: records {'name', 'seq', 'coords': L x [N, CA, C, O] x 3}."""
    records = json.loads(Path(json_path).read_text())
    return [
        ProteinChain(r["name"], r["seq"], np.asarray(r["coords"], dtype=np.float32))
        for r in records
    ]


# ----------------------------------------------------------------------- paths and cache
def _pack(splits: ProteinSplits) -> dict[str, np.ndarray]:
    parts = [("train", splits.train), ("val", splits.val), ("test", splits.test),
             ("ts50", splits.ts50)]
    chains = [c for _, cs in parts for c in cs]
    return {
        "coords": np.concatenate([c.coords for c in chains]),
        "lengths": np.array([len(c) for c in chains]),
        "names": np.array([c.name for c in chains]),
        "sequences": np.array([c.sequence for c in chains]),
        "split": np.array([s for s, cs in parts for _ in cs]),
    }


def _unpack(data) -> ProteinSplits:
    ends = np.cumsum(data["lengths"])
    coords = np.split(data["coords"], ends[:-1])
    out: dict[str, list[ProteinChain]] = {"train": [], "val": [], "test": [], "ts50": []}
    for name, seq, xyz, split in zip(data["names"], data["sequences"], coords, data["split"]):
        out[str(split)].append(ProteinChain(str(name), str(seq), xyz))
    return ProteinSplits(**out)


def load_protein_splits(
    data_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    seed: int = 0,
    min_length: int = 50,
    max_length: int = 256,
) -> ProteinSplits:
    """DB5.5 train/val/test (family split, de-duplicated) and TS50, cached as ``.npz``.

    The cache key covers the tarball's size and modification time, the filters and the seed.
    """
    root = paths.data_root(data_dir, required=DB55_FILE)
    tar_path = root / DB55_FILE
    stat = tar_path.stat()
    key = f"{CACHE_VERSION}-{stat.st_size}-{int(stat.st_mtime)}-{seed}-{min_length}-{max_length}"
    digest = hashlib.sha1(key.encode()).hexdigest()[:12]
    path = paths.cache_dir(cache_dir) / f"proteins-{digest}.npz"
    if path.exists():
        with np.load(path) as data:
            return _unpack(data)
    train, val, test = family_split(read_db55(tar_path, min_length, max_length), seed=seed)
    splits = ProteinSplits(
        drop_duplicates(train), drop_duplicates(val), drop_duplicates(test),
        read_ts50(root / TS50_FILE),
    )
    with open_output(path, "wb") as fh:
        np.savez_compressed(fh, **_pack(splits))
    return splits
