r"""An E(n)-equivariant graph network in the style of EDM's dynamics (Hoogeboom et al., 2022).

Node features h (invariant) and coordinates x (equivariant). Time is appended to the input
features and, with ``time_features`` K > 0, a Fourier embedding e_l(t) is added to h before
every layer l (:class:`~.common.LayerTimeEmbedding`). Each of ``layers`` layers, on the message
graph (source j -> target i):

    d_ij^2 = |x_i - x_j|^2
    m_ij   = phi_e([h_i, h_j, d_ij^2, RBF(d_ij), (d_ij^0)^2, e_ij])  (two-layer SiLU MLP)
    x_i   <- x_i + (r / Z) sum_j (x_i - x_j) / (d_ij + 1) * tanh(phi_x(m_ij))
    h_i   <- h_i + phi_h([h_i, (1/Z) sum_j m_ij])

with d^0 the distances of the input, RBF a Gaussian radial basis of ``num_rbf`` functions on
[0, ``max_radius``] (none when 0), e_ij the task's edge features, Z = ``norm`` (a constant
normaliser, EDM's sum aggregation) and r = ``coords_range`` (EDM's tanh variant). The output is
the displacement vec = x_L - x_0 (equivariant, translation invariant) and feat = W h_L
(invariant).

Stereo (``stereo=True``, :mod:`.stereo`): four more edge scalars close the vector of phi_e,

    [..., RBF(d_ij), z_ij^cis, z_ij^trans, chi_i(x), chi_j(x)],

the cis/trans columns of the pair and the chirality pseudoscalar of the target and of the source
atom, computed in every layer from that layer's coordinates x. The network is then
SO(3)-equivariant, and O(3)-equivariant only for molecules without stereo centres. The new
scalars come last so that a model trained without them extends to one with them by zero
columns in phi_e's first layer (``qdiff train --init-from``), computing the same function.
With ``chirality_push`` every layer also moves the atoms of each tetrahedral centre along the
gradient directions of its chirality (:class:`~.stereo.ChiralityPush`, after the radial update),
a branch that starts at zero and so also extends a trained model exactly.

Speed: the first layer of phi_e is linear, W [h_i, h_j, s_ij] = W_t h_i + W_s h_j + W_e s_ij, so
W_t h and W_s h are computed once per atom and gathered per edge: the only per-edge matmul of
width hidden x hidden per layer is phi_e's second layer and phi_x's hidden layer.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as fn

from ..scatter import scatter_sum
from .common import FlatGraphNetwork, LayerTimeEmbedding, gaussian_rbf, node_inputs
from .stereo import STEREO_EDGE_SCALARS, ChiralityPush, StereoInputs, chirality

__all__ = ["EGNN", "EGNNLayer"]


class EGNNLayer(nn.Module):
    """One EGNN layer: invariant messages, an equivariant coordinate update, a node update."""

    def __init__(self, hidden: int, edge_scalars: int, norm: float, coords_range: float,
                 chirality_push: bool = False):
        super().__init__()
        self.norm = norm
        self.coords_range = coords_range
        self.message_target = nn.Linear(hidden, hidden)
        self.message_source = nn.Linear(hidden, hidden, bias=False)
        self.message_edge = nn.Linear(edge_scalars, hidden, bias=False)
        self.message_out = nn.Linear(hidden, hidden)
        self.coord_hidden = nn.Linear(hidden, hidden)
        self.coord_out = nn.Linear(hidden, 1, bias=False)
        nn.init.xavier_uniform_(self.coord_out.weight, gain=1e-3)
        self.node_mlp = nn.Sequential(
            nn.Linear(2 * hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden)
        )
        self.push = ChiralityPush(hidden) if chirality_push else None

    def forward(
        self,
        h: torch.Tensor,
        x: torch.Tensor,
        edge_index: torch.Tensor,
        edge_scalars: torch.Tensor,
        rbf: tuple[torch.Tensor, float] | None = None,
        stereo: StereoInputs | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One layer; ``rbf`` = (centres, width) adds the radial basis of its distances,
        ``stereo`` the cis/trans columns and the chiralities of this layer's coordinates."""
        source, target = edge_index
        n = h.shape[0]
        diff = x.index_select(0, target) - x.index_select(0, source)
        d2 = (diff * diff).sum(-1, keepdim=True)
        d = (d2 + 1e-8).sqrt()
        s = [d2, edge_scalars]
        if rbf is not None:
            s.append(gaussian_rbf(d, *rbf))
        if stereo is not None:
            chi = chirality(x, stereo.centres, stereo.signs)
            s += [stereo.pairs.to(x.dtype), chi.index_select(0, target).unsqueeze(-1),
                  chi.index_select(0, source).unsqueeze(-1)]
        s = torch.cat(s, -1)
        m = self.message_target(h).index_select(0, target)
        m = m + self.message_source(h).index_select(0, source)
        m = torch.addmm(m, s, self.message_edge.weight.t())  # m + message_edge(s), one op
        m = fn.silu(self.message_out(fn.silu(m)))
        gate = torch.tanh(self.coord_out(fn.silu(self.coord_hidden(m))))
        step = diff / (d + 1.0) * gate
        scale = self.coords_range / self.norm
        x = x + scale * scatter_sum(step, target, n, sorted_index=True)
        if self.push is not None and stereo is not None:
            x = x + self.push(h, x, stereo)
        agg = scatter_sum(m, target, n, sorted_index=True) / self.norm
        h = h + self.node_mlp(torch.cat([h, agg], -1))
        return h, x


