"""The datamodule contract every domain follows: batch sizes, splits, loaders, DDP-correct evaluation.

A domain's datamodule subclasses :class:`BaseDataModule` and writes only what is specific to its data:

* :meth:`BaseDataModule.build_dataset` returns the dataset of one split (``None`` when the split has no
  data); datasets are built lazily, once, for the splits of the stage being set up;
* :meth:`BaseDataModule.input_paths` names every file and folder it reads, so prediction writers and caches
  never write among the user's data;
* :meth:`BaseDataModule.loader_options` adds DataLoader options of its own (a collate function, a seeded
  generator, a worker initialiser);
* the class attribute :attr:`BaseDataModule.links` declares which of its attributes the CLI copies into
  which task arguments (data-derived sizes such as ``num_classes``).

Training under DDP: each process takes its share of the epoch's seeded order
(:class:`~core.data.sampling.EpochRandomSampler`), so a run resumed in the middle of an epoch skips exactly
the batches every process had trained on.

Evaluation under DDP: Lightning's default ``DistributedSampler`` pads the validation, test and prediction
sets to a multiple of the world size, which scores some samples twice. The loaders here give every sample
to exactly one process instead (:class:`UnrepeatedDistributedSampler`); the tasks' metrics are sums
synchronised across processes, so two processes give the numbers of one.
"""

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

import lightning.pytorch as pl
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch.utils.data import DataLoader, Dataset

from core.data.sampling import EpochRandomSampler, Reseed, SeededDataset

__all__ = ["SPLITS", "STAGE_SPLITS", "BaseDataModule", "Split"]

Split = Literal["train", "val", "test", "predict"]
SPLITS: tuple[Split, ...] = ("train", "val", "test", "predict")
STAGE_SPLITS: dict[str | None, tuple[Split, ...]] = {
    "fit": ("train", "val"),
    "validate": ("val",),
    "test": ("test",),
    "predict": ("predict",),
    None: SPLITS,
}


