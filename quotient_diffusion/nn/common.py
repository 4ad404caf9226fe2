r"""Pieces every network shares: the input checks, time as a node feature and as a per-layer
Fourier embedding, the Gaussian radial basis, the message graph."""

from __future__ import annotations

import math

import torch
from torch import nn

from .graph import build_graph

__all__ = ["node_inputs", "gaussian_rbf", "LayerTimeEmbedding", "resolve_edges", "FlatGraphNetwork"]


def node_inputs(node_attr: torch.Tensor, batch: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """[node_attr, t_{batch(n)}]: the invariant input of atom n, time appended (EDM's choice)."""
    if t.dim() != 1:
        raise ValueError(f"t must have shape (num_molecules,), got {tuple(t.shape)}")
    return torch.cat([node_attr, t.to(node_attr.dtype)[batch].unsqueeze(-1)], -1)


#: largest exponent z of the radial basis exp(-z): exp(-80) = 1.8e-35, still a normal float32
RBF_MAX_EXPONENT = 80.0


def gaussian_rbf(d: torch.Tensor, centres: torch.Tensor, width: float) -> torch.Tensor:
    r"""exp(-((d - mu_k) / w)^2) for the centres mu_k (K,) and width w; d (E, 1) -> (E, K).

    The exponent is capped at :data:`RBF_MAX_EXPONENT`, which changes a value by at most
    1.8e-35 (the bundled conformer model samples bit-identical coordinates): on the CPU,
    torch's float32 exp was 4x slower on the radial basis of a sampled QM9 batch, where about
    an eighth of the arguments lie below its underflow threshold (about -87: the far pairs of
    the full graph), than on the same arguments capped (2.5x for the whole basis)."""
    return torch.exp(-(((d - centres) / width) ** 2).clamp_max(RBF_MAX_EXPONENT))


class LayerTimeEmbedding(nn.Module):
    r"""Time as a learned vector for every layer, from Fourier features of t in [0, 1]:

    phi(t) = [t, sin(2 pi f_k t), cos(2 pi f_k t)]_{k=1..K},  f_k geometric from 1/2 to 2^(K/2),
    e(t) = MLP(phi(t)) (SiLU, width ``hidden``),  e_l(t) = W_l e(t)  for l = 1..L.

    ``forward(t, batch)`` returns e_l(t) gathered per atom, shape (n, L, hidden); each layer adds
    its slice to the node features. W_l starts at zero, so a fresh network ignores it.
    """

    def __init__(self, frequencies: int, hidden: int, layers: int):
        super().__init__()
        self.register_buffer(
            "frequencies", 2.0 ** torch.linspace(-1.0, frequencies / 2.0, frequencies)
        )
        self.mlp = nn.Sequential(
            nn.Linear(2 * frequencies + 1, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU()
        )
        self.per_layer = nn.Linear(hidden, layers * hidden)
        nn.init.zeros_(self.per_layer.weight)
        nn.init.zeros_(self.per_layer.bias)
        self.layers, self.hidden = layers, hidden

    def forward(self, t: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        angle = 2 * math.pi * t.unsqueeze(-1) * self.frequencies.to(t.dtype)
        phi = torch.cat([t.unsqueeze(-1), angle.sin(), angle.cos()], -1)
        e = self.per_layer(self.mlp(phi.to(self.per_layer.weight.dtype)))
        return e.view(-1, self.layers, self.hidden)[batch]


def resolve_edges(
    pos: torch.Tensor,
    batch: torch.Tensor,
    edge_index: torch.Tensor | None,
    edge_attr: torch.Tensor | None,
    edge_features: int,
    graph: str,
    k: int,
    cutoff: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The message graph and its (E, edge_features) features.

    Given edges are used exactly as they are; otherwise the network builds its own graph per
    molecule (``graph`` = 'full', 'knn' or 'radius'), whose edges carry no features, so a network
    with ``edge_features > 0`` then needs them passed in.
    """
    if edge_index is None:
        if edge_features:
            raise ValueError(
                f"the network expects {edge_features} edge features: pass edge_index and edge_attr"
            )
        edge_index = build_graph(pos, batch, graph, k, cutoff)
        return edge_index, pos.new_zeros(edge_index.shape[1], 0)
    if edge_attr is None:
        edge_attr = pos.new_zeros(edge_index.shape[1], 0)
    if edge_attr.shape != (edge_index.shape[1], edge_features):
        raise ValueError(
            f"edge_attr has shape {tuple(edge_attr.shape)}; expected "
            f"({edge_index.shape[1]}, {edge_features})"
        )
    return edge_index, edge_attr.to(pos.dtype)


class FlatGraphNetwork(nn.Module):
    """Base of the denoisers: input/output sizes and the message-graph options.

    ``graph`` ('full', 'knn', 'radius'), ``k`` and ``cutoff`` choose the graph a network builds
    for itself when the task passes no edges (:meth:`edges`). ``stereo`` tells whether the
    network takes stereo inputs (:mod:`.stereo`); only the EGNN can.
    """

    stereo: bool = False

    def __init__(
        self,
        in_features: int,
        out_features: int,
        edge_features: int,
        graph: str = "full",
        k: int = 16,
        cutoff: float = 5.0,
    ):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.edge_features = edge_features
        self.graph, self.k, self.cutoff = graph, k, cutoff

    def edges(
        self,
        pos: torch.Tensor,
        batch: torch.Tensor,
        edge_index: torch.Tensor | None,
        edge_attr: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The message graph and its features (:func:`resolve_edges` with this net's options)."""
        return resolve_edges(pos, batch, edge_index, edge_attr, self.edge_features, self.graph,
                             self.k, self.cutoff)
