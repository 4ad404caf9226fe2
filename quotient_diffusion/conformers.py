"""Conformers from molecular graphs with a trained (or the bundled) conformer model: the public
API of the conformer task, whose logic (checks, sampling rounds, stereo repair, MMFF, geometry
checks, SDF records) is all in :mod:`quotient_diffusion.tasks.conformers`.

:func:`embed_conformers` works like RDKit's ``AllChem.EmbedMultipleConfs``: it adds conformers
to a molecule with explicit hydrogens, in place, and returns their ids.
:func:`embed_molecules` does the same for many molecules at once, their copies sampled side by
side in flat batches; ``qdiff conformers`` uses it. What happens to each molecule, and the
properties each conformer carries, are described in :mod:`quotient_diffusion.tasks.conformers`.

This module adds what needs the model: :func:`load_conformer_model` loads a checkpoint (default:
the bundled model, :func:`default_checkpoint`) once and keeps it, and the embed functions take
a checkpoint and the sampler options and call :func:`~quotient_diffusion.tasks.conformers.embed`.
Which molecules a model takes (elements, size, net charge) follows its checkpoint: the limits of
its task, ``load_conformer_model(path)[0].limits`` (:class:`MoleculeLimits`), which the embed
functions check against and :func:`check_molecule` and :func:`prepare_jobs` take.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from .diffusion import DiffusionModel, SamplerConfig
from .tasks import checkpoint_path, load
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


def default_checkpoint() -> Path:
    """The conformer model that ships inside the package."""
    return checkpoint_path(None, ConformerTask.name)


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
    conformer model (default: the bundled one; loaded once and cached).
    """
    options = (steps, solver, schedule, rho, last_time)
    if sampler is None:
        sampler = conformer_sampler(steps, method, solver, schedule, rho, noise_scale, progress,
                                    last_time)
    elif any(o is not None for o in options) or (method, noise_scale, progress) != ("ode", 1.0,
                                                                                    False):
        raise ValueError("give either a SamplerConfig or the sampler options, not both")
    return embed(mols, lambda: load_conformer_model(checkpoint), num_conformers, seed, mmff,
                 sampler, clear_conformers, max_atoms_per_batch)


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
) -> list[int]:
    """Add up to ``num_conformers`` conformers to ``mol`` (an RDKit molecule with explicit
    hydrogens) in place and return their ids, like ``AllChem.EmbedMultipleConfs``.

    ``steps``, ``method`` ('ode' or 'sde'), ``solver``, ``schedule``, ``rho``, ``last_time``
    and ``noise_scale`` choose the sampler (:func:`conformer_sampler`; by default
    :data:`DEFAULT_SAMPLER`); ``mmff``
    relaxes every conformer with MMFF94; ``checkpoint`` is a conformer model (default: the
    bundled one, loaded once and cached). Raises ``ValueError`` with the reason when the model
    cannot take the molecule (the accepted elements, sizes and net charges are those of the
    checkpoint's task, :class:`MoleculeLimits`). Fewer ids than asked for come back only when
    some samples kept a stereo error through every extra round (see
    :mod:`quotient_diffusion.tasks.conformers`).
    """
    (result,) = embed_molecules([mol], num_conformers, seed=seed, mmff=mmff, steps=steps,
                                method=method, noise_scale=noise_scale, checkpoint=checkpoint,
                                clear_conformers=clear_conformers, solver=solver,
                                schedule=schedule, rho=rho, last_time=last_time)
    return result.ids
