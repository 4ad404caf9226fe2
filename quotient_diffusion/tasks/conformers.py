"""Conformer generation on QM9 or on the drug-like CCD set: the molecular graph conditions, the
coordinates are diffused.

Each molecule is a fully connected graph: atom features and pair features (bond type,
topological distance) from :mod:`quotient_diffusion.chem.featurize`. The GEOM-QM9 test
molecules (the conformer benchmark's) are removed from training and validation, matched by
RDKit canonical SMILES without stereochemistry.

Options (``task.options``): ``exclude_geom_test`` (default true), ``num_val`` (default 512),
``quality_molecules`` (validation molecules sampled for the learning curve, default 64),
``stereo`` (default false), ``source`` (``"qm9"``, the default, or ``"ccd"``), ``elements``
(the element vocabulary of the atom features, :mod:`quotient_diffusion.chem.featurize`; default
(null) H C N O F, which every model trained before it existed uses; ``["H", "C", "N", "O", "F",
"S", "Cl", "Br"]`` for the CCD set) and ``relaxed_targets`` (CCD only, default true).
``task.limit`` caps the number of training molecules (the first ones of a fixed shuffle of the
training split).

CCD (``source: "ccd"``, :mod:`quotient_diffusion.data.ccd`): the scaffold split's training and
validation molecules (the test split is never read here). With ``relaxed_targets`` the targets
are the restrained MMFF94 relaxations of the experimental coordinates (heavy atoms within 0.1 A,
:func:`~quotient_diffusion.data.ccd.relax_ccd`), computed once for the molecules used and cached
beside the set's cache; the experimental coordinates otherwise. The GEOM-QM9 exclusion does not
apply (the CCD set has its own evaluation exclusion).

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
from typing import Literal

import numpy as np
import torch

from ..chem.featurize import (
    PAIR_FEATURES,
    MolFeatures,
    atom_features,
    check_elements,
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
from ..training.validation import ConfigError
from .base import Task

__all__ = ["ConformerTask", "ConformerOptions", "ConformerDataset", "molecule_graph",
           "geom_qm9_test_smiles", "canonical_no_stereo", "stereo_extras"]

GEOM_QM9_TEST = "geom_qm9/test_smiles_corrected.csv"
#: per-coordinate root mean square of centred QM9 training geometries with hydrogens
#: (Angstrom; benchmarks/data_report.py: 1.397 over the training split); the preconditioning's
#: sigma_data. The ablation in docs/benchmarks/learning.md used an earlier estimate, 1.31.
QM9_SIGMA_DATA = 1.40
#: the same for the CCD training split (every 20th molecule, experimental coordinates: 2.894)
CCD_SIGMA_DATA = 2.89
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
    """Molecules of a set (QM9 or CCD: anything with ``molecule(entry)`` and
    ``positions_of(entry)``) as graphs, featurised on first use with the vocabulary
    ``elements`` (compact features memoised); with ``stereo``, the stereo inputs perceived from
    each reference geometry too. ``targets`` (entry -> positions) replaces the set's
    coordinates as the training target."""

    def __init__(self, qm9, entries: np.ndarray, stereo: bool = False, elements=None,
                 targets=None):
        self.qm9 = qm9
        self.entries = np.asarray(entries)
        self.stereo = stereo
        self.elements = elements
        self.targets = targets or qm9.positions_of
        self._features = lru_cache(maxsize=None)(self._featurize)

    def _featurize(self, entry: int) -> tuple[MolFeatures, StereoFeatures | None]:
        mol = self.qm9.molecule(entry)
        return (featurize(mol, self.elements),
                stereo_features(mol, from_3d=True) if self.stereo else None)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        entry = int(self.entries[i])
        feats, stereo = self._features(entry)
        return molecule_graph(feats, self.targets(entry), stereo)


@dataclass(frozen=True)
class ConformerOptions:
    exclude_geom_test: bool = True
    num_val: int = 512
    quality_molecules: int = 64
    stereo: bool = False
    source: Literal["qm9", "ccd"] = "qm9"
    elements: list | None = None
    relaxed_targets: bool = True

    def __post_init__(self):
        try:
            check_elements(self.elements)
        except ValueError as err:
            raise ConfigError(f"task.options.elements: {err}") from None


class ConformerTask(Task):
    name = "conformers"
    Options = ConformerOptions
    bundled = "conformers_qm9.pt"

    @property
    def stereo(self) -> bool:
        """Whether the model takes stereo inputs (task option ``stereo``)."""
        return self.options.stereo

    @property
    def elements(self) -> tuple[str, ...]:
        """The element vocabulary of the atom features (task option ``elements``)."""
        return check_elements(self.options.elements)

    def prepare(self, mols: Sequence) -> list[Graph]:
        """The graph of each RDKit molecule (explicit hydrogens); for a stereo model with the
        molecule's requested stereo as its input."""
        return [molecule_graph(featurize(mol, self.elements), None,
                               stereo_features(mol) if self.stereo else None)
                for mol in mols]

    def _excluded_entries(self, qm9) -> np.ndarray:
        if not self.options.exclude_geom_test:
            return np.zeros(len(qm9), dtype=bool)
        test = {canonical_no_stereo(s) for s in geom_qm9_test_smiles(self.config.task.data_dir)}
        test.discard(None)
        return np.array([canonical_no_stereo(s) in test for s in qm9.smiles])

    def _ccd_datasets(self):
        from ..data import ccd as ccd_data

        data_dir = self.config.task.data_dir
        ccd = ccd_data.load_ccd(data_dir)
        train = np.random.RandomState(0).permutation(ccd.subset("train"))
        if self.config.task.limit:
            train = train[: self.config.task.limit]
        val = np.random.RandomState(1).permutation(ccd.subset("valid"))[: self.options.num_val]
        targets = None
        if self.options.relaxed_targets:
            path = ccd_data.relaxed_path(ccd_data.cache_path(data_dir))
            relaxed = ccd_data.relax_ccd(ccd, path, np.concatenate([train, val]))

            def targets(entry: int) -> np.ndarray:
                return relaxed.positions_of(ccd, entry)
        return (ConformerDataset(ccd, train, self.stereo, self.elements, targets),
                ConformerDataset(ccd, val, self.stereo, self.elements, targets))

    def datasets(self):
        from ..data.qm9 import load_qm9

        if self.options.source == "ccd":
            return self._ccd_datasets()

        qm9 = load_qm9()
        excluded = self._excluded_entries(qm9)
        train = np.setdiff1d(qm9.subset("train"), np.flatnonzero(excluded))
        val = np.setdiff1d(qm9.subset("valid"), np.flatnonzero(excluded))
        # a fixed shuffle so that `limit` takes a random (not index-ordered) subset
        train = np.random.RandomState(0).permutation(train)
        if self.config.task.limit:
            train = train[: self.config.task.limit]
        val = np.random.RandomState(1).permutation(val)[: self.options.num_val]
        return (ConformerDataset(qm9, train, self.stereo, self.elements),
                ConformerDataset(qm9, val, self.stereo, self.elements))

    def sigma_data(self) -> float:
        return CCD_SIGMA_DATA if self.options.source == "ccd" else QM9_SIGMA_DATA

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
        return get_network(m.network, in_features=atom_features(self.elements), out_features=0,
                           hidden=m.hidden, layers=m.layers, edge_features=PAIR_FEATURES,
                           stereo=self.stereo, **m.network_options)
