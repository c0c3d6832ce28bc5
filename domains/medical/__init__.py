"""Medical: 3-D (and slice-wise 2-D) segmentation with MONAI (UNet, AGUNet, DAUNet, DAGUNet, QTSeg).

Importing the package makes the short class names usable in configs: the task (``SegmentationTask``), the
datamodules (``DecathlonDataModule``, ``CaseFolderDataModule``) and the networks (``UNet``, ``AGUNet``,
``DAUNet``, ``DAGUNet``, ``QTSeg``). MONAI, nibabel and scipy come with the ``medical`` extra; without it
the import fails with an ImportError that names the extra to install.
"""

from pathlib import Path

from core.plugins import Domain
from core.utils import require

for _module in ("monai", "nibabel", "scipy"):
    require(_module, "medical")

from domains.medical.datamodule import MedicalDataModule  # noqa: E402
from domains.medical.layouts import CaseFolderDataModule, DecathlonDataModule  # noqa: E402
from domains.medical.models import AGUNet, DAGUNet, DAUNet, QTSeg, SegmentationNetwork, UNet  # noqa: E402
from domains.medical.module import SegmentationTask  # noqa: E402

__all__ = [
    "DOMAIN",
    "AGUNet",
    "CaseFolderDataModule",
    "DAGUNet",
    "DAUNet",
    "DecathlonDataModule",
    "MedicalDataModule",
    "QTSeg",
    "SegmentationNetwork",
    "SegmentationTask",
    "UNet",
]

DOMAIN = Domain(
    name="medical", smoke_config=Path(__file__).resolve().parents[2] / "configs" / "medical" / "smoke.yaml"
)
