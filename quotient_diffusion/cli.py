"""The ``qdiff`` command. Each subcommand lives in ``quotient_diffusion/commands/<name>.py``
with a function ``register(subparsers)`` that adds its parser and sets ``func``; the function
returns the process exit code (0 = everything succeeded)."""

from __future__ import annotations

import argparse
import importlib
import sys

# module names under quotient_diffusion.commands; each adds one or more subcommands
COMMAND_MODULES: list[str] = ["train", "conformers", "sets", "sample"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qdiff", description="Diffusion models on quotient spaces for 3D molecular structure."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"quotient_diffusion.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
