"""Training plumbing shared by every domain: the task base class, callbacks and checkpoint IO."""

from core.training.base_task import BaseTask
from core.training.checkpoint import AtomicCheckpointIO, TaskCheckpoint, atomic_torch_save
from core.training.ema import EMA
from core.training.finetune import FreezeBackbone
from core.training.prediction import PredictionWriter
from core.training.pretrained import LoadReport, load_pretrained

__all__ = [
    "EMA",
    "AtomicCheckpointIO",
    "BaseTask",
    "FreezeBackbone",
    "LoadReport",
    "PredictionWriter",
    "TaskCheckpoint",
    "atomic_torch_save",
    "load_pretrained",
]
