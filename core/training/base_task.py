"""The LightningModule base every domain task follows (the TorchGeo trainer pattern).

``__init__`` is the typed config schema: it saves the hyper-parameters, then calls the hooks
:meth:`BaseTask.configure_models`, :meth:`BaseTask.configure_losses` and :meth:`BaseTask.configure_metrics`
in that order, then loads ``pretrained`` weights if given. Subclasses keep a fixed method order:
``__init__`` → ``configure_models`` → ``configure_losses`` → ``configure_metrics`` → ``forward`` →
``training_step`` → ``validation_step`` → ``test_step`` → ``predict_step`` → other hooks → helpers.

The base owns the plumbing every task repeats, so a domain's task keeps only what is specific to it:

* :meth:`BaseTask.build_network` turns the injected network factory into the network, giving it the
  data-derived sizes it asks for and the ``attention`` factory;
* :meth:`BaseTask.log_loss` adds the mechanisms' auxiliary losses in training and logs ``<stage>_loss``;
* the metrics returned by :meth:`BaseTask.configure_metrics` are cloned per stage, and computed, logged
  and reset at each epoch end (scalars as curves, matrices through :meth:`BaseTask.metric_figure`);
* :meth:`BaseTask.log_figure`, :meth:`BaseTask.prediction_path` and :meth:`BaseTask.require_linked`.

Everything logged is a value that is the same on every process (``sync_dist=True``), so DDP runs log the
numbers of one process and Lightning has nothing to warn about.

Optimizers and schedulers are not hard-coded: the ``attnlab`` CLI injects them from ``--optimizer`` and
``--lr_scheduler``; without ``--optimizer``, :meth:`BaseTask.configure_optimizers` (AdamW) runs.
"""

import copy
import importlib
import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from matplotlib.figure import Figure
from torch import Tensor, nn

from core.attention.base import TokenMixer
from core.training.distributed import EpochMetricsSync
from core.training.networks import instantiate_network
from core.training.plots import close
from core.training.pretrained import load_pretrained
from core.training.resume import ResumeState
from core.training.sharding import FSDP2Strategy
from core.utils.errors import InputError

__all__ = [
    "BaseTask",
    "Stage",
    "children_except_head",
    "flat_metrics",
    "foreign_checkpoint_message",
    "qualified_name",
]

Stage = Literal["train", "val", "test"]


