"""Conformers: generation from the molecular graph (the graph conditions, the coordinates are
diffused), trained on QM9 or on the drug-like CCD set, and everything done with a trained model.
This module is the whole conformer task; :mod:`quotient_diffusion.conformers` is its public API
(it loads and caches the model) and ``qdiff conformers`` its command.

Training
--------

Each molecule is a fully connected graph: atom features and pair features (bond type,
topological distance) from :mod:`quotient_diffusion.chem.featurize`. The GEOM-QM9 test
molecules (the conformer benchmark's) are removed from training and validation, matched by
RDKit canonical SMILES without stereochemistry.

Options (``task.options``): ``exclude_geom_test`` (default true), ``num_val`` (default 512),
``quality_molecules`` (validation molecules sampled for the learning curve, default 64),
``stereo`` (default false), ``source`` (``"qm9"``, the default, or ``"ccd"``), ``elements``
(the element vocabulary of the atom features, :mod:`quotient_diffusion.chem.featurize`; default
(null) H C N O F, which every model trained before it existed uses; ``["H", "C", "N", "O", "F",
"S", "Cl", "Br"]`` for the CCD set), ``relaxed_targets`` (CCD only, default true) and
``max_heavy_atoms`` (the largest input the trained model takes, default null: its source's
limit, :attr:`ConformerTask.limits`). ``task.limit`` caps the number of training molecules (the
first ones of a fixed shuffle of the training split).

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

Inference
---------
:func:`embed` adds conformers to molecules with explicit hydrogens, in place, their copies
sampled side by side in flat batches (``quotient_diffusion.conformers.embed_molecules`` and
``embed_conformers``, and so ``qdiff conformers``, call it). For every molecule:

1. :func:`check_molecule` says why the model cannot take it (``ValueError``), against the limits
   of the model's task (:attr:`ConformerTask.limits`: its element vocabulary, a heavy-atom
   limit and whether net-charged molecules are taken; QM9 models: H C N O F, 18 heavy atoms,
   neutral; CCD models: their vocabulary, 60 heavy atoms, charged ones too).
2. A linear molecule (:func:`~quotient_diffusion.chem.geometry.is_linear`: N#N, HCN, CO2) has
   one conformation, a straight line whose only coordinates are its bond lengths; it is built
   from the reference bond lengths, not sampled (the bundled network gets these molecules
   wrong: docs/conformers.md).
3. Any other molecule: ``num_conformers`` copies are sampled with the model's ODE or SDE
   (:meth:`ConformerTask.prepare` and :func:`~.sampling.generate`).
4. Stereo (:mod:`~quotient_diffusion.chem.stereo`): a model trained with the task option
   ``stereo`` is given the requested labels as inputs
   (:func:`~quotient_diffusion.chem.stereo.stereo_features` of the input molecule). Either way,
   a sample with every requested label is kept; one whose tetrahedral centres are all inverted
   (E/Z right) is mirrored (a model without stereo inputs is reflection-equivariant and cannot
   tell enantiomers apart); any other is thrown away and replaced by a new sample, in up to
   :data:`STEREO_ROUNDS` extra rounds. What is still wrong after them is dropped: a conformer
   of the wrong stereoisomer is not a conformer of the input, so a molecule may get fewer than
   ``num_conformers`` conformers.
5. Optionally MMFF94 relaxation (``mmff=True``, :func:`relax_mmff`).
6. :func:`~quotient_diffusion.chem.geometry.check_geometry` on the final coordinates.

Each conformer carries RDKit conformer properties (``conf.GetPropsAsDict()``), which the
command line copies into the SDF (:meth:`ConformerTask.write`): ``geometry_ok`` (0/1),
``max_bond_error_A``, ``clashes``, ``stereo_repair`` (``none`` or ``mirrored``),
``sampling_round`` (0 for the first samples, k for a replacement drawn in extra round k),
``source`` (``model`` or ``linear``) and, with MMFF, ``mmff_energy_kcal_mol``. Text inputs
(SMILES, SDF records) become :class:`ConformerJob` s (:func:`prepare_jobs`);
:func:`raw_samples` gives the model's samples without repair or checks (what the benchmarks
measure).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from ..chem.elements import ELEMENTS
from ..chem.featurize import (
    PAIR_FEATURES,
    MolFeatures,
    atom_features,
    check_elements,
    expand_pairs,
    featurize,
)
from ..chem.geometry import check_geometry, is_linear, linear_geometry, reference_bond_lengths
from ..chem.inputs import InputRecord
from ..chem.molecules import make_conformer, mol_with_positions
from ..chem.stereo import (
    StereoFeatures,
    compare_stereo,
    mirror,
    realised_stereo,
    requested_stereo,
    stereo_features,
)
from ..data import Graph, collate
from ..data.ccd import MAX_HEAVY as CCD_MAX_HEAVY
from ..data.paths import data_root
from ..diffusion import DiffusionModel, SamplerConfig, resolve_sampler
from ..groups import SE3
from ..nn.graph import full_graph
from ..nn.stereo import CHIRAL_INDEX, CHIRAL_SIGN, PAIR_STEREO, StereoInputs, chirality
from ..output import open_output
from ..scatter import scatter_sum
from ..training.validation import ConfigError
from .base import Task
from .sampling import generate

__all__ = [
    # training
    "ConformerTask", "ConformerOptions", "ConformerDataset", "molecule_graph",
    "geom_qm9_test_smiles", "canonical_no_stereo", "stereo_extras",
    # inference
    "embed", "EmbedResult", "check_molecule", "MoleculeLimits", "QM9_LIMITS", "CCD_LIMITS",
    "ConformerJob", "prepare_jobs", "raw_samples", "fix_stereo", "relax_mmff",
    "conformer_sampler", "TRAINING_MAX_HEAVY_ATOMS", "MAX_HEAVY_ATOMS", "STEREO_ROUNDS",
    "DEFAULT_SAMPLER", "SDE_STEPS",
]

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
    max_heavy_atoms: int | None = None

    def __post_init__(self):
        try:
            check_elements(self.elements)
        except ValueError as err:
            raise ConfigError(f"task.options.elements: {err}") from None
        if self.max_heavy_atoms is not None and self.max_heavy_atoms < 1:
            raise ConfigError("task.options.max_heavy_atoms: must be positive, got "
                              f"{self.max_heavy_atoms}")


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

    @property
    def limits(self) -> MoleculeLimits:
        """The molecules the model takes (:func:`check_molecule`): those of its training source
        (:data:`QM9_LIMITS` or :data:`CCD_LIMITS`) with its element vocabulary, and the task
        option ``max_heavy_atoms`` as the size limit where it is set."""
        limits = replace(CCD_LIMITS if self.options.source == "ccd" else QM9_LIMITS,
                         elements=self.elements)
        if self.options.max_heavy_atoms is None:
            return limits
        return replace(limits, max_heavy_atoms=self.options.max_heavy_atoms,
                       size_reason="set by the task option max_heavy_atoms")

    def prepare(self, mols: Sequence) -> list[Graph]:
        """The graph of each RDKit molecule (explicit hydrogens); for a stereo model with the
        molecule's requested stereo as its input."""
        return [molecule_graph(featurize(mol, self.elements), None,
                               stereo_features(mol) if self.stereo else None)
                for mol in mols]

    def write(self, records: Iterable[tuple], path: str | Path) -> int:
        """``(mol, positions, name, properties)`` records to one SDF file (``-``: stdout), each a
        copy of ``mol`` with the positions, titled ``name``, with the properties; returns the
        number written. Through :func:`~quotient_diffusion.output.open_output`: atomically for a
        regular file, so an interrupted run never leaves a truncated SDF behind, and streamed to
        a FIFO, a device or standard output."""
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


