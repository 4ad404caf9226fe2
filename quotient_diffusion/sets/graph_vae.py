"""A graph VAE whose decoder starts from any set creator: atoms as a set with types, bonds
between pairs (the Top-n paper's QM9 experiment).

* Encoder (invariant to the atom order): type embedding, one relational message-passing step
  ``h_i += sum_k sum_j A^k_ij W_k h_j`` over the bond types ``k``, the set transformer layers of
  :class:`~.vae.SetVAE`, a masked mean and a linear map to ``(mu, log sigma^2)``.
* Decoder (equivariant in the created points): ``h_i = c_i + W z`` for the points
  ``c = creator(z, n)``, transformer layers, a node head (type logits) and a pair head on
  ``[h_i + h_j, h_i * h_j]``, symmetric in ``(i, j)`` by construction (bond-type logits). A size
  head maps ``z`` to logits over ``0..max_size``.
* Loss per graph: ``type_CE + bond_weight * bond_CE + kl_weight * KL + size_weight * size_CE``
  under a Hungarian matching of predicted to target atoms. Chamfer (the SetMNIST loss) does not
  apply: a bond loss needs a one-to-one assignment of atoms. The exact graph matching is
  intractable, so the assignment solves a linear problem on permutation-invariant per-atom
  descriptors (:func:`node_descriptors`: the type, the number of bonds of each order, the
  number of neighbours of each (order, type), and the same counts summed over the neighbours,
  i.e. two Weisfeiler-Lehman rounds; for the prediction, their expectations under the
  softmaxes) with :func:`~.matching.hungarian_match`; the bond loss is then taken under that
  assignment. The loss is invariant to reordering the target's atoms whenever the descriptors
  tell its atoms apart or the atoms they confuse are symmetric (automorphic); one round was not
  enough (the two carbonyl oxygens of ``O=C1NC=CC1=O`` tie).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .creators import make_creator
from .matching import hungarian_match
from .padding import to_padded
from .qm9_graphs import GraphSetBatch
from .vae import _attend, _attention_stack

__all__ = ["GraphVAEConfig", "GraphSetVAE", "node_descriptors", "load_graph_model"]


@dataclass
class GraphVAEConfig:
    creator: str = "topn"
    num_types: int = 4
    num_bonds: int = 4  # including "none"
    max_size: int = 9
    latent_dim: int = 32
    dim: int = 64
    layers: int = 2
    heads: int = 4
    kl_weight: float = 1e-2
    size_weight: float = 1e-1
    bond_weight: float = 1.0

    def to_dict(self) -> dict:
        return asdict(self)


def node_descriptors(
    type_p: torch.Tensor, bond_p: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Per-atom descriptors from type probabilities ``(B, n, T)`` and bond probabilities
    ``(B, n, n, K+1)`` (class 0 = none): ``d1`` = type, count of bonds of each order, count of
    neighbours of each (order, type) (``T + K + K*T`` channels), then the sums of the
    neighbours' ``d1`` per bond order (two Weisfeiler-Lehman rounds in all; ``K`` times more).
    Padding and the diagonal do not count."""
    b, n, _ = type_p.shape
    pair = mask[:, :, None] & mask[:, None, :] & ~torch.eye(n, dtype=torch.bool,
                                                          device=mask.device)
    bonds = bond_p[..., 1:] * pair[..., None]  # (B, n, n, K)
    degree = bonds.sum(2)
    neighbours = torch.einsum("bijk,bjt->bikt", bonds, type_p).flatten(2)
    first = torch.cat([type_p, degree, neighbours], dim=-1) * mask[..., None]
    second = torch.einsum("bijk,bjd->bikd", bonds, first).flatten(2)
    return torch.cat([first, second], dim=-1)


