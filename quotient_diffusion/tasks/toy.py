"""The toy task: rotated noisy templates (see diffusion.template_posterior); no files needed."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..data import Graph
from ..diffusion.template_posterior import TemplateMixture
from .base import Task

__all__ = ["ToyTask", "ToyOptions"]


@dataclass(frozen=True)
class ToyOptions:
    num_train: int = 512
    num_val: int = 64
    points: int = 6
    templates: int = 3


class ToyTask(Task):
    name = "toy"
    Options = ToyOptions

    def _target(self) -> TemplateMixture:
        return TemplateMixture.random(self.options.templates, self.options.points, 0.15, seed=0)

    def datasets(self):
        o = self.options
        target = self._target()
        n = target.num_points

        def graphs(num, seed):
            x = target.sample(num, torch.Generator().manual_seed(seed)).float().view(num, n, 3)
            return [Graph(pos=p, node_attr=torch.ones(n, 1)) for p in x]

        return graphs(o.num_train, 1), graphs(o.num_val, 2)

    def build_network(self):
        from ..nn import get_network

        m = self.config.model
        return get_network(m.network, in_features=1, out_features=0, hidden=m.hidden,
                           layers=m.layers, **m.network_options)
