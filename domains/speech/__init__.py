"""Speech: monaural source separation (MossFormer, Conv-TasNet, dual-path separators) with dynamic mixing.

Importing the package makes the short class names (``SeparationTask``, ``ConvTasNet``, ``MossFormer``,
``DualPathSeparator``, ``SeparationDataModule``, ``DynamicMixingDataModule``, ...) usable in configs;
``DOMAIN`` is what the ``attnlab.domains`` entry point registers.
"""

from pathlib import Path

from core.plugins import Domain
from core.utils import require

require("torchaudio", "speech")
require("soundfile", "speech")

from domains.speech.datamodule import DynamicMixingDataModule, SeparationDataModule  # noqa: E402
from domains.speech.models import (  # noqa: E402
    ConvTasNet,
    DualPathSeparator,
    DualPathTiny,
    MossFormer,
    MossFormerSmall,
    MossFormerTiny,
    SeparationNetwork,
)
from domains.speech.task import SeparationTask  # noqa: E402

DOMAIN = Domain(
    name="speech", smoke_config=Path(__file__).resolve().parents[2] / "configs" / "speech" / "smoke.yaml"
)

__all__ = [
    "DOMAIN",
    "ConvTasNet",
    "DualPathSeparator",
    "DualPathTiny",
    "DynamicMixingDataModule",
    "MossFormer",
    "MossFormerSmall",
    "MossFormerTiny",
    "SeparationDataModule",
    "SeparationNetwork",
    "SeparationTask",
]
