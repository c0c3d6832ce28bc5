"""Exponential moving average of the weights, used for validation, test and the saved checkpoint.

TLOB (Berti & Kasneci 2025) trains with an EMA of decay 0.999. This wraps Lightning's
:class:`~lightning.pytorch.callbacks.EMAWeightAveraging`, which already does what we need:

* the average is updated after every optimizer step: ``θ̄ ← decay · θ̄ + (1 − decay) · θ``;
* validation runs on the averaged weights (they are swapped in and out around each validation epoch);
* a checkpoint stores the averaged weights as its ``state_dict`` (so ``attnlab test --ckpt_path`` and
  fine-tuning use them) and the raw weights under ``current_model_state`` (so a resumed run continues
  training the raw weights);
* at the end of ``fit`` the averaged weights are copied into the model, so ``trainer.test`` after fit
  uses them too.
"""

from functools import partial
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import EMAWeightAveraging
from torch import Tensor

__all__ = ["EMA", "warmup_ema_update"]


class EMA(EMAWeightAveraging):
    """EMA of the model weights.

    Args:
        decay: EMA decay in (0, 1); 0.999 as in TLOB.
        update_every_n_steps: Update the average every n optimizer steps.
        update_starting_at_step: First optimizer step that updates the average (None: from the start).
        use_buffers: Average buffers (e.g. BatchNorm statistics) as well as parameters.
        warmup: Use ``min(decay, (1 + n) / (10 + n))`` at the n-th update (TensorFlow's
            ``ExponentialMovingAverage(num_updates=...)``): with a fixed decay the first weights keep a
            weight of ``decay^n`` (0.99 over 58 steps: 56 %), which swamps short runs.
    """

    def __init__(
        self,
        decay: float = 0.999,
        update_every_n_steps: int = 1,
        update_starting_at_step: int | None = None,
        use_buffers: bool = True,
        warmup: bool = False,
    ) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA: decay must be in (0, 1), got {decay}")
        if update_every_n_steps < 1:
            raise ValueError(f"EMA: update_every_n_steps must be >= 1, got {update_every_n_steps}")
        super().__init__(
            decay=decay,
            update_every_n_steps=update_every_n_steps,
            update_starting_at_step=update_starting_at_step,
            use_buffers=use_buffers,
        )
        self.decay = decay
        self.warmup = warmup
        if warmup:
            self._kwargs["avg_fn"] = partial(warmup_ema_update, decay=decay)

    def on_load_checkpoint(
        self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", checkpoint: dict[str, Any]
    ) -> None:
        """Restore the average in ``fit``; outside ``fit`` the ``state_dict`` already holds the average."""
        if self._average_model is None:
            return
        super().on_load_checkpoint(trainer, pl_module, checkpoint)


def warmup_ema_update(average: Tensor, current: Tensor, num_averaged: Tensor, decay: float) -> Tensor:
    """One EMA step with the decay ``min(decay, (1 + n) / (10 + n))`` after ``n`` earlier updates."""
    rate = torch.clamp((1.0 + num_averaged) / (10.0 + num_averaged), max=decay).to(average.dtype)
    return rate * average + (1.0 - rate) * current