# ============================================================================ inference
# what the embed API (quotient_diffusion.conformers) and ``qdiff conformers`` do with a
# loaded model: input checks, sampling rounds with stereo repair, MMFF, geometry checks

#: QM9's largest molecules have 9 heavy atoms: beyond that a QM9 model extrapolates (a warning)
TRAINING_MAX_HEAVY_ATOMS = 9
#: a QM9 model refuses inputs larger than this (:data:`QM9_LIMITS`).
#: benchmarks/conformer_size_limit.py (bundled model,
#: default sampler, 4 raw samples per molecule): sound geometry in 97-100% of samples up to 18
#: heavy atoms, 79% at 19-21, 50% at 22-24, 12% at 25-27 and none from 28 on
MAX_HEAVY_ATOMS = 18
#: extra sampling rounds for conformers with a stereo error that a reflection cannot mend
STEREO_ROUNDS = 3
#: the ODE sampler of :func:`embed` and ``qdiff conformers``: DPM-Solver++(2M) on the power
#: grid with rho 1.5 whose last interior time is 0.99, t_k = 0.99 (1 - (1 - k/7)^1.5) for
#: k < 8, t_8 = 1: 8 network evaluations. benchmarks/sampler_steps.py on the bundled model (200
#: GEOM-QM9 test molecules x 10 raw samples, same prior draws; sampler_steps_last_time) put it
#: level with the 10-step rho-2 grid it replaced: AMR-R 0.122 vs 0.123 A (paired
#: -0.001 +- 0.001), COV-R 96.0% for both, bond MAE 0.0088 vs 0.0087 A, geometry_ok 100%, for
#: 0.8x the work. Without the fixed last time, 8 steps on the rho-1.5 grid end at t = 0.956 and
#: bend the worst bonds out of their chemical ranges (an O-H at 0.90 A;
#: tests/test_bundled_models.py); with it, 7 steps cost +0.005 A of AMR-R and 6 steps +0.014.
DEFAULT_SAMPLER = SamplerConfig(steps=8, solver="dpm2m", schedule="power", rho=1.5,
                                last_time=0.99)
