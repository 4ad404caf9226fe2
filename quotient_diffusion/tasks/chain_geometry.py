r"""Local-geometry supervision of chain models: distance losses on the denoiser output.

For a flat batch of chains (nodes in sequence order, one molecule per chain), D the denoiser's
clean-coordinate estimate and x1 the data (model units), the per-chain loss is

    gate(t) * sum_k lambda_k * mean_{(i, j) in S_k} (|D_i - D_j| - |x1_i - x1_j|)^2

over three sets of residue pairs of the chain:

* ``ca_ca``: consecutive residues (i, i + 1), the C-alpha "bond" (3.80 A in trans peptides);
* ``ca_i2``: (i, i + 2), which fixes the C-alpha bond angle (about 91 degrees in a helix, 120 in
  a strand) given the bonds;
* ``pairs``: every other pair (|i - j| >= 3) whose *true* distance is below ``pair_cutoff``
  (Angstrom, default 8): the contacts of a distogram-style loss (helical i, i + 3 / i + 4 at
  5-6.2 A, C-alphas of paired strands at 4.5-5.5 A). It enumerates all pairs of each chain
  (vectorised): about 40 ms per step for 16 chains of 160 residues on one CPU thread.

The gate is 1 for t >= ``t_min`` (default 0.75) and 0 below (t = 0 is the prior, t = 1 the
data in this project): the loss acts only at the low-noise end, where the posterior of x1 given
x_t is concentrated and its local geometry is well defined. With the linear interpolant in
10 A units the noise of x_t / t per coordinate is 10 (1 - t) / t A: 3.3 A at t = 0.75, about
the 3.8 A bond. FrameDiff applies its backbone and pairwise-distance losses in the same
low-noise quarter (t < 0.25 in its convention, where t = 0 is the data); the issue quotes
t > 0.3 for Proteina. The diffusion model multiplies the result by the coordinate
loss's weight w(t) (:class:`~quotient_diffusion.diffusion.DiffusionModel`), so that for
independent per-coordinate errors of variance s^2 a consecutive-distance error has variance
about 2 s^2 and ``lambda = 1`` puts the term on the scale of the coordinate loss at every t.

Distances are sqrt(|d|^2 + eps) (eps = 1e-12 model units^2), finite with a finite gradient when
two points of D coincide. The loss depends on D only through its distances, so it is invariant
under every rigid motion (and reflection) of D; its gradient is horizontal at D
(docs/theory.md, "Auxiliary losses").
"""

from __future__ import annotations

import torch

from ..data.batch import GraphBatch
from ..scatter import scatter_sum, segment_counts

__all__ = ["ChainGeometryLoss", "AUX_DEFAULTS", "AUX_OPTIONS", "AUX_TERMS", "sequence_pairs",
           "contact_pairs"]

#: term name -> default weight lambda_k
AUX_TERMS = {"ca_ca": 1.0, "ca_i2": 0.0, "pairs": 0.0}
#: every key of ``task.options.aux_loss`` and its default
AUX_DEFAULTS = {**AUX_TERMS, "pair_cutoff": 8.0, "t_min": 0.75}
#: key -> type (for the config check)
AUX_OPTIONS = dict.fromkeys(AUX_DEFAULTS, float)
EPS = 1e-12
MIN_CONTACT_OFFSET = 3


