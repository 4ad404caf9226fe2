r"""De novo 3D molecules on QM9 (EDM's task, ``qdiff sample molecules``; task name
``molecules``, formerly ``denovo_qm9``, which older checkpoints record and
:data:`~.registry.RENAMED_TASKS` still reads): atom types and coordinates generated jointly.

Each molecule is a point cloud with no conditioning (``node_attr`` has zero columns). Its atom
types are diffused beside the coordinates as continuous features (EDM's approach), in
``extras['features']``:

    h = s * onehot(type) over (H, C, N, O, F),   s = ``feature_scale`` (EDM: 0.25),

plus, with ``charges``, EDM's extra column Z / 10. The small scale makes the types settle late in
the generative process, after the geometry. The network (EGNN by default, fully connected per
molecule) reads [h_t, t] and predicts the clean coordinates and features; the symmetry treatment
acts on the coordinates only (the features are invariant). A sampled atom's type is the argmax
of its first five features.

The number of atoms is not generated: it is drawn from the histogram of the training set, and
the sampler runs on a flat batch of molecules of those sizes (no padding).

Options (``task.options``): ``source`` ('qm9', default, the EDM split; 'g2': the H/C/N/O/F
molecules of ASE's g2 collection, for tests and smoke runs, no download), ``feature_scale``
(0.25), ``charges`` (false), ``num_val`` (256). ``task.limit`` keeps the first ``limit``
training molecules of a fixed shuffle.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from ..data import Graph
from ..diffusion import DiffusionModel, SamplerConfig
from ..metrics.molecules import ATOMIC_NUMBERS
from ..output import atomic_write_text, open_output
from ..training.config import TaskConfig, TrainConfig
from .base import Task
from .sampling import generate_all

__all__ = ["MoleculeTask", "MoleculeOptions", "MoleculeSet", "g2_molecules",
           "generate_molecules", "draw_atom_counts", "qm9_molecules", "qm9_reference_smiles",
           "DEFAULT_SAMPLER"]

NUM_TYPES = len(ATOMIC_NUMBERS)
#: the ODE sampler of ``qdiff sample molecules`` unless told otherwise: DPM-Solver++(2M), 20 steps
#: on the power grid t_k = 1 - (1 - k/20)^2. benchmarks/denovo_bundled.py part B, bundled model,
#: 300 molecules: atom / molecule stability / validity 0.906 / 0.210 / 0.657 at 60 ms per molecule,
#: against 0.876 / 0.149 / 0.566 at 145 ms for 50 Euler steps and 0.882 / 0.177 / 0.517 for the
#: 50-step SDE; 50 dpm2m steps add 0.008 atom stability for 2.7x the time
DEFAULT_SAMPLER = SamplerConfig(steps=20, solver="dpm2m", schedule="power")
_TYPE_OF_Z = np.full(100, -1)
_TYPE_OF_Z[list(ATOMIC_NUMBERS)] = np.arange(NUM_TYPES)


def g2_molecules() -> list[tuple[np.ndarray, np.ndarray]]:
    """(Z, positions) of ASE's g2 molecules made of H, C, N, O, F only, with >= 2 atoms."""
    from ase.collections import g2

    out = []
    for atoms in g2:
        z = atoms.get_atomic_numbers()
        if len(z) >= 2 and np.isin(z, ATOMIC_NUMBERS).all():
            out.append((z.astype(np.int64), atoms.get_positions().astype(np.float32)))
    return out


