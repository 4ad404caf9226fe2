r"""Exponential moving average of model weights: theta_ema <- d_k theta_ema + (1 - d_k) theta.

With ``warmup`` the decay at update k (0-based) is d_k = min(d, (1 + k) / (10 + k)), so the
average forgets its random initialisation within the first hundreds of steps (with a constant
0.999, 13% of the initial weights remain after 2,000 steps).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["EMA"]


class EMA:
    """Keeps a shadow copy of a module; ``update`` after every optimiser step."""

    def __init__(self, model: nn.Module, decay: float, warmup: bool = False):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.warmup = warmup
        self.shadow = copy.deepcopy(model).eval()
        for p in self.shadow.parameters():
            p.requires_grad_(False)

    def decay_at(self, k: int) -> float:
        """The decay of update number k (0-based)."""
        return min(self.decay, (1 + k) / (10 + k)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, model: nn.Module, k: int = 0) -> None:
        """Update number k (0-based: the step count before this optimiser step; only the
        warm-up reads it)."""
        decay = self.decay_at(k)
        for s, p in zip(self.shadow.parameters(), model.parameters(), strict=True):
            s.lerp_(p.detach(), 1.0 - decay)
        for s, b in zip(self.shadow.buffers(), model.buffers(), strict=True):
            s.copy_(b)

    def state_dict(self) -> dict:
        return self.shadow.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.shadow.load_state_dict(state)
