r"""An SE(3)-equivariant tensor-product network built from e3nn (NequIP-style convolutions).

Node features are direct sums of irreducible representations: ``hidden`` scalars (0e) and
``hidden/4`` vectors of each parity (1o, 1e). The input is ``hidden`` scalars embedded from
[node_attr, t]. Each layer, on the message graph (source j -> target i), with
r_ij = x_i - x_j, d_ij = sqrt(|r_ij|^2 + eps), u_ij = r_ij / d_ij:

    Y_ij   = (Y^0, Y^1, Y^2)(u_ij)                          spherical harmonics up to l = 2
    w_ij   = MLP([B(d_ij), e_ij])                            invariant path weights
    m_ij   = TP_w(W_1 h_j, Y_ij)                             depthwise ('uvu') tensor product
    h_i   <- Gate(W_2 (1/Z) sum_j m_ij + W_3 h_i) (+ h_i)    gated nonlinearity, residual

W_1 narrows h_j to the edge channels (hidden/2 scalars, hidden/4 vectors of each parity) before
the per-edge product, which keeps the (E, channels) tensors small. B is a Gaussian radial basis
on [0, max_radius]; Gate applies SiLU to the scalars and multiplies every vector channel by the
sigmoid of its own scalar gate. Each piece commutes with rotations,
so the network is equivariant by construction (E(3), parity included: 1e channels carry cross
products, which makes the coordinate output sensitive to chirality). Output: o3.Linear to
1x1o + Kx0e; the 1o part is the displacement vec, the scalars are feat. u_ij (not r_ij / d_ij)
keeps coincident atoms finite; the harmonics are homogeneous polynomials, equivariant for any
vector.
"""

from __future__ import annotations

import torch
from e3nn import o3
from e3nn.math import soft_one_hot_linspace
from e3nn.nn import Gate
from torch import nn
from torch.nn import functional as fn

from ..scatter import scatter_sum
from .common import FlatGraphNetwork, node_inputs

__all__ = ["TensorProductNetwork", "Convolution"]


def _depthwise_tp(
    irreps_in: o3.Irreps, irreps_sh: o3.Irreps, wanted: o3.Irreps
) -> o3.TensorProduct:
    """'uvu' tensor product irreps_in x irreps_sh -> every output irrep type in ``wanted``,
    one output channel per input channel and path, weights supplied per edge."""
    allowed = {ir for _, ir in wanted}
    outputs, instructions = [], []
    for i1, (mul, ir1) in enumerate(irreps_in):
        for i2, (_, ir2) in enumerate(irreps_sh):
            for ir in ir1 * ir2:
                if ir in allowed:
                    instructions.append((i1, i2, len(outputs), "uvu", True))
                    outputs.append((mul, ir))
    irreps_out, perm, _ = o3.Irreps(outputs).sort()
    instructions = [(a, b, perm[k], mode, w) for a, b, k, mode, w in instructions]
    return o3.TensorProduct(
        irreps_in,
        irreps_sh,
        irreps_out,
        instructions,
        internal_weights=False,
        shared_weights=False,
    )


