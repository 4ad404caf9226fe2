"""Training configuration: a readable JSON file, saved inside every checkpoint.

Sections: ``task`` (what data and which model family), ``model`` (network, treatment,
interpolant), ``optim`` (optimiser, batch, steps, EMA) and ``run`` (seed, output folder,
checkpoint and validation cadence). Every value is checked when a config is read (types from
the field annotations, ranges, the model's names and the network's options; see
:mod:`.validation`), and the task's name and options when the task is built on it
(``quotient_diffusion.tasks.get_task``), so a typo never passes silently: a bad config is a
:class:`ConfigError` naming the key.
"""

from __future__ import annotations

import json
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..output import atomic_write_text
from .validation import ConfigError, check_choices, check_section

__all__ = ["TaskConfig", "ModelConfig", "OptimConfig", "RunConfig", "TrainConfig",
           "ConfigError"]


@dataclass
class TaskConfig:
    name: str = "toy"  # a key of quotient_diffusion.tasks.TASKS
    data_dir: str | None = None  # else QD_DATA / the package's own data
    limit: int | None = None  # use only the first `limit` training records (tests, smoke runs)
    options: dict = field(default_factory=dict)  # task-specific settings


@dataclass
class ModelConfig:
    network: str = "egnn"
    hidden: int = 64
    layers: int = 4
    treatment: str = "quotient"
    # what the treatment quotients by, a key of quotient_diffusion.groups.GROUPS (translations
    # included: the diffusion is centred; not: every coordinate is kept)
    group: str = "SE3"
    interpolant: str = "linear"
    augment_rotations: bool = False
    # EDM's c_skip / c_out / c_in (diffusion/model.py); off by default: it lost the conformer
    # ablation at 1,000 steps (docs/benchmarks/learning.md)
    preconditioning: bool = False
    weighting: str = "velocity"  # 'unit' (needs preconditioning) | 'velocity' | 'snr' | 'constant'
    sigma_data: float | None = None  # data std per coordinate (model units); None: the task's
    network_options: dict = field(default_factory=dict)


@dataclass
class OptimConfig:
    lr: float = 1e-3
    batch_size: int = 64
    # bound on the atom pairs of a training batch (sum of n (n - 1)): the drawn molecules are
    # kept up to the budget (training/trainable.within_pair_budget); None keeps all batch_size
    max_pairs: int | None = None
    steps: int = 1000
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    weight_decay: float = 0.0
    warmup_steps: int = 100  # linear learning-rate warm-up
    lr_schedule: str = "cosine"  # 'cosine' (to min_lr_ratio * lr at `steps`) or 'constant'
    min_lr_ratio: float = 0.05
    ema_warmup: bool = True  # EMA decay min(ema_decay, (1 + k) / (10 + k)) at step k


@dataclass
class RunConfig:
    seed: int = 0
    out_dir: str = "runs/default"
    checkpoint_every: int = 200
    validate_every: int = 200
    log_every: int = 20
    checkpoint_minutes: float = 5.0  # also checkpoint whenever this much wall time has passed
    threads: int | None = None
    # where the model trains: 'auto' (a CUDA device when torch sees one, else the CPU),
    # 'cpu' or 'cuda' (quotient_diffusion.training.loop.resolve_device)
    device: str = "auto"


@dataclass
class TrainConfig:
    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        """The config a JSON object describes; :class:`ConfigError` if any value is invalid."""
        if not isinstance(data, dict):
            raise ConfigError(f"a config is a JSON object of sections, got {type(data).__name__}")
        sections = typing.get_type_hints(cls)
        unknown = sorted(set(data) - set(sections))
        if unknown:
            raise ConfigError(f"unknown config section(s) {', '.join(map(repr, unknown))}; "
                              f"known: {', '.join(sections)}")
        kwargs = {}
        for name, klass in sections.items():
            values = data.get(name, {})
            check_section(name, klass, values)
            kwargs[name] = klass(**values)
        config = cls(**kwargs)
        check_choices(config)
        return config

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        """Read a JSON config file; :class:`ConfigError` if it cannot be read or is invalid."""
        try:
            data = json.loads(Path(path).read_text())
        except OSError as err:
            raise ConfigError(f"cannot read {path}: {err.strerror or err}") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ConfigError(f"{path}: not valid JSON ({err})") from None
        return cls.from_dict(data)

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")
