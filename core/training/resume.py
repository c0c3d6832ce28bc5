"""What a checkpoint needs so that a resumed run continues exactly as the uninterrupted one would have.

Lightning's checkpoints lack three things for that:

* the random states (torch, CUDA, numpy, python): a resumed run draws other dropout masks and crops;
* the epoch's ``ReduceLROnPlateau`` step: Lightning saves epoch-end checkpoints before that step and skips
  it for the epoch it resumes in, so the resumed run keeps a learning rate the original had reduced;
* a checkpoint when the run is stopped: on SIGTERM Lightning ends the run, saves nothing and exits 0.

:class:`ResumeState` (every :class:`~core.training.BaseTask` adds it) saves the random states and the
plateau schedulers as they will be after the epoch's step, takes that step itself in a resumed epoch, and
on SIGTERM or SIGUSR1 saves ``last.ckpt`` at the end of the current batch before the run stops. The
training order comes from :class:`core.data.sampling.EpochRandomSampler`, which skips the batches an
interrupted epoch had already trained on.
"""

import logging
import signal
import threading
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.fabric.utilities.seed import _collect_rng_states, _set_rng_states
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException

__all__ = ["ResumeState"]

log = logging.getLogger(__name__)


class ResumeState(Callback):
    """Random states, the plateau schedule and a checkpoint on SIGTERM/SIGUSR1, for exact resumes.

    Every process's random states are saved (gathered to the writing process) and each process gets its
    own back; ranks do not draw alike (their dropout masks differ under DDP), so restoring rank 0's state
    everywhere changed the resumed run. A checkpoint resumed with another number of processes gives rank
    0's state to all.
    """

    def __init__(self) -> None:
        self._rng_states: dict[str, Any] | None = None
        self._rng_at_epoch_end = False
        self._stepped_epoch: int | None = None
        self._signalled = False
        self._previous_handlers: dict[int, Any] = {}

    @property
    def state_key(self) -> str:
        """One instance per trainer: its name is its key in the checkpoint."""
        return "ResumeState"

    # ------------------------------------------------------------------ signals
    def on_sanity_check_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        """Take the signals already for the sanity check, which runs under Lightning's handler otherwise.

        A signal recorded here stops every rank after the first training batch, with ``last.ckpt`` saved.
        """
        self._take_signals()

    def on_train_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        """Take SIGTERM, and SIGUSR1 unless a handler is set (Lightning's SLURM auto-requeue), for training.

        Lightning's SIGTERM handler broadcasts from rank 0 inside the handler: when only rank 0 is signalled
        (``kill`` of one PID, a node's scheduler) that broadcast pairs with another collective of the other
        ranks and the job hangs. This handler only records the signal; :meth:`on_train_batch_end` agrees on
        it across ranks. Installed after Lightning's own handlers and put back at the end, so Lightning's
        teardown, which restores the handlers it found, does not keep one bound to a finished trainer.
        """
        self._take_signals()

    def on_train_batch_end(
        self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Stop every rank after this batch when any rank was signalled (Lightning raises at the batch end).

        All ranks end the same batches, so this one-number all-reduce pairs up wherever the signal landed.
        """
        stop = self._signalled
        if torch.distributed.is_available() and torch.distributed.is_initialized() and trainer.world_size > 1:
            flag = torch.tensor([int(stop)], device=trainer.strategy.root_device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            stop = bool(flag.item())
        if stop:
            trainer._signal_connector.received_sigterm = True

    def on_train_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        """Give the signals their previous handlers back."""
        self._restore_handlers()

    def on_exception(
        self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", exception: BaseException
    ) -> None:
        """Save ``last.ckpt`` when a signal stopped the run (Lightning raises at the end of a batch)."""
        self._restore_handlers()
        if not isinstance(exception, SIGTERMException) or trainer.state.fn != "fit":
            return
        path = self._last_path(trainer)
        if path is None:
            return
        trainer.save_checkpoint(path)
        for callback in trainer.checkpoint_callbacks:
            if isinstance(callback, ModelCheckpoint) and callback.save_last:
                callback.last_model_path = str(path)
        log.warning(
            "stopped by a signal at epoch %d, step %d: saved %s",
            trainer.current_epoch,
            trainer.global_step,
            path,
        )

    def teardown(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", stage: str) -> None:
        """Forget the handlers of a run that ended without ``on_train_end`` (e.g. nothing left to train).

        Lightning's own teardown, which runs first, has already put back the handlers it found before ours.
        """
        self._previous_handlers = {}

    # ------------------------------------------------------------------ checkpoint contents
    def on_save_checkpoint(
        self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", checkpoint: dict
    ) -> None:
        """Add the random states; at an epoch end, the plateau schedulers after the epoch's step."""
        states = _rng_states()
        at_epoch_end = _at_epoch_end(trainer)
        checkpoint["rng_states"] = states
        checkpoint["rng_at_epoch_end"] = at_epoch_end
        if torch.distributed.is_available() and torch.distributed.is_initialized() and trainer.world_size > 1:
            gathered: list[Any] = [None] * trainer.world_size
            torch.distributed.all_gather_object(gathered, states)
            checkpoint["rng_states_per_rank"] = gathered
        if at_epoch_end and self._stepped_epoch != trainer.current_epoch:
            _write_stepped_plateau_schedulers(trainer, checkpoint)

    def on_load_checkpoint(
        self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", checkpoint: dict
    ) -> None:
        """Keep the random states until the resumed epoch or batch starts (sanity checks draw before)."""
        self._rng_at_epoch_end = bool(checkpoint.get("rng_at_epoch_end", False))
        per_rank = checkpoint.get("rng_states_per_rank")
        if per_rank is not None and len(per_rank) == trainer.world_size:
            self._rng_states = per_rank[trainer.global_rank]
        else:
            self._rng_states = checkpoint.get("rng_states")

    # ------------------------------------------------------------------ resumed run
    def on_train_epoch_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        """Restore the random states of a checkpoint saved at an epoch end, before the epoch's loader starts.

        The uninterrupted run made the next epoch's loader iterator after that checkpoint, and a loader
        without a generator of its own (DDP's) draws its worker seed from the global state there.
        """
        if self._rng_states is not None and self._rng_at_epoch_end:
            _set_rng_states(_numpy_state_from_lists(self._rng_states))
            self._rng_states = None

    def on_train_batch_start(
        self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", batch: Any, batch_idx: int
    ) -> None:
        """Restore the saved random states right before the first step resumed in the middle of an epoch."""
        if self._rng_states is not None:
            _set_rng_states(_numpy_state_from_lists(self._rng_states))
            self._rng_states = None

    def on_train_epoch_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        """Take the plateau step Lightning skips at the end of an epoch resumed in its middle."""
        if trainer.fit_loop.restarted_mid_epoch and trainer.fit_loop.epoch_loop._num_ready_batches_reached():
            for config in _plateau_configs(trainer):
                value = trainer.callback_metrics.get(config.monitor)
                if value is not None:
                    config.scheduler.step(float(value))
            self._stepped_epoch = trainer.current_epoch

    # ------------------------------------------------------------------ helpers
    def _take_signals(self) -> None:
        """Install the recording handler once per run (a signal recorded in the sanity check is kept)."""
        if self._previous_handlers or threading.current_thread() is not threading.main_thread():
            return
        self._signalled = False
        handled = [signal.SIGTERM]
        if signal.getsignal(signal.SIGUSR1) in (signal.SIG_DFL, None):
            handled.append(signal.SIGUSR1)
        for signum in handled:
            self._previous_handlers[signum] = signal.signal(signum, self._record_signal)

    def _record_signal(self, signum: int, frame: Any) -> None:
        self._signalled = True

    def _restore_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous_handlers = {}

    @staticmethod
    def _last_path(trainer: "pl.Trainer") -> Path | None:
        for callback in trainer.checkpoint_callbacks:
            if isinstance(callback, ModelCheckpoint) and callback.dirpath and callback.save_last:
                return Path(callback.dirpath) / f"{callback.CHECKPOINT_NAME_LAST}{callback.FILE_EXTENSION}"
        return None


def _rng_states() -> dict[str, Any]:
    """Lightning's random states with numpy's array as a list, so ``weights_only`` loading reads them."""
    states = _collect_rng_states()
    if "numpy" in states:
        kind, keys, position, has_gauss, gauss = states["numpy"]
        states["numpy"] = (kind, keys.tolist(), position, has_gauss, gauss)
    return states


def _numpy_state_from_lists(states: dict[str, Any]) -> dict[str, Any]:
    if "numpy" in states:
        kind, keys, position, has_gauss, gauss = states["numpy"]
        states = {**states, "numpy": (kind, np.asarray(keys, dtype=np.uint32), position, has_gauss, gauss)}
    return states


def _at_epoch_end(trainer: "pl.Trainer") -> bool:
    """Whether every batch of the epoch has trained but the epoch-end plateau step has not happened."""
    fit_loop = trainer.fit_loop
    if trainer.state.fn != "fit" or fit_loop._combined_loader is None:
        return False
    progress = fit_loop.epoch_progress.current
    return fit_loop.epoch_loop._num_ready_batches_reached() and progress.completed < progress.started


def _plateau_configs(trainer: "pl.Trainer") -> list:
    return [
        config
        for config in trainer.lr_scheduler_configs
        if config.reduce_on_plateau
        and config.interval == "epoch"
        and (trainer.current_epoch + 1) % config.frequency == 0
    ]


def _write_stepped_plateau_schedulers(trainer: "pl.Trainer", checkpoint: dict) -> None:
    """Write each plateau scheduler and its optimizer's learning rates as the coming step leaves them.

    The step is taken on the live scheduler with the value it will see, recorded, and undone.
    """
    if "lr_schedulers" not in checkpoint:  # a weights-only checkpoint
        return
    for index, config in enumerate(trainer.lr_scheduler_configs):
        if config not in _plateau_configs(trainer):
            continue
        value = trainer.callback_metrics.get(config.monitor)
        if value is None:
            continue
        scheduler, optimizer = config.scheduler, config.scheduler.optimizer
        before = scheduler.state_dict()
        lrs = [group["lr"] for group in optimizer.param_groups]
        scheduler.step(float(value))
        checkpoint["lr_schedulers"][index] = scheduler.state_dict()
        optimizer_index = trainer.optimizers.index(optimizer)
        groups = checkpoint["optimizer_states"][optimizer_index]["param_groups"]
        for group, stepped in zip(groups, optimizer.param_groups, strict=True):
            group["lr"] = stepped["lr"]
        scheduler.load_state_dict(before)
        for group, lr in zip(optimizer.param_groups, lrs, strict=True):
            group["lr"] = lr
