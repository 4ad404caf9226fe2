"""One-shot set generation: set creators (Top-n and its baselines), a set VAE, data, metrics.

A set creator maps a latent vector and a set size to initial points (:mod:`.creators`); the
:class:`SetVAE` decodes them with a permutation-equivariant transformer. Data: SetMNIST
(:mod:`.setmnist`) and synthetic molecule-like sets (:mod:`.synthetic`). QM9 molecular graphs
(:mod:`.qm9_graphs`) for the :class:`GraphSetVAE` (:mod:`.graph_vae`): atoms as a set, bonds
between pairs.
"""

from .creators import CREATORS, FirstN, IIDGaussian, MLPCreator, SetCreator, TopN, make_creator
from .dataset import SetDataset
from .graph_vae import GraphSetVAE, GraphVAEConfig, load_graph_model, node_descriptors
from .matching import chamfer, hungarian_match
from .metrics import pair_diversity, reconstruction_chamfer, synthetic_scores
from .padding import from_padded, sizes_to_batch, slot_index, to_padded
from .qm9_graphs import (
    GraphSetBatch,
    QM9Graphs,
    graph_metrics,
    graph_smiles,
    graph_to_mol,
    graphs_from_smiles,
    load_qm9_graphs,
    tanimoto_diversity,
)
from .setmnist import load_setmnist
from .synthetic import SyntheticConfig, constraint_violations, generate_synthetic
from .training import load_set_model, train_set_vae
from .vae import SetVAE, SetVAEConfig

__all__ = [
    "CREATORS",
    "FirstN",
    "IIDGaussian",
    "MLPCreator",
    "SetCreator",
    "TopN",
    "make_creator",
    "SetDataset",
    "GraphSetVAE",
    "GraphVAEConfig",
    "load_graph_model",
    "node_descriptors",
    "GraphSetBatch",
    "QM9Graphs",
    "graph_metrics",
    "graph_smiles",
    "graph_to_mol",
    "graphs_from_smiles",
    "load_qm9_graphs",
    "tanimoto_diversity",
    "chamfer",
    "hungarian_match",
    "pair_diversity",
    "reconstruction_chamfer",
    "synthetic_scores",
    "from_padded",
    "sizes_to_batch",
    "slot_index",
    "to_padded",
    "load_setmnist",
    "SyntheticConfig",
    "constraint_violations",
    "generate_synthetic",
    "load_set_model",
    "train_set_vae",
    "SetVAE",
    "SetVAEConfig",
]
