"""Conformers from molecular graphs with a trained (or the bundled) conformer model: the public
API of the conformer task, whose logic (checks, sampling rounds, stereo repair, MMFF, geometry
checks, SDF records) is all in :mod:`quotient_diffusion.tasks.conformers`.

:func:`embed_conformers` works like RDKit's ``AllChem.EmbedMultipleConfs``: it adds conformers
to a molecule with explicit hydrogens, in place, and returns their ids.
:func:`embed_molecules` does the same for many molecules at once, their copies sampled side by
side in flat batches; ``qdiff conformers`` uses it. What happens to each molecule, and the
properties each conformer carries, are described in :mod:`quotient_diffusion.tasks.conformers`.

This module adds what needs the model: :func:`load_conformer_model` loads a checkpoint (default:
the bundled QM9 model, :func:`default_checkpoint`) once and keeps it, and the embed functions take
a checkpoint or a bundled model's name and the sampler options and call
:func:`~quotient_diffusion.tasks.conformers.embed`. Which molecules a model takes (elements, size,
net charge) follows its checkpoint: the limits of its task, ``load_conformer_model(path)[0].limits``
(:class:`MoleculeLimits`), which the embed functions check against and :func:`check_molecule` and
:func:`prepare_jobs` take.

Two models ship with the package (:data:`BUNDLED_MODELS`): ``qm9``, trained on QM9's DFT
geometries (H C N O F, neutral, up to 18 heavy atoms), and ``druglike``, trained on the PDB
ligand geometries of the Chemical Component Dictionary (H C N O F S Cl Br, up to 60 heavy atoms,
charged molecules; docs/benchmarks/druglike.md). By default (``model="auto"``) each molecule goes
to the model :func:`choose_model` names: the QM9 model for the small molecules it takes, the
drug-like model for the rest.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from .diffusion import DiffusionModel, SamplerConfig
from .tasks import bundled_checkpoint, checkpoint_path, load
from .tasks.conformers import (
    DEFAULT_SAMPLER,
    MAX_HEAVY_ATOMS,
    QM9_LIMITS,
    SDE_STEPS,
    STEREO_ROUNDS,
    TRAINING_MAX_HEAVY_ATOMS,
    ConformerJob,
    ConformerTask,
    EmbedResult,
    MoleculeLimits,
    check_molecule,
    conformer_sampler,
    embed,
    fix_stereo,
    prepare_jobs,
    raw_samples,
    relax_mmff,
)

__all__ = [
    "embed_conformers",
    "embed_molecules",
    "default_checkpoint",
    "load_conformer_model",
    "BUNDLED_MODELS",
    "AUTO_QM9_MAX_HEAVY_ATOMS",
    "bundled_model",
    "choose_model",
    # from tasks.conformers
    "EmbedResult",
    "check_molecule",
    "MoleculeLimits",
    "QM9_LIMITS",
    "ConformerJob",
    "prepare_jobs",
    "raw_samples",
    "fix_stereo",
    "relax_mmff",
    "conformer_sampler",
    "TRAINING_MAX_HEAVY_ATOMS",
    "MAX_HEAVY_ATOMS",
    "STEREO_ROUNDS",
    "DEFAULT_SAMPLER",
    "SDE_STEPS",
]


#: the conformer models that ship inside the package: name -> file in quotient_diffusion/checkpoints
BUNDLED_MODELS = {"qm9": "conformers_qm9.pt", "druglike": "conformers_druglike.pt"}
#: ``model="auto"`` gives a molecule the QM9 model takes to it up to this many heavy atoms, and
#: everything else to the drug-like model: the boundary between the two training sets (QM9's
#: molecules have at most 9 heavy atoms, the CCD set's at least 10), so that each molecule goes
#: to a model that has seen its size. Measured on both sides with the default sampler: on 200
#: GEOM-QM9 test molecules (<= 9 heavy atoms) AMR-R 0.122 A for the QM9 model, 0.26 for the
#: drug-like one (benchmarks/results/conformers_auto_rule.md); on the 108 Genentech ligands of
#: 10-18 heavy atoms the QM9 model takes, median best-of-50 RMSD to the bound pose 0.22 A for it,
#: 0.17 for the drug-like model (bound_pose.md)
AUTO_QM9_MAX_HEAVY_ATOMS = 9


def default_checkpoint() -> Path:
    """The bundled QM9 conformer model (the task's own bundled model)."""
    return checkpoint_path(None, ConformerTask.name)


def bundled_model(name: str) -> Path:
    """The file of the bundled conformer model ``name`` (a key of :data:`BUNDLED_MODELS`)."""
    if name not in BUNDLED_MODELS:
        raise ValueError(f"no bundled conformer model {name!r} (there are "
                         f"{', '.join(BUNDLED_MODELS)})")
    return bundled_checkpoint(BUNDLED_MODELS[name])


def choose_model(mol) -> str:
    """The bundled model ``model="auto"`` gives ``mol`` (with explicit hydrogens): ``"qm9"``
    where the QM9 model takes it (:func:`check_molecule` with its limits) and it has at most
    :data:`AUTO_QM9_MAX_HEAVY_ATOMS` heavy atoms, else ``"druglike"``."""
    limits = load_conformer_model(bundled_model("qm9"))[0].limits
    small = mol.GetNumHeavyAtoms() <= AUTO_QM9_MAX_HEAVY_ATOMS
    return "qm9" if small and check_molecule(mol, limits) is None else "druglike"


@lru_cache(maxsize=4)
def _load_model(path: str, modified_ns: int) -> tuple[ConformerTask, DiffusionModel]:
    return load(path, ConformerTask.name)


def load_conformer_model(
    path: str | Path | None = None,
) -> tuple[ConformerTask, DiffusionModel]:
    """(task, model in eval mode with EMA weights) of :func:`~.tasks.load` for a conformer
    checkpoint (None: the bundled one; a ``CheckpointError`` for a model of another task),
    loaded once per checkpoint file (cached on its resolved path and modification time; do not
    modify them)."""
    resolved = Path(path or default_checkpoint()).resolve()
    modified = resolved.stat().st_mtime_ns if resolved.exists() else -1
    return _load_model(str(resolved), modified)


def embed_molecules(
    mols,
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
    last_time: float | None = None,
    sampler: SamplerConfig | None = None,
    model: str = "auto",
) -> list[EmbedResult]:
    """Add up to ``num_conformers`` conformers to each molecule, in place, and return what was
    done for each (:func:`~quotient_diffusion.tasks.conformers.embed`).

    The whole call is seeded by ``seed``. Copies of all molecules are packed into flat batches
    of at most ``max_atoms_per_batch`` atoms. Conformers are added as their batch finishes, so
    an interruption (``KeyboardInterrupt``) leaves every finished conformer on its molecule.
    Raises ``ValueError`` naming the first molecule the model cannot take (its elements, size
    and net charge are checked against the limits of ``checkpoint``'s task,
    :class:`MoleculeLimits`), before any work. The sampler options are those of
    :func:`conformer_sampler`; ``sampler``, a resolved :class:`SamplerConfig`, is used as it is
    instead (``ValueError`` if any of those options is set beside it). ``checkpoint`` is a
    conformer model file; without one, ``model`` names a bundled model (:data:`BUNDLED_MODELS`)
    or is ``"auto"``: each molecule is sampled by the model :func:`choose_model` gives it, the
    molecules of each model together. Models are loaded once and cached.
    """
    options = (steps, solver, schedule, rho, last_time)
    if sampler is None:
        sampler = conformer_sampler(steps, method, solver, schedule, rho, noise_scale, progress,
                                    last_time)
    elif any(o is not None for o in options) or (method, noise_scale, progress) != ("ode", 1.0,
                                                                                    False):
        raise ValueError("give either a SamplerConfig or the sampler options, not both")
    if checkpoint is not None or model != "auto":
        if checkpoint is None:
            checkpoint = bundled_model(model)
        elif model != "auto":
            raise ValueError("give either a checkpoint or a bundled model name, not both")
        return embed(mols, lambda: load_conformer_model(checkpoint), num_conformers, seed, mmff,
                     sampler, clear_conformers, max_atoms_per_batch)
    names = [choose_model(mol) for mol in mols]
    limits = load_conformer_model(bundled_model("druglike"))[0].limits
    for k, mol in enumerate(mols):  # every refusal before any work
        reason = check_molecule(mol, limits)
        if reason is not None:
            raise ValueError(reason if len(mols) == 1 else f"molecule {k}: {reason}")
    results: list[EmbedResult | None] = [None] * len(mols)
    for name in BUNDLED_MODELS:
        picked = [k for k, chosen in enumerate(names) if chosen == name]
        done = embed([mols[k] for k in picked], lambda: load_conformer_model(bundled_model(name)),
                     num_conformers, seed, mmff, sampler, clear_conformers, max_atoms_per_batch)
        for k, result in zip(picked, done):
            results[k] = result
    return results


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
    last_time: float | None = None,
    model: str = "auto",
) -> list[int]:
    """Add up to ``num_conformers`` conformers to ``mol`` (an RDKit molecule with explicit
    hydrogens) in place and return their ids, like ``AllChem.EmbedMultipleConfs``.

    ``steps``, ``method`` ('ode' or 'sde'), ``solver``, ``schedule``, ``rho``, ``last_time``
    and ``noise_scale`` choose the sampler (:func:`conformer_sampler`; by default
    :data:`DEFAULT_SAMPLER`); ``mmff``
    relaxes every conformer with MMFF94; ``checkpoint`` is a conformer model file, else
    ``model`` a bundled model's name or ``"auto"`` (:func:`choose_model`; loaded once and
    cached). Raises ``ValueError`` with the reason when the model
    cannot take the molecule (the accepted elements, sizes and net charges are those of the
    checkpoint's task, :class:`MoleculeLimits`). Fewer ids than asked for come back only when
    some samples kept a stereo error through every extra round (see
    :mod:`quotient_diffusion.tasks.conformers`).
    """
    (result,) = embed_molecules([mol], num_conformers, seed=seed, mmff=mmff, steps=steps,
                                method=method, noise_scale=noise_scale, checkpoint=checkpoint,
                                clear_conformers=clear_conformers, solver=solver,
                                schedule=schedule, rho=rho, last_time=last_time, model=model)
    return result.ids
