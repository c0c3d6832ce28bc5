"""Video: clip decoding, clip classification (TimeSformer) and generation (a small video DiT).

Importing the package makes the short class names usable in configs: the tasks (``VideoClassifier``,
``VideoGenerator``), the datamodules (``VideoClassificationDataModule``, ``SelfSupervisedVideoDataModule``,
``VideoGenerationDataModule``) and the networks (``TimeSformer`` and its presets, ``VideoDiT``). PyAV comes
with the ``video`` extra; without it the import fails with an ImportError that names the extra to install.
"""

from pathlib import Path

from core.plugins import Domain
from core.utils import require

require("av", "video")

from domains.video.datamodules import (  # noqa: E402
    SelfSupervisedVideoDataModule,
    VideoClassificationDataModule,
    VideoGenerationDataModule,
)
from domains.video.models import (  # noqa: E402
    MotionBaseline,
    TimeSformer,
    TimeSformerBase,
    TimeSformerMicro,
    TimeSformerSmall,
    TimeSformerTiny,
    VideoClassificationNetwork,
    VideoDiT,
    VideoGenerationNetwork,
)
from domains.video.tasks import VideoClassifier, VideoGenerator  # noqa: E402

__all__ = [
    "DOMAIN",
    "MotionBaseline",
    "SelfSupervisedVideoDataModule",
    "TimeSformer",
    "TimeSformerBase",
    "TimeSformerMicro",
    "TimeSformerSmall",
    "TimeSformerTiny",
    "VideoClassificationDataModule",
    "VideoClassificationNetwork",
    "VideoClassifier",
    "VideoDiT",
    "VideoGenerationDataModule",
    "VideoGenerationNetwork",
    "VideoGenerator",
]

DOMAIN = Domain(
    name="video", smoke_config=Path(__file__).resolve().parents[2] / "configs" / "video" / "smoke.yaml"
)
