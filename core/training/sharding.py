"""Sharded data-parallel training (FSDP2) for every task, and its checkpoints read back on one process.

``--trainer.strategy=fsdp2`` is Lightning's :class:`ModelParallelStrategy` with PyTorch's FSDP2
(``fully_shard``) applied to the task's network: each *unit* (a transformer block, a U-Net stage) is
sharded on its own, so only one unit's parameters are gathered at a time, then the network as the root.
It runs wherever ``torch.distributed`` does, CPU with gloo included, which is how it is tested; Lightning's
older ``FSDPStrategy`` refuses CPUs.

Checkpoints are sharded by default: a folder (``last.ckpt/``) with one ``.distcp`` file per rank and
Lightning's ``meta.pt``. They are written into a temporary sibling folder and swapped in only when every
rank has finished, so a run killed while saving keeps the previous checkpoint. :func:`consolidate_checkpoint`
turns such a folder into the ordinary one-file checkpoint; ``attnlab test``/``predict``/``validate`` and
``--model.pretrained`` do that on the fly, so a sharded run is evaluated and fine-tuned on one process.
"""

import os
import shutil
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.load import _METADATA_FILENAME, _load_distributed_checkpoint
from lightning.pytorch.strategies import ModelParallelStrategy, StrategyRegistry
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

from core.utils.errors import InputError

__all__ = [
    "FSDP2Strategy",
    "consolidate_checkpoint",
    "is_checkpoint",
    "is_sharded_checkpoint",
    "shard_network",
    "sharding_units",
]


class FSDP2Strategy(ModelParallelStrategy):
    """FSDP2 over all processes (pure data parallelism, no tensor parallelism), unit by unit.

    Args:
        units: Class names of the modules to shard one by one (e.g. ``[TLOBBlock]``). By default the
            network's ``sharding_units`` class attribute, else the elements of its outermost
            ``nn.ModuleList``s (the blocks or stages of every family here).
        activation_checkpointing: Recompute each unit's activations in backward instead of keeping them
            (less memory, about one more forward of compute).
        reshard_after_forward: Free each unit's gathered parameters after its forward and gather again in
            backward (ZeRO-3); False keeps them until backward (ZeRO-2: more memory, less traffic).
        forward_methods: Methods of the network the task calls instead of ``forward``; FSDP2 only gathers
            parameters around hooked methods. By default the network's ``entry_methods`` class attribute
            (recsys networks: ``encode``, ``user_vector``, ``scores``).
        save_distributed_checkpoint: One shard file per rank (True) or one full checkpoint file written by
            rank 0 (False; gathers the whole model on rank 0's CPU).
        process_group_backend: ``gloo``/``nccl``; by default Lightning's choice for the device.
        timeout: Timeout of collective operations.
    """

    def __init__(
        self,
        units: list[str] | None = None,
        activation_checkpointing: bool = False,
        reshard_after_forward: bool = True,
        forward_methods: list[str] | None = None,
        save_distributed_checkpoint: bool = True,
        process_group_backend: str | None = None,
        timeout: timedelta = timedelta(minutes=30),
    ) -> None:
        super().__init__(
            data_parallel_size="auto",
            tensor_parallel_size=1,
            save_distributed_checkpoint=save_distributed_checkpoint,
            process_group_backend=process_group_backend,
            timeout=timeout,
        )
        self.units = list(units) if units else None
        self.activation_checkpointing = activation_checkpointing
        self.reshard_after_forward = reshard_after_forward
        self.forward_methods = list(forward_methods or [])

    def setup_environment(self) -> None:
        """Shard over every process of every node (Lightning's default mesh would tensor-parallelise)."""
        self._data_parallel_size = self.num_nodes * self.num_processes
        super().setup_environment()

    def shard(self, task: nn.Module) -> None:
        """Apply FSDP2 to ``task.network`` on this strategy's mesh (from the task's ``configure_model``).

        Raises:
            InputError: If the task has trainable parameters outside its network, or no units are found.
        """
        network = getattr(task, "network", None)
        if not isinstance(network, nn.Module):
            raise InputError(f"FSDP2Strategy: {type(task).__name__} has no `network` module to shard")
        if _is_sharded(network):
            return
        inside = {id(p) for p in network.parameters()}
        outside = [n for n, p in task.named_parameters() if p.requires_grad and id(p) not in inside]
        if outside:
            raise InputError(
                f"FSDP2Strategy: {type(task).__name__} has trainable parameters outside its network "
                f"({', '.join(outside[:3])}); they would not be synchronised. Use --trainer.strategy=ddp"
            )
        name = type(network).__name__
        units = shard_network(
            network,
            self.device_mesh["data_parallel"],
            units=self.units,
            activation_checkpointing=self.activation_checkpointing,
            reshard_after_forward=self.reshard_after_forward,
            forward_methods=self.forward_methods or getattr(network, "entry_methods", ()),
        )
        if any(True for _ in network.buffers()):
            network.register_forward_pre_hook(_broadcast_buffers)
        rank_zero_info(
            f"FSDP2Strategy: sharded {name} over {self.world_size} processes in {len(units)} units "
            f"({', '.join(sorted({_class_name(u) for u in units}))}) + the root"
            + (", activation checkpointing" if self.activation_checkpointing else "")
        )

    def on_validation_end(self) -> None:
        """Put gathered parameters back to their shards (see :meth:`reshard`)."""
        self.reshard()
        super().on_validation_end()

    def on_test_end(self) -> None:
        """Put gathered parameters back to their shards (see :meth:`reshard`)."""
        self.reshard()
        super().on_test_end()

    def on_predict_end(self) -> None:
        """Put gathered parameters back to their shards (see :meth:`reshard`)."""
        self.reshard()
        super().on_predict_end()

    def lightning_module_state_dict(self) -> dict[str, Any]:
        """The (sharded or full) weights, read from the shards, with rank 0's buffers on every rank.

        Each rank's last training step updated its own BatchNorm statistics; a sharded save writes each
        replicated tensor from one rank of its choosing, so they are made equal first (DDP saves rank 0's).
        """
        self.reshard()
        network = getattr(self.lightning_module, "network", None)
        if isinstance(network, nn.Module):
            _rank0_buffers(network)
        return super().lightning_module_state_dict()

    def optimizer_state(self, optimizer: Any) -> dict[str, Any]:
        """The optimizer's state, keyed by parameter name, read against the sharded parameters."""
        self.reshard()
        return super().optimizer_state(optimizer)

    def reshard(self) -> None:
        """Free every gathered parameter, so the registered ones are the shards the optimizer steps.

        The root keeps its parameters gathered after a forward until the backward; a forward without
        backward (validation) leaves them gathered, and the state dicts would then not match the optimizer.
        """
        from torch.distributed.fsdp import FSDPModule

        if self.model is not None:
            for module in self.model.modules():
                if isinstance(module, FSDPModule):
                    module.reshard()

    def save_checkpoint(self, checkpoint: dict[str, Any], filepath: Any, storage_options: Any = None) -> None:
        """Write the sharded checkpoint into a temporary folder, then swap it in once every rank is done."""
        if not self._save_distributed_checkpoint:
            super().save_checkpoint(checkpoint, filepath, storage_options)
            return
        path = Path(self.broadcast(str(filepath)))
        partial = path.with_name(f".{path.name}.partial")
        if self.global_rank == 0 and partial.exists():
            shutil.rmtree(partial)
        self.barrier("fsdp2_checkpoint_clean")
        super().save_checkpoint(checkpoint, partial, storage_options)
        self.barrier("fsdp2_checkpoint_written")
        if self.global_rank == 0:
            swap_in(partial, path)
        self.barrier("fsdp2_checkpoint_swapped")


