"""``attnlab fit|validate|test|predict``: LightningCLI over every registered domain.

The registered domains (:mod:`core.plugins`) are imported first, so configs may use short class names
(``class_path: TLOB``). Scaling goes through Lightning itself: ``--trainer.devices``,
``--trainer.num_nodes`` and ``--trainer.strategy`` (DDP, FSDP; SLURM and torchrun are detected by
Lightning's cluster environments).
"""

import sys
import warnings
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.cli import LightningCLI, LRSchedulerTypeTuple
from lightning.pytorch.plugins.io import TorchCheckpointIO

from core.data import BaseDataModule
from core.plugins import load_domains
from core.training import AtomicCheckpointIO, BaseTask, PredictionWriter, TaskCheckpoint, best_checkpoint

__all__ = ["AttnLabCLI", "link_targets", "run_trainer_command"]


def link_targets() -> tuple[str, ...]:
    """Every task argument that some imported datamodule class declares in its ``links``."""
    targets: dict[str, None] = {}
    pending = [BaseDataModule]
    while pending:
        cls = pending.pop()
        targets.update(dict.fromkeys(cls.links))
        pending.extend(cls.__subclasses__())
    return tuple(targets)


def _linked_value(target: str, datamodule: Any) -> Any:
    """The value a datamodule gives to task argument ``target`` (None when it declares no such link)."""
    attribute = getattr(datamodule, "links", {}).get(target)
    return None if attribute is None else getattr(datamodule, attribute)


class AttnLabCLI(LightningCLI):
    """LightningCLI with attnlab's defaults.

    * Subclass mode for tasks and datamodules: ``--model=<Task> --data=<DataModule>``.
    * ``--checkpoint.*`` (:class:`TaskCheckpoint`): monitors the task's metric, keeps ``last.ckpt``
      under ``<trainer.default_root_dir>/checkpoints`` so ``--ckpt_path last`` finds it.
    * ``--prediction_writer.*`` (:class:`PredictionWriter`) for ``attnlab predict``.
    * ``--optimizer`` / ``--lr_scheduler`` choose any torch optimizer / scheduler. Without ``--optimizer``
      the task's ``configure_optimizers`` runs (AdamW, lr 1e-3); a chosen optimizer gets only its own
      defaults, never options carried over from another class.
    * Data-derived values flow from the datamodule to the task as each datamodule class declares them
      (:attr:`BaseDataModule.links`); a value set by hand that disagrees with the data is an error.
    * Checkpoints are written atomically (:class:`AtomicCheckpointIO`).
    """

    def add_arguments_to_parser(self, parser: Any) -> None:
        """Add attnlab's argument groups, defaults and data → task links."""
        parser.add_lightning_class_args(TaskCheckpoint, "checkpoint")
        parser.link_arguments(
            "trainer.default_root_dir",
            "checkpoint.dirpath",
            compute_fn=lambda root: str(Path(root or ".") / "checkpoints"),
        )
        parser.add_lightning_class_args(PredictionWriter, "prediction_writer")
        parser.add_optimizer_args((torch.optim.Optimizer,))
        parser.add_lr_scheduler_args(LRSchedulerTypeTuple)
        # No class default for --optimizer: with one, jsonargparse carries its init args over to the class a
        # config chooses (AdamW's weight_decay=0.01 silently became Adam's L2 penalty). Without --optimizer
        # the task's own configure_optimizers runs: AdamW(lr=1e-3), see BaseTask.
        self._link_targets = link_targets()
        for target in self._link_targets:
            parser.link_arguments(
                "data",
                f"model.init_args.{target}",
                compute_fn=partial(_linked_value, target),
                apply_on="instantiate",
            )

    def before_instantiate_classes(self) -> None:
        """Resolve ``--ckpt_path best`` and take hand-set linked values aside for the data check."""
        config = self.config.get(str(self.subcommand), self.config)
        if self.subcommand in ("validate", "test", "predict") and config.get("ckpt_path") == "best":
            config["ckpt_path"] = str(best_checkpoint(Path(config["checkpoint"]["dirpath"])))
        if self.subcommand == "predict" and config.get("return_predictions") is None:
            # The prediction writer saves outputs; keeping them all in memory too helps no one.
            config["return_predictions"] = False
        init_args = config.get("model", {}).get("init_args") or {}
        self._hand_set = {
            name: init_args.get(name) for name in link_targets() if init_args.get(name) is not None
        }

    def instantiate_classes(self) -> None:
        """Instantiate, check linked values against hand-set ones, and make checkpoint writes atomic."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*configure_optimizers` will be overridden.*")
            super().instantiate_classes()
        data_values = self.datamodule.link_values() if isinstance(self.datamodule, BaseDataModule) else {}
        for name, wanted in self._hand_set.items():
            actual = data_values.get(name)
            if actual is not None and _normalise(actual) != _normalise(wanted):
                raise ValueError(
                    f"model.init_args.{name}={wanted!r} was set by hand but the data gives "
                    f"{name}={actual!r}. {name} is derived from the datamodule: remove it from the "
                    "model config, or change the data options."
                )
        strategy = self.trainer.strategy
        if type(getattr(strategy, "checkpoint_io", None)) is TorchCheckpointIO:
            strategy.checkpoint_io = AtomicCheckpointIO()

    def after_fit(self) -> None:
        """Say where the best checkpoint is and how good it was, and how to test it."""
        callback = self.trainer.checkpoint_callback
        if not self.trainer.is_global_zero or not isinstance(callback, TaskCheckpoint):
            return
        if callback.best_model_path:
            score = callback.best_model_score
            value = f"{float(score):.4f}" if score is not None else "n/a"
            print(f"\nbest {callback.monitor} = {value}: {callback.best_model_path}")
        if callback.last_model_path:
            print(f"last checkpoint (resume with --ckpt_path last): {callback.last_model_path}")


def _normalise(value: Any) -> Any:
    return list(value) if isinstance(value, tuple | list) else value


def _note_skipped(name: str, message: str) -> None:
    print(f"attnlab: domain {name!r} skipped: {message}", file=sys.stderr)


def run_trainer_command(argv: Sequence[str]) -> AttnLabCLI:
    """Run ``attnlab fit|validate|test|predict`` with the registered domains loaded.

    Args:
        argv: The whole command line after ``attnlab``.

    Returns:
        The CLI object after the subcommand ran.
    """
    load_domains(argv, on_skip=_note_skipped if any(a in ("-h", "--help") for a in argv) else None)
    return AttnLabCLI(
        BaseTask,
        BaseDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={
            "prog": "attnlab",
            "description": (
                "attnlab: train, validate, test and predict with any domain's task and datamodule "
                "(see docs/cli.md). `attnlab --help` lists every command."
            ),
        },
        # None when this is the process's own command line: LightningCLI then parses sys.argv itself and
        # does not warn that arguments were passed twice.
        args=None if list(argv) == sys.argv[1:] else list(argv),
        auto_configure_optimizers=True,
    )
