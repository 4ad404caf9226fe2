"""Conformer generation on QM9: the molecular graph conditions, the coordinates are diffused.

Each molecule is a fully connected graph: atom features and pair features (bond type,
topological distance) from :mod:`quotient_diffusion.chem.featurize`. The GEOM-QM9 test
molecules (the conformer benchmark's) are removed from training and validation, matched by
RDKit canonical SMILES without stereochemistry.

Options (``task.options``): ``exclude_geom_test`` (default true), ``num_val`` (default 512),
``quality_molecules`` (validation molecules sampled for the learning curve, default 64),
``stereo`` (default false). ``task.limit`` caps the number of training molecules (the first
ones of the EDM training split).

Stereo (``stereo: true``): every graph also carries its stereo inputs
(:func:`~quotient_diffusion.chem.stereo.stereo_features`; the maths in
:mod:`quotient_diffusion.nn.stereo`), perceived from the DFT geometry for training molecules
(QM9's SMILES carry no stereo) and read from the input's requested stereo at inference, and the
network (an EGNN) sees the chirality of every tetrahedral centre in every layer and cis/trans
pair columns for stereo double bonds. Off by default, so that models trained without it load
and run unchanged; ``qdiff train --init-from`` extends such a model to a stereo one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from ..chem.featurize import (
    ATOM_FEATURES,
    PAIR_FEATURES,
    MolFeatures,
    expand_pairs,
    featurize,
)
from ..chem.stereo import StereoFeatures, stereo_features
from ..data import Graph, collate
from ..data.paths import data_root
from ..diffusion import DiffusionModel, SamplerConfig
from ..groups import SE3
from ..nn.graph import full_graph
from ..nn.stereo import CHIRAL_INDEX, CHIRAL_SIGN, PAIR_STEREO, StereoInputs, chirality
from ..scatter import scatter_sum
from .base import Task

__all__ = ["ConformerTask", "ConformerOptions", "ConformerDataset", "molecule_graph",
           "geom_qm9_test_smiles", "canonical_no_stereo", "stereo_extras"]

GEOM_QM9_TEST = "geom_qm9/test_smiles_corrected.csv"
#: per-coordinate root mean square of centred QM9 training geometries with hydrogens
#: (Angstrom; benchmarks/data_report.py: 1.397 over the training split); the preconditioning's
#: sigma_data. The ablation in docs/benchmarks/learning.md used an earlier estimate, 1.31.
QM9_SIGMA_DATA = 1.40
#: column of ``PAIR_FEATURES`` that marks topological distance 1 (a bond)
_BONDED_COLUMN = 5


def canonical_no_stereo(smiles: str) -> str | None:
    """RDKit canonical SMILES without stereochemistry (None if unparsable)."""
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        return None
    Chem.RemoveStereochemistry(mol)
    return Chem.MolToSmiles(mol)


def geom_qm9_test_smiles(data_dir: str | Path | None = None) -> list[str]:
    """The 1,000 GEOM-QM9 test SMILES (corrected column where present)."""
    import csv

    path = data_root(data_dir, required=GEOM_QM9_TEST) / GEOM_QM9_TEST
    with open(path, newline="") as fh:
        return [r.get("corrected_smiles") or r["smiles"] for r in csv.DictReader(fh)]


def stereo_extras(
    stereo: StereoFeatures, num_atoms: int, edge_index: torch.Tensor
) -> dict[str, torch.Tensor]:
    """The graph extras of :mod:`~quotient_diffusion.nn.stereo` for one molecule: its centres
    (``chiral_index``, atom numbers offset by ``collate``), their signs and the cis/trans
    columns of every edge of ``edge_index`` (one-hot, zero for other pairs)."""
    dense = np.zeros((num_atoms, num_atoms), dtype=np.int64)
    if len(stereo.pairs):
        dense[stereo.pairs[:, 0], stereo.pairs[:, 1]] = stereo.pairs[:, 2]
    source, target = edge_index.numpy()
    codes = torch.from_numpy(dense[target, source])
    return {CHIRAL_INDEX: torch.from_numpy(stereo.centres),
            CHIRAL_SIGN: torch.from_numpy(stereo.signs).float(),
            PAIR_STEREO: torch.nn.functional.one_hot(codes, 3)[:, 1:].float()}


def molecule_graph(
    feats: MolFeatures,
    pos: np.ndarray | torch.Tensor | None,
    stereo: StereoFeatures | None = None,
) -> Graph:
    """A :class:`Graph` (fully connected, one-hot features) from compact features; with
    ``stereo``, its stereo inputs as extras (:func:`stereo_extras`)."""
    n = feats.num_atoms
    positions = torch.zeros(n, 3) if pos is None else torch.as_tensor(pos, dtype=torch.float32)
    edge_index = full_graph(torch.zeros(n, dtype=torch.long))
    return Graph(
        pos=positions,
        node_attr=torch.from_numpy(feats.atoms).float(),
        edge_index=edge_index,
        edge_attr=expand_pairs(torch.from_numpy(feats.pairs)),
        extras={} if stereo is None else stereo_extras(stereo, n, edge_index),
    )


class ConformerDataset(Sequence):
    """QM9 molecules as graphs, featurised on first use (compact features memoised); with
    ``stereo``, the stereo inputs perceived from each DFT geometry too."""

    def __init__(self, qm9, entries: np.ndarray, stereo: bool = False):
        self.qm9 = qm9
        self.entries = np.asarray(entries)
        self.stereo = stereo
        self._features = lru_cache(maxsize=None)(self._featurize)

    def _featurize(self, entry: int) -> tuple[MolFeatures, StereoFeatures | None]:
        mol = self.qm9.molecule(entry)
        return featurize(mol), (stereo_features(mol, from_3d=True) if self.stereo else None)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        entry = int(self.entries[i])
        feats, stereo = self._features(entry)
        return molecule_graph(feats, self.qm9.positions_of(entry), stereo)


@dataclass(frozen=True)
class ConformerOptions:
    exclude_geom_test: bool = True
    num_val: int = 512
    quality_molecules: int = 64
    stereo: bool = False


class ConformerTask(Task):
    name = "conformers"
    Options = ConformerOptions
    bundled = "conformers_qm9.pt"

    @property
    def stereo(self) -> bool:
        """Whether the model takes stereo inputs (task option ``stereo``)."""
        return self.options.stereo

    def prepare(self, mols: Sequence) -> list[Graph]:
        """The graph of each RDKit molecule (explicit hydrogens); for a stereo model with the
        molecule's requested stereo as its input."""
        return [molecule_graph(featurize(mol), None, stereo_features(mol) if self.stereo else None)
                for mol in mols]

    def _excluded_entries(self, qm9) -> np.ndarray:
        if not self.options.exclude_geom_test:
            return np.zeros(len(qm9), dtype=bool)
        test = {canonical_no_stereo(s) for s in geom_qm9_test_smiles(self.config.task.data_dir)}
        test.discard(None)
        return np.array([canonical_no_stereo(s) in test for s in qm9.smiles])

    def datasets(self):
        from ..data.qm9 import load_qm9

        qm9 = load_qm9()
        excluded = self._excluded_entries(qm9)
        train = np.setdiff1d(qm9.subset("train"), np.flatnonzero(excluded))
        val = np.setdiff1d(qm9.subset("valid"), np.flatnonzero(excluded))
        # a fixed shuffle so that `limit` takes a random (not index-ordered) subset
        train = np.random.RandomState(0).permutation(train)
        if self.config.task.limit:
            train = train[: self.config.task.limit]
        val = np.random.RandomState(1).permutation(val)[: self.options.num_val]
        return (ConformerDataset(qm9, train, self.stereo),
                ConformerDataset(qm9, val, self.stereo))

    def sigma_data(self) -> float:
        return QM9_SIGMA_DATA

    @torch.no_grad()
    def quality(self, model: DiffusionModel, graphs: Sequence[Graph], seed: int = 0) -> dict:
        """One conformer (ODE, 50 steps) for each of the first ``quality_molecules`` validation
        molecules against its QM9 geometry: mean absolute bond-length error (A), fraction of
        bonds within 0.1 A, and the median heavy-atom RMSD after Kabsch alignment of the sample
        or its mirror image (atom order as given, no symmetry search: an upper bound of RDKit's
        best RMSD of one conformer). A stereo model also reports ``val_chiral_ok``, the fraction
        of tetrahedral centres the raw sample realises (chi > 0, :mod:`~..nn.stereo`; about one
        half for a mirror-symmetric model)."""
        graph = collate(graphs[: self.options.quality_molecules])
        pos, _ = model.sample(graph, SamplerConfig(steps=50),
                              torch.Generator().manual_seed(seed))
        ref = graph.pos.to(pos.dtype)
        source, target = graph.edge_index
        bonded = graph.edge_attr[:, _BONDED_COLUMN] > 0
        s, t = source[bonded], target[bonded]
        err = ((pos[s] - pos[t]).norm(dim=-1) - (ref[s] - ref[t]).norm(dim=-1)).abs()
        heavy = graph.node_attr[:, 0] == 0  # element block: H first
        batch, nb = graph.batch[heavy], graph.num_graphs
        counts = torch.bincount(batch, minlength=nb).clamp_min(1)

        def rmsd(sample: torch.Tensor) -> torch.Tensor:
            aligned = SE3().align(sample, ref[heavy], batch)
            return (scatter_sum(((aligned - ref[heavy]) ** 2).sum(-1), batch, nb) / counts).sqrt()

        # the better of the sample and its mirror image, as the CLI's stereo repair would ship
        best = torch.minimum(rmsd(pos[heavy]), rmsd(-pos[heavy]))
        scores = {"val_bond_mae": float(err.mean()),
                  "val_bonds_within_0.1": float((err < 0.1).float().mean()),
                  "val_rmsd_heavy_median": float(best.median())}
        inputs = StereoInputs.from_extras(graph.extras)
        if inputs is not None and len(inputs.signs):
            chi = chirality(pos, inputs.centres, inputs.signs.to(pos.dtype))
            scores["val_chiral_ok"] = float((chi[inputs.centres[:, 0]] > 0).float().mean())
        return scores

    def build_network(self) -> torch.nn.Module:
        from ..nn import get_network

        m = self.config.model
        return get_network(m.network, in_features=ATOM_FEATURES, out_features=0, hidden=m.hidden,
                           layers=m.layers, edge_features=PAIR_FEATURES, stereo=self.stereo,
                           **m.network_options)
