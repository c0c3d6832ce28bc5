"""Atomic checkpoint writes, and a ModelCheckpoint that follows the task's own monitor.

A checkpoint is written to a temporary file in the same directory, flushed to disk, then renamed over
the target with :func:`os.replace`, so a run killed while saving never leaves a truncated ``last.ckpt``
behind: the previous checkpoint stays valid until the new one is complete.
"""

import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from core.training.sharding import (
    checkpoint_metadata,
    is_checkpoint,
    is_sharded_checkpoint,
    recover_checkpoints,
)
from core.utils.errors import InputError

__all__ = [
    "AtomicCheckpointIO",
    "TaskCheckpoint",
    "atomic_torch_save",
    "best_checkpoint",
    "check_checkpoint_file",
    "remove_stale_temporary_files",
    "run_checkpoint",
]


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temporary sibling file, fsync, then atomically rename onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_checkpoint_file(path: Path) -> None:
    """Refuse a local file that is not the zip archive ``torch.save`` writes (a text file, a cut copy).

    Raises:
        InputError: Naming the file.
    """
    if path.is_file() and not zipfile.is_zipfile(path):
        raise InputError(
            f"{path} is not a checkpoint, or a truncated one: a checkpoint is the zip archive that "
            "attnlab fit writes (checkpoints/*.ckpt)"
        )


