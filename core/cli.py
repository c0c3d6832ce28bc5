"""The ``attnlab`` command: LightningCLI over every domain's tasks and datamodules.

Usage::

    attnlab fit|validate|test|predict --config configs/<domain>/<model>.yaml [--section.option=value ...]
    attnlab fit --model.help LOBClassifier          # every option of a task, with its docstring
    attnlab fit --config X.yaml --print_config      # the fully resolved config
    attnlab attention list                          # the registered attention mechanisms
    attnlab bench attention [--lengths ...]         # CAB-style benchmark of every mechanism

Scaling goes through Lightning itself: ``--trainer.devices``, ``--trainer.num_nodes`` and
``--trainer.strategy`` (DDP, FSDP; SLURM is detected by Lightning's cluster environment).
"""

import argparse
import importlib
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningDataModule
from lightning.pytorch.cli import LightningCLI, LRSchedulerTypeTuple
from lightning.pytorch.plugins.io import TorchCheckpointIO

import core.attention
from core.data import data_links
from core.training import AtomicCheckpointIO, BaseTask, PredictionWriter, TaskCheckpoint

__all__ = ["AttnLabCLI", "main"]


OPTIONAL_DOMAINS = {"medical": "medical"}  # domain package -> the extra that installs its dependencies


def _import_domains(argv: Sequence[str] = ()) -> None:
    """Import every domain so that configs may use short class names (``class_path: TLOB``).

    Domains whose dependencies live in an extra (MONAI for ``medical``) are skipped when the extra is
    not installed; the ImportError is re-raised, naming the extra to install, when the command line
    mentions that domain (``configs/medical/...``, ``domains.medical...``).
    """
    import domains.finance
    import domains.recsys  # noqa: F401

    for name in OPTIONAL_DOMAINS:
        try:
            importlib.import_module(f"domains.{name}")
        except ImportError:
            if any(name in arg for arg in argv):
                raise


class AttnLabCLI(LightningCLI):
    """LightningCLI with attnlab's defaults.

    * Subclass mode for models and datamodules: ``--model=<Task> --data=<DataModule>``.
    * ``--checkpoint.*`` (:class:`TaskCheckpoint`): monitors the task's metric, keeps ``last.ckpt``
      under ``<trainer.default_root_dir>/checkpoints`` so ``--ckpt_path last`` finds it.
    * ``--prediction_writer.*`` (:class:`PredictionWriter`) for ``attnlab predict``.
    * ``--optimizer`` / ``--lr_scheduler`` choose any torch optimizer / scheduler. Without ``--optimizer``
      the task's ``configure_optimizers`` runs (AdamW, lr 1e-3); a chosen optimizer gets only its own
      defaults, never options carried over from another class.
    * Data-derived sizes (:func:`core.data.data_links`) flow from ``data`` to ``model``; a value set by
      hand that disagrees with the data is an error, never silently replaced.
    * Checkpoints are written atomically (:class:`AtomicCheckpointIO`).
    """

    def add_arguments_to_parser(self, parser: Any) -> None:
        """Add attnlab's argument groups, defaults and data → model links."""
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
        for name in data_links():
            parser.link_arguments(f"data.{name}", f"model.init_args.{name}", apply_on="instantiate")

    def before_instantiate_classes(self) -> None:
        """Resolve ``--ckpt_path best`` and take hand-set linked values aside for the data check."""
        config = self.config.get(str(self.subcommand), self.config)
        if self.subcommand in ("validate", "test", "predict") and config.get("ckpt_path") == "best":
            config["ckpt_path"] = str(best_checkpoint(Path(config["checkpoint"]["dirpath"])))
        if self.subcommand == "predict" and config.get("return_predictions") is None:
            # The prediction writer saves outputs; keeping them all in memory too helps no one.
            config["return_predictions"] = False
        init_args = config.get("model", {}).get("init_args") or {}
        hand_set = {name: init_args.get(name) for name in data_links()}
        self._hand_set = {name: value for name, value in hand_set.items() if value is not None}

    def instantiate_classes(self) -> None:
        """Instantiate, check linked values against hand-set ones, and make checkpoint writes atomic."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*configure_optimizers` will be overridden.*")
            super().instantiate_classes()
        for name, wanted in self._hand_set.items():
            actual = getattr(self.datamodule, name, None)
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


def best_checkpoint(dirpath: Path) -> Path:
    """The best checkpoint of the run whose checkpoints are in ``dirpath``, read from its ``last.ckpt``.

    Lightning resolves ``ckpt_path="best"`` only inside the process that trained; ``last.ckpt`` records
    the checkpoint callback's ``best_model_path``, so ``attnlab test --ckpt_path best`` works later too.

    Raises:
        FileNotFoundError: If there is no ``last.ckpt`` or the best checkpoint it names is gone.
    """
    last = dirpath / "last.ckpt"
    if not last.is_file():
        raise FileNotFoundError(
            f"--ckpt_path best: no {last}. Train first (attnlab fit with the same config) "
            "or pass a checkpoint path."
        )
    state = torch.load(last, map_location="cpu", weights_only=False, mmap=True).get("callbacks", {})
    best = [v.get("best_model_path") for k, v in state.items() if k.startswith("TaskCheckpoint")]
    best = [Path(b) for b in best if b]
    if not best:
        return last
    if not best[0].is_file():
        raise FileNotFoundError(
            f"--ckpt_path best: {last} names {best[0]} as the best checkpoint, but it is gone"
        )
    return best[0]


def _normalise(value: Any) -> Any:
    return list(value) if isinstance(value, tuple | list) else value


def _attention_command(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="attnlab attention", description="The attention library.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="print every registered mechanism with its paper and capabilities")
    args = parser.parse_args(argv)
    if args.command == "list":
        print(core.attention.mechanism_table())
    return 0


def _bench_command(argv: Sequence[str]) -> int:
    benches = ("attention",)
    if not argv or argv[0] not in benches:
        raise SystemExit(
            f"usage: attnlab bench {{{','.join(benches)}}} [options]; see `attnlab bench attention -h`"
        )
    from benchmarks import attention

    return attention.main(argv[1:])


def main(args: Sequence[str] | None = None) -> AttnLabCLI | None:
    """Entry point of the ``attnlab`` console script.

    Args:
        args: Command-line arguments (defaults to ``sys.argv[1:]``); tests pass a list.

    Returns:
        The CLI object after running the subcommand (None for ``attnlab attention ...``).
    """
    argv = list(sys.argv[1:] if args is None else args)
    if argv and argv[0] == "attention":
        _attention_command(argv[1:])
        return None
    if argv and argv[0] == "bench":
        _bench_command(argv[1:])
        return None
    _import_domains(argv)
    return AttnLabCLI(
        BaseTask,
        LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={
            "prog": "attnlab",
            "description": (
                "attnlab: train, validate, test and predict with any domain's task and datamodule "
                "(see docs/cli.md). `attnlab attention list` prints the registered attention mechanisms."
            ),
        },
        args=None if args is None else argv,
        auto_configure_optimizers=True,
    )


def console_main() -> int:
    """The ``attnlab`` console script: run the CLI and return exit status 0."""
    main()
    return 0


if __name__ == "__main__":
    sys.exit(console_main())