class MoleculeSet(Sequence):
    """Molecules (Z, positions) as :class:`Graph` records with type features, built on access."""

    def __init__(self, get, count: int, feature_scale: float, charges: bool):
        self._get, self._count = get, count
        self.feature_scale, self.charges = feature_scale, charges

    def __len__(self) -> int:
        return self._count

    def molecule(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return self._get(i)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        z, pos = self._get(i)
        types = torch.as_tensor(_TYPE_OF_Z[np.asarray(z, dtype=np.int64)])
        feats = self.feature_scale * torch.nn.functional.one_hot(types, NUM_TYPES).float()
        if self.charges:
            feats = torch.cat([feats, torch.as_tensor(z, dtype=torch.float32)[:, None] / 10], 1)
        n = len(z)
        return Graph(pos=torch.as_tensor(pos, dtype=torch.float32),
                     node_attr=torch.zeros(n, 0), extras={"features": feats})


@dataclass(frozen=True)
class MoleculeOptions:
    source: Literal["qm9", "g2"] = "qm9"
    feature_scale: float = 0.25
    charges: bool = False
    num_val: int = 256
    quality_molecules: int = 64


class MoleculeTask(Task):
    """De novo molecules; :meth:`prepare` takes atom counts, :meth:`postprocess` gives
    (Z (n,), positions (n, 3) Angstrom, centred) per molecule and :meth:`write` SDF or
    extended XYZ."""

    name = "molecules"
    Options = MoleculeOptions
    #: the file keeps the name of the run that trained it (configs/denovo_qm9.json)
    bundled = "denovo_qm9.pt"

    def prepare(self, counts: Sequence[int]) -> list[Graph]:
        return [Graph(pos=torch.zeros(n, 3), node_attr=torch.zeros(n, 0))
                for n in (int(c) for c in counts)]

    def postprocess(self, batch, pos, features) -> list[tuple[np.ndarray, np.ndarray]]:
        z = np.asarray(ATOMIC_NUMBERS)[features[:, :NUM_TYPES].argmax(-1).numpy()]
        x = pos.double().numpy()
        bounds = np.cumsum([0] + batch.num_nodes_per_graph.tolist())
        return [(z[a:b], x[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]

    def write(self, records: Sequence[tuple], path: str | Path, fmt: str = "sdf") -> int:
        """``(Z, positions, properties)`` records as ``fmt`` ('sdf': bonds from EDM's table,
        the bare atoms where they do not sanitise; 'xyz': extended XYZ, the properties in each
        frame's comment line), through :func:`~quotient_diffusion.output.open_output` (atomic;
        ``-``: stdout)."""
        with open_output(path, "w") as fh:
            if fmt == "sdf":
                from rdkit import Chem

                writer = Chem.SDWriter(fh)
                for k, (z, pos, props) in enumerate(records):
                    mol = _rdkit_record(z, pos, props)
                    mol.SetProp("_Name", f"sample_{k}")
                    writer.write(mol)
                writer.close()
            else:
                from ase import Atoms
                from ase.io import write

                frames = [Atoms(numbers=z, positions=pos, info=dict(props))
                          for z, pos, props in records]
                write(fh, frames, format="extxyz")
        return len(records)

    def _make_set(self, get, count: int) -> MoleculeSet:
        return MoleculeSet(get, count, self.options.feature_scale, self.options.charges)

    def _entries(self) -> tuple[object, np.ndarray, np.ndarray]:
        """(source object, training indices, validation indices)."""
        num_val = self.options.num_val
        if self.options.source == "g2":
            mols = g2_molecules()
            order = np.random.RandomState(0).permutation(len(mols))
            return mols, order, order[: min(num_val, 16)]
        from ..data.qm9 import load_qm9

        qm9 = load_qm9()
        train = np.random.RandomState(0).permutation(qm9.subset("train"))
        val = np.random.RandomState(1).permutation(qm9.subset("valid"))[:num_val]
        return qm9, train, val

    def datasets(self) -> tuple[MoleculeSet, MoleculeSet]:
        source, train, val = self._entries()
        if self.config.task.limit:
            train = train[: self.config.task.limit]

        def getter(entries):
            if isinstance(source, list):
                return lambda i: source[int(entries[i])]
            return lambda i: (source.atomic_numbers_of(int(entries[i])),
                              source.positions_of(int(entries[i])))

        return self._make_set(getter(train), len(train)), self._make_set(getter(val), len(val))

    def atom_count_histogram(self) -> np.ndarray:
        """p[n] = fraction of training molecules with n atoms (the whole training split, also
        when ``limit`` trains on fewer)."""
        source, train, _ = self._entries()
        if isinstance(source, list):
            sizes = np.array([len(source[i][0]) for i in train])
        else:
            sizes = source.num_atoms()[train]
        counts = np.bincount(sizes).astype(np.float64)
        return counts / counts.sum()

    def feature_dim(self) -> int:
        return NUM_TYPES + int(self.options.charges)

    def sigma_data(self) -> float:
        from .conformers import QM9_SIGMA_DATA

        return QM9_SIGMA_DATA

    def sigma_data_features(self) -> float:
        """RMS of the scaled one-hot types: each atom has one entry ``feature_scale`` among
        NUM_TYPES (the optional charge channel is left out of the estimate)."""
        return self.options.feature_scale / NUM_TYPES**0.5

    @torch.no_grad()
    def quality(self, model: DiffusionModel, graphs, seed: int = 0) -> dict:
        """EDM's atom and molecule stability of ``quality_molecules`` samples (default 64;
        ODE, 50 steps) with the atom counts of the first validation molecules."""
        from ..metrics.molecules import flatten, stability

        count = min(self.options.quality_molecules, len(graphs))
        sizes = [graphs[i].pos.shape[0] for i in range(count)]
        molecules = generate_all(self, model, sizes, SamplerConfig(steps=50), seed)
        stab = stability(*flatten(molecules))
        return {"val_atom_stability": float(stab["atom_stable"].mean()),
                "val_molecule_stability": float(stab["molecule_stable"].mean())}

    def build_network(self) -> torch.nn.Module:
        from ..nn import get_network

        m = self.config.model
        k = self.feature_dim()
        return get_network(m.network, in_features=k, out_features=k, hidden=m.hidden,
                           layers=m.layers, **m.network_options)


def draw_atom_counts(histogram: np.ndarray, num: int, seed: int = 0) -> np.ndarray:
    """``num`` atom counts drawn i.i.d. from a histogram p[n]."""
    rng = np.random.default_rng(seed)
    return rng.choice(len(histogram), size=num, p=histogram)


def generate_molecules(
    model: DiffusionModel,
    counts: Sequence[int],
    sampler: SamplerConfig | None = None,
    seed: int = 0,
    batch_size: int = 256,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """One molecule (Z, positions) per entry of ``counts`` (its number of atoms) from a de novo
    model, by :func:`~.sampling.generate_all` (any options: the records do not depend on
    them)."""
    task = MoleculeTask(TrainConfig(task=TaskConfig(name=MoleculeTask.name)))
    return generate_all(task, model, counts, sampler, seed, batch_size=batch_size)


def _rdkit_record(z, pos, props: dict):
    """A sanitised molecule with table bonds, else the bare atoms; properties attached."""
    from ..metrics.molecules import build_molecule, xyz_molecule

    mol = build_molecule(z, pos, "table")
    if mol is None:
        mol = xyz_molecule(z, pos).GetMol()
        mol.UpdatePropertyCache(strict=False)
    for key, value in props.items():
        mol.SetProp(key, str(value))
    return mol


def qm9_molecules(qm9, entries: Sequence[int]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(Z, positions) of QM9 entries."""
    return [(qm9.atomic_numbers_of(int(i)).astype(np.int64), qm9.positions_of(int(i)))
            for i in entries]


def qm9_reference_smiles(split: str = "train") -> list[str]:
    """SMILES of a QM9 split's molecules perceived from their DFT geometries exactly as the
    metrics perceive generated ones (EDM's bond table, largest fragment; invalid ones left out),
    so that a generated copy of a training molecule is never counted as novel. Cached as JSON
    beside the QM9 cache (about a minute to build for the training split)."""
    import json

    from ..data.paths import cache_dir
    from ..data.qm9 import load_qm9
    from ..metrics.molecules import validity

    path = cache_dir() / f"qm9_{split}_table_smiles_v1.json"
    if path.exists():
        return json.loads(path.read_text())
    qm9 = load_qm9()
    smiles = validity(qm9_molecules(qm9, qm9.subset(split)))["smiles"]
    out = sorted({s for s in smiles if s is not None})
    atomic_write_text(path, json.dumps(out))
    return out