#: Euler-Maruyama steps of the SDE sampler (``method='sde'``) unless told otherwise
SDE_STEPS = 50


# ---------------------------------------------------------------------------- input checks
@dataclass(frozen=True)
class MoleculeLimits:
    """The molecules a conformer model takes, from its task (:attr:`ConformerTask.limits`):
    ``elements`` (its element vocabulary), at most ``max_heavy_atoms`` heavy atoms (with
    ``size_reason`` saying why, for the refusal; "" for none), net-charged ones only if
    ``charged``; above ``training_max_heavy_atoms``, its largest training molecule, a molecule
    is taken with a warning."""

    elements: tuple[str, ...]
    max_heavy_atoms: int
    training_max_heavy_atoms: int
    charged: bool
    size_reason: str = ""


#: a QM9 model's limits (with the default vocabulary: the bundled model's): QM9's elements and
#: neutral molecules, :data:`MAX_HEAVY_ATOMS` as measured on the bundled model
QM9_LIMITS = MoleculeLimits(ELEMENTS, MAX_HEAVY_ATOMS, TRAINING_MAX_HEAVY_ATOMS, charged=False,
                            size_reason="where the model's geometry breaks down")
#: a CCD model's limits (with its own vocabulary: H C N O F S Cl Br in
#: configs/conformers_ccd.json): the CCD set keeps formal charges, so charged molecules are
#: taken, and its molecules have 10-60 heavy atoms (:mod:`quotient_diffusion.data.ccd`). The
#: size limit is that training maximum until a size-limit measurement
#: (benchmarks/conformer_size_limit.py on a CCD model) says otherwise
CCD_LIMITS = MoleculeLimits(ELEMENTS, CCD_MAX_HEAVY, CCD_MAX_HEAVY, charged=True)


