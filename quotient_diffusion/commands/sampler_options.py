"""What every sampling subcommand shares: the sampler options and the config they make, and
loading the model of ``--checkpoint`` (or the task's bundled one)."""

from __future__ import annotations

import argparse

from ..errors import InputError
from .arguments import non_negative_float, positive_float, positive_int, seed

#: the choices of --solver and --schedule: ``diffusion.samplers.SOLVERS`` and ``SCHEDULES``
#: (written out so that building the parser imports no torch; tests check they agree)
SOLVERS = ("euler", "heun", "dpm2m")
SCHEDULES = ("uniform", "power", "edm")


class SamplerOptionError(InputError):
    """Sampler options that do not go together (one line on stderr, exit code 2)."""


def add_sampler_arguments(parser: argparse.ArgumentParser, default_steps: int,
                          ode_default: str | None = None) -> None:
    """--steps, --method, --solver, --schedule, --rho, --last-time, --noise-scale, --seed,
    --threads and --progress. Unset sampler options take the command's defaults in
    :func:`sampler_from_arguments`: ``default_steps`` Euler steps on the uniform grid (ODE and
    SDE), or for the ODE the command's own default, described in help by ``ode_default``."""
    ode = ode_default or f"{default_steps} Euler steps, uniform grid"
    parser.add_argument("--steps", type=positive_int, default=None,
                        help=f"integration steps (ODE default: {ode}; SDE default: "
                             f"{default_steps} Euler-Maruyama steps, uniform grid)")
    parser.add_argument("--method", choices=("ode", "sde"), default="ode")
    parser.add_argument("--solver", choices=SOLVERS, default=None,
                        help="ODE solver (the SDE is Euler-Maruyama only)")
    parser.add_argument("--schedule", choices=SCHEDULES, default=None,
                        help="time grid: uniform, power (t = 1 - (1 - k/K)^rho) or edm "
                             "(EDM's sigma-spaced grid)")
    parser.add_argument("--rho", type=positive_float, default=None,
                        help="exponent of the power and edm grids (default 2 and 7)")
    parser.add_argument("--last-time", type=non_negative_float, default=None,
                        help="power grid only: its last interior time t_(K-1), in (0, 1), "
                             "the power law then spanning [0, t_(K-1)]; 0: none (the power "
                             "law's own)")
    parser.add_argument("--noise-scale", type=non_negative_float, default=1.0,
                        help="SDE noise scale (>= 0)")
    parser.add_argument("--seed", type=seed, default=0, help="random seed in [0, 2**63 - 1]")
    parser.add_argument("--threads", type=positive_int,
                        help="torch threads (default: torch's choice)")
    parser.add_argument("--progress", action="store_true",
                        help="progress bar over sampling steps")
    parser.set_defaults(default_steps=default_steps)


def sampler_from_arguments(args: argparse.Namespace, ode_default=None):
    """Set the torch thread count and return the :class:`SamplerConfig` the options ask for:
    unset options come from ``ode_default`` (a SamplerConfig; default: ``default_steps`` Euler
    steps) for the ODE, and from ``default_steps`` Euler-Maruyama steps for the SDE. Raises
    :class:`SamplerOptionError` for options that do not go together."""
    import torch

    from ..diffusion import SamplerConfig, resolve_sampler

    ode = ode_default or SamplerConfig(steps=args.default_steps)
    try:
        config = resolve_sampler(ode, args.default_steps, steps=args.steps, method=args.method,
                                 solver=args.solver, schedule=args.schedule, rho=args.rho,
                                 noise_scale=args.noise_scale, progress=args.progress,
                                 last_time=args.last_time)
    except ValueError as err:
        raise SamplerOptionError(f"sampler options: {err}") from None
    if args.threads:
        torch.set_num_threads(args.threads)
    return config


def load_model(checkpoint: str | None, task: str, noun: str):
    """(task, model) of :func:`~quotient_diffusion.tasks.load` for ``--checkpoint``, or the
    bundled model of ``task`` when it is None; an :class:`InputError` (one line, exit code 2)
    when there is none (``noun`` names the model) or it cannot be loaded."""
    from ..tasks.loading import checkpoint_path, load

    path = checkpoint_path(checkpoint, task)
    if checkpoint is None and not path.is_file():
        raise InputError(f"no bundled {noun} model ({path}); pass --checkpoint")
    try:
        return load(path, task)
    except (OSError, ValueError) as err:
        raise InputError(f"cannot load the model: {err}") from None
