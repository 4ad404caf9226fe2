"""The training loop: seeded, resumable, EMA, periodic validation, optional data parallelism.

:func:`train` receives its task (data, model, validation: :class:`~.trainable.TrainableTask`)
and the config; the training layer imports no task. Every step draws its batch and its noise
from a generator seeded by (seed, step, rank) (:func:`~.seeding.step_generator`), and the
learning rate and EMA decay are functions of the step (a training set with a ``draw`` method,
such as random crops, draws from the same generator: :func:`~.trainable.draw_graphs`), so a
run resumed from a checkpoint
continues exactly as the uninterrupted run would have. A run is bounded by steps
(``optim.steps``, which also sets the learning-rate schedule) and optionally by wall time
(``hours``): it then stops with a checkpoint and is continued later with ``resume``. Launched by
``torchrun --nproc_per_node=K``, the loop joins the process group (gloo on CPU, NCCL on GPU),
wraps the model in DistributedDataParallel and gives each rank its own batches; rank 0 alone
writes checkpoints, logs and the progress bar.

Device (``run.device``, :func:`resolve_device`): the model, its EMA, the optimiser and every
batch live there; the step's random numbers are still drawn on the CPU and moved, so a CUDA run
sees the noise a CPU run sees. Validation runs on a CPU copy of the EMA (the tasks' metrics use
NumPy and RDKit) and checkpoints hold CPU tensors. There is no mixed precision: the networks
are small (hidden 64), so a step is bound by kernel launches, not arithmetic, and coordinate
updates, alignments and losses need float32. On the CPU nothing changes: runs are bit for bit
what they were before the option existed.

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

import copy
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
from .checkpoint import load_checkpoint, restore_checkpoint, save_checkpoint
from .config import TrainConfig
from .curve import write_curve
from .ema import EMA
from .schedule import learning_rate
from .seeding import step_generator
from .trainable import TrainableTask, draw_graphs, within_pair_budget
from .validation import DEVICES, ConfigError
from .warm_start import warm_start

__all__ = ["train", "upgrade_config", "resolve_device", "CHECKPOINT_VERSION"]

#: 2: preconditioning, Fourier time embedding and radial basis (1: none of them)
CHECKPOINT_VERSION = 2


def resolve_device(name: str = "auto") -> torch.device:
    """The torch device of ``run.device``: 'auto' is CUDA when torch sees a device, else the
    CPU; under torchrun a CUDA run uses the device of its ``LOCAL_RANK``. :class:`ConfigError`
    for a name not in :data:`~.validation.DEVICES` or 'cuda' without a CUDA device."""
    if name not in DEVICES:
        raise ConfigError(f"run.device: unknown device {name!r}; choose one of "
                          f"{', '.join(DEVICES)}")
    cuda = torch.cuda.is_available()
    if name == "cuda" and not cuda:
        raise ConfigError("run.device is 'cuda' but torch sees no CUDA device (use 'auto' "
                          "or 'cpu')")
    if name == "cpu" or not cuda:
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))


def _to_cpu(value: object) -> object:
    """``value`` (a state dict, possibly nested) with every tensor on the CPU, so that a
    checkpoint written on any device loads anywhere with ``weights_only=True``."""
    if isinstance(value, torch.Tensor):
        return value.cpu()
    if isinstance(value, dict):
        moved = type(value)((key, _to_cpu(item)) for key, item in value.items())
        if hasattr(value, "_metadata"):  # a module's state dict: keep its version record
            moved._metadata = value._metadata
        return moved
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(item) for item in value)
    return value


def _on_cpu(module: torch.nn.Module) -> torch.nn.Module:
    """``module`` itself if it lives on the CPU, else a CPU copy (validation runs there: the
    task's metrics use NumPy and RDKit, and every device then reports the same numbers)."""
    if all(p.device.type == "cpu" for p in module.parameters()):
        return module
    return copy.deepcopy(module).cpu()


def _init_distributed(device: torch.device) -> tuple[int, int]:
    """Join the process group if launched by torchrun (NCCL for a CUDA run, else gloo);
    returns (rank, world size)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


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


def _agree(flag: bool, world: int, device: torch.device | None = None) -> bool:
    """True on every rank if it is true on any (ranks must stop at the same step)."""
    if world == 1:
        return flag
    value = torch.tensor([float(flag)], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def train(
    task: TrainableTask,
    config: TrainConfig,
    resume: bool = False,
    progress: bool = True,
    hours: float | None = None,
    until_step: int | None = None,
    init_from: str | Path | None = None,
) -> Path:
    """Train the model of ``task`` (built on ``config``: ``quotient_diffusion.tasks.get_task``)
    as ``config`` says; returns the path of the checkpoint written last (``final.pt`` when
    ``optim.steps`` were reached, else ``last.pt``).

    ``hours`` (wall time) and ``until_step`` end this session early, with a checkpoint that
    ``resume`` continues exactly; the learning-rate schedule always spans ``optim.steps``.
    ``init_from`` initialises a new run from that checkpoint's EMA weights (module docstring;
    :class:`~.checkpoint.CheckpointError` when they do not fit the model).
    """
    if resume and init_from is not None:
        raise ValueError("resume and init_from cannot be combined: a resumed run continues "
                         "its own weights")
    if hours is not None and hours <= 0:
        raise ValueError(f"hours must be positive, got {hours}")
    if until_step is not None and until_step < 1:
        raise ValueError(f"until_step must be at least 1, got {until_step}")
    end = config.optim.steps if until_step is None else min(until_step, config.optim.steps)
    device = resolve_device(config.run.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    rank, world = _init_distributed(device)
    if config.run.threads:
        torch.set_num_threads(config.run.threads)
    torch.manual_seed(config.run.seed)
    out = Path(config.run.out_dir)
    train_set, val_set = task.datasets()
    if len(train_set) == 0:
        raise ValueError("the training set is empty")
    model = task.build_model()
    if init_from is not None:
        warm_start(model, init_from)
    model = model.to(device)  # the same module on the CPU
    opt = torch.optim.AdamW(
        model.parameters(), lr=config.optim.lr, weight_decay=config.optim.weight_decay
    )
    ema = EMA(model, config.optim.ema_decay, config.optim.ema_warmup)
    step, elapsed, history, curve = 0, 0.0, [], []
    last = out / "last.pt"
    if resume:
        if not last.exists():
            raise FileNotFoundError(f"--resume: no checkpoint at {last}")
        state = restore_checkpoint(last, {"model": model, "ema": ema, "optim": opt}, ("step",))
        step = state["step"]
        elapsed = state.get("elapsed_s", 0.0)
        history, curve = state.get("history", []), state.get("curve", [])
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        config.save(out / "config.json")
    net = model
    if world > 1:
        ids = [device.index] if device.type == "cuda" else None
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids,
                                                        find_unused_parameters=True)
    session = {"start_step": step, "end_step": step, "wall_s": 0.0,
               "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "threads": torch.get_num_threads(), "world_size": world,
               "device": device.type}
    if init_from is not None:
        source = load_checkpoint(init_from, ("step",))
        session.update(init_from=str(init_from), init_from_step=source["step"],
                       init_from_history=source.get("history", []))
    history = [*history, session]
    t0 = time.perf_counter()

    portable = _to_cpu if device.type != "cpu" else (lambda state: state)

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
                "model": portable(model.state_dict()),
                "ema": portable(ema.state_dict()),
                "optim": portable(opt.state_dict()),
            })

    log = open(out / "metrics.jsonl", "a") if rank == 0 else None
    bar = tqdm(total=config.optim.steps, initial=step, disable=not progress or rank != 0,
               desc=f"train {config.task.name}/{config.model.treatment}")
    deadline = None if hours is None else t0 + 3600.0 * hours
    last_save = t0
    with _stop_on_signal() as stop:
        try:
            while step < end:
                gen = step_generator(config.run.seed, step, rank)
                idx = torch.randint(len(train_set), (config.optim.batch_size,), generator=gen)
                graphs = draw_graphs(train_set, idx.tolist(), gen)
                graph = collate(within_pair_budget(graphs, config.optim.max_pairs))
                if device.type != "cpu":
                    graph = graph.to(device)
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
                    val = task.validate(_on_cpu(ema.shadow), val_set)
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
                halt = _agree(out_of_time or stop["stop"], world, device) or step == end
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

