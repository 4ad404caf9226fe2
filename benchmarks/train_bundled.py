"""Train every bundled model with its final config, on the CPU or on a CUDA device: one command.

The bundled models and the stages that make them (each stage one ``train()`` run of a committed
config; this script overrides only ``run.out_dir``, ``run.device`` and the warm start):

* ``conformers`` -> ``conformers_qm9.pt`` (``quotient_diffusion/checkpoints/``), three stages:
  ``configs/conformers_qm9.json`` (EGNN 64/4, cosine schedule over 60,000 steps, stopped at step
  20,774 as the bundled model's history records), then ``configs/conformers_qm9_stereo.json``
  (warm start from the first stage's checkpoint, stereo inputs, 30,000 steps), then
  ``configs/conformers_qm9_chiral.json`` (warm start from the stereo stage's ``final.pt``,
  chirality push, 30,000 steps);
* ``druglike`` -> ``conformers_druglike.pt``: ``configs/conformers_ccd.json`` (the drug-like CCD
  set, restrained-MMFF-relaxed targets, elements H C N O F S Cl Br, 40,000 steps), warm-started
  from the ``conformers`` model's last stage ``conformers_qm9_chiral`` (its ``final.pt``: the
  same EMA weights as ``conformers_qm9.pt``, which the bundled model was warm-started from). A
  model whose stage warm-starts from another model's stage needs that model in ``--stages`` too
  (``--stages conformers,druglike``; finished stages are skipped, so this costs nothing once the
  conformer chain is done): ``--stages druglike`` alone is refused with one line rather than
  silently training the conformer chain, and a model always trains after the ones it needs,
  whatever their order in ``--stages``;
* ``molecules`` -> ``denovo_qm9.pt``: ``configs/denovo_qm9.json`` (task ``molecules``; the
  stage, its run folder and the file keep the run's name);
* ``backbones`` -> ``backbones.pt``: ``configs/backbones.json`` (the config recorded in the
  bundled checkpoint, which was trained by an older version of the code: checkpoint version 1).

``--quick`` (a smoke test: :data:`QUICK_STEPS` steps per stage, a tiny validation) trains
:data:`QUICK_MODELS` by default, which leaves out ``druglike``: on a fresh machine its CCD set
takes minutes to build from biotite's CCD (130 s on one thread, docs/data.md; cached in
``$QD_CACHE`` afterwards) and needs the ``[proteins]`` extra. ``--quick --stages
conformers,druglike`` runs it too, without the restrained MMFF relaxation (``relaxed_targets``
false: the experimental coordinates are the targets; relaxing the 29,306 training and
validation molecules took 703 s, 12 minutes, on the machine that trained the bundled model).

Each stage trains in ``<work>/<stage>`` (``--work``, default ``<out>/runs``); the last stage of a
model is exported with :func:`quotient_diffusion.training.export_weights` (what ``qdiff export``
calls) to ``<out>/`` under the bundled file's name and read back with ``load_trained_model``.
``<out>/train_bundled.json`` records, per stage, the steps, wall time, steps per second, device
and the final validation metrics; it is rewritten after every stage.

Resumable: a rerun with the same options continues each unfinished stage from its ``last.pt``
and skips finished ones (a stage's checkpoint trained with other settings is an error, not a
silent restart). ``--hours`` bounds this invocation's wall time, ``--hours-per-stage`` each
stage's; a stage stopped by either is continued by the next rerun, and the later stages of its
model (and of a model warm-started from it) wait for it.

Device: ``--device auto`` (default) trains on CUDA when torch sees a device, else on the CPU
(``run.device``, :func:`quotient_diffusion.training.loop.resolve_device`). There is no mixed
precision: the networks are small (hidden 64), so a GPU step is bound by kernel launches rather
than arithmetic, and the coordinate updates, alignments and losses need float32.

    python benchmarks/train_bundled.py --quick                 # CI: about a minute on the CPU
    python benchmarks/train_bundled.py --out $OUT              # everything, full configs
    python benchmarks/train_bundled.py --out $OUT --scale 0.1 --hours 0.2   # a short trial
    python benchmarks/train_bundled.py --out runs/bundled --stages conformers \\
        --steps conformers_qm9=5000
    python benchmarks/train_bundled.py --out runs/bundled --stages conformers,druglike

Exit codes: 0 every selected stage finished; 3 some stage stopped by a time bound (rerun to
continue); 1 a stage failed (missing data, training error); 2 bad arguments, config, checkpoint
or output path (one line); 130 interrupted, with resumable checkpoints.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import NoReturn

import torch
from _results import write_json

from quotient_diffusion.errors import InputError
from quotient_diffusion.output import check_output
from quotient_diffusion.tasks import checkpoint_config, get_task, load_trained_model
from quotient_diffusion.training import (
    TrainConfig,
    export_weights,
    load_checkpoint,
    train,
)
from quotient_diffusion.training.loop import resolve_device
from quotient_diffusion.training.validation import DEVICES

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
SUMMARY = "train_bundled.json"
#: steps of every stage in --quick mode
QUICK_STEPS = 20
#: task options that make --quick's validation tiny (and skip the 11 s GEOM-QM9 test-set
#: exclusion, which only matters for a model that is benchmarked on that set)
QUICK_OPTIONS = {
    "conformers": {"num_val": 8, "quality_molecules": 4, "exclude_geom_test": False},
    "molecules": {"num_val": 8, "quality_molecules": 4},
    "backbones": {"quality_chains": 1},
}
#: further --quick task options of single stages: the CCD stage trains on the experimental
#: coordinates (the restrained MMFF relaxation of the molecules it uses takes 12 minutes)
QUICK_STAGE_OPTIONS = {"conformers_ccd": {"relaxed_targets": False}}
#: why the networks train in float32 everywhere (recorded in the summary)
MIXED_PRECISION = ("off: the networks are small (hidden 64), so a GPU step is bound by kernel "
                   "launches, not arithmetic, and coordinate updates, alignments and losses "
                   "need float32")
EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OUT_OF_TIME, EXIT_INTERRUPTED = 2, 1, 3, 130


@dataclass(frozen=True)
class Stage:
    """One training run of a bundled model's chain."""

    name: str  # also the folder under --work
    config: str  # file name under configs/
    stop_at: int | None = None  # end the run at this step (the schedule still spans optim.steps)
    init_from: str | None = None  # the stage whose checkpoint warm-starts this one


