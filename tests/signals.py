"""A callback that sends the process a signal at a chosen training step, as a scheduler's preemption does.

Used by the resume tests through ``--trainer.callbacks+=...`` (importable as ``tests.signals``).
"""

import os
import signal

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback


class SendSignal(Callback):
    """Send ``signum`` to this process when training step ``at_step`` ends (once).

    Args:
        at_step: Global step after which the signal is sent.
        signum: Signal number (15 = SIGTERM, 10 = SIGUSR1 on Linux).
    """

    def __init__(self, at_step: int, signum: int = int(signal.SIGTERM)) -> None:
        self.at_step = at_step
        self.signum = signum

    def on_train_batch_end(self, trainer: "pl.Trainer", *args: object) -> None:
        """Signal once, when the chosen step has just ended."""
        if trainer.global_step == self.at_step and trainer.is_global_zero:
            os.kill(os.getpid(), self.signum)
