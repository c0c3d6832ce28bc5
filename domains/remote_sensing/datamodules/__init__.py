"""Datamodules of the remote-sensing domain."""

from domains.remote_sensing.datamodules.base import RemoteSensingDataModule
from domains.remote_sensing.datamodules.folders import ClassFolderDataModule
from domains.remote_sensing.datamodules.hyperspectral import HyperspectralDataModule
from domains.remote_sensing.datamodules.raster import RasterSegmentationDataModule
from domains.remote_sensing.datamodules.scene import SceneSegmentationDataModule
from domains.remote_sensing.datamodules.statlog import StatlogDataModule
from domains.remote_sensing.datamodules.tiled import TiledSegmentationDataModule
from domains.remote_sensing.datamodules.unlabelled import UnlabelledSceneDataModule
from domains.remote_sensing.datamodules.yields import YieldHistogramDataModule

__all__ = [
    "ClassFolderDataModule",
    "HyperspectralDataModule",
    "RasterSegmentationDataModule",
    "RemoteSensingDataModule",
    "SceneSegmentationDataModule",
    "StatlogDataModule",
    "TiledSegmentationDataModule",
    "UnlabelledSceneDataModule",
    "YieldHistogramDataModule",
]