@dataclass(frozen=True)
class BundledModel:
    """A bundled model: the stages that train it, in order, and the file it is exported to."""

    export: str
    stages: tuple[Stage, ...]


MODELS: dict[str, BundledModel] = {
    "conformers": BundledModel("conformers_qm9.pt", (
        Stage("conformers_qm9", "conformers_qm9.json", stop_at=20_774),
        Stage("conformers_qm9_stereo", "conformers_qm9_stereo.json", init_from="conformers_qm9"),
        Stage("conformers_qm9_chiral", "conformers_qm9_chiral.json",
              init_from="conformers_qm9_stereo"),
    )),
    "druglike": BundledModel("conformers_druglike.pt", (
        Stage("conformers_ccd", "conformers_ccd.json", init_from="conformers_qm9_chiral"),
    )),
    "molecules": BundledModel("denovo_qm9.pt", (Stage("denovo_qm9", "denovo_qm9.json"),)),
    "backbones": BundledModel("backbones.pt", (Stage("backbones", "backbones.json"),)),
}
STAGE_NAMES = [stage.name for model in MODELS.values() for stage in model.stages]
#: the model each stage belongs to
STAGE_MODEL = {stage.name: name for name, model in MODELS.items() for stage in model.stages}
#: the models --quick trains unless --stages names others: all but ``druglike``, whose CCD set
#: takes minutes to build on a fresh machine (module docstring)
QUICK_MODELS = [name for name in MODELS if name != "druglike"]


def needed_models(name: str) -> list[str]:
    """The other models whose stages warm-start the stages of model ``name``."""
    return list(dict.fromkeys(STAGE_MODEL[stage.init_from] for stage in MODELS[name].stages
                              if stage.init_from is not None
                              and STAGE_MODEL[stage.init_from] != name))


class UsageError(Exception):
    """A bad command line; the message is one line."""


@dataclass
class Plan:
    """The options of one invocation, checked."""

    out: Path
    work: Path
    models: list[str]
    device: str
    quick: bool = False
    scale: float = 1.0
    steps: dict[str, int] = field(default_factory=dict)
    hours: float | None = None
    hours_per_stage: float | None = None
    threads: int | None = None
    progress: bool = True


# ------------------------------------------------------------------------------ arguments
class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see --help)\n")


def _positive(kind: type) -> Callable[[str], float]:
    def parse(text: str) -> float | int:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not value > 0 or value != value or value == float("inf"):
            raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text!r}")
        return value

    return parse