def check_molecule(mol, limits: MoleculeLimits = QM9_LIMITS) -> str | None:
    """Why a model with ``limits`` (its task's :attr:`ConformerTask.limits`; by default the
    bundled QM9 model's, :data:`QM9_LIMITS`) cannot take ``mol``, an RDKit molecule with
    explicit hydrogens (None if it can)."""
    from rdkit import Chem

    elements = sorted({a.GetSymbol() for a in mol.GetAtoms()} - set(limits.elements))
    if elements:
        return (f"element(s) {', '.join(elements)} not in the training data "
                f"(the model knows {', '.join(limits.elements)})")
    fragments = len(Chem.GetMolFrags(mol))
    if fragments > 1:
        return f"{fragments} disconnected fragments: give one molecule at a time"
    charge = Chem.GetFormalCharge(mol)
    if charge != 0 and not limits.charged:
        return f"net charge {charge:+d}: the model was trained on neutral molecules"
    heavy = mol.GetNumHeavyAtoms()
    if heavy > limits.max_heavy_atoms:
        reason = f", {limits.size_reason}" if limits.size_reason else ""
        return (f"{heavy} heavy atoms: above the limit of {limits.max_heavy_atoms}{reason} "
                f"(it was trained on at most {limits.training_max_heavy_atoms})")
    if any(a.GetTotalNumHs() for a in mol.GetAtoms()):
        return ("the molecule has implicit hydrogens: add them first with Chem.AddHs(mol) "
                "(the model places every atom)")
    if mol.GetNumAtoms() < 2:
        return "a single atom has no conformation"
    if any(a.GetNumRadicalElectrons() for a in mol.GetAtoms()):
        return "radical: the model was trained on closed-shell molecules"
    return None


# ---------------------------------------------------------------------------- sampling
def conformer_sampler(
    steps: int | None = None,
    method: str = "ode",
    solver: str | None = None,
    schedule: str | None = None,
    rho: float | None = None,
    noise_scale: float = 1.0,
    progress: bool = False,
    last_time: float | None = None,
) -> SamplerConfig:
    """The sampler of the embed functions: options left at None come from
    :data:`DEFAULT_SAMPLER` for the ODE, and for the SDE (``method='sde'``) from
    Euler-Maruyama with :data:`SDE_STEPS` steps on the uniform grid
    (:func:`~quotient_diffusion.diffusion.samplers.resolve_sampler`). ``ValueError`` for
    options that do not go together."""
    return resolve_sampler(DEFAULT_SAMPLER, SDE_STEPS, steps, method, solver, schedule, rho,
                           noise_scale, progress, last_time)


def _samples(
    task: ConformerTask,
    model: DiffusionModel,
    requests: Sequence[tuple[object, int]],
    sampler: SamplerConfig,
    generator: torch.Generator,
    max_atoms_per_batch: int,
) -> Iterator[tuple[int, np.ndarray]]:
    """(request index, positions in Angstrom) for ``count`` samples of each ``(mol, count)``,
    batch by batch (a batch is finished before the next one starts): :func:`~.sampling.generate`."""
    for batch in generate(task, model, [mol for mol, _ in requests], sampler, generator,
                          copies=[count for _, count in requests],
                          max_atoms=max_atoms_per_batch):
        yield from batch


def relax_mmff(mol, pos: np.ndarray, max_iters: int = 500) -> tuple[np.ndarray, float | None]:
    """MMFF94 minimisation from ``pos``; returns (positions, energy in kcal/mol), or ``pos``
    unchanged and None when MMFF has no parameters for the molecule."""
    from rdkit.Chem import AllChem

    m = mol_with_positions(mol, pos)
    props = AllChem.MMFFGetMoleculeProperties(m)
    if props is None:
        return pos, None
    ff = AllChem.MMFFGetMoleculeForceField(m, props)
    ff.Minimize(maxIts=max_iters)
    return np.array(m.GetConformer().GetPositions()), float(ff.CalcEnergy())


def fix_stereo(mol, pos: np.ndarray) -> tuple[np.ndarray, bool]:
    """(positions, stereo_ok): ``pos`` mirrored when that gives every requested label (all
    tetrahedral centres inverted, E/Z right), else unchanged; stereo_ok tells whether the
    result has every requested tetrahedral and E/Z label."""
    verdict = compare_stereo(requested_stereo(mol), realised_stereo(mol, pos))
    return (mirror(pos) if verdict == "mirror" else pos), verdict != "wrong"


