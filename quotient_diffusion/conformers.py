"""Conformer generation from SMILES with a trained (or the bundled) conformer model.

Pipeline: :func:`prepare` checks each input and builds its molecule with hydrogens;
:func:`generate` samples ``n`` conformers per molecule in flat batches (molecules of different
sizes side by side, no padding); :func:`fix_stereo` mirrors a conformer whose tetrahedral
centres come out inverted (the equivariant networks are also reflection-equivariant, so they
cannot tell enantiomers apart: the requested stereo is imposed afterwards, as ET-Flow does);
:func:`relax_mmff` optionally minimises with MMFF94.

User errors never raise: each input becomes a :class:`ConformerJob` with ``error`` set, and the
others go on.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from .chem.featurize import featurize, supported_elements
from .chem.sdf import mol_with_positions
from .data import collate
from .diffusion import DiffusionModel, SamplerConfig
from .tasks.conformers import molecule_graph

__all__ = [
    "ConformerJob",
    "prepare",
    "generate",
    "fix_stereo",
    "relax_mmff",
    "default_checkpoint",
    "load_conformer_model",
    "TRAINING_MAX_HEAVY_ATOMS",
    "MAX_HEAVY_ATOMS",
]

#: QM9's largest molecules have 9 heavy atoms: beyond that the model extrapolates (a warning)
TRAINING_MAX_HEAVY_ATOMS = 9
#: inputs larger than this are refused (far outside what the model has seen)
MAX_HEAVY_ATOMS = 40


@dataclass
class ConformerJob:
    """One input line and what became of it."""

    line: int
    text: str
    name: str = ""
    mol: object = None  # RDKit molecule with hydrogens (None on error)
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    conformers: list[np.ndarray] = field(default_factory=list)  # (N, 3) Angstrom each


def default_checkpoint() -> Path:
    """The conformer model that ships inside the package."""
    return Path(str(resources.files("quotient_diffusion") / "checkpoints" / "conformers_qm9.pt"))


def load_conformer_model(path: str | Path | None = None) -> tuple[DiffusionModel, dict]:
    """(model in eval mode with EMA weights, its training config as a dict)."""
    from .training import load_trained_model

    model, config = load_trained_model(path or default_checkpoint())
    if config.task.name != "conformers":
        raise ValueError(f"{path} is a '{config.task.name}' model, not a conformer model")
    return model, config.to_dict()


def _check(mol) -> str | None:
    """Why the model cannot take this molecule (None if it can)."""
    from rdkit import Chem

    elements = sorted({a.GetSymbol() for a in mol.GetAtoms()} - set(supported_elements()))
    if elements:
        return (f"element(s) {', '.join(elements)} not in the training data "
                f"(the model knows {', '.join(supported_elements())})")
    fragments = len(Chem.GetMolFrags(mol))
    if fragments > 1:
        return f"{fragments} disconnected fragments: give one molecule per line"
    charge = Chem.GetFormalCharge(mol)
    if charge != 0:
        return f"net charge {charge:+d}: the model was trained on neutral molecules"
    heavy = mol.GetNumHeavyAtoms()
    if heavy > MAX_HEAVY_ATOMS:
        return (f"{heavy} heavy atoms: far beyond the training data "
                f"(at most {TRAINING_MAX_HEAVY_ATOMS}); the limit is {MAX_HEAVY_ATOMS}")
    if mol.GetNumAtoms() < 2:
        return "a single atom has no conformation"
    return None


def prepare(lines: Iterable[str]) -> list[ConformerJob]:
    """Parse inputs: one SMILES per entry, optionally followed by a name (whitespace or comma
    separated, as in a .smi or simple CSV file). A header line ``smiles,...`` is skipped."""
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    jobs = []
    for number, raw in enumerate(lines, start=1):
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        parts = text.replace(",", " ").split()
        smiles, name = parts[0], " ".join(parts[1:2])
        if number == 1 and smiles.lower() in ("smiles", "smi"):
            continue
        job = ConformerJob(line=number, text=smiles, name=name or smiles)
        mol = Chem.MolFromSmiles(smiles)
        if mol is None:
            job.error = f"cannot parse SMILES {smiles!r}"
        else:
            job.error = _check(mol)
            if job.error is None:
                job.mol = Chem.AddHs(mol)
                if mol.GetNumHeavyAtoms() > TRAINING_MAX_HEAVY_ATOMS:
                    job.warnings.append(
                        f"{mol.GetNumHeavyAtoms()} heavy atoms, more than any training molecule "
                        f"({TRAINING_MAX_HEAVY_ATOMS}): expect lower quality")
        jobs.append(job)
    return jobs


@torch.no_grad()
def generate(
    model: DiffusionModel,
    jobs: list[ConformerJob],
    num_conformers: int,
    sampler: SamplerConfig,
    seed: int = 0,
    max_atoms_per_batch: int = 4096,
) -> None:
    """Fill ``job.conformers`` for every job without an error (``num_conformers`` each).

    Copies of the molecules are packed into flat batches of at most ``max_atoms_per_batch``
    atoms; the whole run is seeded by ``seed``.
    """
    todo = [j for j in jobs if j.error is None]
    graphs = []
    for job in todo:
        g = molecule_graph(featurize(job.mol), None)
        graphs.extend((job, g) for _ in range(num_conformers))
    gen = torch.Generator().manual_seed(seed)
    start = 0
    while start < len(graphs):
        stop, atoms = start, 0
        while stop < len(graphs) and (stop == start or atoms + graphs[stop][1].num_nodes
                                      <= max_atoms_per_batch):
            atoms += graphs[stop][1].num_nodes
            stop += 1
        chunk = graphs[start:stop]
        batch = collate([g for _, g in chunk])
        pos, _ = model.sample(batch, sampler, gen)
        sizes = batch.num_nodes_per_graph.tolist()
        for (job, _), x in zip(chunk, torch.split(pos, sizes)):
            job.conformers.append(x.double().numpy())
        start = stop


def _tetrahedral_tags(mol, pos: np.ndarray) -> dict[int, str]:
    from rdkit import Chem

    m = mol_with_positions(mol, pos)
    Chem.AssignStereochemistryFrom3D(m)
    return dict(Chem.FindMolChiralCenters(m, includeUnassigned=False,
                                          useLegacyImplementation=False))


def fix_stereo(mol, pos: np.ndarray) -> tuple[np.ndarray, bool]:
    """Mirror ``pos`` (z -> -z) if that matches more of the requested tetrahedral centres.

    Returns (positions, stereo_ok): stereo_ok is False when some requested centre is still
    wrong (a mixture of inverted and correct centres cannot be mended by a reflection).
    """
    from rdkit import Chem

    wanted = dict(Chem.FindMolChiralCenters(mol, includeUnassigned=False,
                                            useLegacyImplementation=False))
    if not wanted:
        return pos, True
    got = _tetrahedral_tags(mol, pos)
    right = sum(got.get(i) == tag for i, tag in wanted.items())
    if right < len(wanted):
        mirrored = pos * np.array([1.0, 1.0, -1.0])
        got_m = _tetrahedral_tags(mol, mirrored)
        right_m = sum(got_m.get(i) == tag for i, tag in wanted.items())
        if right_m > right:
            return mirrored, right_m == len(wanted)
    return pos, right == len(wanted)


def relax_mmff(mol, pos: np.ndarray, max_iters: int = 500) -> tuple[np.ndarray, float | None]:
    """MMFF94 minimisation from ``pos``; returns (positions, energy in kcal/mol or None)."""
    from rdkit.Chem import AllChem

    m = mol_with_positions(mol, pos)
    props = AllChem.MMFFGetMoleculeProperties(m)
    if props is None:
        return pos, None
    ff = AllChem.MMFFGetMoleculeForceField(m, props)
    ff.Minimize(maxIts=max_iters)
    return np.array(m.GetConformer().GetPositions()), float(ff.CalcEnergy())
