"""Training a :class:`~.vae.SetVAE`: seeded, with atomic and resumable checkpoints.

The model and its loss are the set VAE's own; seeding, checkpoints and resuming are those of
:mod:`quotient_diffusion.training`. The batch of step ``t`` and the model's noise
(reparameterisation, i.i.d. creation) are drawn from
:func:`~quotient_diffusion.training.step_generator` ``(seed, t)``, so a run resumed from
``last.pt`` continues as the uninterrupted run would. A checkpoint holds the model config, the
weights, the optimiser state, the step and a description of the data; it is written by
:func:`~quotient_diffusion.training.save_checkpoint` (atomic), read by
:func:`~quotient_diffusion.training.load_checkpoint` (``weights_only``) and resumed by
:func:`~quotient_diffusion.training.restore_checkpoint`. Interrupted by Ctrl-C, training writes
``last.pt`` at the last finished step before re-raising.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..training.checkpoint import (
    CheckpointError,
    load_checkpoint,
    restore_checkpoint,
    save_checkpoint,
)
from ..training.seeding import step_generator
from .dataset import SetDataset
from .vae import SetVAE, SetVAEConfig

__all__ = ["train_set_vae", "load_set_model", "CHECKPOINT_KEYS"]

#: entries every set checkpoint holds
CHECKPOINT_KEYS = ("model_config", "model", "optimizer", "step")


def load_set_model(path: str | Path) -> tuple[SetVAE, dict]:
    """The trained model of a checkpoint (in eval mode) and the checkpoint itself."""
    state = load_checkpoint(path, CHECKPOINT_KEYS)
    try:
        model = SetVAE(SetVAEConfig(**state["model_config"]))
        model.load_state_dict(state["model"])
    except (TypeError, ValueError, RuntimeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path} does not hold a set model ({first})") from None
    return model.eval(), state


def train_set_vae(
    model: SetVAE,
    data: SetDataset,
    steps: int,
    batch_size: int = 32,
    lr: float = 5e-4,
    seed: int = 0,
    out_dir: str | Path | None = None,
    checkpoint_every: int = 500,
    resume: bool = False,
    progress: bool = False,
    extra: dict | None = None,
) -> list[dict[str, float]]:
    """Adam on the VAE loss for ``steps`` steps; returns the per-step loss terms.

    With ``out_dir``: ``last.pt`` every ``checkpoint_every`` steps, at the end and on Ctrl-C;
    ``resume`` continues from it (a :class:`CheckpointError` if there is none). ``extra`` is
    stored in the checkpoint (a description of the data).
    """
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    start = 0
    last = Path(out_dir) / "last.pt" if out_dir is not None else None
    if resume and last is not None:
        state = restore_checkpoint(last, {"model": model, "optimizer": opt}, CHECKPOINT_KEYS)
        start = state["step"]

    def save(step: int) -> None:
        if last is not None:
            save_checkpoint(
                last,
                {
                    "model_config": model.config.to_dict(),
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "step": step,
                    "seed": seed,
                    **(extra or {}),
                },
            )

    history: list[dict[str, float]] = []
    model.train()
    bar = tqdm(range(start, steps), disable=not progress, desc="sets", initial=start, total=steps)
    done = start
    try:
        for step in bar:
            gen = step_generator(seed, step)
            index = torch.randint(len(data), (batch_size,), generator=gen)
            terms = model.loss(data.batch(index), generator=gen)
            opt.zero_grad(set_to_none=True)
            terms["total"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            done = step + 1
            history.append({k: float(v.detach()) for k, v in terms.items()})
            if progress:
                bar.set_postfix(recon=f"{history[-1]['recon']:.4f}")
            if done % checkpoint_every == 0:
                save(done)
    except KeyboardInterrupt:
        save(done)
        raise
    finally:
        bar.close()
    save(steps)
    model.eval()
    return history