def sequence_pairs(batch: torch.Tensor, offset: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(i, i + offset) for every node i whose chain (``batch``, sorted) reaches i + offset."""
    i = torch.arange(max(batch.shape[0] - offset, 0), device=batch.device)
    i = i[batch[i] == batch[i + offset]]
    return i, i + offset


def contact_pairs(
    x: torch.Tensor, batch: torch.Tensor, cutoff: float, min_offset: int = MIN_CONTACT_OFFSET
) -> tuple[torch.Tensor, torch.Tensor]:
    """(i, j), i < j in one chain with j - i >= ``min_offset`` and |x_i - x_j| < ``cutoff``.

    Built per chain from its index range, vectorised over the batch (no loop over chains)."""
    counts = torch.bincount(batch)
    offsets = torch.cumsum(counts, 0) - counts
    pairs = counts * counts
    start = torch.cumsum(pairs, 0) - pairs
    mol = torch.repeat_interleave(torch.arange(counts.numel(), device=batch.device), pairs)
    local = torch.arange(int(pairs.sum()), device=batch.device) - start[mol]
    size = counts[mol]
    i = offsets[mol] + torch.div(local, size, rounding_mode="floor")
    j = offsets[mol] + local % size
    keep = j - i >= min_offset
    i, j = i[keep], j[keep]
    with torch.no_grad():
        close = ((x[i] - x[j]) ** 2).sum(-1) < cutoff**2
    return i[close], j[close]


def _distance(x: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
    return (((x[i] - x[j]) ** 2).sum(-1) + EPS).sqrt()


class ChainGeometryLoss:
    """The distance losses of the module docstring, as a
    :class:`~quotient_diffusion.diffusion.AuxiliaryLoss` (a plain object: no parameters, not
    in the state dict). ``coord_scale``: Angstrom per model unit."""

    def __init__(
        self,
        coord_scale: float = 1.0,
        ca_ca: float = AUX_DEFAULTS["ca_ca"],
        ca_i2: float = AUX_DEFAULTS["ca_i2"],
        pairs: float = AUX_DEFAULTS["pairs"],
        pair_cutoff: float = AUX_DEFAULTS["pair_cutoff"],
        t_min: float = AUX_DEFAULTS["t_min"],
    ):
        weights = {"ca_ca": ca_ca, "ca_i2": ca_i2, "pairs": pairs}
        if any(w < 0 for w in weights.values()):
            raise ValueError(f"aux loss weights must not be negative, got {weights}")
        if not 0.0 <= t_min <= 1.0:
            raise ValueError(f"t_min must lie in [0, 1], got {t_min}")
        if pair_cutoff <= 0:
            raise ValueError(f"pair_cutoff must be positive, got {pair_cutoff}")
        self.coord_scale = coord_scale
        self.weights = {name: float(w) for name, w in weights.items() if w > 0}
        self.pair_cutoff = pair_cutoff
        self.t_min = t_min

    def time_weight(self, t: torch.Tensor) -> torch.Tensor:
        """gate(t): 1 at the low-noise end (t >= t_min), 0 at high noise."""
        return (t >= self.t_min).to(t.dtype)

    def pairs_of(self, name: str, x1: torch.Tensor, batch: torch.Tensor):
        """The residue pairs (i, j) of term ``name``."""
        if name == "ca_ca":
            return sequence_pairs(batch, 1)
        if name == "ca_i2":
            return sequence_pairs(batch, 2)
        return contact_pairs(x1, batch, self.pair_cutoff / self.coord_scale)

    def terms(self, denoised: torch.Tensor, x1: torch.Tensor, batch: torch.Tensor,
              num_graphs: int) -> dict[str, torch.Tensor]:
        """Per-chain mean squared distance error (model units^2) of every weighted term."""
        out = {}
        for name in self.weights:
            i, j = self.pairs_of(name, x1, batch)
            err = (_distance(denoised, i, j) - _distance(x1, i, j)) ** 2
            mol = batch[i]
            count = segment_counts(mol, num_graphs, err.dtype).clamp_min(1)
            out[name] = scatter_sum(err, mol, num_graphs, True) / count
        return out

    def __call__(
        self, denoised: torch.Tensor, x1: torch.Tensor, t: torch.Tensor, graph: GraphBatch
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """(gate(t) * sum_k lambda_k * term_k per chain; logs ``aux_<term>_mse``: the mean of
        each term over the gated chains of the batch, in Angstrom^2, when there are any)."""
        gate = self.time_weight(t)
        terms = self.terms(denoised, x1, graph.batch, graph.num_graphs)
        total = torch.zeros_like(gate)
        logs = {}
        gated = float(gate.sum())
        for name, value in terms.items():
            total = total + self.weights[name] * value
            if gated > 0:
                mse = float((value.detach() * gate).sum()) / gated
                logs[f"aux_{name}_mse"] = mse * self.coord_scale**2
        return total * gate, logs

    def __repr__(self) -> str:
        return (f"ChainGeometryLoss(weights={self.weights}, pair_cutoff={self.pair_cutoff}, "
                f"t_min={self.t_min})")