StrategyRegistry.register(
    "fsdp2", FSDP2Strategy, description="FSDP2 (fully_shard) over all processes, unit by unit (attnlab)"
)


def swap_in(new: Path, target: Path) -> None:
    """Replace ``target`` (a file or folder, or nothing) by the folder ``new``.

    A folder cannot be renamed over a non-empty one, so the old checkpoint is first moved aside to
    ``.<name>.old``; :func:`recover_checkpoint` puts it back if the process dies between the renames.
    """
    old = target.with_name(f".{target.name}.old")
    if old.exists():
        shutil.rmtree(old) if old.is_dir() else old.unlink()
    if target.exists():
        os.replace(target, old)
    os.replace(new, target)
    if old.is_dir():
        shutil.rmtree(old)
    elif old.exists():
        old.unlink()


def recover_checkpoints(dirpath: Path) -> list[Path]:
    """Finish or undo sharded saves that a killed run left half done in ``dirpath``.

    Returns:
        The paths removed or restored.
    """
    touched = []
    for partial in sorted(dirpath.glob(".*.ckpt.partial")):
        shutil.rmtree(partial, ignore_errors=True)
        touched.append(partial)
    for old in sorted(dirpath.glob(".*.ckpt.old")):
        target = dirpath / old.name[1 : -len(".old")]
        if target.exists():
            shutil.rmtree(old) if old.is_dir() else old.unlink()
        else:
            os.replace(old, target)
        touched.append(old)
    return touched


