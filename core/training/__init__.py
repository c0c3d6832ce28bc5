"""Training plumbing shared by every domain: the task base class, callbacks and checkpoint IO."""

from core.training.base_task import BaseTask
from core.training.checkpoint import (
    AtomicCheckpointIO,
    TaskCheckpoint,
    atomic_torch_save,
    best_checkpoint,
    run_checkpoint,
)
from core.training.compile import CompileNetwork
from core.training.distributed import EpochMetricsSync
from core.training.ema import EMA
from core.training.finetune import FreezeBackbone
from core.training.networks import instantiate_network
from core.training.prediction import PredictionWriter
from core.training.pretrained import LoadReport, load_pretrained
from core.training.sharding import FSDP2Strategy, consolidate_checkpoint

__all__ = [
    "EMA",
    "AtomicCheckpointIO",
    "BaseTask",
    "CompileNetwork",
    "EpochMetricsSync",
    "FSDP2Strategy",
    "FreezeBackbone",
    "LoadReport",
    "PredictionWriter",
    "TaskCheckpoint",
    "atomic_torch_save",
    "best_checkpoint",
    "consolidate_checkpoint",
    "instantiate_network",
    "load_pretrained",
    "run_checkpoint",
]