class Convolution(nn.Module):
    """One gated tensor-product convolution; see the module docstring."""

    def __init__(
        self,
        irreps_in: o3.Irreps,
        irreps_sh: o3.Irreps,
        hidden: int,
        radial_in: int,
        norm: float,
    ):
        super().__init__()
        vectors = max(1, hidden // 4)
        gated = o3.Irreps(f"{vectors}x1o + {vectors}x1e")
        self.gate = Gate(
            f"{hidden}x0e", [fn.silu], f"{gated.num_irreps}x0e", [torch.sigmoid], gated
        )
        self.irreps_in = irreps_in
        self.irreps_out = self.gate.irreps_out
        self.norm = norm
        narrow = o3.Irreps(f"{max(1, hidden // 2)}x0e + {vectors}x1o + {vectors}x1e")
        edge_irreps = o3.Irreps([(mul, ir) for mul, ir in narrow if ir in irreps_in])
        self.pre = o3.Linear(irreps_in, edge_irreps)
        self.tp = _depthwise_tp(edge_irreps, irreps_sh, self.gate.irreps_in)
        self.radial = nn.Sequential(
            nn.Linear(radial_in, hidden), nn.SiLU(), nn.Linear(hidden, self.tp.weight_numel)
        )
        self.post = o3.Linear(self.tp.irreps_out, self.gate.irreps_in)
        self.self_interaction = o3.Linear(irreps_in, self.gate.irreps_in)
        self.residual = irreps_in == self.irreps_out

    def forward(
        self,
        h: torch.Tensor,
        edge_index: torch.Tensor,
        sh: torch.Tensor,
        radial: torch.Tensor,
    ) -> torch.Tensor:
        source, target = edge_index
        msg = self.tp(self.pre(h)[source], sh, self.radial(radial))
        agg = scatter_sum(msg, target, h.shape[0], sorted_index=True) / self.norm
        out = self.gate(self.post(agg) + self.self_interaction(h))
        return h + out if self.residual else out


class TensorProductNetwork(FlatGraphNetwork):
    """e3nn network on flat batches; see the module docstring for the equations.

    Options: ``graph`` ('full', 'knn', 'radius'), ``k``, ``cutoff`` (own graph),
    ``max_radius`` (range of the radial basis, default 5), ``num_basis`` (default 8),
    ``lmax`` (of the edge harmonics, default 2), ``norm`` (aggregation normaliser Z, default 4).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int = 0,
        hidden: int = 64,
        layers: int = 4,
        edge_features: int = 0,
        graph: str = "full",
        k: int = 16,
        cutoff: float = 5.0,
        max_radius: float = 5.0,
        num_basis: int = 8,
        lmax: int = 2,
        norm: float = 4.0,
    ):
        super().__init__(in_features, out_features, edge_features, graph, k, cutoff)
        self.max_radius, self.num_basis = max_radius, num_basis
        self.embed = nn.Linear(in_features + 1, hidden)
        self.embed.fixed_trailing_inputs = 1  # the time (warm start: atom features grow)
        irreps_sh = o3.Irreps.spherical_harmonics(lmax)
        self.sh = o3.SphericalHarmonics(irreps_sh, normalize=False, normalization="component")
        irreps = o3.Irreps(f"{hidden}x0e")
        convs = []
        for _ in range(layers):
            conv = Convolution(irreps, irreps_sh, hidden, num_basis + edge_features, norm)
            convs.append(conv)
            irreps = conv.irreps_out
        self.convolutions = nn.ModuleList(convs)
        self.readout = o3.Linear(irreps, o3.Irreps(f"1x1o + {out_features}x0e"))

    def _apply(self, fn, recurse=True):
        """Cast as usual, then recompute the Clebsch-Gordan (Wigner 3j) buffers in the new dtype.

        e3nn computes them in the default dtype at construction; cast from float32 to float64
        they keep float32 rounding (~1e-8), which breaks equivariance at the 1e-10 level.
        """
        super()._apply(fn, recurse)
        with torch.no_grad():
            for module in self.modules():
                for name, buf in module.named_buffers(recurse=False):
                    if name.startswith("_w3j_") and buf.is_floating_point():
                        l1, l2, l3 = (int(v) for v in name[len("_w3j_") :].split("_"))
                        buf.copy_(o3.wigner_3j(l1, l2, l3, dtype=buf.dtype, device=buf.device))
        return self

    def forward(
        self,
        pos: torch.Tensor,
        node_attr: torch.Tensor,
        batch: torch.Tensor,
        t: torch.Tensor,
        edge_index: torch.Tensor | None = None,
        edge_attr: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(vec (n, 3), feat (n, out_features) or None); see the module docstring."""
        edge_index, edge_attr = self.edges(pos, batch, edge_index, edge_attr)
        r = pos[edge_index[1]] - pos[edge_index[0]]
        d2 = (r * r).sum(-1, keepdim=True)
        d = (d2 + 1e-8).sqrt()
        sh = self.sh(r / d)
        basis = soft_one_hot_linspace(
            d.squeeze(-1), 0.0, self.max_radius, self.num_basis, "gaussian", False
        )
        radial = torch.cat([basis, edge_attr], -1)
        h = self.embed(node_inputs(node_attr, batch, t))
        for conv in self.convolutions:
            h = conv(h, edge_index, sh, radial)
        out = self.readout(h)
        feat = out[:, 3:] if self.out_features else None
        return out[:, :3], feat