class EGNN(FlatGraphNetwork):
    """EDM-style EGNN on flat batches; see the module docstring for the equations.

    Options: ``graph`` ('full', 'knn', 'radius'), ``k``, ``cutoff`` (own graph when no edges are
    given), ``norm`` (aggregation normaliser Z, default 1 as in EDM's QM9 model),
    ``coords_range`` (default 15), ``time_features`` (Fourier frequencies of the per-layer time
    embedding, 0 = time only as an input feature), ``num_rbf`` and ``max_radius`` (radial basis
    of the layer distances, 0 = squared distance only). ``stereo`` (set by
    :func:`~quotient_diffusion.nn.get_network`, not an option) adds the stereo edge scalars;
    ``forward`` then needs ``stereo`` inputs and the task's edges. ``chirality_push`` (needs
    ``stereo``) adds the chirality branch to every layer.
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
        norm: float = 1.0,
        coords_range: float = 15.0,
        time_features: int = 8,
        num_rbf: int = 16,
        max_radius: float = 6.0,
        stereo: bool = False,
        chirality_push: bool = False,
    ):
        super().__init__(in_features, out_features, edge_features, graph, k, cutoff)
        if chirality_push and not stereo:
            raise ValueError("chirality_push needs a stereo network (task option stereo: true)")
        self.stereo = stereo
        self.embed = nn.Linear(in_features + 1, hidden)
        self.embed.fixed_trailing_inputs = 1  # the time (warm start: atom features grow)
        self.time = LayerTimeEmbedding(time_features, hidden, layers) if time_features else None
        # d^2 of the layer, d^2 of the input, e_ij, RBF(d) of the layer, then the stereo scalars
        edge_scalars = 2 + edge_features + num_rbf + (STEREO_EDGE_SCALARS if stereo else 0)
        rbf_centres = torch.linspace(0.0, max_radius, num_rbf)
        self.register_buffer("rbf_centres", rbf_centres, persistent=False)
        self.rbf_width = max_radius / max(num_rbf, 1)
        self.layers = nn.ModuleList(
            EGNNLayer(hidden, edge_scalars, norm, coords_range, chirality_push)
            for _ in range(layers)
        )
        self.readout = nn.Linear(hidden, out_features) if out_features else None

    def forward(
        self,
        pos: torch.Tensor,
        node_attr: torch.Tensor,
        batch: torch.Tensor,
        t: torch.Tensor,
        edge_index: torch.Tensor | None = None,
        edge_attr: torch.Tensor | None = None,
        stereo: StereoInputs | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(vec (n, 3), feat (n, out_features) or None); see the module docstring. ``stereo``
        is required by a network built with ``stereo=True`` and refused by any other."""
        if self.stereo and stereo is None:
            raise ValueError("this EGNN was built with stereo=True: pass its stereo inputs")
        if stereo is not None and not self.stereo:
            raise ValueError("this EGNN was built without stereo: it takes no stereo inputs")
        if stereo is not None and edge_index is None:
            raise ValueError("stereo inputs need the task's edges (their cis/trans columns "
                             "follow edge_index)")
        edge_index, edge_attr = self.edges(pos, batch, edge_index, edge_attr)
        if stereo is not None and stereo.pairs.shape != (edge_index.shape[1], 2):
            raise ValueError(f"stereo pairs have shape {tuple(stereo.pairs.shape)}; expected "
                             f"({edge_index.shape[1]}, 2)")
        diff0 = pos.index_select(0, edge_index[1]) - pos.index_select(0, edge_index[0])
        edge_scalars = torch.cat([(diff0 * diff0).sum(-1, keepdim=True), edge_attr], -1)
        h = self.embed(node_inputs(node_attr, batch, t))
        time = self.time(t, batch) if self.time is not None else None
        rbf = (self.rbf_centres, self.rbf_width) if self.rbf_centres.numel() else None
        x = pos
        for i, layer in enumerate(self.layers):
            if time is not None:
                h = h + time[:, i]
            h, x = layer(h, x, edge_index, edge_scalars, rbf, stereo)
        feat = self.readout(h) if self.readout is not None else None
        return x - pos, feat