def _step_overrides(items: list[str]) -> dict[str, int]:
    """``STAGE=N`` items (comma-separated or repeated) as {stage: N}."""
    steps: dict[str, int] = {}
    for item in ",".join(items).split(","):
        if not item.strip():
            continue
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or name not in STAGE_NAMES:
            raise UsageError(f"--steps: expected STAGE=N with STAGE one of "
                             f"{', '.join(STAGE_NAMES)}, got {item!r}")
        try:
            count = int(value)
        except ValueError:
            raise UsageError(f"--steps: {name}: not an integer: {value!r}") from None
        if count < 1:
            raise UsageError(f"--steps: {name}: must be at least 1, got {count}")
        steps[name] = count
    return steps


def _in_training_order(models: list[str]) -> list[str]:
    """``models`` in the order given, except that the models a model's warm start needs are
    moved to just before it (where they come later); :class:`UsageError` when one of those is
    not in ``models``."""
    for name in models:
        missing = [other for other in needed_models(name) if other not in models]
        if missing:
            sources = [stage.init_from for stage in MODELS[name].stages
                       if stage.init_from is not None
                       and STAGE_MODEL[stage.init_from] in missing]
            raise UsageError(
                f"--stages: {name} warm-starts from {', '.join(sources)} of model(s) "
                f"{', '.join(missing)}: name them too, e.g. --stages "
                f"{','.join([*missing, name])} (their finished stages are skipped)")
    ordered: list[str] = []

    def add(name: str) -> None:
        if name not in ordered:
            for other in needed_models(name):
                add(other)
            ordered.append(name)

    for name in models:
        add(name)
    return ordered


def parse_args(argv: list[str] | None = None) -> Plan:
    """The :class:`Plan` of a command line (:class:`UsageError` or exit 2 when it is bad)."""
    p = _Parser(prog="train_bundled.py", description=__doc__.splitlines()[0])
    p.add_argument("--out", help="folder for the exported models and train_bundled.json "
                   "(required unless --quick, which defaults to a new temporary folder)")
    p.add_argument("--work", help="folder for the stages' training runs (default <out>/runs)")
    p.add_argument("--stages",
                   help=f"models to train, comma-separated (default {','.join(MODELS)}; "
                   f"--quick: {','.join(QUICK_MODELS)}); a model trains after the ones its "
                   "warm start needs, which must be named too")
    p.add_argument("--device", default="auto", choices=DEVICES,
                   help="auto (CUDA when available, else CPU), cpu or cuda")
    p.add_argument("--quick", action="store_true",
                   help=f"{QUICK_STEPS} steps per stage and a tiny validation (a smoke test; "
                   "druglike only where --stages names it)")
    p.add_argument("--scale", type=_positive(float), default=1.0,
                   help="multiply every stage's steps, stop step and warm-up (e.g. 0.1)")
    p.add_argument("--steps", action="append", default=[], metavar="STAGE=N",
                   help="set a stage's optim.steps (its schedule spans them; a stop step is "
                   f"dropped); stages: {', '.join(STAGE_NAMES)}")
    p.add_argument("--hours", type=_positive(float), help="wall-time bound of this invocation")
    p.add_argument("--hours-per-stage", type=_positive(float),
                   help="wall-time bound of each stage in this invocation")
    p.add_argument("--threads", type=_positive(int),
                   help="torch CPU threads of every stage (default: each config's run.threads; "
                   "--quick: 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    stages = args.stages
    if stages is None:
        stages = ",".join(QUICK_MODELS if args.quick else MODELS)
    models = list(dict.fromkeys(name.strip() for name in stages.split(",") if name.strip()))
    unknown = [name for name in models if name not in MODELS]
    if unknown or not models:
        raise UsageError(f"--stages: unknown model(s) {', '.join(map(repr, unknown)) or 'none'}"
                         f"; choose from {', '.join(MODELS)}")
    models = _in_training_order(models)
    if args.quick and (args.steps or args.scale != 1.0):
        raise UsageError("--quick sets the steps itself: drop --steps / --scale")
    if args.out is None and not args.quick:
        raise UsageError("--out is required (only --quick defaults to a temporary folder)")
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="train_bundled_"))
    work = Path(args.work) if args.work else out / "runs"
    for folder in dict.fromkeys((out, work)):
        try:
            check_output(folder, "dir")
        except InputError as err:
            raise UsageError(str(err)) from None
    return Plan(out=out, work=work, models=models, device=args.device,
                quick=args.quick, scale=args.scale, steps=_step_overrides(args.steps),
                hours=args.hours, hours_per_stage=args.hours_per_stage,
                # --quick: one thread (two spinning OpenMP threads ran a step 10x slower on a
                # busy 2-core machine)
                threads=args.threads or (1 if args.quick else None),
                progress=not args.no_progress)


