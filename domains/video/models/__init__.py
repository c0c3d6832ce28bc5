"""Video networks: clip classifiers and flow-matching generators.

* :class:`TimeSformer` (Bertasius et al. 2021) with divided, joint or space-only attention, in ViT-B
  (default), ViT-S (:class:`TimeSformerSmall`), ViT-Ti (:class:`TimeSformerTiny`) and a CPU size
  (:class:`TimeSformerMicro`); initialised from timm image-ViT weights with ``image_weights``.
* :class:`VideoDiT`: a small pixel-space video DiT trained by flow matching, with UltraGen's hierarchical
  attention in its middle blocks, Mask²DiT scene masks and FreeLong++ long-video sampling.
* :class:`MotionBaseline`: logistic regression on motion statistics, the baseline classifiers must beat.
"""

from domains.video.models.base import (
    VideoClassificationNetwork,
    VideoClassificationNetworkFactory,
    VideoGenerationNetwork,
    VideoGenerationNetworkFactory,
)
from domains.video.models.baseline import MotionBaseline
from domains.video.models.dit import VideoDiT
from domains.video.models.pretrained import load_image_vit
from domains.video.models.timesformer import (
    TimeSformer,
    TimeSformerBase,
    TimeSformerMicro,
    TimeSformerSmall,
    TimeSformerTiny,
)

__all__ = [
    "MotionBaseline",
    "TimeSformer",
    "TimeSformerBase",
    "TimeSformerMicro",
    "TimeSformerSmall",
    "TimeSformerTiny",
    "VideoClassificationNetwork",
    "VideoClassificationNetworkFactory",
    "VideoDiT",
    "VideoGenerationNetwork",
    "VideoGenerationNetworkFactory",
    "load_image_vit",
]
