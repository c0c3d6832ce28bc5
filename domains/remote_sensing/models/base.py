"""What every remote-sensing network is: base classes per task kind and the factory types the tasks receive.

A task takes its network as a factory (``--model.network=LWGANetSeg --model.network.decoder_dim=64``) and
calls it with the sizes the datamodule gives, by keyword: ``in_channels`` (bands), ``num_classes``, and
``attention`` when ``--model.attention`` is set. A network declares the ones it uses in its ``__init__``;
the others are not passed.

Segmentation networks may need more than the image: BCAF reads the high-resolution panchromatic parent
tile (``pan``), CASWiT the wider context tile (``context``). Each network names the batch keys it reads in
:attr:`SegmentationNetwork.inputs`, so the task passes exactly those, and a datamodule that lacks one gets
an error naming the key and the datamodule option that provides it.
"""

from typing import ClassVar, Protocol

from torch import Tensor, nn

from core.attention.base import AttentionFactory

__all__ = [
    "MaskedImageEncoder",
    "SceneClassifier",
    "SceneClassifierFactory",
    "SegmentationNetwork",
    "SegmentationNetworkFactory",
    "YieldRegressor",
    "YieldRegressorFactory",
]


class SceneClassifier(nn.Module):
    """Base of the scene / patch classifiers: ``forward(x (B, bands, H, W)) -> logits (B, num_classes)``."""

    def forward(self, x: Tensor) -> Tensor:
        """Class logits (no softmax; the loss applies it)."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward(x)")


class SceneClassifierFactory(Protocol):
    """A classifier class, or a factory of one: receives the data-derived sizes by keyword."""

    def __call__(
        self, *, in_channels: int, num_classes: int, attention: AttentionFactory | None = None
    ) -> SceneClassifier:
        """Build the classifier for ``in_channels`` bands and ``num_classes`` classes."""
        ...


class SegmentationNetwork(nn.Module):
    """Base of the segmentation networks: ``forward(image, **extras) -> logits (B, num_classes, H, W)``.

    ``H, W`` are the image's (the label grid). ``inputs`` names the batch keys ``forward`` reads, image
    first; the extras are passed by keyword. :meth:`forward_train` returns the logits and, for networks with
    auxiliary supervision (CASWiT), the auxiliary logits already cropped and resized to the label grid
    together with their loss weight.
    """

    inputs: ClassVar[tuple[str, ...]] = ("image",)

    def forward(self, image: Tensor, **extras: Tensor) -> Tensor:
        """Per-pixel class logits (see the class docstring)."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward(image, ...)")

    def forward_train(self, image: Tensor, **extras: Tensor) -> dict[str, Tensor]:
        """``{"logits": ...}`` plus ``"aux_logits"`` / ``"aux_weight"`` where the network has them."""
        return {"logits": self(image, **extras)}


class SegmentationNetworkFactory(Protocol):
    """A segmentation network class, or a factory of one: receives the data-derived sizes by keyword."""

    def __call__(
        self, *, in_channels: int, num_classes: int, attention: AttentionFactory | None = None
    ) -> SegmentationNetwork:
        """Build the network for ``in_channels`` bands and ``num_classes`` classes."""
        ...


class MaskedImageEncoder(Protocol):
    """What SimMIM pre-training needs from a network (LWGANet and CASWiT segmentation networks have it).

    ``patch_size`` is the stride of the stem (the finest maskable unit), ``encoder_stride`` and
    ``encoder_channels`` the stride and width of the deepest features that the reconstruction head reads.
    """

    patch_size: int
    encoder_stride: int
    encoder_channels: int
    inputs: tuple[str, ...]

    def encode_masked(self, image: Tensor, mask: Tensor, **extras: Tensor) -> Tensor:
        """Deepest features ``(B, encoder_channels, H / s, W / s)`` of a partly masked image.

        The stem tokens where ``mask`` (``(B, H / patch_size, W / patch_size)``) is True are replaced by a
        learned mask token.
        """
        ...


class YieldRegressor(nn.Module):
    """Base of the yield regressors: ``forward(x (B, bands, bins, time)) -> prediction (B,)``."""

    def forward(self, x: Tensor) -> Tensor:
        """One value per sample."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward(x)")


class YieldRegressorFactory(Protocol):
    """A regressor class, or a factory of one: receives the data-derived sizes by keyword."""

    def __call__(self, *, in_channels: int, attention: AttentionFactory | None = None) -> YieldRegressor:
        """Build the regressor for histograms of ``in_channels`` bands."""
        ...
