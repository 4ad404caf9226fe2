r"""A plain transformer over atoms (not equivariant), meant to be trained with random-rotation
augmentation, as Proteina does (``DiffusionModel(augment_rotations=True)``).

Tokens: a_n = W [node_attr_n, t, x_n] (raw centred coordinates: no built-in symmetry). Each of
``layers`` pre-norm blocks l,

    a <- a + e_l(t),    a <- a + W_o Attn(LN(a)),    a <- a + MLP(LN(a)),

with e_l(t) the per-layer Fourier time embedding (:class:`~.common.LayerTimeEmbedding`; none
when ``time_features`` = 0),

with multi-head attention restricted to atoms of the same molecule:

    alpha_ij = softmax_{j in N(i)} (q_i . k_j / sqrt(d_head) + b_ij),  Attn_i = sum_j alpha_ij v_j

and a pair bias b_ij = MLP([RBF(|x_i - x_j|), e_ij]) (one value per head and layer). Outputs:
vec = W_x LN(a) (n, 3) and feat = W_h LN(a).

No padding: attention runs on an edge list, the block-diagonal mask of the flat batch stored
sparsely. N(i) is the given edge set (a task's graph) or, by default, every atom of i's
molecule; i itself is always included, so single atoms attend to themselves. The softmax is a
segment softmax over targets (max subtracted per target; sums by index_add_). Cost per layer is
E x hidden for scores and values, like a message-passing layer, with no (sum n)^2 dense mask.
"""

from __future__ import annotations

import torch
from torch import nn

from ..scatter import scatter_sum
from .common import FlatGraphNetwork, LayerTimeEmbedding, gaussian_rbf, node_inputs

__all__ = ["AtomTransformer", "segment_softmax"]


def segment_softmax(scores: torch.Tensor, index: torch.Tensor, num: int) -> torch.Tensor:
    """softmax of ``scores`` (E, H) over the rows sharing the same ``index`` (E,)."""
    expanded = index.unsqueeze(-1).expand_as(scores)
    with torch.no_grad():
        peak = scores.new_full((num, scores.shape[1]), float("-inf"))
        peak = peak.scatter_reduce(0, expanded, scores, "amax", include_self=True)
    weights = torch.exp(scores - peak[index])
    return weights / scatter_sum(weights, index, num, sorted_index=True)[index]


class TransformerBlock(nn.Module):
    """Pre-norm attention block on an edge list; see the module docstring."""

    def __init__(self, hidden: int, heads: int, mlp_ratio: int):
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden={hidden} is not divisible by heads={heads}")
        self.heads = heads
        self.norm_attn = nn.LayerNorm(hidden)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.out = nn.Linear(hidden, hidden)
        self.norm_mlp = nn.LayerNorm(hidden)
        self.mlp = nn.Sequential(
            nn.Linear(hidden, mlp_ratio * hidden), nn.GELU(), nn.Linear(mlp_ratio * hidden, hidden)
        )

    def forward(self, a: torch.Tensor, edge_index: torch.Tensor, bias: torch.Tensor):
        n, hidden = a.shape
        dh = hidden // self.heads
        source, target = edge_index
        q, k, v = self.qkv(self.norm_attn(a)).view(n, 3, self.heads, dh).unbind(1)
        scores = (q[target] * k[source]).sum(-1) * dh**-0.5 + bias
        alpha = segment_softmax(scores, target, n)
        attn = scatter_sum(alpha.unsqueeze(-1) * v[source], target, n, sorted_index=True)
        a = a + self.out(attn.reshape(n, hidden))
        return a + self.mlp(self.norm_mlp(a))


class AtomTransformer(FlatGraphNetwork):
    """Transformer over the atoms of each molecule of a flat batch (module docstring).

    Options: ``heads`` (default 4), ``mlp_ratio`` (default 4), ``num_rbf`` (default 16),
    ``max_radius`` (RBF range, default 10), ``time_features`` (default 8),
    ``graph``/``k``/``cutoff`` (own graph).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int = 0,
        hidden: int = 64,
        layers: int = 4,
        edge_features: int = 0,
        heads: int = 4,
        mlp_ratio: int = 4,
        num_rbf: int = 16,
        max_radius: float = 10.0,
        graph: str = "full",
        k: int = 16,
        cutoff: float = 5.0,
        time_features: int = 8,
    ):
        super().__init__(in_features, out_features, edge_features, graph, k, cutoff)
        self.heads, self.num_layers = heads, layers
        self.register_buffer("rbf_centres", torch.linspace(0.0, max_radius, num_rbf))
        self.rbf_width = max_radius / num_rbf
        self.time = LayerTimeEmbedding(time_features, hidden, layers) if time_features else None
        self.embed = nn.Linear(in_features + 4, hidden)
        self.embed.fixed_trailing_inputs = 4  # time and position (warm start)
        self.pair = nn.Sequential(
            nn.Linear(num_rbf + edge_features, hidden), nn.SiLU(), nn.Linear(hidden, layers * heads)
        )
        self.blocks = nn.ModuleList(
            TransformerBlock(hidden, heads, mlp_ratio) for _ in range(layers)
        )
        self.norm_out = nn.LayerNorm(hidden)
        self.to_vec = nn.Linear(hidden, 3)
        nn.init.xavier_uniform_(self.to_vec.weight, gain=1e-3)
        nn.init.zeros_(self.to_vec.bias)
        self.readout = nn.Linear(hidden, out_features) if out_features else None

    def _attention_edges(self, edge_index, edge_attr, n):
        """The given/own edges plus one self edge per atom (self edges carry zero features)."""
        loops = torch.arange(n, device=edge_index.device)
        edges = torch.cat([edge_index, torch.stack([loops, loops])], 1)
        attr = torch.cat([edge_attr, edge_attr.new_zeros(n, edge_attr.shape[1])], 0)
        order = torch.argsort(edges[1], stable=True)  # targets sorted: segment sums
        return edges[:, order], attr[order]

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
        n = pos.shape[0]
        edge_index, edge_attr = self.edges(pos, batch, edge_index, edge_attr)
        edge_index, edge_attr = self._attention_edges(edge_index, edge_attr, n)
        r = pos[edge_index[1]] - pos[edge_index[0]]
        d = ((r * r).sum(-1, keepdim=True) + 1e-8).sqrt()
        rbf = gaussian_rbf(d, self.rbf_centres, self.rbf_width)
        bias = self.pair(torch.cat([rbf, edge_attr], -1))
        bias = bias.view(-1, self.num_layers, self.heads)
        a = self.embed(torch.cat([node_inputs(node_attr, batch, t), pos], -1))
        time = self.time(t, batch) if self.time is not None else None
        for i, block in enumerate(self.blocks):
            if time is not None:
                a = a + time[:, i]
            a = block(a, edge_index, bias[:, i])
        a = self.norm_out(a)
        feat = self.readout(a) if self.readout is not None else None
        return self.to_vec(a), feat