@dataclass
class EmbedResult:
    """What :func:`embed` did for one molecule."""

    ids: list[int] = field(default_factory=list)  # conformer ids added, in order
    mirrored: int = 0  # kept after a reflection
    resampled: int = 0  # replacements drawn in an extra round for a sample with wrong stereo
    dropped: int = 0  # still missing after the extra rounds


class _Target:
    """One molecule being embedded: its requested stereo, reference bonds and result."""

    def __init__(self, mol, num_conformers: int, mmff: bool):
        self.mol = mol
        self.missing = num_conformers
        self.mmff = mmff
        self.wanted = requested_stereo(mol)
        self.reference = reference_bond_lengths(mol)
        self.result = EmbedResult()

    def add(self, pos: np.ndarray, source: str, sampling_round: int, repair: str) -> None:
        """Finish a conformer (MMFF, geometry check) and add it to the molecule."""
        energy = None
        if self.mmff:
            pos, energy = relax_mmff(self.mol, pos)
        conf = make_conformer(pos)
        if self.mmff:
            conf.SetProp("mmff_energy_kcal_mol", "n/a" if energy is None else f"{energy:.4f}")
        geometry = check_geometry(self.mol, pos, self.reference)
        conf.SetIntProp("geometry_ok", int(geometry.ok))
        conf.SetDoubleProp("max_bond_error_A", round(geometry.max_bond_error, 3))
        conf.SetIntProp("clashes", geometry.clashes)
        conf.SetProp("stereo_repair", repair)
        conf.SetIntProp("sampling_round", sampling_round)
        conf.SetProp("source", source)
        self.result.ids.append(self.mol.AddConformer(conf, assignId=True))
        self.missing -= 1

    def offer(self, pos: np.ndarray, sampling_round: int) -> None:
        """Keep a sample whose stereo is right or mirrors to right; discard any other."""
        verdict = "ok"
        if self.wanted:
            verdict = compare_stereo(self.wanted, realised_stereo(self.mol, pos))
        if verdict == "wrong":
            return
        if verdict == "mirror":
            self.result.mirrored += 1
            pos = mirror(pos)
        self.result.resampled += int(sampling_round > 0)
        self.add(pos, "model", sampling_round, "mirrored" if verdict == "mirror" else "none")


def _sample_rounds(
    task: ConformerTask,
    model: DiffusionModel,
    targets: list[_Target],
    sampler: SamplerConfig,
    seed: int,
    max_atoms_per_batch: int,
) -> None:
    """Sample every target's missing conformers, then up to STEREO_ROUNDS replacement rounds."""
    generator = torch.Generator().manual_seed(seed)
    for sampling_round in range(STEREO_ROUNDS + 1):
        todo = [t for t in targets if t.missing > 0]
        if not todo:
            break
        requests = [(t.mol, t.missing) for t in todo]
        for k, pos in _samples(task, model, requests, sampler, generator, max_atoms_per_batch):
            todo[k].offer(pos, sampling_round)
    for t in targets:
        t.result.dropped = t.missing


