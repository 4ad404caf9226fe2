"""``qdiff sample KIND ...``: sample structures from a trained model.

Each kind is a module under ``quotient_diffusion.commands`` with ``register(kinds)`` that adds
its parser to the ``kinds`` subparsers and sets ``func``. Adding a kind = one module + its
``register`` in :data:`KINDS`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from . import sample_backbones, sample_molecules

#: the ``register(kinds)`` functions of the kinds of ``qdiff sample``, in the order of ``--help``
KINDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    sample_backbones.register, sample_molecules.register,
)


def register(sub) -> None:
    p = sub.add_parser("sample", help="sample structures from a trained model",
                       description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    kinds = p.add_subparsers(dest="kind", metavar="KIND")
    for register_kind in KINDS:
        register_kind(kinds)

    def usage(args) -> int:
        p.print_help()
        return 2

    p.set_defaults(func=usage)
