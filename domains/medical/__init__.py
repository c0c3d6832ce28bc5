"""Medical: 3-D (and slice-wise 2-D) segmentation with MONAI (U-Net, AGUNet, DAUNet, DAGUNet, QTSeg).

Importing the package registers the data-derived sizes the CLI links from datamodule to task, and makes the
short class names (``SegmentationTask``, ``DecathlonDataModule``, ``CaseFolderDataModule``) usable in
configs. MONAI, nibabel and scipy come with the ``medical`` extra; without it the import fails with an
ImportError that names the extra to install.
"""

from core.data import register_data_links
from core.utils import require

for _module in ("monai", "nibabel", "scipy"):
    require(_module, "medical")

from domains.medical.datamodule import CaseFolderDataModule, DecathlonDataModule, MedicalDataModule  # noqa: E402
from domains.medical.module import SegmentationTask  # noqa: E402

register_data_links("in_channels", "num_classes", "spatial_dims", "patch_size", "label_names")

__all__ = ["CaseFolderDataModule", "DecathlonDataModule", "MedicalDataModule", "SegmentationTask"]
