"""Conformers from molecular graphs with a trained (or the bundled) conformer model.

:func:`embed_conformers` works like RDKit's ``AllChem.EmbedMultipleConfs``: it adds conformers
to a molecule with explicit hydrogens, in place, and returns their ids.
:func:`embed_molecules` does the same for many molecules at once, their copies sampled side by
side in flat batches; ``qdiff conformers`` uses it. For every molecule:

1. :func:`check_molecule` says why the model cannot take it (``ValueError``).
2. A linear molecule (:func:`~.chem.geometry.is_linear`: N#N, HCN, CO2) has one conformation,
   a straight line whose only coordinates are its bond lengths; it is built from the reference
   bond lengths, not sampled (the bundled network gets these molecules wrong: docs/conformers.md).
3. Any other molecule: ``num_conformers`` copies are sampled with the model's ODE or SDE.
4. Stereo (:mod:`~.chem.stereo`): a model trained with the task option ``stereo`` is given
   the requested labels as inputs (:func:`~.chem.stereo.stereo_features` of the input
   molecule). Either way, a sample with every requested label is kept; one whose tetrahedral
   centres are all inverted (E/Z right) is mirrored (a model without stereo inputs is
   reflection-equivariant and cannot tell enantiomers apart); any other is thrown away and
   replaced by a new sample, in up to :data:`STEREO_ROUNDS` extra rounds. What is still wrong
   after them is dropped: a conformer of the wrong stereoisomer is not a conformer of the
   input, so a molecule may get fewer than ``num_conformers`` conformers.
5. Optionally MMFF94 relaxation (``mmff=True``).
6. :func:`~.chem.geometry.check_geometry` on the final coordinates.

Each conformer carries RDKit conformer properties (``conf.GetPropsAsDict()``), which the
command line copies into the SDF: ``geometry_ok`` (0/1), ``max_bond_error_A``, ``clashes``,
``stereo_repair`` (``none`` or ``mirrored``), ``sampling_round`` (0 for the first samples, k
for a replacement drawn in extra round k), ``source`` (``model`` or ``linear``) and, with MMFF,
``mmff_energy_kcal_mol``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from .chem.featurize import supported_elements
from .chem.geometry import check_geometry, is_linear, linear_geometry, reference_bond_lengths
from .chem.inputs import InputRecord
from .chem.molecules import make_conformer, mol_with_positions
from .chem.stereo import compare_stereo, mirror, realised_stereo, requested_stereo
from .diffusion import DiffusionModel, SamplerConfig, resolve_sampler
from .tasks import checkpoint_path, generate, load
from .tasks.conformers import ConformerTask

__all__ = [
    "embed_conformers",
    "embed_molecules",
    "EmbedResult",
    "check_molecule",
    "ConformerJob",
    "prepare",
    "raw_samples",
    "fix_stereo",
    "relax_mmff",
    "default_checkpoint",
    "load_conformer_model",
    "TRAINING_MAX_HEAVY_ATOMS",
    "MAX_HEAVY_ATOMS",
    "STEREO_ROUNDS",
    "DEFAULT_SAMPLER",
    "SDE_STEPS",
    "conformer_sampler",
]

#: QM9's largest molecules have 9 heavy atoms: beyond that the model extrapolates (a warning)
TRAINING_MAX_HEAVY_ATOMS = 9
#: inputs larger than this are refused. benchmarks/conformer_size_limit.py (bundled model,
#: default sampler, 4 raw samples per molecule): sound geometry in 97-100% of samples up to 18
#: heavy atoms, 75% at 19-21, 67% at 22-24, 21% at 25-27 and none from 28 on
MAX_HEAVY_ATOMS = 18
#: extra sampling rounds for conformers with a stereo error that a reflection cannot mend
STEREO_ROUNDS = 3
#: the ODE sampler of :func:`embed_conformers` and ``qdiff conformers``: DPM-Solver++(2M) on the
#: power grid t_k = 1 - (1 - k/10)^2, 10 network evaluations (5x fewer than the 50 Euler steps
#: it replaces). benchmarks/sampler_steps.py (50 GEOM-QM9 test molecules x 3 raw samples, same
#: prior draws) chose it as the fewest evaluations whose AMR-R and bond MAE are both within
#: seed noise of 50 Euler steps, for the bundled model (rerun on the chirality-push model,
#: docs/benchmarks/sampler_steps.md): AMR-R 0.260 vs 0.243 A (seed std 0.020; paired
#: +0.018 +- 0.003), bond MAE 0.0083 vs 0.0082 A, geometry_ok 100%. Euler with 10 steps: bonds
#: 0.0145 A.
DEFAULT_SAMPLER = SamplerConfig(steps=10, solver="dpm2m", schedule="power")
#: Euler-Maruyama steps of the SDE sampler (``method='sde'``) unless told otherwise
SDE_STEPS = 50


# ---------------------------------------------------------------------------- the model
def default_checkpoint() -> Path:
    """The conformer model that ships inside the package."""
    return checkpoint_path(None, ConformerTask.name)


@lru_cache(maxsize=4)
def _load_model(path: str, modified_ns: int) -> tuple[ConformerTask, DiffusionModel]:
    return load(path, ConformerTask.name)


def _cached(path: str | Path | None) -> tuple[ConformerTask, DiffusionModel]:
    resolved = Path(path or default_checkpoint()).resolve()
    modified = resolved.stat().st_mtime_ns if resolved.exists() else -1
    return _load_model(str(resolved), modified)


def load_conformer_model(path: str | Path | None = None) -> tuple[DiffusionModel, dict]:
    """(model in eval mode with EMA weights, its training config as a dict) of
    :func:`~.tasks.load` (a ``CheckpointError`` for a model of another task), loaded once per
    checkpoint file (cached on its resolved path and modification time; do not modify it)."""
    task, model = _cached(path)
    return model, task.config.to_dict()


# ---------------------------------------------------------------------------- input checks
def check_molecule(mol) -> str | None:
    """Why the model cannot take ``mol``, an RDKit molecule with explicit hydrogens (None if it
    can)."""
    from rdkit import Chem

    elements = sorted({a.GetSymbol() for a in mol.GetAtoms()} - set(supported_elements()))
    if elements:
        return (f"element(s) {', '.join(elements)} not in the training data "
                f"(the model knows {', '.join(supported_elements())})")
    fragments = len(Chem.GetMolFrags(mol))
    if fragments > 1:
        return f"{fragments} disconnected fragments: give one molecule at a time"
    charge = Chem.GetFormalCharge(mol)
    if charge != 0:
        return f"net charge {charge:+d}: the model was trained on neutral molecules"
    heavy = mol.GetNumHeavyAtoms()
    if heavy > MAX_HEAVY_ATOMS:
        return (f"{heavy} heavy atoms: above the limit of {MAX_HEAVY_ATOMS}, where the model's "
                f"geometry breaks down (it was trained on at most {TRAINING_MAX_HEAVY_ATOMS})")
    if any(a.GetTotalNumHs() for a in mol.GetAtoms()):
        return ("the molecule has implicit hydrogens: add them first with Chem.AddHs(mol) "
                "(the model places every atom)")
    if mol.GetNumAtoms() < 2:
        return "a single atom has no conformation"
    if any(a.GetNumRadicalElectrons() for a in mol.GetAtoms()):
        return "radical: the model was trained on closed-shell molecules"
    return None


# ---------------------------------------------------------------------------- sampling
def _samples(
    task: ConformerTask,
    model: DiffusionModel,
    requests: Sequence[tuple[object, int]],
    sampler: SamplerConfig,
    generator: torch.Generator,
    max_atoms_per_batch: int,
) -> Iterator[tuple[int, np.ndarray]]:
    """(request index, positions in Angstrom) for ``count`` samples of each ``(mol, count)``,
    batch by batch (a batch is finished before the next one starts): :func:`~.tasks.generate`."""
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
    """What :func:`embed_molecules` did for one molecule."""

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
    targets: list[_Target],
    checkpoint: str | Path | None,
    sampler: SamplerConfig,
    seed: int,
    max_atoms_per_batch: int,
) -> None:
    """Sample every target's missing conformers, then up to STEREO_ROUNDS replacement rounds."""
    task, model = _cached(checkpoint)
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