class BaseTask(pl.LightningModule):
    """Base class of all attnlab tasks.

    Class attributes:
        monitor: Metric that checkpointing and plateau schedulers follow, e.g. ``"val_loss"``.
        mode: Whether ``monitor`` should be minimised or maximised.
        metric_stages: Stages whose metrics are tracked (a clone of :meth:`configure_metrics` each).
        ignore: Init args left out of ``save_hyperparameters``.
        resizable_keys: Substrings of parameter names whose first dimension may be interpolated when a
            ``pretrained`` checkpoint was trained with another sequence length.

    Args:
        pretrained: Path of a checkpoint (Lightning ``.ckpt`` or a plain ``state_dict``) to initialise the
            weights from, for fine-tuning. Loading is strict where shapes match; everything loaded, skipped
            or resized is logged.
    """

    monitor: ClassVar[str] = "val_loss"
    mode: ClassVar[Literal["min", "max"]] = "min"
    metric_stages: ClassVar[tuple[Stage, ...]] = ("train", "val", "test")
    ignore: ClassVar[Sequence[str]] = ()
    resizable_keys: ClassVar[Sequence[str]] = ()

    def __init__(self, *, pretrained: str | None = None) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=list(self.ignore))
        accepted = _init_arguments(type(self))
        unknown = [
            k for k in self.hparams if accepted is not None and not k.startswith("_") and k not in accepted
        ]
        if unknown:
            # The CLI offers every datamodule's linked values (sizes of other domains are None here); keep
            # only this task's arguments, or a checkpoint's hparams would not load back into this class.
            self.save_hyperparameters(ignore=[*self.ignore, *unknown])
        self.configure_models()
        self.configure_losses()
        template = self.configure_metrics()
        if template is not None:
            for stage in self.metric_stages:
                setattr(self, f"{stage}_metrics", copy.deepcopy(template))
        if pretrained:
            load_pretrained(self, pretrained, resizable_keys=self.resizable_keys)

    # ------------------------------------------------------------------ what a domain implements

    def configure_models(self) -> None:
        """Build the networks from ``self.hparams`` (usually with :meth:`build_network`)."""
        raise NotImplementedError(f"{type(self).__name__} must implement configure_models()")

    def configure_losses(self) -> None:
        """Build the loss functions from ``self.hparams``."""
        raise NotImplementedError(f"{type(self).__name__} must implement configure_losses()")

    def configure_metrics(self) -> nn.Module | None:
        """The metrics of one stage, or None; the base keeps a copy ``<stage>_metrics`` per metric stage.

        The returned module has ``update(...)``, ``reset()`` and ``compute() -> Mapping[str, Tensor]``
        (a torchmetrics ``MetricCollection`` or a domain's own container of metrics). Names are given
        without the stage; the base prefixes ``train_`` / ``val_`` / ``test_``. Metrics must synchronise
        across processes in ``compute()`` (every torchmetrics metric does).
        """
        raise NotImplementedError(f"{type(self).__name__} must implement configure_metrics()")

    def metric_figure(self, tag: str, value: Tensor) -> Figure | None:
        """A figure for a non-scalar metric value (e.g. a confusion matrix), or None to skip it.

        Called on the logging process only, for validation and test.
        """
        return None

    # ------------------------------------------------------------------ building

    def build_network(self, factory: Callable[..., nn.Module], **sizes: Any) -> nn.Module:
        """Call the network factory with the sizes its ``__init__`` declares, plus ``attention`` if set.

        Args:
            factory: A network class or the factory the CLI made of ``--model.network``.
            **sizes: Data-derived sizes on offer (None values are left out).

        Returns:
            The network.
        """
        return instantiate_network(factory, attention=getattr(self, "attention", None), **sizes)

    def require_linked(self, *names: str) -> None:
        """Fail clearly when a value the CLI links from the datamodule is unknown.

        Raises:
            ValueError: Naming the first missing value and how to give it.
        """
        for name in names:
            if self.hparams.get(name) is None:
                raise ValueError(
                    f"{type(self).__name__}: {name} is unknown. It is linked from the datamodule by "
                    f"`attnlab`; when building the task by hand pass {name}=..."
                )

    def configure_model(self) -> None:
        """Shard the network when the strategy is :class:`~core.training.sharding.FSDP2Strategy`.

        Lightning calls this hook under every strategy; only model-parallel ones give the task a device
        mesh. Any other model-parallel strategy is refused: nothing would synchronise the replicas.

        Raises:
            InputError: Under a model-parallel strategy other than ``FSDP2Strategy``.
        """
        if self.device_mesh is None:
            return
        strategy = self.trainer.strategy
        if not isinstance(strategy, FSDP2Strategy):
            raise InputError(
                f"--trainer.strategy={type(strategy).__name__}: attnlab tasks shard through FSDP2Strategy "
                "(--trainer.strategy=fsdp2); use it, or ddp"
            )
        strategy.shard(self)

    # ------------------------------------------------------------------ steps

    def log_loss(self, stage: Stage, loss: Tensor, batch_size: int) -> Tensor:
        """Add the mechanisms' auxiliary losses in training, log ``<stage>_loss`` and return the total."""
        if stage == "train":
            aux = self.aux_loss()
            if aux is not None:
                loss = loss + aux
        self.log(
            f"{stage}_loss",
            loss,
            on_step=stage == "train",
            on_epoch=True,
            sync_dist=True,
            batch_size=batch_size,
            prog_bar=stage == "train",
        )
        return loss

    def update_metrics(self, stage: Stage, *args: Any) -> None:
        """Feed one batch to the metrics of ``stage`` (nothing when the stage has none)."""
        metric = self.stage_metrics(stage)
        if metric is not None:
            metric.update(*args)

    def on_train_epoch_start(self) -> None:
        """Log the learning rate of the first parameter group, so TensorBoard shows the schedule."""
        optimizers = self.trainer.optimizers
        if optimizers:
            lr = float(optimizers[0].param_groups[0]["lr"])
            self.log("lr", lr, on_step=False, on_epoch=True, sync_dist=True)

    def on_train_epoch_end(self) -> None:
        """Log the epoch's training metrics."""
        self.log_epoch_metrics("train")

    def on_validation_epoch_end(self) -> None:
        """Log the epoch's validation metrics."""
        self.log_epoch_metrics("val")

    def on_test_epoch_end(self) -> None:
        """Log the test metrics."""
        self.log_epoch_metrics("test")

    def configure_callbacks(self) -> list[Callback]:
        """The callbacks every task needs: DDP processes in step, and exact resumes.

        :class:`~core.training.distributed.EpochMetricsSync` and :class:`~core.training.resume.ResumeState`.
        """
        return [EpochMetricsSync(), ResumeState()]

    def configure_optimizers(self) -> Any:
        """The default optimizer: AdamW with PyTorch's defaults (lr 1e-3, weight decay 0.01).

        ``attnlab`` replaces it when ``--optimizer`` (and ``--lr_scheduler``) are given. The CLI has no class
        default of its own, so that a config choosing another optimizer gets only that class's defaults.
        """
        return torch.optim.AdamW(self.parameters())

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Record the task's class, so a checkpoint given to another task is refused by name."""
        checkpoint["attnlab_task"] = qualified_name(type(self))

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse a checkpoint that another task wrote (another domain's, say) before reading its weights.

        Raises:
            InputError: Naming the task that wrote the checkpoint and the one of this run.
        """
        written_by = checkpoint.get("attnlab_task")
        mine = qualified_name(type(self))
        if written_by is not None and written_by != mine:
            raise InputError(f"this checkpoint: {foreign_checkpoint_message(written_by, mine)}")

    # ------------------------------------------------------------------ logging

    def log_epoch_metrics(self, stage: Stage) -> None:
        """Compute, log and reset the metrics of ``stage``; non-scalar values become figures.

        Runs on every process (``compute()`` synchronises). Scalars that are NaN (an undefined mean, which
        the metric itself warns about) are left out of the logs rather than drawn as gaps.
        """
        metric = self.stage_metrics(stage)
        if metric is None:
            return
        values = {f"{stage}_{name}": value for name, value in flat_metrics(metric.compute()).items()}
        metric.reset()
        scalars = {k: v.float() for k, v in values.items() if v.numel() == 1}
        self.log_dict({k: v for k, v in scalars.items() if not v.isnan()}, sync_dist=True)
        if stage != "train":
            for tag, value in values.items():
                if value.numel() > 1:
                    self.log_figure(tag, lambda tag=tag, value=value: self.metric_figure(tag, value))

    def log_figure(self, tag: str, make: Callable[[], Figure | None]) -> None:
        """Draw a figure with ``make()`` and add it to every TensorBoard logger (logging process only).

        Nothing is drawn during the sanity check, on other processes, or without a TensorBoard logger.
        """
        if self.trainer.sanity_checking or not self.trainer.is_global_zero:
            return
        loggers = [lg for lg in self.loggers if isinstance(lg, TensorBoardLogger)]
        if not loggers:
            return
        fig = make()
        if fig is None:
            return
        for logger in loggers:
            logger.experiment.add_figure(tag, fig, global_step=self.global_step)
        close(fig)

    def prediction_path(self, output_dir: Path, stem: str, suffix: str) -> Path:
        """``output_dir/<stem><suffix>`` for one process, ``<stem>-rank<r><suffix>`` for each of several."""
        world, rank = self.trainer.world_size, self.trainer.global_rank
        return output_dir / (f"{stem}{suffix}" if world == 1 else f"{stem}-rank{rank}{suffix}")

    # ------------------------------------------------------------------ introspection

    def stage_metrics(self, stage: Stage) -> nn.Module | None:
        """The metrics of ``stage`` (``self.<stage>_metrics``), or None when the stage has none."""
        return getattr(self, f"{stage}_metrics", None)

    def backbone_modules(self) -> list[nn.Module]:
        """Modules that fine-tuning freezes, ordered from the input to the output.

        The default is every child with parameters of ``self.network`` (of the task itself when it has
        none) except one called ``head``. Override when the split differs.
        """
        modules = children_except_head(getattr(self, "network", self))
        if not modules:
            raise RuntimeError(f"{type(self).__name__} has no backbone modules to freeze")
        return modules

    def token_mixers(self) -> Iterator[TokenMixer]:
        """All attention mechanisms inside the task (for auxiliary losses and introspection)."""
        return (m for m in self.modules() if isinstance(m, TokenMixer))

    def aux_loss(self) -> Tensor | None:
        """Sum of the ``aux_loss`` set by mechanisms during the last forward (e.g. load balancing)."""
        losses = [m.aux_loss for m in self.token_mixers() if m.aux_loss is not None]
        return torch.stack([loss.float() for loss in losses]).sum() if losses else None


def _init_arguments(cls: type) -> set[str] | None:
    """The argument names of ``cls.__init__``; None when it takes ``**kwargs`` (any name)."""
    params = inspect.signature(cls.__init__).parameters
    return None if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()) else set(params)


def children_except_head(module: nn.Module, head: str = "head") -> list[nn.Module]:
    """Direct children of ``module`` that hold parameters, except the one named ``head``, in order."""
    return [m for name, m in module.named_children() if name != head and any(True for _ in m.parameters())]


def flat_metrics(values: Mapping[str, Any], prefix: str = "") -> dict[str, Tensor]:
    """Flatten nested metric dictionaries into ``{"a_b": tensor}``."""
    out: dict[str, Tensor] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flat_metrics(value, f"{name}_"))
        else:
            out[name] = torch.as_tensor(value)
    return out


def qualified_name(task: type | str) -> str:
    """``module.Class`` of a task class, or of the class that an import path (``domains.finance.X``) names."""
    if isinstance(task, str):
        module, _, name = task.rpartition(".")
        task = getattr(importlib.import_module(module), name)
    return f"{task.__module__}.{task.__qualname__}"


def foreign_checkpoint_message(written_by: str, task: str) -> str:
    """Why a checkpoint of ``written_by`` cannot be read into ``task``, naming the writer's domain."""
    domain = written_by.split(".")[1] if written_by.startswith("domains.") else written_by.split(".")[0]
    return (
        f"written by {written_by} (domain {domain!r}), but this run's task is {task}: pass a checkpoint of "
        "this task, or the config of the other one"
    )
