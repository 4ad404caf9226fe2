"""The ``qdiff`` command. Each subcommand lives in ``quotient_diffusion/commands/<name>.py``
with a function ``register(subparsers)`` that adds its parser and sets ``func``; the function
returns the process exit code. :data:`COMMANDS` lists those functions (the command modules
import no torch at the top, so building the parser stays fast).

Exit codes: 0 everything succeeded; 1 some inputs failed (the others were written); 2 bad input:
arguments, config, model file or output path (an :class:`~.errors.InputError`), reported in one
line on stderr; 130 interrupted (Ctrl-C), after writing what was finished.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import NoReturn

from .commands import conformers, sample, sets, train
from .errors import InputError

#: the ``register(subparsers)`` functions of the command modules, in the order of ``--help``
COMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    train.register, conformers.register, sets.register, sample.register,
)

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
    for register in COMMANDS:
        register(sub)
    return parser


def _command_name(args: argparse.Namespace) -> str:
    words = [getattr(args, key, None) for key in ("command", "kind", "sets_command")]
    return " ".join(["qdiff", *[w for w in words if w]])


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
    except InputError as err:
        print(f"{_command_name(args)}: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
