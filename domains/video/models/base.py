"""What a video network is: the two base classes and the factory types the tasks receive.

The tasks take their network as a factory (``--model.network=TimeSformer --model.network.dim=192``) and
call it with the sizes the datamodule gives, by keyword. A network declares the ones it uses in its
``__init__``; the others are not passed.
"""

from typing import Protocol

from torch import Tensor, nn

from core.attention.base import AttentionFactory

__all__ = [
    "VideoClassificationNetwork",
    "VideoClassificationNetworkFactory",
    "VideoGenerationNetwork",
    "VideoGenerationNetworkFactory",
]


class VideoClassificationNetwork(nn.Module):
    """Base of the clip classifiers: ``forward(video (B, C, T, H, W)) -> logits (B, num_classes)``.

    No softmax (the loss applies it). Subclassing it gives configs short class names.
    """

    def forward(self, video: Tensor) -> Tensor:
        """Logits ``(B, num_classes)`` for normalised clips ``(B, C, T, H, W)``."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward(video)")


class VideoClassificationNetworkFactory(Protocol):
    """A classifier class, or a factory of one, as :class:`~domains.video.tasks.VideoClassifier` calls it."""

    def __call__(
        self,
        *,
        num_classes: int,
        num_frames: int,
        image_size: int,
        attention: AttentionFactory | None = None,
    ) -> VideoClassificationNetwork:
        """Build the network for clips of ``num_frames`` frames of ``image_size²`` pixels."""
        ...


class VideoGenerationNetwork(nn.Module):
    """Base of the video generators: a velocity field ``v(x_t, t)`` for flow matching.

    ``forward(x (B, C, T, H, W), timestep (B,) or (B, T), scene_index (B, T) | None) -> (B, C, T, H, W)``:
    the predicted velocity ``ε − x_0`` at noise level ``t ∈ [0, 1]`` (per sample, or per frame for
    segment-conditional training). Subclasses also provide ``sample(...)``.
    """

    def forward(self, x: Tensor, timestep: Tensor, scene_index: Tensor | None = None) -> Tensor:
        """Velocity ``(B, C, T, H, W)``."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward(x, timestep, scene_index)")


class VideoGenerationNetworkFactory(Protocol):
    """A generator class, or a factory of one, as :class:`~domains.video.tasks.VideoGenerator` calls it."""

    def __call__(
        self,
        *,
        num_frames: int,
        image_size: int,
        num_scenes: int,
        attention: AttentionFactory | None = None,
    ) -> VideoGenerationNetwork:
        """Build the generator for clips of ``num_frames`` frames of ``image_size²`` pixels."""
        ...
