r"""Quality metrics for C-alpha backbones that need neither ESMFold nor ProteinMPNN.

For a trace x_1..x_L (Angstrom):

* virtual bonds d_i = |x_{i+1} - x_i|; natural trans peptides give 3.80 A (cis: 2.9 A).
  Reported: mean, standard deviation and the fraction with |d_i - 3.80| < 0.1;
* clashes: pairs |i - j| >= 2 with |x_i - x_j| < ``CLASH_DISTANCE`` = 3.0 A (natural chains:
  none; the closest non-bonded C-alpha pairs are ~3.8-4.5 A). Reported per residue and as the
  fraction of chains with at least one;
* radius of gyration R_g = sqrt(mean_i |x_i - mean(x)|^2), compared with the power law
  R_g = r0 L^nu fitted (least squares in log-log) on natural chains: ratio R_g / (r0 L^nu);
* secondary structure by P-SEA (biotite's ``annotate_sse``, C-alpha only): fractions of
  helix 'a', strand 'b' and coil 'c';
* virtual bond angles theta_i = angle(x_{i-1}, x_i, x_{i+1}) and dihedrals
  phi_i = dihedral(x_{i-1}, x_i, x_{i+1}, x_{i+2}); compared with natural chains by the
  1-Wasserstein distance (on the line for theta, on the circle for phi; degrees);
* TM-scores (tmtools' TM-align, sequence-independent): diversity = mean pairwise TM-score of
  the samples (each pair scored as the mean of the two normalisations; lower = more diverse);
  novelty = for each sample, its highest TM-score (normalised by the sample) against a
  reference set; reported as the mean and the fraction below 0.5 (0.5 = same fold).

Everything but P-SEA and TM-align is vectorised over residues with numpy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "IDEAL_CA_CA",
    "CLASH_DISTANCE",
    "ca_ca_distances",
    "bond_statistics",
    "clash_statistics",
    "radius_of_gyration",
    "fit_rg_power_law",
    "secondary_structure",
    "bond_angles",
    "dihedrals",
    "wasserstein_line",
    "wasserstein_circle",
    "tm_score",
    "pairwise_tm",
    "novelty",
    "backbone_report",
]

IDEAL_CA_CA = 3.80
CLASH_DISTANCE = 3.0

Traces = Sequence[np.ndarray]


def ca_ca_distances(ca: np.ndarray) -> np.ndarray:
    """Consecutive C-alpha distances d_i = |x_{i+1} - x_i|, shape (L - 1,)."""
    return np.linalg.norm(np.diff(ca, axis=0), axis=-1)


def bond_statistics(traces: Traces, tolerance: float = 0.1) -> dict:
    """Mean and standard deviation of all CA-CA distances, and the fraction within
    ``tolerance`` of 3.80 A."""
    d = np.concatenate([ca_ca_distances(x) for x in traces])
    return {
        "ca_ca_mean": float(d.mean()),
        "ca_ca_std": float(d.std()),
        "ca_ca_ideal_fraction": float((np.abs(d - IDEAL_CA_CA) < tolerance).mean()),
    }


def _clash_count(ca: np.ndarray, distance: float, min_separation: int) -> int:
    i, j = np.triu_indices(ca.shape[0], k=min_separation)
    return int((np.linalg.norm(ca[i] - ca[j], axis=-1) < distance).sum())


def clash_statistics(
    traces: Traces, distance: float = CLASH_DISTANCE, min_separation: int = 2
) -> dict:
    """Clashing pairs (|i - j| >= min_separation, closer than ``distance``) per residue, and
    the fraction of chains with any clash."""
    counts = np.array([_clash_count(x, distance, min_separation) for x in traces])
    lengths = np.array([len(x) for x in traces])
    return {
        "clashes_per_residue": float(counts.sum() / lengths.sum()),
        "clash_chain_fraction": float((counts > 0).mean()),
    }


def radius_of_gyration(ca: np.ndarray) -> float:
    """R_g = sqrt(mean_i |x_i - mean(x)|^2)."""
    return float(np.sqrt(((ca - ca.mean(0)) ** 2).sum(-1).mean()))


def fit_rg_power_law(traces: Traces) -> tuple[float, float]:
    """(r0, nu) of R_g = r0 L^nu, least squares on log R_g = log r0 + nu log L."""
    lengths = np.array([len(x) for x in traces], dtype=float)
    rg = np.array([radius_of_gyration(x) for x in traces])
    nu, log_r0 = np.polyfit(np.log(lengths), np.log(rg), 1)
    return float(np.exp(log_r0)), float(nu)


def secondary_structure(traces: Traces) -> dict:
    """Fractions of residues that P-SEA assigns to helix, strand and coil."""
    import biotite.structure as struc

    from ..data.pdb import ca_atom_array

    sse = np.concatenate([struc.annotate_sse(ca_atom_array(x)) for x in traces])
    return {
        "helix_fraction": float((sse == "a").mean()),
        "strand_fraction": float((sse == "b").mean()),
        "coil_fraction": float((sse == "c").mean()),
    }


def bond_angles(ca: np.ndarray) -> np.ndarray:
    """theta_i = angle(x_{i-1}, x_i, x_{i+1}) in degrees, shape (L - 2,)."""
    b = np.diff(ca, axis=0)
    u, w = -b[:-1], b[1:]
    cos = (u * w).sum(-1) / (np.linalg.norm(u, axis=-1) * np.linalg.norm(w, axis=-1))
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def dihedrals(ca: np.ndarray) -> np.ndarray:
    """phi_i = dihedral(x_{i-1}, x_i, x_{i+1}, x_{i+2}) in degrees in (-180, 180], (L - 3,).

    With bonds b1, b2, b3 and normals n1 = b1 x b2, n2 = b2 x b3:
    phi = atan2(|b2| b1 . n2, n1 . n2).
    """
    b = np.diff(ca, axis=0)
    b1, b2, b3 = b[:-2], b[1:-1], b[2:]
    n1, n2 = np.cross(b1, b2), np.cross(b2, b3)
    y = np.linalg.norm(b2, axis=-1) * (b1 * n2).sum(-1)
    return np.degrees(np.arctan2(y, (n1 * n2).sum(-1)))


def wasserstein_line(a: np.ndarray, b: np.ndarray) -> float:
    """1-Wasserstein distance of two samples on the real line."""
    from scipy.stats import wasserstein_distance

    return float(wasserstein_distance(a, b))


def wasserstein_circle(a: np.ndarray, b: np.ndarray, bins: int = 360) -> float:
    """1-Wasserstein distance of two samples of angles (degrees) on the circle.

    On a circle of circumference C, W1 = min_c integral |F_a - F_b - c| = integral
    |D - median(D)| with D = F_a - F_b the difference of the distribution functions (Rabin,
    Delon and Gousseau 2011); evaluated on ``bins`` equal bins.
    """
    edges = np.linspace(-180.0, 180.0, bins + 1)
    fa = np.cumsum(np.histogram(np.asarray(a), edges)[0]) / len(a)
    fb = np.cumsum(np.histogram(np.asarray(b), edges)[0]) / len(b)
    diff = fa - fb
    return float(np.abs(diff - np.median(diff)).sum() * (360.0 / bins))


def tm_score(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """TM-align scores of traces a and b, normalised by the length of a and of b."""
    import tmtools

    res = tmtools.tm_align(
        np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64),
        "G" * len(a), "G" * len(b),
    )
    return float(res.tm_norm_chain1), float(res.tm_norm_chain2)


def pairwise_tm(traces: Traces) -> float:
    """Mean TM-score over all pairs (each the mean of its two normalisations)."""
    scores = [
        np.mean(tm_score(traces[i], traces[j]))
        for i in range(len(traces))
        for j in range(i + 1, len(traces))
    ]
    return float(np.mean(scores)) if scores else float("nan")


def novelty(traces: Traces, reference: Traces) -> dict:
    """Highest TM-score (normalised by the sample) of each sample against the reference set."""
    best = np.array([max(tm_score(x, r)[0] for r in reference) for x in traces])
    return {"novelty_max_tm": float(best.mean()), "novel_fraction": float((best < 0.5).mean())}


def backbone_report(
    traces: Traces,
    natural: Traces,
    rg_law: tuple[float, float] | None = None,
    novelty_reference: Traces | None = None,
    diversity: bool = True,
) -> dict:
    """All metrics of ``traces`` against the natural chains ``natural`` (angle distributions;
    the R_g law is fitted on them unless given); novelty only when a reference is given."""
    traces = [np.asarray(x, dtype=np.float64) for x in traces]
    natural = [np.asarray(x, dtype=np.float64) for x in natural]
    r0, nu = rg_law if rg_law is not None else fit_rg_power_law(natural)
    lengths = np.array([len(x) for x in traces], dtype=float)
    rg = np.array([radius_of_gyration(x) for x in traces])
    report = {
        "num_chains": len(traces),
        **bond_statistics(traces),
        **clash_statistics(traces),
        "rg_ratio_mean": float((rg / (r0 * lengths**nu)).mean()),
        "rg_ratio_std": float((rg / (r0 * lengths**nu)).std()),
        **secondary_structure(traces),
        "bond_angle_w1": wasserstein_line(
            np.concatenate([bond_angles(x) for x in traces]),
            np.concatenate([bond_angles(x) for x in natural]),
        ),
        "dihedral_w1": wasserstein_circle(
            np.concatenate([dihedrals(x) for x in traces]),
            np.concatenate([dihedrals(x) for x in natural]),
        ),
    }
    if diversity:
        report["pairwise_tm"] = pairwise_tm(traces)
    if novelty_reference is not None:
        report.update(novelty([x for x in traces], novelty_reference))
    return report
