r"""Conformer-ensemble metrics: coverage and AMR, recall and precision (GeoMol's definitions).

For a molecule with reference conformers :math:`R` and generated conformers :math:`G`, and the
heavy-atom RMSD :math:`d(g, r)` after the best symmetry-aware alignment (RDKit ``GetBestRMS``,
which tries every graph automorphism; hydrogens removed):

* recall:    COV-R = |{r : min_g d(g, r) < delta}| / |R|,   AMR-R = mean_r min_g d(g, r)
* precision: COV-P = |{g : min_r d(g, r) < delta}| / |G|,   AMR-P = mean_g min_r d(g, r)

with delta = 0.5 A for QM9. With a single reference conformer (the QM9 DFT geometry),
COV-R is 0 or 1 per molecule and precision measures how many samples land near that one minimum.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..chem.molecules import mol_with_positions

__all__ = ["heavy_atom_rmsd_matrix", "EnsembleScores", "ensemble_scores"]


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