# ------------------------------------------------------------------------------ stages
def stage_config(stage: Stage, plan: Plan) -> tuple[TrainConfig, int]:
    """The stage's config with this invocation's overrides, and the step it ends at."""
    config = TrainConfig.load(CONFIGS / stage.config)
    config.run.out_dir = str(plan.work / stage.name)
    config.run.device = plan.device
    if plan.threads is not None:
        config.run.threads = plan.threads
    optim = config.optim
    stop_at = stage.stop_at
    if plan.quick:
        optim.steps, stop_at = QUICK_STEPS, None
        optim.warmup_steps = min(optim.warmup_steps, 5)
        config.run.validate_every = config.run.checkpoint_every = QUICK_STEPS
        config.run.log_every = 10
        config.task.options.update(QUICK_OPTIONS.get(config.task.name, {}))
        config.task.options.update(QUICK_STAGE_OPTIONS.get(stage.name, {}))
    elif stage.name in plan.steps:
        optim.steps, stop_at = plan.steps[stage.name], None
    elif plan.scale != 1.0:
        optim.steps = max(1, round(optim.steps * plan.scale))
        optim.warmup_steps = round(optim.warmup_steps * plan.scale)
        stop_at = None if stop_at is None else max(1, round(stop_at * plan.scale))
    end = optim.steps if stop_at is None else min(stop_at, optim.steps)
    return config, end


def _comparable(config: dict) -> dict:
    """What must agree between a stage's saved run and this invocation's config: everything
    but the output folder, device and threads (a run may continue elsewhere)."""
    run = {k: v for k, v in config.get("run", {}).items()
           if k not in ("out_dir", "device", "threads")}
    return {**config, "run": run}


def saved_state(config: TrainConfig) -> tuple[int, Path] | None:
    """(step, checkpoint) of the stage's latest checkpoint (``final.pt`` when present), None
    when it has none; :class:`InputError` when it was trained with another config."""
    out = Path(config.run.out_dir)
    path = next((out / name for name in ("final.pt", "last.pt") if (out / name).exists()), None)
    if path is None:
        return None
    state = load_checkpoint(path, ("config", "step"))
    saved = checkpoint_config(state)  # today's task name, as in configs/
    mine, theirs = _comparable(config.to_dict()), _comparable(saved.to_dict())
    if mine != theirs:
        keys = [f"{section}.{key}" for section in mine for key in
                sorted(set(mine[section]) | set(theirs.get(section, {})))
                if mine[section].get(key) != theirs.get(section, {}).get(key)]
        raise InputError(f"{path} was trained with other settings ({', '.join(keys[:4])}); "
                         "rerun with the same options or use another --out/--work")
    return int(state["step"]), path


def final_metrics(path: Path) -> dict:
    """The last validation record of a checkpoint's learning curve ({} if none)."""
    curve = load_checkpoint(path).get("curve") or []
    return dict(curve[-1]) if curve else {}


def run_stage(stage: Stage, plan: Plan, sources: dict[str, Path],
              budget_s: float | None) -> dict:
    """Train (or skip, or resume) one stage; returns its summary record. ``sources`` maps each
    finished stage to its output checkpoint; ``budget_s`` bounds this stage's wall time."""
    config, end = stage_config(stage, plan)
    record = {"stage": stage.name, "config": f"configs/{stage.config}", "target_step": end,
              "schedule_steps": config.optim.steps, "out_dir": config.run.out_dir}
    init_from = None
    if stage.init_from is not None:
        if stage.init_from not in sources:
            return {**record, "status": f"waiting for {stage.init_from}"}
        init_from = sources[stage.init_from]
        record["init_from"] = str(init_from)
    saved = saved_state(config)
    if saved is not None and saved[0] >= end:
        step, path = saved
        return {**record, "status": "done earlier", "step": step, "checkpoint": str(path),
                "elapsed_s": load_checkpoint(path).get("elapsed_s"),
                "final_val": final_metrics(path)}
    if budget_s is not None and budget_s <= 0:
        return {**record, "status": "not started: out of time",
                "step": 0 if saved is None else saved[0]}
    resume = saved is not None
    start = 0 if saved is None else saved[0]
    print(f"{stage.name}: {'resuming at step ' + str(start) if resume else 'training'} to step "
          f"{end} on {resolve_device(plan.device)}"
          + (f", warm start from {init_from}" if init_from and not resume else ""), flush=True)
    t0 = time.perf_counter()
    path = train(get_task(config), config, resume=resume, progress=plan.progress,
                 hours=None if budget_s is None else budget_s / 3600.0, until_step=end,
                 init_from=None if resume else init_from)
    wall = time.perf_counter() - t0
    state = load_checkpoint(path, ("step",))
    step = int(state["step"])
    if step >= end:
        status = "trained"
    elif budget_s is not None and wall >= budget_s:
        status = "stopped: out of time"
    else:
        status = "interrupted"
    curve = state.get("curve") or []
    # the loop's own time (steps, validation, checkpoints), without loading the data
    loop_s = float((state.get("history") or [{}])[-1].get("wall_s") or wall)
    return {**record, "status": status, "start_step": start, "step": step,
            "checkpoint": str(path), "wall_s": round(wall, 2), "train_s": round(loop_s, 2),
            "steps_per_s": round((step - start) / loop_s, 3) if loop_s > 0 else None,
            "elapsed_s": state.get("elapsed_s"), "device": str(resolve_device(plan.device)),
            "final_val": dict(curve[-1]) if curve else {}}