class BaseDataModule(pl.LightningDataModule):
    """Base of every attnlab datamodule (the TorchGeo ``NonGeoDataModule`` pattern).

    Class attributes:
        links: ``{task argument: attribute of this datamodule}``. The ``attnlab`` CLI reads the attributes
            after instantiating the datamodule and passes them to the task arguments of those names; a value
            the user set by hand that disagrees is an error. Linked attributes must be known right after
            ``__init__`` (reading headers is fine; building whole datasets is not).
        sample_name: What one sample of a split is called in the setup summary (``windows``, ``cases``).
        loader_class: The DataLoader class, e.g. MONAI's, which also seeds the random transforms of a
            dataset loaded in the main process.
        sample_reseed: For datasets whose random transforms keep a random state of their own: a function
            ``(dataset, seed)`` that reseeds them. Each training sample is then drawn from its own seed (a
            function of the run's seed, the epoch and the index), so resumed runs draw as the uninterrupted
            one did (:mod:`core.data.sampling`). A plain function, so that workers can unpickle it.

    Args:
        batch_size: Samples per training batch (at least 1).
        eval_batch_size: Samples per validation, test and prediction batch; default ``batch_size``.
        num_workers: DataLoader worker processes (0 loads in the main process). Workers persist across
            epochs.
        pin_memory: Page-locked host memory for faster copies to a GPU; default: when CUDA is available.
    """

    links: ClassVar[Mapping[str, str]] = {}
    sample_name: ClassVar[str] = "samples"
    loader_class: ClassVar[type[DataLoader]] = DataLoader
    sample_reseed: ClassVar[Reseed | None] = None

    def __init__(
        self,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool | None = None,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"{type(self).__name__}: batch_size must be >= 1, got {batch_size}")
        if eval_batch_size is not None and eval_batch_size < 1:
            raise ValueError(f"{type(self).__name__}: eval_batch_size must be >= 1, got {eval_batch_size}")
        if num_workers < 0:
            raise ValueError(f"{type(self).__name__}: num_workers must be >= 0, got {num_workers}")
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size) if eval_batch_size is not None else self.batch_size
        self.num_workers = int(num_workers)
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else bool(pin_memory)
        self.datasets: dict[Split, Dataset | None] = {}

    # ------------------------------------------------------------------ what a domain implements

    def build_dataset(self, split: Split) -> Dataset | None:
        """The dataset of ``split``, or None when no data is configured for it.

        Called at most once per split, from :meth:`setup`, on every process.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement build_dataset(split)")

    def input_paths(self) -> list[Path]:
        """Every file and folder this datamodule reads; outputs are never written among them."""
        raise NotImplementedError(f"{type(self).__name__} must implement input_paths()")

    def loader_options(self, split: Split) -> dict[str, Any]:
        """Extra ``DataLoader`` arguments for ``split`` (e.g. ``collate_fn``, ``generator``)."""
        return {}

    # ------------------------------------------------------------------ setup

    def link_values(self) -> dict[str, Any]:
        """``{task argument: value}`` for every entry of :attr:`links`."""
        return {target: getattr(self, attribute) for target, attribute in self.links.items()}

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets of the stage's splits (once each) and print a one-line summary.

        Args:
            stage: ``fit``, ``validate``, ``test``, ``predict`` or None (every split).
        """
        if stage not in STAGE_SPLITS:
            raise ValueError(f"unknown stage {stage!r}; expected one of {list(STAGE_SPLITS)}")
        for split in STAGE_SPLITS[stage]:
            if split not in self.datasets:
                self.datasets[split] = self.build_dataset(split)
        rank_zero_info(self.summary())

    def summary(self) -> str:
        """One line: the class and the size of every split built so far."""
        parts = []
        for split, dataset in self.datasets.items():
            size = "none" if dataset is None else f"{len(dataset):,} {self.sample_name}"  # type: ignore[arg-type]
            parts.append(f"{split} {size}")
        return f"{type(self).__name__}: " + (", ".join(parts) or "no split set up")

    # ------------------------------------------------------------------ loaders

    def train_dataloader(self) -> DataLoader:
        """Shuffled training batches."""
        return self.dataloader("train")

    def val_dataloader(self) -> DataLoader | list:
        """Validation batches in order; an empty list (validation skipped) when no data is configured."""
        if "val" in self.datasets and self.datasets["val"] is None:
            rank_zero_warn(f"{type(self).__name__}: no validation data is configured; validation is skipped")
            return []
        return self.dataloader("val")

    def test_dataloader(self) -> DataLoader:
        """Test batches in order."""
        return self.dataloader("test")

    def predict_dataloader(self) -> DataLoader:
        """Prediction batches in order."""
        return self.dataloader("predict")

    def dataset(self, split: Split) -> Dataset:
        """The built dataset of ``split``.

        Raises:
            RuntimeError: If ``setup`` has not built it.
            ValueError: If the split has no data.
        """
        if split not in self.datasets:
            raise RuntimeError(
                f"{type(self).__name__}: the {split} split is not set up; call setup() for a stage that "
                "uses it"
            )
        dataset = self.datasets[split]
        if dataset is None:
            raise ValueError(f"{type(self).__name__}: no {split} data is configured; see its data options")
        return dataset

    def dataloader(self, split: Split) -> DataLoader:
        """The DataLoader of ``split``: shuffled for training, every sample once per process otherwise."""
        dataset = self.dataset(split)
        train = split == "train"
        sampler = self._training_sampler(dataset) if train else self._evaluation_sampler(split, dataset)
        if isinstance(sampler, EpochRandomSampler) and sampler.with_seeds:
            dataset = SeededDataset(dataset, type(self).sample_reseed)  # type: ignore[arg-type]
        options: dict[str, Any] = {
            "batch_size": self.batch_size if train else self.eval_batch_size,
            "shuffle": False,  # the training sampler shuffles
            "sampler": sampler,
            "num_workers": self.num_workers,
            "persistent_workers": self.num_workers > 0,
            "pin_memory": self.pin_memory,
        }
        if isinstance(sampler, EpochRandomSampler):
            # The loader draws its worker seed at every epoch; from the global random state (dropout's) a
            # resumed run, which restores that state after its loader has started, would draw other ones.
            options["generator"] = sampler.generator
        options.update(self.loader_options(split))
        return self.loader_class(dataset, **options)

    def state_dict(self) -> dict[str, Any]:
        """The training order's seed, so a resumed run shuffles as the interrupted one did.

        A subclass that keeps state of its own (normalisation statistics) extends this dictionary.
        """
        return {"shuffle_seed": self._shuffle_seed()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` (checkpoints of older versions have no seed: the current one stays)."""
        if "shuffle_seed" in state_dict:
            self.shuffle_seed = int(state_dict["shuffle_seed"])

    def _shuffle_seed(self) -> int:
        if getattr(self, "shuffle_seed", None) is None:
            # seed_everything (the CLI's --seed_everything, 0 by default) fixes torch's initial seed.
            self.shuffle_seed = torch.initial_seed() % (2**63)
        return self.shuffle_seed

    def skip_trained_batches(self, sampler: EpochRandomSampler) -> None:
        """On a resume in the middle of an epoch, make ``sampler`` skip what that epoch already trained on.

        For a datamodule that builds its own training sampler (a subclass of :class:`EpochRandomSampler`)
        in :meth:`loader_options`; the base's sampler gets it already.
        """
        trainer = self.trainer
        if trainer is None or not trainer.fit_loop.restarting:
            return
        # Batches whose training step ran: a checkpoint written in on_train_batch_end (every N steps)
        # precedes that batch's "completed" count.
        done = trainer.fit_loop.epoch_loop.batch_progress.current.processed * self.batch_size
        if 0 < done < len(sampler):
            sampler.skip(done)
            # Lightning warns that a plain DataLoader resumes from the start of the epoch; this one does not.
            warnings.filterwarnings("ignore", message=".*your dataloader is not resumable.*")

    def _training_sampler(self, dataset: Dataset) -> EpochRandomSampler:
        """The seeded training sampler of this process (its share of the epoch under DDP).

        When the trainer resumes in the middle of an epoch, the sampler skips the samples of the batches
        that epoch had already trained on, so the rest of the epoch sees what the uninterrupted run saw.
        """
        seeded = type(self).sample_reseed is not None
        sampler = EpochRandomSampler(len(dataset), self._shuffle_seed(), with_seeds=seeded)  # type: ignore[arg-type]
        self.skip_trained_batches(sampler)
        return sampler

    def _evaluation_sampler(self, split: Split, dataset: Dataset) -> UnrepeatedDistributedSampler | None:
        """Under DDP, a sampler that gives every evaluation sample to exactly one process (no padding)."""
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return None
        world = torch.distributed.get_world_size()
        size = len(dataset)  # type: ignore[arg-type]
        if size < world:
            # A process without a sample would skip the evaluation epoch, and with it the metric
            # synchronisation that the others wait for.
            raise ValueError(
                f"{type(self).__name__}: the {split} split has {size} {self.sample_name}, fewer than the "
                f"{world} processes; every process needs at least one (use fewer devices or more data)"
            )
        return UnrepeatedDistributedSampler(dataset, shuffle=False)