def embed(
    mols: Sequence,
    loader: Callable[[], tuple[ConformerTask, DiffusionModel]],
    num_conformers: int = 10,
    seed: int = 0,
    mmff: bool = False,
    sampler: SamplerConfig = DEFAULT_SAMPLER,
    clear_conformers: bool = True,
    max_atoms_per_batch: int = 4096,
) -> list[EmbedResult]:
    """Add up to ``num_conformers`` conformers to each molecule, in place (see the module
    docstring for what happens to each), and return what was done for each: what
    ``quotient_diffusion.conformers.embed_molecules`` does, with the model given.

    ``loader()`` returns (task, model); it is called once, before the checks (the molecules
    are checked against the limits of that model's task, :attr:`ConformerTask.limits`), and
    not at all for no molecules. The whole call is seeded by ``seed``. Copies of all
    molecules are packed into flat batches of at most ``max_atoms_per_batch`` atoms.
    Conformers are added as their batch finishes, so an interruption (``KeyboardInterrupt``)
    leaves every finished conformer on its molecule. Raises ``ValueError`` naming the first
    molecule the model cannot take, before any work.
    """
    if num_conformers < 1:
        raise ValueError(f"num_conformers must be at least 1, got {num_conformers}")
    if not mols:
        return []
    task, model = loader()
    limits = task.limits
    for k, mol in enumerate(mols):
        reason = check_molecule(mol, limits)
        if reason is not None:
            raise ValueError(reason if len(mols) == 1 else f"molecule {k}: {reason}")
    targets = [_Target(mol, num_conformers, mmff) for mol in mols]
    if clear_conformers:
        for mol in mols:
            mol.RemoveAllConformers()
    sampled = []
    for t in targets:
        if not is_linear(t.mol):
            sampled.append(t)
            continue
        line = linear_geometry(t.mol, t.reference)
        for _ in range(num_conformers):
            t.add(line, "linear", 0, "none")
    if sampled:
        _sample_rounds(task, model, sampled, sampler, seed, max_atoms_per_batch)
    return [t.result for t in targets]


# ---------------------------------------------------------------------------- text inputs
@dataclass
class ConformerJob:
    """One input molecule and what became of it."""

    number: int  # line or record number of the input
    text: str  # the SMILES as given
    name: str = ""
    mol: object = None  # RDKit molecule with hydrogens (None on error)
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    conformers: list[np.ndarray] = field(default_factory=list)  # of :func:`raw_samples`


def _job(record: InputRecord, limits: MoleculeLimits) -> ConformerJob:
    from rdkit import Chem

    job = ConformerJob(number=record.number, text=record.smiles or "", name=record.name)
    if record.smiles is None:
        job.error = record.error
        return job
    mol = Chem.MolFromSmiles(record.smiles)
    if mol is None:
        job.error = f"cannot parse SMILES {record.smiles!r}"
        return job
    mol = Chem.AddHs(mol)
    job.error = check_molecule(mol, limits)
    if job.error is None:
        job.mol = mol
        if mol.GetNumHeavyAtoms() > limits.training_max_heavy_atoms:
            job.warnings.append(
                f"{mol.GetNumHeavyAtoms()} heavy atoms, more than any training molecule "
                f"({limits.training_max_heavy_atoms}): some conformers may fail the geometry "
                "check (see geometry_ok)")
    return job


def prepare_jobs(
    inputs: Iterable[InputRecord | str], limits: MoleculeLimits = QM9_LIMITS
) -> list[ConformerJob]:
    """Parse and check inputs (records of :mod:`~quotient_diffusion.chem.inputs`, or bare SMILES
    numbered from 1) against the limits of the model that will sample them (its task's
    :attr:`ConformerTask.limits`; by default the bundled QM9 model's): each becomes a
    :class:`ConformerJob` with its molecule (hydrogens added), its error or its warning (more
    heavy atoms than any training molecule)."""
    from rdkit import RDLogger

    RDLogger.DisableLog("rdApp.*")
    return [_job(item if isinstance(item, InputRecord) else InputRecord(k, item, item), limits)
            for k, item in enumerate(inputs, start=1)]


def raw_samples(
    task: ConformerTask,
    model: DiffusionModel,
    jobs: list[ConformerJob],
    num_conformers: int,
    sampler: SamplerConfig,
    seed: int = 0,
    max_atoms_per_batch: int = 4096,
) -> None:
    """Fill ``job.conformers`` with ``num_conformers`` samples of the model for every job
    without an error (no stereo repair, no checks: what the benchmarks measure)."""
    todo = [j for j in jobs if j.error is None]
    generator = torch.Generator().manual_seed(seed)
    requests = [(job.mol, num_conformers) for job in todo]
    for k, pos in _samples(task, model, requests, sampler, generator, max_atoms_per_batch):
        todo[k].conformers.append(pos)