def conformer_sampler(
    steps: int | None = None,
    method: str = "ode",
    solver: str | None = None,
    schedule: str | None = None,
    rho: float | None = None,
    noise_scale: float = 1.0,
    progress: bool = False,
) -> SamplerConfig:
    """The sampler of the embed functions: options left at None come from
    :data:`DEFAULT_SAMPLER` for the ODE, and for the SDE (``method='sde'``) from
    Euler-Maruyama with :data:`SDE_STEPS` steps on the uniform grid
    (:func:`~.diffusion.samplers.resolve_sampler`). ``ValueError`` for options that do not go
    together."""
    return resolve_sampler(DEFAULT_SAMPLER, SDE_STEPS, steps, method, solver, schedule, rho,
                           noise_scale, progress)


def embed_molecules(
    mols: Sequence,
    num_conformers: int = 10,
    seed: int = 0,
    mmff: bool = False,
    steps: int | None = None,
    method: str = "ode",
    noise_scale: float = 1.0,
    checkpoint: str | Path | None = None,
    clear_conformers: bool = True,
    progress: bool = False,
    max_atoms_per_batch: int = 4096,
    solver: str | None = None,
    schedule: str | None = None,
    rho: float | None = None,
) -> list[EmbedResult]:
    """Add up to ``num_conformers`` conformers to each molecule, in place (see the module
    docstring for what happens to each), and return what was done for each.

    The whole call is seeded by ``seed``. Copies of all molecules are packed into flat batches
    of at most ``max_atoms_per_batch`` atoms. Conformers are added as their batch finishes, so
    an interruption (``KeyboardInterrupt``) leaves every finished conformer on its molecule.
    Raises ``ValueError`` naming the first molecule the model cannot take, before any work.
    The sampler options are those of :func:`conformer_sampler`.
    """
    if num_conformers < 1:
        raise ValueError(f"num_conformers must be at least 1, got {num_conformers}")
    sampler = conformer_sampler(steps, method, solver, schedule, rho, noise_scale, progress)
    for k, mol in enumerate(mols):
        reason = check_molecule(mol)
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
        _sample_rounds(sampled, checkpoint, sampler, seed, max_atoms_per_batch)
    return [t.result for t in targets]


