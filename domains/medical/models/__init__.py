"""Segmentation networks of the medical domain, all :class:`SegmentationNetwork` subclasses returning logits.

* :class:`UNet` (2-D/3-D): the plain U-Net of Bouget et al. 2021, with every switch of the family;
  :class:`AGUNet` (attention gates, input pyramid, deep supervision), :class:`DAUNet` (DANet dual
  attention at the bottleneck) and :class:`DAGUNet` (both, with attention guiding) are its presets.
* :class:`QTSeg` (2-D): query-token dual-mix attention decoder (Tran et al. 2024).
* :class:`MonaiAttentionUnet`: MONAI's ``AttentionUnet`` behind the same interface (the peer baseline).

The task receives one as ``--model.network=<Class>`` and gives it the data-derived sizes
(:class:`SegmentationNetworkFactory`).
"""

from domains.medical.models.base import SegmentationNetwork, SegmentationNetworkFactory
from domains.medical.models.peer import MonaiAttentionUnet
from domains.medical.models.qtseg import QTSeg
from domains.medical.models.unet import AGUNet, DAGUNet, DAUNet, UNet

__all__ = [
    "AGUNet",
    "DAGUNet",
    "DAUNet",
    "MonaiAttentionUnet",
    "QTSeg",
    "SegmentationNetwork",
    "SegmentationNetworkFactory",
    "UNet",
]
