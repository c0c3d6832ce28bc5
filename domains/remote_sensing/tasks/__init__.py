"""The remote-sensing tasks, all :class:`core.training.BaseTask` subclasses.

* :class:`SceneClassificationTask`: patch / scene classes (OA, AA, kappa, F1; class CSV predictions).
* :class:`SemanticSegmentationTask`: per-pixel classes (mIoU, OA, F1; GeoTIFF masks of whole scenes).
* :class:`YieldRegressionTask`: yield from histograms (RMSE, MAE, R²).
* :class:`MaskedPretrainingTask`: SimMIM pre-training of a segmentation network's encoder.
"""

from domains.remote_sensing.tasks.classification import SceneClassificationTask
from domains.remote_sensing.tasks.pretraining import MaskedPretrainingTask
from domains.remote_sensing.tasks.regression import YieldRegressionTask
from domains.remote_sensing.tasks.segmentation import SemanticSegmentationTask

__all__ = [
    "MaskedPretrainingTask",
    "SceneClassificationTask",
    "SemanticSegmentationTask",
    "YieldRegressionTask",
]