def embed_conformers(
    mol,
    num_conformers: int = 10,
    seed: int = 0,
    mmff: bool = False,
    steps: int | None = None,
    method: str = "ode",
    noise_scale: float = 1.0,
    checkpoint: str | Path | None = None,
    clear_conformers: bool = True,
    solver: str | None = None,
    schedule: str | None = None,
    rho: float | None = None,
) -> list[int]:
    """Add up to ``num_conformers`` conformers to ``mol`` (an RDKit molecule with explicit
    hydrogens) in place and return their ids, like ``AllChem.EmbedMultipleConfs``.

    ``steps``, ``method`` ('ode' or 'sde'), ``solver``, ``schedule``, ``rho`` and
    ``noise_scale`` choose the sampler (:func:`conformer_sampler`; by default
    :data:`DEFAULT_SAMPLER`); ``mmff``
    relaxes every conformer with MMFF94; ``checkpoint`` is a conformer model (default: the
    bundled one, loaded once and cached). Raises ``ValueError`` with the reason when the model
    cannot take the molecule. Fewer ids than asked for come back only when some samples kept
    a stereo error through every extra round (see the module docstring).
    """
    (result,) = embed_molecules([mol], num_conformers, seed=seed, mmff=mmff, steps=steps,
                                method=method, noise_scale=noise_scale, checkpoint=checkpoint,
                                clear_conformers=clear_conformers, solver=solver,
                                schedule=schedule, rho=rho)
    return result.ids


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


def _job(record: InputRecord) -> ConformerJob:
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
    job.error = check_molecule(mol)
    if job.error is None:
        job.mol = mol
        if mol.GetNumHeavyAtoms() > TRAINING_MAX_HEAVY_ATOMS:
            job.warnings.append(
                f"{mol.GetNumHeavyAtoms()} heavy atoms, more than any training molecule "
                f"({TRAINING_MAX_HEAVY_ATOMS}): some conformers may fail the geometry check "
                "(see geometry_ok)")
    return job


def prepare(inputs: Iterable[InputRecord | str]) -> list[ConformerJob]:
    """Parse and check inputs (records of :mod:`~.chem.inputs`, or bare SMILES numbered from
    1): each becomes a :class:`ConformerJob` with its molecule (hydrogens added) or its error."""
    from rdkit import RDLogger

    RDLogger.DisableLog("rdApp.*")
    return [_job(item if isinstance(item, InputRecord) else InputRecord(k, item, item))
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
