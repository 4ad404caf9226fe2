r"""The learning rate as a pure function of the step (so a resumed run follows the same curve).

    lr(k) = lr * min(1, (k + 1) / W) * s(k),
    s(k)  = r + (1 - r) (1 + cos(pi min(k, S) / S)) / 2     ('cosine'),   s(k) = 1  ('constant'),

with W = ``warmup_steps``, S = ``steps`` and r = ``min_lr_ratio``.
"""

from __future__ import annotations

import math

from .config import OptimConfig

__all__ = ["learning_rate", "LR_SCHEDULES"]

LR_SCHEDULES = ("cosine", "constant")


def learning_rate(optim: OptimConfig, step: int) -> float:
    """The learning rate of optimiser step ``step`` (0-based)."""
    if optim.lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"unknown lr_schedule {optim.lr_schedule!r}; choose one of "
                         f"{list(LR_SCHEDULES)}")
    warm = min(1.0, (step + 1) / optim.warmup_steps) if optim.warmup_steps > 0 else 1.0
    if optim.lr_schedule == "constant":
        return optim.lr * warm
    progress = min(step, optim.steps) / optim.steps
    r = optim.min_lr_ratio
    return optim.lr * warm * (r + (1 - r) * 0.5 * (1 + math.cos(math.pi * progress)))
