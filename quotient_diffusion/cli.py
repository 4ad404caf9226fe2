"""The ``qdiff`` command. Each subcommand lives in ``quotient_diffusion/commands/<name>.py``
with a function ``register(subparsers)`` that adds its parser and sets ``func``; the function
returns the process exit code.

Exit codes: 0 everything succeeded; 1 some inputs failed (the others were written); 2 bad input:
arguments, config, model file or output path, reported in one line on stderr; 130 interrupted
(Ctrl-C), after writing what was finished.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import NoReturn

# module names under quotient_diffusion.commands; each adds one or more subcommands
COMMAND_MODULES: list[str] = ["train", "conformers", "sets", "sample"]


EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


class OneLineErrorParser(argparse.ArgumentParser):
    """An argument parser that reports a usage error in one line (exit code 2), without the
    usage block; subcommand parsers inherit the class."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="qdiff", description="Diffusion models on quotient spaces for 3D molecular structure."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"quotient_diffusion.commands.{name}").register(sub)
    return parser


def _command_name(args: argparse.Namespace) -> str:
    words = [getattr(args, key, None) for key in ("command", "kind", "sets_command")]
    return " ".join(["qdiff", *[w for w in words if w]])


#: (module, class) of the errors that report bad input in one line
INPUT_ERRORS = (
    ("quotient_diffusion.output", "OutputError"),
    ("quotient_diffusion.training.checkpoint", "CheckpointError"),
    ("quotient_diffusion.training.validation", "ConfigError"),
    ("quotient_diffusion.commands.sampler_options", "SamplerOptionError"),
)


def _is_input_error(err: ValueError) -> bool:
    """A bad config, model file or output path. Only modules already imported are looked at
    (an error cannot come from a module never loaded), so reporting one stays fast."""
    classes = [getattr(sys.modules.get(module), name, None) for module, name in INPUT_ERRORS]
    return isinstance(err, tuple(c for c in classes if c is not None))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"{_command_name(args)}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except ValueError as err:
        if not _is_input_error(err):
            raise
        print(f"{_command_name(args)}: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
