"""A thin LightningModule base that every domain task follows (the TorchGeo trainer pattern).

``__init__`` is the typed config schema: it saves the hyper-parameters, then calls the hooks
:meth:`BaseTask.configure_models`, :meth:`BaseTask.configure_losses` and :meth:`BaseTask.configure_metrics`
in that order, then loads ``pretrained`` weights if given. Subclasses keep a fixed method order:
``__init__`` → ``configure_models`` → ``configure_losses`` → ``configure_metrics`` → ``forward`` →
``training_step`` → ``validation_step`` → ``test_step`` → ``predict_step`` → epoch-end hooks.

Optimizers and schedulers are not hard-coded: the ``attnlab`` CLI injects them from ``--optimizer`` and
``--lr_scheduler``; without ``--optimizer``, :meth:`BaseTask.configure_optimizers` (AdamW) runs.
"""

from collections.abc import Iterator, Sequence
from typing import Any, ClassVar, Literal

import lightning.pytorch as pl
import torch
from torch import Tensor, nn
from torchmetrics import MetricCollection

from core.attention.base import TokenMixer
from core.training.pretrained import load_pretrained

__all__ = ["BaseTask", "children_except_head"]

STAGES = ("train", "val", "test")


class BaseTask(pl.LightningModule):
    """Base class of all attnlab tasks.

    Class attributes:
        monitor: Metric that checkpointing and plateau schedulers follow, e.g. ``"val_loss"``.
        mode: Whether ``monitor`` should be minimised or maximised.
        ignore: Init args left out of ``save_hyperparameters``.
        resizable_keys: Substrings of parameter names whose first dimension may be interpolated when a
            ``pretrained`` checkpoint was trained with another sequence length.

    Args:
        pretrained: Path of a checkpoint (Lightning ``.ckpt`` or a plain ``state_dict``) to initialise the
            weights from, for fine-tuning. Loading is strict where shapes match; everything loaded, skipped
            or resized is logged.
    """

    monitor: ClassVar[str] = "val_loss"
    mode: ClassVar[Literal["min", "max"]] = "min"
    ignore: ClassVar[Sequence[str]] = ()
    resizable_keys: ClassVar[Sequence[str]] = ()

    def __init__(self, *, pretrained: str | None = None) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=list(self.ignore))
        self.configure_models()
        self.configure_losses()
        self.configure_metrics()
        if pretrained:
            load_pretrained(self, pretrained, resizable_keys=self.resizable_keys)

    def configure_models(self) -> None:
        """Build the networks from ``self.hparams``."""
        raise NotImplementedError(f"{type(self).__name__} must implement configure_models()")

    def configure_losses(self) -> None:
        """Build the loss functions from ``self.hparams``."""
        raise NotImplementedError(f"{type(self).__name__} must implement configure_losses()")

    def configure_metrics(self) -> None:
        """Build ``self.train_metrics``, ``self.val_metrics`` and ``self.test_metrics``.

        Subclasses usually build one :class:`~torchmetrics.MetricCollection` and call
        :meth:`clone_metrics`.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement configure_metrics()")

    def clone_metrics(self, metrics: MetricCollection) -> None:
        """Clone a collection into ``train_`` / ``val_`` / ``test_`` prefixed copies on ``self``."""
        for stage in STAGES:
            setattr(self, f"{stage}_metrics", metrics.clone(prefix=f"{stage}_"))

    def backbone_modules(self) -> list[nn.Module]:
        """Modules that fine-tuning freezes, ordered from the input to the output.

        The default is every child module that has parameters (so not the losses and metrics), except one
        called ``head``. Override when the split differs.
        """
        modules = children_except_head(self)
        if not modules:
            raise RuntimeError(f"{type(self).__name__} has no backbone modules to freeze")
        return modules

    def token_mixers(self) -> Iterator[TokenMixer]:
        """All attention mechanisms inside the task (for auxiliary losses and introspection)."""
        return (m for m in self.modules() if isinstance(m, TokenMixer))

    def aux_loss(self) -> Tensor | None:
        """Sum of the ``aux_loss`` set by mechanisms during the last forward (e.g. load balancing)."""
        losses = [m.aux_loss for m in self.token_mixers() if m.aux_loss is not None]
        return torch.stack([loss.float() for loss in losses]).sum() if losses else None

    def configure_optimizers(self) -> Any:
        """The default optimizer: AdamW with PyTorch's defaults (lr 1e-3, weight decay 0.01).

        ``attnlab`` replaces it when ``--optimizer`` (and ``--lr_scheduler``) are given. The CLI has no class
        default of its own, so that a config choosing another optimizer gets only that class's defaults.
        """
        return torch.optim.AdamW(self.parameters())

    def on_train_epoch_start(self) -> None:
        """Log the learning rate of the first parameter group, so TensorBoard shows the schedule."""
        optimizers = self.trainer.optimizers
        if optimizers:
            self.log("lr", optimizers[0].param_groups[0]["lr"], on_step=False, on_epoch=True)


def children_except_head(module: nn.Module, head: str = "head") -> list[nn.Module]:
    """Direct children of ``module`` that hold parameters, except the one named ``head``, in order."""
    return [m for name, m in module.named_children() if name != head and any(True for _ in m.parameters())]
