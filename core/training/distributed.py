"""Keep DDP processes in step where only the logging process reads the logged metrics.

Lightning's progress bar runs on rank 0 alone. At the end of a training epoch it reads the epoch's
aggregated logged values *before* the task's ``on_train_epoch_end`` runs, and reading a value logged with
``sync_dist=True`` (such as ``train_loss``) starts an all-reduce. Rank 0 then waits in that all-reduce
while the other ranks have moved on to the next collective (the task's metric synchronisation), and the
run hangs. :class:`EpochMetricsSync` reads the same values on every rank at that hook, so every rank
starts the same collectives in the same order; on rank 0 the progress bar then finds them computed.
"""

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback

__all__ = ["EpochMetricsSync"]


class EpochMetricsSync(Callback):
    """Compute the epoch's logged values on every process where rank 0's progress bar reads them.

    :class:`~core.training.BaseTask` adds it through ``configure_callbacks``; its place among the
    callbacks does not matter: Lightning calls every callback's ``on_train_epoch_end`` before the task's.
    """

    def on_train_epoch_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        """Read the epoch-level values of the training loop on every process."""
        self._read(trainer)

    @staticmethod
    def _read(trainer: "pl.Trainer") -> None:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            trainer.progress_bar_metrics  # noqa: B018 - the read computes (and synchronises) the values
