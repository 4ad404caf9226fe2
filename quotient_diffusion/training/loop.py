"""The training loop: seeded, resumable, EMA, periodic validation, optional data parallelism.

Every step draws its batch and its noise from generators seeded by (seed, step, rank), and the
learning rate and EMA decay are functions of the step, so a run resumed from a checkpoint
continues exactly as the uninterrupted run would have. A run is bounded by steps
(``optim.steps``, which also sets the learning-rate schedule) and optionally by wall time
(``hours``): it then stops with a checkpoint and is continued later with ``resume``. Launched by
``torchrun --nproc_per_node=K``, the loop joins the process group (gloo on CPU, NCCL on GPU),
wraps the model in DistributedDataParallel and gives each rank its own batches; rank 0 alone
writes checkpoints, logs and the progress bar.

Files in ``run.out_dir``: ``config.json``, ``last.pt`` (atomic, every ``checkpoint_every``
steps and every ``checkpoint_minutes``), ``final.pt`` (when ``optim.steps`` is reached),
``metrics.jsonl`` (one JSON object per log line) and the learning curve ``curve.json`` /
``curve.png`` (validation loss by noise level and the task's quality metrics). The checkpoint
carries the run's ``history`` (one entry per session: steps, wall time, date) and its curve.

``init_from`` starts a new run (step 0, fresh optimiser) from another checkpoint's EMA weights
(:func:`~.warm_start.warm_start`: equal shapes copied, grown Linear inputs zero-padded, new
zero-start branches kept at zero); the
first session of its history names that checkpoint. It cannot be combined with ``resume``.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from ..data import collate
from ..diffusion import DiffusionModel
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import ConfigError, TrainConfig
from .curve import write_curve
from .ema import EMA
from .schedule import learning_rate
from .warm_start import warm_start

__all__ = ["train", "load_trained_model", "upgrade_config"]

#: 2: preconditioning, Fourier time embedding and radial basis (1: none of them)
CHECKPOINT_VERSION = 2


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


@contextmanager
def _stop_on_signal():
    """A flag set by the first SIGINT / SIGTERM (a second SIGINT interrupts at once), so that
    the loop stops between steps with a consistent checkpoint."""
    flag = {"stop": False}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        if flag["stop"] and signum == signal.SIGINT:
            raise KeyboardInterrupt
        flag["stop"] = True

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _agree(flag: bool, world: int) -> bool:
    """True on every rank if it is true on any (ranks must stop at the same step)."""
    if world == 1:
        return flag
    value = torch.tensor([float(flag)])
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def train(
    config: TrainConfig,
    resume: bool = False,
    progress: bool = True,
    hours: float | None = None,
    until_step: int | None = None,
    init_from: str | Path | None = None,
) -> Path:
    """Train the task's model; returns the path of the checkpoint written last (``final.pt``
    when ``optim.steps`` were reached, else ``last.pt``).

    ``hours`` (wall time) and ``until_step`` end this session early, with a checkpoint that
    ``resume`` continues exactly; the learning-rate schedule always spans ``optim.steps``.
    ``init_from`` initialises a new run from that checkpoint's EMA weights (module docstring;
    :class:`~.checkpoint.CheckpointError` when they do not fit the model).
    """
    from ..tasks import get_task

    if resume and init_from is not None:
        raise ValueError("resume and init_from cannot be combined: a resumed run continues "
                         "its own weights")
    if hours is not None and hours <= 0:
        raise ValueError(f"hours must be positive, got {hours}")
    if until_step is not None and until_step < 1:
        raise ValueError(f"until_step must be at least 1, got {until_step}")
    end = config.optim.steps if until_step is None else min(until_step, config.optim.steps)
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
    if init_from is not None:
        warm_start(model, init_from)
    opt = torch.optim.AdamW(
        model.parameters(), lr=config.optim.lr, weight_decay=config.optim.weight_decay
    )
    ema = EMA(model, config.optim.ema_decay, config.optim.ema_warmup)
    step, elapsed, history, curve = 0, 0.0, [], []
    last = out / "last.pt"
    if resume:
        if not last.exists():
            raise FileNotFoundError(f"--resume: no checkpoint at {last}")
        state = load_checkpoint(last, ("model", "ema", "optim", "step"))
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["optim"])
        step = state["step"]
        elapsed = state.get("elapsed_s", 0.0)
        history, curve = state.get("history", []), state.get("curve", [])
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        config.save(out / "config.json")
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)
    session = {"start_step": step, "end_step": step, "wall_s": 0.0,
               "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "threads": torch.get_num_threads(), "world_size": world}
    if init_from is not None:
        source = load_checkpoint(init_from, ("step",))
        session.update(init_from=str(init_from), init_from_step=source["step"],
                       init_from_history=source.get("history", []))
    history = [*history, session]
    t0 = time.perf_counter()

    def checkpoint(path: Path) -> None:
        if rank == 0:
            session.update(end_step=step, wall_s=time.perf_counter() - t0)
            save_checkpoint(path, {
                "version": CHECKPOINT_VERSION,
                "config": config.to_dict(),
                "step": step,
                "elapsed_s": elapsed + session["wall_s"],
                "history": history,
                "curve": curve,
                "model": model.state_dict(),
                "ema": ema.state_dict(),
                "optim": opt.state_dict(),
            })

    log = open(out / "metrics.jsonl", "a") if rank == 0 else None
    bar = tqdm(total=config.optim.steps, initial=step, disable=not progress or rank != 0,
               desc=f"train {config.task.name}/{config.model.treatment}")
    deadline = None if hours is None else t0 + 3600.0 * hours
    last_save = t0
    with _stop_on_signal() as stop:
        try:
            while step < end:
                gen = _step_generator(config.run.seed, step, rank)
                idx = torch.randint(len(train_set), (config.optim.batch_size,), generator=gen)
                graph = collate([train_set[i] for i in idx.tolist()])
                for group in opt.param_groups:
                    group["lr"] = learning_rate(config.optim, step)
                model.train()
                loss, logs = net(graph, gen)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if config.optim.grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.optim.grad_clip)
                opt.step()
                ema.update(model, step)
                step += 1
                bar.update(1)
                bar.set_postfix(loss=f"{logs['loss']:.4f}")
                now = time.perf_counter()
                record = None
                if step % config.run.log_every == 0:
                    lr = opt.param_groups[0]["lr"]
                    record = {"step": step, "time": now - t0, "lr": lr, **logs}
                done = step == config.optim.steps
                if val_set and (step % config.run.validate_every == 0 or done):
                    val = task.validate(ema.shadow, val_set)
                    hours_so_far = (elapsed + time.perf_counter() - t0) / 3600.0
                    curve.append({"step": step, "hours": round(hours_so_far, 4), **val})
                    record = {**(record or {"step": step, "time": now - t0}), **val}
                    if rank == 0:
                        write_curve(curve, out, f"{config.task.name}: {config.model.network} "
                                    f"{config.model.hidden}/{config.model.layers}, "
                                    f"{config.model.treatment}")
                if record and log:
                    log.write(json.dumps(record) + "\n")
                    log.flush()
                out_of_time = deadline is not None and now >= deadline
                halt = _agree(out_of_time or stop["stop"], world) or step == end
                if (step % config.run.checkpoint_every == 0 or halt
                        or now - last_save >= 60.0 * config.run.checkpoint_minutes):
                    checkpoint(last)
                    last_save = time.perf_counter()
                if halt:
                    break
        finally:
            bar.close()
            if log:
                log.close()
    checkpoint(last)
    if step < config.optim.steps:
        return last
    final = out / "final.pt"
    checkpoint(final)
    if world > 1:
        dist.barrier()
    return final


def upgrade_config(config: dict, version: int) -> dict:
    """The config of a checkpoint of an older ``version``, with the options that reproduce its
    model under today's defaults (version 1: no preconditioning, time only as an input scalar,
    no radial basis in the EGNN; 'velocity' loss weights)."""
    if version >= CHECKPOINT_VERSION:
        return config
    model = dict(config.get("model", {}))
    model.setdefault("preconditioning", False)
    model.setdefault("weighting", "velocity")
    options = dict(model.get("network_options", {}))
    if model.get("network", "egnn") in ("egnn", "transformer"):
        options.setdefault("time_features", 0)
    if model.get("network", "egnn") == "egnn":
        options.setdefault("num_rbf", 0)
    model["network_options"] = options
    return {**config, "model": model}


def load_trained_model(
    path: str | Path, use_ema: bool = True
) -> tuple[DiffusionModel, TrainConfig]:
    """Rebuild a model from a checkpoint written by :func:`train` (EMA weights by default);
    :class:`~.checkpoint.CheckpointError` if the file does not hold one."""
    from ..tasks import get_task

    weights = "ema" if use_ema else "model"
    state = load_checkpoint(path, ("config", weights))
    if not isinstance(state["config"], dict):
        raise CheckpointError(f"{path}: its config is a {type(state['config']).__name__}")
    try:
        config = TrainConfig.from_dict(upgrade_config(state["config"], state.get("version", 1)))
    except ConfigError as err:
        raise CheckpointError(f"{path}: bad config in the checkpoint: {err}") from None
    model = get_task(config).build_model()
    try:
        model.load_state_dict(state[weights])
    except (RuntimeError, TypeError, AttributeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: the weights do not fit its model ({first})") from None
    model.eval()
    return model, config
