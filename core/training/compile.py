"""``torch.compile`` for any task's network, as a callback: ``--trainer.callbacks+=CompileNetwork``.

The network is compiled in place (``nn.Module.compile``), so parameter names, checkpoints,
``--model.pretrained`` and EMA are unchanged. ``setup`` runs before the strategy wraps the model (DDP,
FSDP), which is the order PyTorch recommends.
"""

from collections.abc import Sequence
from typing import Literal

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback

__all__ = ["CompileNetwork"]


class CompileNetwork(Callback):
    """Compile ``pl_module.network`` (its ``forward`` and any other methods the task calls directly).

    Args:
        mode: ``torch.compile`` mode.
        backend: ``inductor`` (generated kernels; needs a C compiler on CPU) or ``eager`` / ``aot_eager``
            (graph capture only: checks that a network compiles, in seconds).
        dynamic: Shapes that vary between batches: True compiles them symbolically, None lets PyTorch decide.
        fullgraph: Fail on a graph break instead of falling back to Python for that part.
        methods: Methods of the network to compile. None: ``forward`` and the methods the network's
            ``entry_methods`` class attribute names (those a task calls instead of ``forward``, e.g.
            recsys's ``encode``, ``user_vector`` and ``scores``).
    """

    def __init__(
        self,
        mode: Literal["default", "reduce-overhead", "max-autotune"] = "default",
        backend: Literal["inductor", "eager", "aot_eager"] = "inductor",
        dynamic: bool | None = None,
        fullgraph: bool = False,
        methods: Sequence[str] | None = None,
    ) -> None:
        self.options = {"dynamic": dynamic, "fullgraph": fullgraph, "backend": backend}
        if backend == "inductor":
            self.options["mode"] = mode
        self.methods = None if methods is None else tuple(methods)
        self._done = False

    def setup(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", stage: str) -> None:
        """Compile once per trainer, before the strategy wraps the module.

        Raises:
            ValueError: If the task has no ``network`` or the network lacks a method to compile.
        """
        if self._done:
            return
        network = getattr(pl_module, "network", None)
        if not isinstance(network, torch.nn.Module):
            raise ValueError(f"CompileNetwork: {type(pl_module).__name__} has no `network` module to compile")
        methods = self.methods or ("forward", *getattr(network, "entry_methods", ()))
        for name in methods:
            if not callable(getattr(network, name, None)):
                raise ValueError(f"CompileNetwork: {type(network).__name__} has no method {name!r}")
            if name == "forward":
                network.compile(**self.options)
            else:
                setattr(network, name, torch.compile(getattr(network, name), **self.options))
        self._done = True