def export_model(name: str, model: BundledModel, plan: Plan, source: Path) -> dict:
    """Export the model's last stage to ``<out>/<export>`` and load it back."""
    target = plan.out / model.export
    export_weights(source, target)
    loaded, config = load_trained_model(target)
    return {"path": str(target), "from": str(source),
            "parameters": sum(p.numel() for p in loaded.parameters()),
            "step": int(load_checkpoint(target, ("step",))["step"]), "task": config.task.name}


def _line(record: dict) -> str:
    """One printed line per stage."""
    text = f"{record['stage']}: {record['status']}"
    if "step" in record:
        text += f", step {record['step']} of {record['target_step']}"
    if record.get("wall_s") is not None:
        text += (f" in {record['wall_s']:.1f} s ({record['train_s']:.1f} s in the loop, "
                 f"{record['steps_per_s']} steps/s)")
    val = record.get("final_val") or {}
    if "val_loss" in val:
        text += f", val_loss {val['val_loss']:.4f} at step {val['step']}"
    return text


def run(plan: Plan) -> int:
    """Train the plan's models in order; writes the summary after every stage; exit code."""
    device = resolve_device(plan.device)
    started = time.perf_counter()
    summary = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               "device": str(device), "device_name": (torch.cuda.get_device_name(device)
                                                      if device.type == "cuda" else
                                                      platform.processor() or "cpu"),
               "torch": torch.__version__, "quick": plan.quick, "scale": plan.scale,
               "step_overrides": plan.steps, "hours": plan.hours,
               "hours_per_stage": plan.hours_per_stage, "out": str(plan.out),
               "work": str(plan.work), "mixed_precision": MIXED_PRECISION, "models": {}}
    plan.out.mkdir(parents=True, exist_ok=True)

    def write() -> None:
        summary["wall_s"] = round(time.perf_counter() - started, 2)
        write_json(plan.out / SUMMARY, summary, indent=2)

    code = 0
    # each finished stage's checkpoint, across models (a stage may warm-start from another
    # model's stage, which parse_args put earlier in plan.models)
    sources: dict[str, Path] = {}
    for name in plan.models:
        model = MODELS[name]
        entry = {"export": None, "stages": []}
        summary["models"][name] = entry
        for stage in model.stages:
            budgets = []
            if plan.hours is not None:
                budgets.append(3600.0 * plan.hours - (time.perf_counter() - started))
            if plan.hours_per_stage is not None:
                budgets.append(3600.0 * plan.hours_per_stage)
            record = run_stage(stage, plan, sources, min(budgets) if budgets else None)
            entry["stages"].append(record)
            write()
            print(_line(record), flush=True)
            if record["status"] == "interrupted":
                return EXIT_INTERRUPTED
            if record["status"] in ("trained", "done earlier"):
                sources[stage.name] = Path(record["checkpoint"])
            else:
                code = code or EXIT_OUT_OF_TIME
        last = model.stages[-1].name
        if last in sources:
            entry["export"] = export_model(name, model, plan, sources[last])
            write()
            print(f"{name}: exported {entry['export']['path']} (step "
                  f"{entry['export']['step']})", flush=True)
    write()
    print(f"wrote {plan.out / SUMMARY} ({summary['wall_s']:.1f} s on {device})", flush=True)
    return code


def main(argv: list[str] | None = None) -> int:
    try:
        plan = parse_args(argv)
        resolve_device(plan.device)  # 'cuda' without a device: one line, exit 2
    except (UsageError, InputError) as err:
        print(f"train_bundled.py: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        return run(plan)
    except KeyboardInterrupt:
        print("train_bundled.py: interrupted (rerun the same command to continue)",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    except InputError as err:
        print(f"train_bundled.py: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        print(f"train_bundled.py: failed: {first}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
