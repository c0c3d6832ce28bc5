"""A callback that records, per process, what Lightning made of the cluster it was started in.

Used by the distributed tests through ``--trainer.callbacks+=...`` (importable as
``tests.distributed.probe`` with the repository root on ``PYTHONPATH``), the way ``tests.signals`` is.
"""

import hashlib
import json
import os
import signal
from collections.abc import Mapping
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback


class ClusterProbe(Callback):
    """Write ``<out_dir>/rank<global_rank>.json`` when fit starts and again when it ends.

    The file holds the cluster environment's class, the ranks and world size Lightning derived from it,
    the strategy, the process group's backend, the precision, the step, the validation metrics and a
    digest of the weights (equal on every rank of a correct DDP run).

    Args:
        out_dir: Folder of the per-rank files (created if missing).
    """

    def __init__(self, out_dir: str) -> None:
        self.out_dir = Path(out_dir)

    def on_fit_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        """Record the environment before the first step (a run stopped by a signal still leaves this)."""
        self._write(trainer, pl_module, finished=False)

    def on_fit_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        """Record the environment, the last validation metrics and the weights' digest."""
        self._write(trainer, pl_module, finished=True)

    def _write(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", finished: bool) -> None:
        environment = trainer.strategy.cluster_environment
        group = torch.distributed.is_available() and torch.distributed.is_initialized()
        record = {
            "environment": type(environment).__name__ if environment is not None else None,
            "strategy": type(trainer.strategy).__name__,
            "backend": torch.distributed.get_backend() if group else None,
            "global_rank": trainer.global_rank,
            "local_rank": trainer.local_rank,
            "node_rank": trainer.node_rank,
            "world_size": trainer.world_size,
            "num_nodes": trainer.num_nodes,
            "precision": str(trainer.precision),
            "global_step": trainer.global_step,
            "finished": finished,
            "val": {
                name: float(value)
                for name, value in trainer.callback_metrics.items()
                if name.startswith("val_") and torch.as_tensor(value).numel() == 1
            },
            "weights_sha1": digest(pl_module.state_dict()),
        }
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps(record, indent=1))


def digest(state_dict: Mapping[str, torch.Tensor]) -> str:
    """SHA-1 of a state dict's names and values (as float32), to compare the weights of processes."""
    sha = hashlib.sha1()
    for name, tensor in sorted(state_dict.items()):
        sha.update(name.encode())
        sha.update(tensor.detach().cpu().float().contiguous().numpy().tobytes())
    return sha.hexdigest()


class SignalEveryRank(Callback):
    """Send ``signum`` to every process when training step ``at_step`` ends, as SLURM signals every task.

    Args:
        at_step: Global step after which the signal is sent.
        signum: Signal number (15 = SIGTERM, 10 = SIGUSR1 on Linux).
    """

    def __init__(self, at_step: int, signum: int = int(signal.SIGUSR1)) -> None:
        self.at_step = at_step
        self.signum = signum

    def on_train_batch_end(self, trainer: "pl.Trainer", *args: object) -> None:
        """Signal once, when the chosen step has just ended."""
        if trainer.global_step == self.at_step:
            os.kill(os.getpid(), self.signum)


class SignalOneRank(SignalEveryRank):
    """Send ``signum`` to the process of global rank ``rank`` only, as ``kill`` of one PID would.

    Args:
        at_step: Global step after which the signal is sent.
        signum: Signal number.
        rank: The global rank that receives it.
    """

    def __init__(self, at_step: int, signum: int = int(signal.SIGTERM), rank: int = 0) -> None:
        super().__init__(at_step, signum)
        self.rank = rank

    def on_train_batch_end(self, trainer: "pl.Trainer", *args: object) -> None:
        """Signal once, on the chosen rank only."""
        if trainer.global_rank == self.rank:
            super().on_train_batch_end(trainer, *args)


class SignalOneRankInSanityCheck(Callback):
    """Send ``signum`` to the process of global rank ``rank`` during the sanity check, before any step.

    Args:
        signum: Signal number.
        rank: The global rank that receives it.
    """

    def __init__(self, signum: int = int(signal.SIGTERM), rank: int = 0) -> None:
        self.signum = signum
        self.rank = rank
        self._sent = False

    def on_validation_batch_end(self, trainer: "pl.Trainer", *args: object, **kwargs: object) -> None:
        """Signal once, in the first sanity-check batch of the chosen rank."""
        if trainer.sanity_checking and trainer.global_rank == self.rank and not self._sent:
            self._sent = True
            os.kill(os.getpid(), self.signum)


class OutputDtypes(Callback):
    """Record the output dtypes of every module that holds parameters, during training steps.

    Under ``bf16-mixed`` autocast, linear and convolution layers must return ``torch.bfloat16``.
    """

    def __init__(self) -> None:
        self.dtypes: set[str] = set()
        self._handles: list = []

    def on_fit_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        """Hook every module that has parameters of its own."""
        for module in pl_module.modules():
            if any(True for _ in module.parameters(recurse=False)):
                self._handles.append(module.register_forward_hook(self._record))

    def on_fit_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        """Remove the hooks."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _record(self, module: torch.nn.Module, args: object, output: object) -> None:
        if module.training and isinstance(output, torch.Tensor):
            self.dtypes.add(str(output.dtype).removeprefix("torch."))
