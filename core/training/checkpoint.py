"""Atomic checkpoint writes, and a ModelCheckpoint that follows the task's own monitor.

A checkpoint is written to a temporary file in the same directory, flushed to disk, then renamed over
the target with :func:`os.replace`, so a run killed while saving never leaves a truncated ``last.ckpt``
behind: the previous checkpoint stays valid until the new one is complete.
"""

import os
import tempfile
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

__all__ = ["AtomicCheckpointIO", "TaskCheckpoint", "atomic_torch_save"]


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
