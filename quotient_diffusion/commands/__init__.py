"""Subcommands of the ``qdiff`` CLI."""
