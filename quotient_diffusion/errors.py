"""The one error class the ``qdiff`` CLI reports as bad input.

:class:`InputError` is the base of every error that says the user's input is wrong (a config, a
model file, an output path, sampler options that do not go together); its message is one line.
The CLI prints that line and exits with status 2. The module imports nothing, so the CLI can
catch the class without loading torch.
"""

from __future__ import annotations

__all__ = ["InputError"]


class InputError(ValueError):
    """Bad input from the user; the message is one line naming what is wrong."""