def sharding_units(network: nn.Module, names: Sequence[str] | None = None) -> list[nn.Module]:
    """The modules of ``network`` that FSDP2 shards one by one, outermost first.

    Args:
        network: The task's network.
        names: Class names to shard; by default ``network.sharding_units`` or, failing that, the elements
            of the outermost ``nn.ModuleList``s.

    Raises:
        InputError: If nothing matches (naming the classes that were looked for).
    """
    names = list(names or getattr(network, "sharding_units", ()) or ())
    if names:
        found = [m for m in network.modules() if type(m).__name__ in names and m is not network]
        units = [m for m in found if not any(m is not o and _contains(o, m) for o in found)]
    else:
        units = []
        _outer_lists(network, units)
    if not units:
        wanted = f"modules of class {', '.join(names)}" if names else "an nn.ModuleList of blocks"
        raise InputError(
            f"FSDP2Strategy: found no {wanted} in {type(network).__name__}; name its blocks with "
            "--trainer.strategy.units=[ClassName, ...]"
        )
    return units


def shard_network(
    network: nn.Module,
    mesh: Any,
    *,
    units: Sequence[str] | None = None,
    activation_checkpointing: bool = False,
    reshard_after_forward: bool = True,
    forward_methods: Sequence[str] = (),
) -> list[nn.Module]:
    """Apply ``fully_shard`` to each unit, then to ``network``; optionally checkpoint each unit's activations.

    Returns:
        The units that were sharded.
    """
    from torch.distributed._composable import checkpoint
    from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method

    chosen = sharding_units(network, units)
    for param in network.parameters():
        # FSDP2 splits a parameter's storage along dim 0 and refuses other layouts (channels-last 3-D
        # convolutions, as the medical networks use on CPU): shard the plain layout instead.
        if not param.is_contiguous():
            param.data = param.data.contiguous()
    for unit in chosen:
        if activation_checkpointing:
            checkpoint(unit)
        fully_shard(unit, mesh=mesh, reshard_after_forward=reshard_after_forward)
    # The root keeps its parameters (embeddings, heads) gathered from forward to backward, as FSDP2 does by
    # default for roots: tasks read them outside forward too (recsys's catalogue loss reads the item table).
    fully_shard(network, mesh=mesh, reshard_after_forward=False)
    for method in forward_methods:
        if not callable(getattr(network, method, None)):
            raise InputError(f"FSDP2Strategy: {type(network).__name__} has no method {method!r}")
        register_fsdp_forward_method(network, method)
    return chosen


def is_sharded_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` is a folder written by ``torch.distributed.checkpoint`` (sharded)."""
    path = Path(path)
    return path.is_dir() and (path / ".metadata").is_file()


def is_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` is a checkpoint file or a sharded checkpoint folder."""
    return Path(path).is_file() or is_sharded_checkpoint(path)


def consolidate_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a sharded checkpoint folder into the one-file checkpoint Lightning loads on any strategy.

    Needs memory for the whole model and optimizer state on this process's CPU.

    Raises:
        InputError: If ``path`` is not a sharded checkpoint.
    """
    path = Path(path)
    if not is_sharded_checkpoint(path):
        raise InputError(f"{path} is not a sharded checkpoint (a folder with .metadata and .distcp files)")
    checkpoint = _load_distributed_checkpoint(path)
    optimizers = sorted((k for k in checkpoint if k.startswith("optimizer_")), key=lambda k: int(k[10:]))
    if optimizers:
        checkpoint["optimizer_states"] = [checkpoint.pop(k) for k in optimizers]
    return checkpoint


def checkpoint_metadata(path: str | Path, weights_only: bool = False) -> dict[str, Any]:
    """A checkpoint's non-tensor entries (callbacks, loops, hyper-parameters); file or sharded folder."""
    path = Path(path)
    if path.is_dir():
        return torch.load(path / _METADATA_FILENAME, map_location="cpu", weights_only=weights_only)
    return torch.load(path, map_location="cpu", weights_only=weights_only, mmap=True)


def _broadcast_buffers(module: nn.Module, args: Any) -> None:
    """Give every rank rank 0's buffers before a training forward, as DDP does (``broadcast_buffers``).

    FSDP2 shards parameters only: BatchNorm's running statistics would otherwise drift apart per rank, and
    the checkpoint would hold one rank's.
    """
    if module.training:
        _rank0_buffers(module)


def _rank0_buffers(module: nn.Module) -> None:
    if torch.distributed.is_initialized():
        for buffer in module.buffers():
            torch.distributed.broadcast(buffer.data, src=0)


def _class_name(module: nn.Module) -> str:
    """The class name a module had before ``fully_shard`` prefixed it with ``FSDP``."""
    from torch.distributed.fsdp import FSDPModule

    return next(b for b in type(module).__bases__ if b is not FSDPModule).__name__


def _is_sharded(module: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(module, FSDPModule)


def _contains(outer: nn.Module, inner: nn.Module) -> bool:
    return any(m is inner for m in outer.modules())


def _outer_lists(module: nn.Module, out: list[nn.Module]) -> None:
    for child in module.children():
        if isinstance(child, nn.ModuleList):
            out.extend(m for m in child if any(p.numel() for p in m.parameters()))
        else:
            _outer_lists(child, out)
