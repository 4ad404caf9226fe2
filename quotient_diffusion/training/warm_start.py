r"""Warm start: initialise a new model from another checkpoint's EMA weights.

Every entry of the new model's ``state_dict`` takes the checkpoint's entry of the same name:

* equal shapes: copied;
* the weight W_old (out, k) of a ``Linear`` layer whose input grew to W (out, k + m): the old
  weight in the leading columns and zeros in the new trailing ones, W = [W_old, 0]. A layer
  with an attribute ``fixed_trailing_inputs = f`` (the networks' input embeddings, whose last
  inputs are the time, or the time and the position, after the atom features) keeps its last
  f columns last: W = [W_old[:, :k-f], 0, W_old[:, k-f:]], so the atom features grew (a larger
  element vocabulary, :mod:`quotient_diffusion.chem.featurize`), not the time.

* the entries of a new branch, a module with ``starts_at_zero = True`` whose output is exactly
  zero at initialisation (:class:`~quotient_diffusion.nn.stereo.ChiralityPush`): absent from the
  checkpoint, they keep the new model's initialisation.

Anything else (a name on one side only, any other change of shape) is a
:class:`~.checkpoint.CheckpointError` naming the first such entry. With W = [W_old, 0],
W [s_old; s_new] = W_old s_old whatever the new inputs s_new are, so a model whose layers only
gained trailing inputs computes exactly the old function at step 0 and then learns to use them
(the gradient of the zero block is not zero). This is how a conformer model trained without
stereo becomes a stereo model (:mod:`quotient_diffusion.nn.stereo`: the stereo scalars close the
EGNN's edge vector).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .checkpoint import CheckpointError, load_checkpoint

__all__ = ["warm_start"]


def _linear_weights(model: nn.Module) -> set[str]:
    """State-dict names of the weights of the model's Linear layers."""
    return {f"{name}.weight" if name else "weight" for name, module in model.named_modules()
            if isinstance(module, nn.Linear)}


def _zero_branch_entries(model: nn.Module) -> set[str]:
    """State-dict names under the model's ``starts_at_zero`` modules."""
    return {f"{name}.{key}" for name, module in model.named_modules()
            if getattr(module, "starts_at_zero", False) for key in module.state_dict()}


def _trailing(model: nn.Module) -> dict[str, int]:
    """State-dict weight names of Linear layers -> their ``fixed_trailing_inputs``."""
    return {f"{name}.weight" if name else "weight": int(module.fixed_trailing_inputs)
            for name, module in model.named_modules()
            if isinstance(module, nn.Linear) and getattr(module, "fixed_trailing_inputs", 0)}


def warm_start(model: nn.Module, path: str | Path) -> list[str]:
    """Load the EMA weights of the checkpoint ``path`` into ``model`` by the rules of the module
    docstring; returns the names of the Linear weights whose input grew (zero-padded)."""
    source = load_checkpoint(path, ("ema",))["ema"]
    if not isinstance(source, dict):
        raise CheckpointError(f"{path}: its EMA weights are a {type(source).__name__}")
    target = model.state_dict()
    new_branches = _zero_branch_entries(model)
    missing = [key for key in target if key not in source and key not in new_branches]
    extra = [key for key in source if key not in target]
    if missing or extra:
        what = (f"{missing[0]} is not in the checkpoint" if missing
                else f"the checkpoint's {extra[0]} is not in the model")
        raise CheckpointError(f"{path}: cannot initialise the model from it: {what} "
                              f"({len(missing)} missing, {len(extra)} unused)")
    linear = _linear_weights(model)
    trailing = _trailing(model)
    weights, grown = {}, []
    for key, new in target.items():
        if key not in source:  # a new zero-start branch
            weights[key] = new
            continue
        old = source[key]
        if not isinstance(old, torch.Tensor):
            raise CheckpointError(f"{path}: {key} is a {type(old).__name__}, not a tensor")
        if old.shape == new.shape:
            weights[key] = old
        elif (key in linear and old.dim() == 2 and old.shape[0] == new.shape[0]
              and old.shape[1] < new.shape[1]):
            padded = torch.zeros_like(new)
            f = min(trailing.get(key, 0), old.shape[1])
            padded[:, : old.shape[1] - f] = old[:, : old.shape[1] - f]
            if f:
                padded[:, new.shape[1] - f:] = old[:, old.shape[1] - f:]
            weights[key], grown = padded, [*grown, key]
        else:
            raise CheckpointError(f"{path}: cannot initialise {key} of shape {tuple(new.shape)} "
                                  f"from shape {tuple(old.shape)}")
    model.load_state_dict(weights)
    return grown
