"""The toy task: rotated noisy templates (see diffusion.template_posterior); no files needed."""

from __future__ import annotations

import torch

from ..data import Graph
from ..diffusion.template_posterior import TemplateMixture
from .base import Task

__all__ = ["ToyTask"]


class ToyTask(Task):
    """Options: num_train (default 512), num_val (64), points (6), templates (3)."""

    name = "toy"
    OPTIONS = {"num_train": int, "num_val": int, "points": int, "templates": int}

    def _target(self) -> TemplateMixture:
        o = self.config.task.options
        return TemplateMixture.random(o.get("templates", 3), o.get("points", 6), 0.15, seed=0)

    def datasets(self):
        o = self.config.task.options
        target = self._target()
        n = target.num_points

        def graphs(num, seed):
            x = target.sample(num, torch.Generator().manual_seed(seed)).float().view(num, n, 3)
            return [Graph(pos=p, node_attr=torch.ones(n, 1)) for p in x]

        return graphs(o.get("num_train", 512), 1), graphs(o.get("num_val", 64), 2)

    def build_network(self):
        from ..nn import get_network

        m = self.config.model
        return get_network(m.network, in_features=1, out_features=0, hidden=m.hidden,
                           layers=m.layers, **m.network_options)
