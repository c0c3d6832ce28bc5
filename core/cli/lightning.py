"""``attnlab fit|validate|test|predict``: LightningCLI over every registered domain.

The registered domains (:mod:`core.plugins`) are imported first, so configs may use short class names
(``class_path: TLOB``). Scaling goes through Lightning itself: ``--trainer.devices``,
``--trainer.num_nodes`` and ``--trainer.strategy`` (DDP, FSDP; SLURM and torchrun are detected by
Lightning's cluster environments).
"""

import atexit
import copy
import difflib
import shutil
import sys
import tempfile
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from types import MethodType
from typing import Any

import torch
from lightning.pytorch.cli import LightningCLI, LRSchedulerTypeTuple, instantiate_class
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.strategies import ModelParallelStrategy

from core.data import BaseDataModule
from core.plugins import load_domains
from core.training import AtomicCheckpointIO, BaseTask, PredictionWriter, TaskCheckpoint, best_checkpoint
from core.training.base_task import foreign_checkpoint_message, qualified_name
from core.training.checkpoint import check_checkpoint_file
from core.training.prediction import check_output_dir
from core.training.sharding import (
    checkpoint_metadata,
    consolidate_checkpoint,
    is_checkpoint,
    is_sharded_checkpoint,
)
from core.utils.errors import InputError, InputFileNotFoundError

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

    def parse_arguments(self, parser: Any, args: Any) -> None:
        """Parse as LightningCLI does, keeping the command line for :meth:`_parse_ckpt_path`."""
        self._command_line = list(sys.argv[1:] if args is None else args)
        super().parse_arguments(parser, args)

    def _parse_ckpt_path(self) -> None:
        """Read a checkpoint file's hyper-parameters into the config; the command line still wins.

        LightningCLI merges the hyper-parameters saved in an explicit ``--ckpt_path file.ckpt`` over every
        option, so ``attnlab test --ckpt_path f.ckpt --model.tta=true`` silently tested without TTA.
        Options given as ``--model…`` on the command line are put back after the merge; the checkpoint
        still overrides the config files and defaults, which describe the run that wrote it. The file is
        checked first: a text file or a truncated copy would fail inside ``torch.load`` with advice to
        disable ``weights_only`` (bad advice for a file one does not trust), and another task's
        hyper-parameters would be merged into this task's options.

        Raises:
            InputError: Naming the file, when it is no checkpoint or another task wrote it.
        """
        subcommand = self.config.get("subcommand")
        path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if not path or not is_checkpoint(path):
            return
        check_checkpoint_file(Path(path))
        written_by = checkpoint_metadata(path, weights_only=True).get("attnlab_task")
        class_path = self.config[subcommand].get("model", {}).get("class_path")
        task = qualified_name(class_path) if class_path else None
        if written_by and task and written_by != task:
            raise InputError(f"{path}: {foreign_checkpoint_message(written_by, task)}")
        given = model_options_given(getattr(self, "_command_line", []))
        before = copy.deepcopy(self.config[subcommand].get("model"))
        super()._parse_ckpt_path()
        if before is None or not given:
            return
        if () in given:  # --model=<Task or yaml>: the command line chose the whole task
            self.config[subcommand]["model"] = before
            return
        for option in given:
            restore_option(before, self.config[subcommand]["model"], option)

    def before_instantiate_classes(self) -> None:
        """Resolve ``--ckpt_path best`` and take hand-set linked values aside for the data check."""
        config = self.config.get(str(self.subcommand), self.config)
        checkpoints = Path(config["checkpoint"]["dirpath"])
        if self.subcommand in ("validate", "test", "predict") and config.get("ckpt_path") == "best":
            config["ckpt_path"] = str(best_checkpoint(checkpoints))
        if config.get("ckpt_path") in ("last", LAST_IF_PRESENT):
            config["ckpt_path"] = last_checkpoint(checkpoints, required=config["ckpt_path"] == "last")
        if self.subcommand == "predict" and config.get("return_predictions") is None:
            # The prediction writer saves outputs; keeping them all in memory too helps no one.
            config["return_predictions"] = False
        init_args = config.get("model", {}).get("init_args") or {}
        self._hand_set = {
            name: init_args.get(name) for name in link_targets() if init_args.get(name) is not None
        }

    def instantiate_classes(self) -> None:
        """Instantiate, check linked values against hand-set ones, and make checkpoint writes atomic."""
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
        if isinstance(self.datamodule, BaseDataModule) and self.subcommand == "fit":
            inputs = [Path(p) for p in self.datamodule.input_paths()]
            check_output_dir(Path(self.trainer.default_root_dir), inputs, option="--trainer.default_root_dir")
        strategy = self.trainer.strategy
        if type(getattr(strategy, "checkpoint_io", None)) is TorchCheckpointIO:
            strategy.checkpoint_io = AtomicCheckpointIO()
        self._consolidate_for(strategy)

    def _consolidate_for(self, strategy: Any) -> None:
        """Give a strategy that cannot read a sharded checkpoint its one-file consolidation instead.

        Raises:
            InputError: When ``fit`` would resume a sharded checkpoint without sharding (its optimizer
                state is keyed by parameter name; start from its weights with ``--model.pretrained``).
        """
        config = self.config_init.get(str(self.subcommand), self.config_init)
        path = config.get("ckpt_path")
        if not path or not is_sharded_checkpoint(path) or isinstance(strategy, ModelParallelStrategy):
            return
        if self.subcommand == "fit":
            raise InputError(
                f"{path} is a sharded checkpoint: resume it with --trainer.strategy=fsdp2, or "
                f"start a new run from its weights with --model.pretrained={path}"
            )
        folder = Path(tempfile.mkdtemp(prefix="attnlab-consolidated-"))
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        target = folder / Path(path).name
        torch.save(consolidate_checkpoint(path), target)
        print(f"attnlab: consolidated the sharded checkpoint {path} for {self.subcommand} on one process")
        config["ckpt_path"] = str(target)

    def _add_configure_optimizers_method_to_model(self, subcommand: str | None) -> None:
        """Build ``--optimizer``/``--lr_scheduler`` when Lightning asks for them, not when the CLI starts.

        LightningCLI instantiates the optimizer over the parameters as they are at start-up; a strategy that
        replaces them in ``configure_model`` (FSDP2 swaps every parameter for its shard) would then train
        through an optimizer holding the old tensors.
        """
        optimizer_init = self._get(self.config_init, "optimizer")
        if not optimizer_init:
            return
        scheduler_init = self._get(self.config_init, "lr_scheduler")

        def configure_optimizers(model: BaseTask) -> Any:
            optimizer = instantiate_class(model.parameters(), optimizer_init)
            scheduler = instantiate_class(optimizer, scheduler_init) if scheduler_init else None
            return LightningCLI.configure_optimizers(model, optimizer, scheduler)

        self.model.configure_optimizers = MethodType(configure_optimizers, self.model)

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


