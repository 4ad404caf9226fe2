"""``qdiff sample KIND ...``: sample structures from a trained model.

Each kind is a module under ``quotient_diffusion.commands`` with ``register(kinds)`` that adds
its parser to the ``kinds`` subparsers and sets ``func``. Adding a kind = one module + one entry
in ``SAMPLE_MODULES``.
"""

from __future__ import annotations

import argparse
import importlib

# module names under quotient_diffusion.commands; each adds one kind of `qdiff sample`
SAMPLE_MODULES: list[str] = ["sample_backbones", "sample_molecules"]


def register(sub) -> None:
    p = sub.add_parser("sample", help="sample structures from a trained model",
                       description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    kinds = p.add_subparsers(dest="kind", metavar="KIND")
    for name in SAMPLE_MODULES:
        importlib.import_module(f"quotient_diffusion.commands.{name}").register(kinds)

    def usage(args) -> int:
        p.print_help()
        return 2

    p.set_defaults(func=usage)
