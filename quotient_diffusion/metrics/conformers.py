r"""Conformer-ensemble metrics: coverage and AMR, recall and precision (GeoMol's definitions).

For a molecule with reference conformers :math:`R` and generated conformers :math:`G`, and the
heavy-atom RMSD :math:`d(g, r)` after the best symmetry-aware alignment (RDKit ``GetBestRMS``,
which tries every graph automorphism; hydrogens removed):

* recall:    COV-R = |{r : min_g d(g, r) < delta}| / |R|,   AMR-R = mean_r min_g d(g, r)
* precision: COV-P = |{g : min_r d(g, r) < delta}| / |G|,   AMR-P = mean_g min_r d(g, r)

with delta = 0.5 A for QM9. With a single reference conformer (the QM9 DFT geometry),
COV-R is 0 or 1 per molecule and precision measures how many samples land near that one minimum.

The spread of an ensemble, :func:`pairwise_rmsd`, is the RMSD of every pair of its conformers
after the optimal proper superposition with the identity atom map (Kabsch; no automorphisms:
a measure of diversity, cheap enough for every pair of 50 conformers).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..chem.molecules import mol_with_positions

__all__ = ["heavy_atom_rmsd_matrix", "pairwise_rmsd", "EnsembleScores", "ensemble_scores"]


def heavy_atom_rmsd_matrix(mol, generated: list[np.ndarray], ref_mol, references: list[np.ndarray],
                           max_matches: int = 10_000) -> np.ndarray:
    """(len(generated), len(references)) heavy-atom RMSDs after best alignment (Angstrom).

    ``mol`` and ``ref_mol`` are RDKit molecules with hydrogens whose atom order matches the
    position arrays; they may be different objects of the same graph (stereo labels may differ).
    """
    from rdkit import Chem
    from rdkit.Chem import rdMolAlign

    probes = [Chem.RemoveHs(mol_with_positions(mol, p)) for p in generated]
    refs = [Chem.RemoveHs(mol_with_positions(ref_mol, r)) for r in references]
    out = np.empty((len(probes), len(refs)))
    for i, probe in enumerate(probes):
        for j, ref in enumerate(refs):
            out[i, j] = rdMolAlign.GetBestRMS(probe, ref, maxMatches=max_matches)
    return out


def pairwise_rmsd(positions: np.ndarray) -> np.ndarray:
    r"""The RMSD of every pair i < j of ``positions`` (C conformers, (C, N, 3), Angstrom) after
    the best proper superposition of i onto j with the identity atom map:
    :math:`\min_{R, t} (\frac{1}{N} \sum_n |R x^i_n + t - x^j_n|^2)^{1/2}` (Kabsch,
    :func:`~quotient_diffusion.groups.geometry.kabsch_rotation`), in the order of
    ``numpy.triu_indices(C, 1)``; float64."""
    import torch

    from ..groups.geometry import kabsch_rotation

    x = torch.as_tensor(np.asarray(positions), dtype=torch.float64)
    count, atoms = x.shape[:2]
    x = x - x.mean(dim=1, keepdim=True)
    i, j = (torch.as_tensor(k) for k in np.triu_indices(count, 1))
    a, b = x[i], x[j]
    pairs = torch.arange(len(i)).repeat_interleave(atoms)
    rotation = kabsch_rotation(a.reshape(-1, 3), b.reshape(-1, 3), pairs)
    moved = a @ rotation.transpose(-1, -2)
    return ((moved - b) ** 2).sum(-1).mean(-1).sqrt().numpy()


@dataclass
class EnsembleScores:
    cov_recall: float
    amr_recall: float
    cov_precision: float
    amr_precision: float


def ensemble_scores(rmsd: np.ndarray, threshold: float = 0.5) -> EnsembleScores:
    """Coverage and AMR (recall and precision) of one molecule from its RMSD matrix
    (generated x reference)."""
    if rmsd.size == 0:
        raise ValueError("empty RMSD matrix")
    best_per_ref = rmsd.min(axis=0)
    best_per_gen = rmsd.min(axis=1)
    return EnsembleScores(
        cov_recall=float((best_per_ref < threshold).mean()),
        amr_recall=float(best_per_ref.mean()),
        cov_precision=float((best_per_gen < threshold).mean()),
        amr_precision=float(best_per_gen.mean()),
    )
