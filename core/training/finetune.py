"""Freeze a task's backbone for fine-tuning, and unfreeze it on a schedule, without touching the LR.

Known pitfalls of other frameworks that this avoids (see docs/cli.md): a ``freeze`` strategy that froze
nothing without an error, and an unfreeze that silently divided the learning rate by 10. Here:

* the parameters to freeze come from ``pl_module.backbone_modules()``; if that freezes nothing, fit
  stops with an error;
* frozen parameters stay in the optimizer with their own learning rate (the CLI builds the optimizer
  over all parameters), and unfreezing only sets ``requires_grad`` back; the learning rate and the
  scheduler are never changed;
* frozen normalisation layers stay in eval mode unless ``train_bn`` is set.
"""

from typing import Literal

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

__all__ = ["FreezeBackbone"]

Strategy = Literal["freeze", "freeze_unfreeze", "unfreeze_milestones"]
_NORM = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)


class FreezeBackbone(Callback):
    """Freeze the backbone, then optionally unfreeze it by epoch.

    Args:
        strategy: ``freeze`` keeps the backbone frozen for the whole run; ``freeze_unfreeze`` unfreezes
            all of it at ``unfreeze_at_epoch``; ``unfreeze_milestones`` unfreezes it in
            ``len(milestones)`` chunks, the chunk nearest the head first, at each milestone epoch.
        unfreeze_at_epoch: Epoch (0-based) at which ``freeze_unfreeze`` unfreezes the backbone.
        milestones: Increasing epochs for ``unfreeze_milestones``.
        train_bn: Whether normalisation layers in the frozen backbone keep training (parameters and
            running statistics). If False they are frozen and kept in eval mode.
    """

    def __init__(
        self,
        strategy: Strategy = "freeze",
        unfreeze_at_epoch: int = 10,
        milestones: list[int] | None = None,
        train_bn: bool = False,
    ) -> None:
        super().__init__()
        if strategy not in ("freeze", "freeze_unfreeze", "unfreeze_milestones"):
            raise ValueError(f"FreezeBackbone: unknown strategy {strategy!r}")
        milestones = list(milestones or [5, 10])
        if strategy == "unfreeze_milestones" and (not milestones or milestones != sorted(set(milestones))):
            raise ValueError(f"FreezeBackbone: milestones must be strictly increasing, got {milestones}")
        if unfreeze_at_epoch < 0:
            raise ValueError(f"FreezeBackbone: unfreeze_at_epoch must be >= 0, got {unfreeze_at_epoch}")
        self.strategy: Strategy = strategy
        self.unfreeze_at_epoch = unfreeze_at_epoch
        self.milestones = milestones
        self.train_bn = train_bn
        self._chunks: list[list[nn.Module]] = []

    def on_fit_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        """Freeze the backbone (honouring the schedule so far, if the run was resumed)."""
        backbone = _backbone(pl_module)
        self._chunks = self._split(backbone)
        frozen = 0
        for module in backbone:
            frozen += self._freeze(module)
        if frozen == 0:
            raise RuntimeError(
                f"FreezeBackbone: nothing was frozen in {type(pl_module).__name__}.backbone_modules() "
                "(no trainable parameters there). Check the task's backbone_modules()."
            )
        rank_zero_info(f"FreezeBackbone({self.strategy}): froze {frozen} backbone parameters")
        for epoch in range(trainer.current_epoch + 1):
            self._apply_schedule(epoch, announce=False)

    def on_train_epoch_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        """Unfreeze on schedule and keep frozen normalisation layers in eval mode."""
        self._apply_schedule(trainer.current_epoch, announce=True)
        if not self.train_bn:
            for chunk in self._chunks:
                for module in chunk:
                    for sub in module.modules():
                        if isinstance(sub, _NORM) and not any(p.requires_grad for p in sub.parameters()):
                            sub.eval()

    def _apply_schedule(self, epoch: int, *, announce: bool) -> None:
        if self.strategy == "freeze_unfreeze" and epoch == self.unfreeze_at_epoch:
            count = sum(self._unfreeze(m) for chunk in self._chunks for m in chunk)
            if announce:
                rank_zero_info(f"FreezeBackbone: epoch {epoch}: unfroze {count} parameters (LR unchanged)")
        elif self.strategy == "unfreeze_milestones" and epoch in self.milestones:
            index = self.milestones.index(epoch)
            count = sum(self._unfreeze(m) for m in self._chunks[index])
            if announce:
                rank_zero_info(
                    f"FreezeBackbone: epoch {epoch}: unfroze chunk {index + 1}/{len(self._chunks)} "
                    f"({count} parameters, LR unchanged)"
                )

    def _split(self, backbone: list[nn.Module]) -> list[list[nn.Module]]:
        if self.strategy != "unfreeze_milestones":
            return [backbone]
        n = len(self.milestones)
        if len(backbone) < n:
            raise ValueError(
                f"FreezeBackbone: {n} milestones but the backbone has only {len(backbone)} modules"
            )
        reversed_modules = backbone[::-1]  # nearest the head first
        size, extra = divmod(len(reversed_modules), n)
        chunks, start = [], 0
        for i in range(n):
            end = start + size + (1 if i < extra else 0)
            chunks.append(reversed_modules[start:end])
            start = end
        return chunks

    def _freeze(self, module: nn.Module) -> int:
        count = 0
        for sub in module.modules():
            if self.train_bn and isinstance(sub, _NORM):
                continue
            for param in sub.parameters(recurse=False):
                if param.requires_grad:
                    param.requires_grad_(False)
                    count += param.numel()
        return count

    @staticmethod
    def _unfreeze(module: nn.Module) -> int:
        count = 0
        for param in module.parameters():
            if not param.requires_grad:
                param.requires_grad_(True)
                count += param.numel()
        module.train()
        return count


def _backbone(pl_module: "pl.LightningModule") -> list[nn.Module]:
    getter = getattr(pl_module, "backbone_modules", None)
    if getter is None:
        raise TypeError(
            f"FreezeBackbone needs {type(pl_module).__name__}.backbone_modules(); "
            "subclass core.training.BaseTask or implement it"
        )
    return list(getter())
