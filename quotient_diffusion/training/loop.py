"""The training loop: seeded, resumable, EMA, periodic validation, optional data parallelism.

Every step draws its batch and its noise from generators seeded by (seed, step, rank), so a run
resumed from a checkpoint continues exactly as the uninterrupted run would have. Launched by
``torchrun --nproc_per_node=K``, the loop joins the process group (gloo on CPU, NCCL on GPU),
wraps the model in DistributedDataParallel and gives each rank its own batches; rank 0 alone
writes checkpoints, logs and the progress bar.

Files in ``run.out_dir``: ``config.json``, ``last.pt`` (atomic, every ``checkpoint_every``
steps), ``final.pt`` and ``metrics.jsonl`` (one JSON object per log line).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from ..data import collate
from ..diffusion import DiffusionModel
from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig
from .ema import EMA

__all__ = ["train", "load_trained_model"]

CHECKPOINT_VERSION = 1


def _init_distributed() -> tuple[int, int]:
    """Join the process group if launched by torchrun; returns (rank, world size)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _step_generator(seed: int, step: int, rank: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + step * 997 + rank)


def train(config: TrainConfig, resume: bool = False, progress: bool = True) -> Path:
    """Train the task's model; returns the path of the final checkpoint."""
    from ..tasks import get_task

    rank, world = _init_distributed()
    if config.run.threads:
        torch.set_num_threads(config.run.threads)
    torch.manual_seed(config.run.seed)
    out = Path(config.run.out_dir)
    task = get_task(config)
    train_set, val_set = task.datasets()
    if len(train_set) == 0:
        raise ValueError("the training set is empty")
    model = task.build_model()
    opt = torch.optim.AdamW(
        model.parameters(), lr=config.optim.lr, weight_decay=config.optim.weight_decay
    )
    ema = EMA(model, config.optim.ema_decay)
    step = 0
    last = out / "last.pt"
    if resume:
        if not last.exists():
            raise FileNotFoundError(f"--resume: no checkpoint at {last}")
        state = load_checkpoint(last)
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["optim"])
        step = state["step"]
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        config.save(out / "config.json")
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)

    def checkpoint(path: Path) -> None:
        if rank == 0:
            save_checkpoint(path, {
                "version": CHECKPOINT_VERSION,
                "config": config.to_dict(),
                "step": step,
                "model": model.state_dict(),
                "ema": ema.state_dict(),
                "optim": opt.state_dict(),
            })

    log = open(out / "metrics.jsonl", "a") if rank == 0 else None
    bar = tqdm(total=config.optim.steps, initial=step, disable=not progress or rank != 0,
               desc=f"train {config.task.name}/{config.model.treatment}")
    t0 = time.perf_counter()
    try:
        while step < config.optim.steps:
            gen = _step_generator(config.run.seed, step, rank)
            idx = torch.randint(len(train_set), (config.optim.batch_size,), generator=gen)
            graph = collate([train_set[i] for i in idx.tolist()])
            model.train()
            loss, logs = net(graph, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if config.optim.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.optim.grad_clip)
            opt.step()
            ema.update(model)
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{logs['loss']:.4f}")
            record = None
            if step % config.run.log_every == 0:
                record = {"step": step, "time": time.perf_counter() - t0, **logs}
            if val_set and (step % config.run.validate_every == 0 or step == config.optim.steps):
                val = task.validate(ema.shadow, val_set)
                record = {**(record or {"step": step, "time": time.perf_counter() - t0}), **val}
            if record and log:
                log.write(json.dumps(record) + "\n")
                log.flush()
            if step % config.run.checkpoint_every == 0:
                checkpoint(last)
    finally:
        bar.close()
        if log:
            log.close()
    checkpoint(last)
    final = out / "final.pt"
    checkpoint(final)
    if world > 1:
        dist.barrier()
    return final


def load_trained_model(
    path: str | Path, use_ema: bool = True
) -> tuple[DiffusionModel, TrainConfig]:
    """Rebuild a model from a checkpoint written by :func:`train` (EMA weights by default)."""
    from ..tasks import get_task

    state = load_checkpoint(path)
    config = TrainConfig.from_dict(state["config"])
    model = get_task(config).build_model()
    model.load_state_dict(state["ema"] if use_ema else state["model"])
    model.eval()
    return model, config