class GraphSetVAE(nn.Module):
    def __init__(self, config: GraphVAEConfig):
        super().__init__()
        self.config = c = config
        self.embed = nn.Embedding(c.num_types, c.dim)
        self.relations = nn.ModuleList(nn.Linear(c.dim, c.dim, bias=False)
                                       for _ in range(c.num_bonds - 1))
        self.encoder = _attention_stack(c.dim, c.heads, c.layers)
        self.to_latent = nn.Linear(c.dim, 2 * c.latent_dim)
        self.creator = make_creator(c.creator, c.latent_dim, c.dim, c.max_size)
        self.condition = nn.Linear(c.latent_dim, c.dim)
        self.decoder = _attention_stack(c.dim, c.heads, c.layers)
        self.node_head = nn.Linear(c.dim, c.num_types)
        self.pair_head = nn.Sequential(nn.Linear(2 * c.dim, c.dim), nn.SiLU(),
                                       nn.Linear(c.dim, c.num_bonds))
        self.size_head = nn.Linear(c.latent_dim, c.max_size + 1)

    def encode(self, data: GraphSetBatch) -> tuple[torch.Tensor, torch.Tensor]:
        mask = data.mask
        h = self.embed(data.types.clamp_min(0)) * mask[..., None]
        msg = sum(torch.einsum("bij,bjd->bid", (data.bonds == k + 1).to(h.dtype), w(h))
                  for k, w in enumerate(self.relations))
        h = _attend(self.encoder, h + msg, mask)
        pooled = (h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp_min(1)
        mu, logvar = self.to_latent(pooled).chunk(2, dim=-1)
        return mu, logvar

    def decode(self, z: torch.Tensor, sizes: torch.Tensor,
               generator: torch.Generator | None = None, n_max: int | None = None):
        """Type logits ``(B, n, T)``, symmetric bond logits ``(B, n, n, K+1)`` and the mask."""
        x, batch = self.creator(z, sizes, generator=generator)
        h, mask = to_padded(x + self.condition(z)[batch], batch, z.shape[0], n_max)
        h = _attend(self.decoder, h, mask)
        hi, hj = h[:, :, None, :], h[:, None, :, :]
        bond_logits = self.pair_head(torch.cat([hi + hj, hi * hj], dim=-1))
        return self.node_head(h), bond_logits, mask

    def loss(self, data: GraphSetBatch, generator: torch.Generator | None = None) -> dict:
        c = self.config
        mu, logvar = self.encode(data)
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
        z = mu + (0.5 * logvar).exp() * eps
        sizes = data.num_nodes_per_graph
        type_logits, bond_logits, mask = self.decode(z, sizes, generator, data.mask.shape[1])
        type_ce, bond_ce = self.graph_reconstruction(type_logits, bond_logits, data)
        kl = 0.5 * (mu.square() + logvar.exp() - 1 - logvar).sum(-1)
        size = F.cross_entropy(self.size_head(z), sizes, reduction="none")
        recon = type_ce + c.bond_weight * bond_ce
        total = recon + c.kl_weight * kl + c.size_weight * size
        return {"total": total.mean(), "recon": recon.mean(), "type": type_ce.mean(),
                "bond": bond_ce.mean(), "kl": kl.mean(), "size": size.mean()}

    def graph_reconstruction(self, type_logits, bond_logits, data: GraphSetBatch):
        """Per-graph mean type and bond cross-entropies under the descriptor matching."""
        c, mask = self.config, data.mask
        n = mask.shape[1]
        target_types = F.one_hot(data.types.clamp_min(0), c.num_types).to(type_logits.dtype)
        target_bonds = F.one_hot(data.bonds, c.num_bonds).to(type_logits.dtype)
        pred = node_descriptors(type_logits.softmax(-1), bond_logits.softmax(-1), mask)
        target = node_descriptors(target_types, target_bonds, mask)
        perm = hungarian_match(pred, target, mask)
        matched = data.permute(perm)
        type_ce = F.cross_entropy(type_logits.transpose(1, 2), matched.types.clamp_min(0),
                                  reduction="none")
        type_ce = (type_ce * mask).sum(1) / mask.sum(1).clamp_min(1)
        pair = mask[:, :, None] & mask[:, None, :]
        pair &= torch.ones(n, n, dtype=torch.bool, device=mask.device).triu(1)
        bond_ce = F.cross_entropy(bond_logits.permute(0, 3, 1, 2), matched.bonds,
                                  reduction="none")
        bond_ce = (bond_ce * pair).sum((1, 2)) / pair.sum((1, 2)).clamp_min(1)
        return type_ce, bond_ce

    @torch.no_grad()
    def sample(self, num_graphs: int, generator: torch.Generator | None = None):
        """Graphs from the prior, as a list of ``(types, bonds)`` (argmax, real atoms only)."""
        weight = self.size_head.weight
        z = torch.randn(num_graphs, self.config.latent_dim, generator=generator,
                        dtype=weight.dtype)
        probs = self.size_head(z).softmax(-1)
        probs[:, 0] = 0
        sizes = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        return self._argmax(*self.decode(z, sizes, generator))

    @torch.no_grad()
    def reconstruct(self, data: GraphSetBatch, generator: torch.Generator | None = None):
        mu, _ = self.encode(data)
        return self._argmax(*self.decode(mu, data.num_nodes_per_graph, generator,
                                         data.mask.shape[1]))

    @staticmethod
    def _argmax(type_logits, bond_logits, mask):
        types, bonds = type_logits.argmax(-1), bond_logits.argmax(-1)
        out = []
        for k in range(types.shape[0]):
            n = int(mask[k].sum())
            b = bonds[k, :n, :n].triu(1)
            out.append((types[k, :n].tolist(), (b + b.T).numpy()))
        return out


def load_graph_model(path: str | Path) -> tuple[GraphSetVAE, dict]:
    """The trained graph VAE of a checkpoint written by :func:`~.training.train_set_vae`."""
    from ..training.checkpoint import CheckpointError, load_checkpoint
    from .training import CHECKPOINT_KEYS

    state = load_checkpoint(path, CHECKPOINT_KEYS)
    try:
        model = GraphSetVAE(GraphVAEConfig(**state["model_config"]))
        model.load_state_dict(state["model"])
    except (TypeError, ValueError, RuntimeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path} does not hold a graph set model ({first})") from None
    return model.eval(), state
