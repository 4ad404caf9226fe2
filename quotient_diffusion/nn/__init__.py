"""Score networks on flat batches, one calling convention for all of them.

    net = get_network(name, in_features=F, out_features=K, hidden=64, layers=4,
                      edge_features=Fe, **options)
    vec, feat = net(pos, node_attr, batch, t, edge_index=None, edge_attr=None)

``pos`` (n, 3) centred coordinates of a flat batch, ``node_attr`` (n, F) invariant features,
``batch`` (n,) sorted molecule index, ``t`` (B,) time in [0, 1] (0 prior, 1 data). With
``edge_index`` (2, E) (source, target) and ``edge_attr`` (E, Fe) the network passes messages on
exactly those edges; without, it builds its own graph per molecule (``graph='full'`` by default,
``'knn'`` with ``k`` or ``'radius'`` with ``cutoff``). Returns the displacement ``vec`` (n, 3)
(the denoiser is centre(pos + vec)) and invariant node outputs ``feat`` (n, K), or None if K = 0.

Networks: 'egnn' (:class:`EGNN`, E(3)-equivariant), 'e3nn' (:class:`TensorProductNetwork`,
E(3)-equivariant) and 'transformer' (:class:`AtomTransformer`, not equivariant: train it with
rotation augmentation). :mod:`quotient_diffusion.nn.testing` checks the symmetries.

Stereochemistry (:mod:`.stereo`): ``get_network(..., stereo=True)`` builds an EGNN that also
takes ``stereo=StereoInputs(...)`` (chirality pseudoscalars and cis/trans pair columns); the
other networks refuse it.
"""

from __future__ import annotations

import inspect

from torch import nn

from .egnn import EGNN
from .graph import build_graph, full_graph, knn_graph, radius_graph
from .stereo import StereoInputs
from .tensor_product import TensorProductNetwork
from .transformer import AtomTransformer

__all__ = [
    "EGNN",
    "TensorProductNetwork",
    "AtomTransformer",
    "StereoInputs",
    "NETWORKS",
    "EQUIVARIANT_NETWORKS",
    "get_network",
    "full_graph",
    "knn_graph",
    "radius_graph",
    "build_graph",
]

NETWORKS: dict[str, type[nn.Module]] = {
    "egnn": EGNN,
    "e3nn": TensorProductNetwork,
    "transformer": AtomTransformer,
}
EQUIVARIANT_NETWORKS = ("egnn", "e3nn")


def get_network(
    name: str,
    in_features: int,
    out_features: int = 0,
    hidden: int = 64,
    layers: int = 4,
    edge_features: int = 0,
    stereo: bool = False,
    **options,
) -> nn.Module:
    """Build a network by name ('egnn', 'e3nn', 'transformer'); ``options`` go to its class.
    ``stereo`` asks for a network that takes stereo inputs (ValueError for one that cannot)."""
    try:
        cls = NETWORKS[name]
    except KeyError:
        raise ValueError(f"unknown network {name!r}; choose one of {sorted(NETWORKS)}") from None
    if stereo:
        if "stereo" not in inspect.signature(cls).parameters:
            raise ValueError(f"network {name!r} takes no stereo inputs (chirality needs a "
                             "pseudoscalar input that only 'egnn' reads)")
        options["stereo"] = True
    return cls(
        in_features=in_features,
        out_features=out_features,
        hidden=hidden,
        layers=layers,
        edge_features=edge_features,
        **options,
    )