def model_options_given(argv: Sequence[str]) -> set[tuple[str, ...]]:
    """The ``--model…`` options of a command line, as paths without ``init_args``.

    ``--model.network.init_args.hidden_dim=32`` and ``--model.network.hidden_dim 32`` both give
    ``("network", "hidden_dim")``; ``--model=Task`` gives ``()``.
    """
    given = set()
    for token in argv:
        key = token.split("=", 1)[0]
        if key == "--model" or key.startswith("--model."):
            parts = key[2:].split(".")[1:]
            given.add(tuple(p for p in parts if p not in ("init_args", "dict_kwargs")))
    return given


def restore_option(source: Any, target: Any, option: tuple[str, ...]) -> None:
    """Copy one option (a path from :func:`model_options_given`) from ``source`` into ``target``.

    Both are a task's config namespaces; a subclass value (``class_path`` + ``init_args``) is entered through
    its ``init_args``. A path that ``source`` lacks, or whose parent ``target`` lacks, is left alone.
    """
    for name in option[:-1]:
        source, target = _enter(source, name), _enter(target, name)
        if source is None or target is None:
            return
    name = option[-1]
    if name != "class_path" and "init_args" in source and "init_args" in target:
        source, target = source["init_args"], target["init_args"]
    if name in source:
        target[name] = copy.deepcopy(source[name])


def _enter(namespace: Any, name: str) -> Any:
    if not hasattr(namespace, "__contains__"):
        return None
    if name not in namespace and "init_args" in namespace:
        namespace = namespace["init_args"]
    return namespace[name] if name in namespace else None


def _normalise(value: Any) -> Any:
    return list(value) if isinstance(value, tuple | list) else value


def _note_skipped(name: str, message: str) -> None:
    print(f"attnlab: domain {name!r} skipped: {message}", file=sys.stderr)


LAST_IF_PRESENT = "last_if_present"


def last_checkpoint(dirpath: Path, required: bool) -> str | None:
    """``--ckpt_path last``: the run's ``last.ckpt``, which must exist unless it is only wanted if present.

    Lightning starts from scratch, with a warning, when ``last`` finds nothing; a resubmitted job then
    silently trains anew. ``--ckpt_path last_if_present`` asks for exactly that (a job that may or may not
    have run before); ``last`` is an error instead.

    Raises:
        InputFileNotFoundError: If ``required`` and there is no ``last.ckpt``.
    """
    last = dirpath / "last.ckpt"
    if is_checkpoint(last):
        return str(last)
    if required:
        raise InputFileNotFoundError(
            f"--ckpt_path last: there is no {last} to resume from. Drop --ckpt_path to start a new run, or "
            f"pass --ckpt_path {LAST_IF_PRESENT} to resume only when a previous run left one"
        )
    return None


def check_attention_names(argv: Sequence[str]) -> None:
    """Refuse an unknown ``--model.attention`` name, listing the closest registered ones.

    jsonargparse would answer that the name is no dotted import path, which does not tell the user what the
    names are. A dotted path (``mypackage.MyAttention``) is left to jsonargparse.

    Raises:
        InputError: Naming the option, the value and the closest registered mechanisms.
    """
    from core.attention.registry import list_mechanisms

    names = [info.name for info in list_mechanisms()]
    for index, arg in enumerate(argv):
        option, _, value = arg.partition("=")
        if option not in ("--model.attention", "--model.init_args.attention"):
            continue
        if not value and index + 1 < len(argv):
            value = argv[index + 1]
        if not value or "." in value or value in names or value.lower() in ("null", "none"):
            continue
        close = difflib.get_close_matches(value, names, n=5, cutoff=0.5)
        hint = f"closest: {', '.join(close)}" if close else "see `attnlab attention list`"
        raise InputError(f"{option}={value}: no attention mechanism of that name is registered ({hint})")


def run_trainer_command(argv: Sequence[str]) -> AttnLabCLI:
    """Run ``attnlab fit|validate|test|predict`` with the registered domains loaded.

    Args:
        argv: The whole command line after ``attnlab``.

    Returns:
        The CLI object after the subcommand ran.
    """
    load_domains(argv, on_skip=_note_skipped if any(a in ("-h", "--help") for a in argv) else None)
    check_attention_names(argv)
    return AttnLabCLI(
        BaseTask,
        BaseDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={
            "prog": "attnlab",
            # Raise instead of printing the whole usage: console_main prints the error as one line.
            "exit_on_error": False,
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
