"""A set VAE whose decoder starts from any set creator.

Each set element is a row ``[pos, feat]``: coordinates (2D or 3D) and, optionally, a one-hot type.

* Encoder (permutation invariant): a linear embedding, transformer layers (self-attention within
  each set, no positional encoding), a masked mean and a linear map to ``(mu, log sigma^2)``.
* Decoder (permutation equivariant in the created points): ``h_i = c_i + W z`` for the created
  points ``c_i = creator(z, n)_i``, transformer layers, and a linear head to coordinates and
  type logits. A size head maps ``z`` to logits over ``0..max_size`` so that sampling from the
  prior ``z ~ N(0, I)`` also gives set sizes.
* Loss per set: ``recon + kl_weight * KL(q(z|X) || N(0, I)) + size_weight * CE(size)``; ``recon``
  is the Chamfer distance between ``[pos, softmax(logits)]`` and ``[pos, onehot]`` or, with
  ``loss="hungarian"``, the matched ``|pos - pos*|^2 + type_weight * CE(type)`` averaged over the
  points of the set.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..data import GraphBatch
from .creators import make_creator
from .matching import chamfer, hungarian_match
from .padding import to_padded

__all__ = ["SetVAEConfig", "SetVAE"]


@dataclass
class SetVAEConfig:
    creator: str = "topn"
    pos_dim: int = 2
    num_types: int = 0
    max_size: int = 64
    latent_dim: int = 16
    dim: int = 64
    layers: int = 2
    heads: int = 4
    loss: str = "chamfer"  # or "hungarian"
    kl_weight: float = 1e-3
    size_weight: float = 1e-2
    type_weight: float = 1.0

    def to_dict(self) -> dict:
        return asdict(self)


def _attention_stack(dim: int, heads: int, layers: int) -> nn.ModuleList:
    return nn.ModuleList(
        nn.TransformerEncoderLayer(
            dim, heads, dim_feedforward=2 * dim, dropout=0.0, batch_first=True, norm_first=True
        )
        for _ in range(layers)
    )


def _attend(stack: nn.ModuleList, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    for layer in stack:
        h = layer(h, src_key_padding_mask=~mask)
    return h


class SetVAE(nn.Module):
    def __init__(self, config: SetVAEConfig):
        super().__init__()
        if config.loss not in ("chamfer", "hungarian"):
            raise ValueError(f"unknown set loss {config.loss!r}: 'chamfer' or 'hungarian'")
        self.config = c = config
        self.embed = nn.Linear(c.pos_dim + c.num_types, c.dim)
        self.encoder = _attention_stack(c.dim, c.heads, c.layers)
        self.to_latent = nn.Linear(c.dim, 2 * c.latent_dim)
        self.creator = make_creator(c.creator, c.latent_dim, c.dim, c.max_size)
        self.condition = nn.Linear(c.latent_dim, c.dim)
        self.decoder = _attention_stack(c.dim, c.heads, c.layers)
        self.head = nn.Linear(c.dim, c.pos_dim + c.num_types)
        self.size_head = nn.Linear(c.latent_dim, c.max_size + 1)

    def _rows(self, data: GraphBatch) -> torch.Tensor:
        return torch.cat([data.pos, data.node_attr], dim=-1)

    def encode(self, data: GraphBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior ``(mu, log sigma^2)``, each ``(B, latent_dim)``; invariant to row order."""
        h, mask = to_padded(self.embed(self._rows(data)), data.batch, data.num_graphs)
        h = _attend(self.encoder, h, mask)
        pooled = (h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp_min(1)
        mu, logvar = self.to_latent(pooled).chunk(2, dim=-1)
        return mu, logvar

    def decode(
        self, z: torch.Tensor, sizes: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded output rows ``(B, n_max, pos_dim + num_types)`` and their mask."""
        x, batch = self.creator(z, sizes, generator=generator)
        h, mask = to_padded(x + self.condition(z)[batch], batch, z.shape[0])
        return self.head(_attend(self.decoder, h, mask)), mask

    def loss(
        self, data: GraphBatch, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """Batch means of ``total``, ``recon``, ``kl`` and ``size`` (see the module docstring)."""
        c = self.config
        mu, logvar = self.encode(data)
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
        z = mu + (0.5 * logvar).exp() * eps
        sizes = data.num_nodes_per_graph
        out, mask = self.decode(z, sizes, generator)
        target, _ = to_padded(self._rows(data), data.batch, data.num_graphs, out.shape[1])
        recon = self._reconstruction(out, target, mask)
        kl = 0.5 * (mu.square() + logvar.exp() - 1 - logvar).sum(-1)
        size = F.cross_entropy(self.size_head(z), sizes, reduction="none")
        total = recon + c.kl_weight * kl + c.size_weight * size
        return {"total": total.mean(), "recon": recon.mean(), "kl": kl.mean(), "size": size.mean()}

    def _reconstruction(self, out, target, mask) -> torch.Tensor:
        c = self.config
        p = c.pos_dim
        if c.num_types:
            out = torch.cat([out[..., :p], out[..., p:].softmax(-1)], dim=-1)
        if c.loss == "chamfer":
            return chamfer(out, mask, target, mask)
        perm = hungarian_match(out, target, mask)
        target = target.gather(1, perm[..., None].expand_as(target))
        per_point = (out[..., :p] - target[..., :p]).square().sum(-1)
        if c.num_types:
            logp = out[..., p:].clamp_min(1e-12).log()
            per_point = per_point - c.type_weight * (target[..., p:] * logp).sum(-1)
        return (per_point * mask).sum(1) / mask.sum(1).clamp_min(1)

    @torch.no_grad()
    def reconstruct(
        self, data: GraphBatch, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode the posterior mean with the true sizes: padded rows (types as probabilities)."""
        mu, _ = self.encode(data)
        out, mask = self.decode(mu, data.num_nodes_per_graph, generator)
        return self._probabilities(out), mask

    @torch.no_grad()
    def sample(
        self, num_sets: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sets from the prior: ``z ~ N(0, I)``, ``n ~ size_head(z)``; padded rows and mask."""
        weight = self.size_head.weight
        z = torch.randn(num_sets, self.config.latent_dim, generator=generator, dtype=weight.dtype)
        probs = self.size_head(z).softmax(-1)
        probs[:, 0] = 0  # never an empty set
        sizes = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        out, mask = self.decode(z, sizes, generator)
        return self._probabilities(out), mask

    def _probabilities(self, out: torch.Tensor) -> torch.Tensor:
        p = self.config.pos_dim
        if not self.config.num_types:
            return out
        return torch.cat([out[..., :p], out[..., p:].softmax(-1)], dim=-1)
