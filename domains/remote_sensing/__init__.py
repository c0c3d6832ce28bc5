"""Remote sensing: multispectral patch and scene classification, segmentation, yield regression.

Importing the package makes the short class names usable in configs: the tasks
(``SceneClassificationTask``, ``SemanticSegmentationTask``, ``YieldRegressionTask``,
``MaskedPretrainingTask``), the datamodules (``StatlogDataModule``, ``SceneSegmentationDataModule``, ...)
and the networks (``SpectralSpatialTransformer``, ``LWGANet*``, ``DaViT*``, ``CASWiT``, ``BCAF``, ``DFYP``).
rasterio and scipy come with the ``remote-sensing`` extra; without it the import fails with an ImportError
that names the extra to install.
"""

from pathlib import Path

from core.plugins import Domain
from core.utils import require

for _module in ("rasterio", "scipy"):
    require(_module, "remote-sensing")

from domains.remote_sensing import datamodules as _datamodules  # noqa: E402
from domains.remote_sensing.datamodules import *  # noqa: E402, F403
from domains.remote_sensing.models import (  # noqa: E402
    BCAF,
    DFYP,
    CASWiT,
    DaViT,
    DaViTBase,
    DaViTSmall,
    LWGANet,
    LWGANetL0,
    LWGANetL1,
    LWGANetL2,
    LWGANetSeg,
    LWGANetSegL1,
    LWGANetSegL2,
    SceneClassifier,
    SegmentationNetwork,
    SpectralSpatialTransformer,
    YieldRegressor,
)
from domains.remote_sensing.tasks import (  # noqa: E402
    MaskedPretrainingTask,
    SceneClassificationTask,
    SemanticSegmentationTask,
    YieldRegressionTask,
)

__all__ = [
    "BCAF",
    "DFYP",
    "DOMAIN",
    "CASWiT",
    "DaViT",
    "DaViTBase",
    "DaViTSmall",
    "LWGANet",
    "LWGANetL0",
    "LWGANetL1",
    "LWGANetL2",
    "LWGANetSeg",
    "LWGANetSegL1",
    "LWGANetSegL2",
    "MaskedPretrainingTask",
    "SceneClassificationTask",
    "SceneClassifier",
    "SegmentationNetwork",
    "SemanticSegmentationTask",
    "SpectralSpatialTransformer",
    "YieldRegressionTask",
    "YieldRegressor",
    *_datamodules.__all__,
]

DOMAIN = Domain(
    name="remote_sensing",
    smoke_config=Path(__file__).resolve().parents[2] / "configs" / "remote_sensing" / "smoke.yaml",
)
