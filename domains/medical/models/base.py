"""What every medical segmentation network is: its base class and the factory type the task receives.

The task (:class:`~domains.medical.module.SegmentationTask`) takes its network as a factory
(``--model.network=AGUNet --model.network.channels=[16,32,64,128]``) and calls it with the sizes the
datamodule gives, by keyword: ``in_channels``, ``num_classes``, ``spatial_dims``, and ``attention`` when
``--model.attention`` is set. A network declares the ones it uses in its ``__init__``; the others are not
passed.
"""

from typing import Protocol

from torch import Tensor, nn

from core.attention.base import AttentionFactory

__all__ = ["SegmentationNetwork", "SegmentationNetworkFactory"]


class SegmentationNetwork(nn.Module):
    """Base of the medical segmentation networks: images in, per-voxel class logits out.

    ``forward(x (B, in_channels, *S)) -> logits (B, num_classes, *S)`` with ``S`` of ``spatial_dims`` axes,
    no softmax (the losses apply it). A network trained with deep supervision may return, in training mode
    only, a list of logit maps, full resolution first, then coarser levels at their own sizes.

    Subclassing it also gives configs short, unambiguous class names: ``class_path: UNet`` is this
    domain's :class:`~domains.medical.models.UNet`, not MONAI's network of the same name.
    """

    def forward(self, x: Tensor) -> Tensor | list[Tensor]:
        """Logits ``(B, num_classes, *S)`` (see the class docstring)."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward(x)")


class SegmentationNetworkFactory(Protocol):
    """A medical network class, or a factory of one: receives the data-derived sizes by keyword."""

    def __call__(
        self,
        *,
        in_channels: int,
        num_classes: int,
        spatial_dims: int,
        attention: AttentionFactory | None = None,
    ) -> SegmentationNetwork:
        """Build the network for images of ``in_channels`` channels and ``num_classes`` classes."""
        ...
