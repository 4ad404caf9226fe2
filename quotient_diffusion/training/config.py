"""Training configuration: a readable JSON file, saved inside every checkpoint.

Sections: ``task`` (what data and which model family), ``model`` (network, treatment,
interpolant), ``optim`` (optimiser, batch, steps, EMA) and ``run`` (seed, output folder,
checkpoint and validation cadence). Unknown keys are errors, so a typo never passes silently.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = ["TaskConfig", "ModelConfig", "OptimConfig", "RunConfig", "TrainConfig"]


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
    interpolant: str = "linear"
    augment_rotations: bool = False
    preconditioning: bool = True  # EDM's c_skip / c_out / c_in (diffusion/model.py)
    weighting: str = "unit"  # 'unit' | 'velocity' | 'snr' | 'constant'
    sigma_data: float | None = None  # data std per coordinate (model units); None: the task's
    network_options: dict = field(default_factory=dict)


@dataclass
class OptimConfig:
    lr: float = 1e-3
    batch_size: int = 64
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
        sections = {f.name: f.type for f in dataclasses.fields(cls)}
        unknown = set(data) - set(sections)
        if unknown:
            raise ValueError(f"unknown config section(s): {sorted(unknown)}")
        kwargs = {}
        for f in dataclasses.fields(cls):
            klass = f.default_factory
            values = data.get(f.name, {})
            names = {g.name for g in dataclasses.fields(klass)}
            bad = set(values) - names
            if bad:
                raise ValueError(
                    f"unknown key(s) in [{f.name}]: {sorted(bad)}; known: {sorted(names)}"
                )
            kwargs[f.name] = klass(**values)
        return cls(**kwargs)

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        try:
            data = json.loads(Path(path).read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from None
        return cls.from_dict(data)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")