def remove_stale_temporary_files(dirpath: Path) -> list[Path]:
    """Delete what a run killed mid-write left: temporary files, half-written sharded folders.

    A sharded checkpoint killed between its two renames is put back (:func:`recover_checkpoints`).

    Returns:
        The files removed.
    """
    stale = sorted(dirpath.glob(".*.ckpt.*.tmp"))
    for path in stale:
        path.unlink(missing_ok=True)
    return stale + recover_checkpoints(dirpath)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint IO whose local writes are atomic (remote URLs fall back to Lightning's)."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        """Write ``checkpoint`` to ``path`` atomically.

        Args:
            checkpoint: The checkpoint dictionary.
            path: Target path.
            storage_options: Not supported (as in :class:`TorchCheckpointIO`).
        """
        if storage_options is not None:
            raise TypeError(f"AtomicCheckpointIO does not accept storage_options, got {storage_options!r}")
        if "://" in str(path) and not str(path).startswith("file://"):
            super().save_checkpoint(checkpoint, path)
            return
        atomic_torch_save(checkpoint, get_filesystem(path)._strip_protocol(str(path)))

    def load_checkpoint(self, path: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Read a checkpoint; a file that is none (a truncated copy, a text file) is refused by name.

        Raises:
            InputError: If ``path`` is a local file but not the zip archive that ``torch.save`` writes.
        """
        if "://" not in str(path) or str(path).startswith("file://"):
            check_checkpoint_file(Path(get_filesystem(path)._strip_protocol(str(path))))
        return super().load_checkpoint(path, *args, **kwargs)


class TaskCheckpoint(ModelCheckpoint):
    """:class:`ModelCheckpoint` that, by default, monitors the task's own ``monitor``/``mode``.

    With ``monitor="auto"`` the metric and direction come from the LightningModule's class attributes
    (e.g. ``val_macro_f1``/``max`` for finance), so one CLI default fits every domain. ``save_last``
    defaults to True, so ``--ckpt_path last`` resumes an interrupted run; set ``every_n_train_steps`` to
    also save mid-epoch. Every other argument is :class:`ModelCheckpoint`'s.

    Args:
        monitor: ``"auto"`` (the task's metric), a logged metric name, or None (keep only the last).
        mode: ``"auto"`` (the task's mode), ``"min"`` or ``"max"``.
        save_last: Keep ``last.ckpt`` (default True), so ``--ckpt_path last`` can resume.
        enable_version_counter: Lightning's ``-v1`` suffixes for names that exist already. Off by default:
            a new run in the same folder replaces ``last.ckpt``, so ``last`` and ``best`` always mean the
            newest run.
        kwargs: Passed to :class:`ModelCheckpoint`.
    """

    def __init__(
        self,
        monitor: str | None = "auto",
        mode: str = "auto",
        save_last: bool | Literal["link"] | None = True,
        enable_version_counter: bool = False,
        **kwargs: Any,
    ) -> None:
        self._auto_monitor = monitor == "auto"
        self._auto_mode = mode == "auto"
        super().__init__(
            monitor=None if self._auto_monitor else monitor,
            mode="min" if self._auto_mode else mode,
            save_last=save_last,
            enable_version_counter=enable_version_counter,
            **kwargs,
        )

    def setup(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", stage: str) -> None:
        """Resolve ``auto`` monitor/mode from the task before Lightning sets the checkpoint up."""
        if self._auto_monitor:
            self.monitor = getattr(pl_module, "monitor", None)
        if self._auto_mode:
            self.mode = getattr(pl_module, "mode", "min")
            if self.mode not in ("min", "max"):
                raise ValueError(f"{type(pl_module).__name__}.mode must be 'min' or 'max', got {self.mode!r}")
            self.kth_value = torch.tensor(torch.inf if self.mode == "min" else -torch.inf)
        if self.filename is None and self.monitor:
            self.filename = "{epoch}-{step}-{" + self.monitor + ":.4f}"
        super().setup(trainer, pl_module, stage)
        if trainer.is_global_zero and self.dirpath and Path(self.dirpath).is_dir():
            remove_stale_temporary_files(Path(self.dirpath))

    def on_train_epoch_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        """Lightning's epoch-end save, then ``last.ckpt`` brought up to date if it saved nothing."""
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._keep_last_current(trainer)

    def on_validation_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        """Lightning's validation-end save, then ``last.ckpt`` brought up to date if it saved nothing."""
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._keep_last_current(trainer)

    def _keep_last_current(self, trainer: "pl.Trainer") -> None:
        """Write ``last.ckpt`` unless this step was saved already.

        Lightning 2.6 refreshes ``last.ckpt`` at an epoch end only when a top-k checkpoint is saved in the
        same step, so after an epoch that did not improve the monitored metric ``last.ckpt`` still held an
        older epoch, and ``--ckpt_path last`` resumed from there.
        """
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


def best_checkpoint(dirpath: Path) -> Path:
    """The best checkpoint of the run whose checkpoints are in ``dirpath``, read from its ``last.ckpt``.

    Lightning resolves ``ckpt_path="best"`` only inside the process that trained; ``last.ckpt`` records
    the checkpoint callback's ``best_model_path``, so ``attnlab test --ckpt_path best`` works later too.

    Raises:
        FileNotFoundError: If there is no ``last.ckpt`` or the best checkpoint it names is gone.
    """
    last = Path(dirpath) / "last.ckpt"
    if not is_checkpoint(last):
        raise FileNotFoundError(
            f"--ckpt_path best: no {last}. Train first (attnlab fit with the same config) "
            "or pass a checkpoint path."
        )
    state = checkpoint_metadata(last).get("callbacks", {})
    best = [v.get("best_model_path") for k, v in state.items() if k.startswith("TaskCheckpoint")]
    best = [Path(b) for b in best if b]
    if not best:
        return last
    if not is_checkpoint(best[0]):
        raise FileNotFoundError(
            f"--ckpt_path best: {last} names {best[0]} as the best checkpoint, but it is gone"
        )
    return best[0]


def run_checkpoint(path: str | Path) -> Path:
    """A checkpoint as given (a file or a sharded folder), or the best checkpoint of a run folder.

    Raises:
        FileNotFoundError: If ``path`` is neither a file nor a run folder with checkpoints.
    """
    p = Path(path)
    if is_sharded_checkpoint(p):
        return p
    if p.is_dir():
        return best_checkpoint(p / "checkpoints" if (p / "checkpoints").is_dir() else p)
    if not p.is_file():
        raise FileNotFoundError(f"{path!r} is neither a checkpoint file nor a run folder")
    return p
