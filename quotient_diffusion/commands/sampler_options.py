"""The sampler options every sampling subcommand shares, and the config they make."""

from __future__ import annotations

import argparse

from .arguments import non_negative_float, positive_int, seed


def add_sampler_arguments(parser: argparse.ArgumentParser, default_steps: int) -> None:
    """--steps, --method, --noise-scale, --seed, --threads and --progress."""
    parser.add_argument("--steps", type=positive_int, default=default_steps,
                        help=f"integration steps (default {default_steps})")
    parser.add_argument("--method", choices=("ode", "sde"), default="ode")
    parser.add_argument("--noise-scale", type=non_negative_float, default=1.0,
                        help="SDE noise scale (>= 0)")
    parser.add_argument("--seed", type=seed, default=0, help="random seed in [0, 2**63 - 1]")
    parser.add_argument("--threads", type=positive_int,
                        help="torch threads (default: torch's choice)")
    parser.add_argument("--progress", action="store_true",
                        help="progress bar over sampling steps")


def sampler_from_arguments(args: argparse.Namespace):
    """Set the torch thread count and return the :class:`SamplerConfig` the options ask for."""
    import torch

    from ..diffusion import SamplerConfig

    if args.threads:
        torch.set_num_threads(args.threads)
    return SamplerConfig(steps=args.steps, method=args.method, noise_scale=args.noise_scale,
                         progress=args.progress)
