"""What the remote-sensing tasks share: the network from the linked sizes, stage steps, classes, inputs."""

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from core.training import BaseTask
from core.training.base_task import Stage
from core.utils import InputError

__all__ = ["RemoteSensingTask", "class_names_or_default", "class_weight_tensor", "network_inputs"]


class RemoteSensingTask(BaseTask):
    """Base of the supervised remote-sensing tasks: builds ``network_factory`` from the linked sizes.

    The training, validation and test steps call :meth:`shared_step` with the stage.

    Class attributes:
        linked_sizes: The linked hyperparameters the network is called with (each must be set).
    """

    linked_sizes: ClassVar[tuple[str, ...]] = ("in_channels", "num_classes")
    network_factory: Callable[..., nn.Module]

    def configure_models(self) -> None:
        """Build the network from the (linked) data sizes."""
        self.require_linked(*self.linked_sizes)
        sizes = {name: self.hparams[name] for name in self.linked_sizes}
        self.network: nn.Module = self.build_network(self.network_factory, **sizes)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        """One optimisation step."""
        return self.shared_step(batch, "train")

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Accumulate the validation loss and metrics."""
        self.shared_step(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Accumulate the test loss and metrics."""
        self.shared_step(batch, "test")

    def shared_step(self, batch: dict[str, Any], stage: Stage) -> Tensor:
        """Log the loss of ``batch`` and update the stage's metrics; return the loss."""
        raise NotImplementedError(f"{type(self).__name__} must implement shared_step(batch, stage)")

    @property
    def class_names(self) -> list[str]:
        """The linked class names, else ``class0``, ``class1``, ..."""
        return class_names_or_default(self.hparams.class_names, self.hparams.num_classes, type(self).__name__)


def class_names_or_default(names: Sequence[str] | None, num_classes: int, owner: str) -> list[str]:
    """The linked class names, else ``class0``, ``class1``, ...

    Raises:
        ValueError: If the number of names is not ``num_classes``.
    """
    if names is not None and len(names) != num_classes:
        raise ValueError(f"{owner}: {len(names)} class_names {list(names)} for num_classes={num_classes}")
    return list(names) if names else [f"class{i}" for i in range(num_classes)]


def class_weight_tensor(weights: Sequence[float] | None, num_classes: int) -> Tensor | None:
    """Cross-entropy class weights as a tensor, checked against the number of classes."""
    if weights is None:
        return None
    if len(weights) != num_classes:
        raise ValueError(f"class_weights has {len(weights)} values, expected {num_classes} (one per class)")
    return torch.tensor(weights, dtype=torch.float32)


def network_inputs(network: nn.Module, batch: dict[str, Any]) -> dict[str, Tensor]:
    """The extra batch tensors the network reads (``network.inputs`` after the image), by name.

    Raises:
        InputError: Naming the missing key and the datamodule option that provides it.
    """
    keys = getattr(network, "inputs", ("image",))[1:]
    missing = [k for k in keys if k not in batch]
    if missing:
        hint = {
            "pan": "the panchromatic parent tile (pan option)",
            "context": "the context tile (context option)",
        }
        needs = ", ".join(f"'{k}' ({hint.get(k, 'see the network docs')})" for k in missing)
        raise InputError(
            f"{type(network).__name__} reads batch keys {list(keys)} besides 'image'; the datamodule gave "
            f"{sorted(batch)}: enable {needs}"
        )
    return {k: batch[k] for k in keys}
