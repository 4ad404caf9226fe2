"""Evaluation metrics, one module per kind of structure (import the submodule you need)."""
