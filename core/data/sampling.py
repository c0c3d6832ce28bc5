"""Training samples whose order and randomness are functions of (seed, epoch), so a resumed run is exact.

``shuffle=True`` draws each epoch's order from the global random state at the moment the epoch's iterator
is made. A run resumed from a checkpoint is at another point of that state, so its epochs see other
orders than the uninterrupted run did. Here the order of epoch ``e`` depends on ``seed`` and ``e`` alone,
and a run resumed in the middle of an epoch skips the batches that epoch had already trained on.

Random transforms that keep a random state of their own (MONAI's) would still draw differently after a
resume, since their state advanced with every sample before it. A datamodule that names a reseeding
function (:attr:`core.data.BaseDataModule.sample_reseed`) gets :class:`SeededDataset`: every sample is then
drawn from its own seed, a function of the run's seed, the epoch and the sample's index.
"""

import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import Dataset, DistributedSampler

__all__ = ["EpochRandomSampler", "Reseed", "SeededDataset", "sample_seed"]

Reseed = Callable[[Dataset, int], None]

# Seeds of consecutive epochs are spread apart so their generators do not start from neighbouring states.
_EPOCH_STRIDE = 0x9E3779B1


class EpochRandomSampler(DistributedSampler):
    """Random order of ``length`` indices, one permutation per epoch drawn from ``(seed, epoch)``.

    Lightning calls :meth:`set_epoch` before every training epoch. :attr:`generator` is reseeded at the
    same time; given to the DataLoader, it makes the worker seeds of an epoch independent of the global
    random state too. Under DDP each process takes every ``num_replicas``-th index of the epoch's order from
    its rank on (the order padded by its head to a multiple of the processes, as ``DistributedSampler``
    does). It is a ``DistributedSampler`` so that Lightning keeps it instead of substituting its own,
    which cannot skip: a DDP run resumed mid-epoch trained the epoch's first batches again.

    Args:
        length: Number of samples.
        seed: Base seed of every epoch's order.
        with_seeds: Yield ``(index, sample_seed)`` pairs for a :class:`SeededDataset` instead of indices.
        num_replicas: Processes sharing the epoch; default the ``torch.distributed`` world size, or 1.
        rank: This process's rank; default the ``torch.distributed`` rank, or 0.
    """

    def __init__(
        self,
        length: int,
        seed: int,
        with_seeds: bool = False,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        if num_replicas is None:
            num_replicas = torch.distributed.get_world_size() if distributed else 1
        if rank is None:
            rank = torch.distributed.get_rank() if distributed else 0
        super().__init__(range(int(length)), num_replicas, rank, shuffle=True, seed=int(seed))
        self.length = int(length)
        self.with_seeds = with_seeds
        self.generator = torch.Generator()
        self._skip = 0
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Select the order of ``epoch``."""
        self.epoch = int(epoch)
        self.generator.manual_seed(self._epoch_seed(1))

    def skip(self, count: int) -> None:
        """Leave out this process's first ``count`` indices of the next iteration (a mid-epoch resume)."""
        if not 0 <= count <= len(self):
            raise ValueError(f"cannot skip {count} of {len(self)} samples")
        self._skip = int(count)

    def __iter__(self) -> Iterator[Any]:
        order = torch.Generator().manual_seed(self._epoch_seed(0))
        permutation = torch.randperm(self.length, generator=order).tolist()
        if self.num_replicas > 1:
            padding = self.total_size - self.length
            permutation += (permutation * math.ceil(padding / max(self.length, 1)))[:padding]
            permutation = permutation[self.rank : self.total_size : self.num_replicas]
        start, self._skip = self._skip, 0
        for index in permutation[start:]:
            yield (index, sample_seed(self.seed, self.epoch, index)) if self.with_seeds else index

    def __len__(self) -> int:
        return self.num_samples

    def _epoch_seed(self, stream: int) -> int:
        return (self.seed + _EPOCH_STRIDE * (2 * self.epoch + stream)) % (2**63)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of one training sample: 32 bits, as numpy's ``RandomState`` (MONAI's) requires."""
    return (seed * 1_000_003 + epoch * _EPOCH_STRIDE + index * 2_654_435_761) % (2**32)


class SeededDataset(Dataset):
    """``dataset[index]``, drawn after ``reseed(dataset, seed)`` when the sampler gives a sample's seed.

    Keys are ``(index, seed)`` pairs from an :class:`EpochRandomSampler` with ``with_seeds=True``; a plain
    index (Lightning's ``DistributedSampler`` under DDP) reads the sample without reseeding.

    Args:
        dataset: The split's dataset.
        reseed: Sets the random state of the dataset's random transforms from one seed.
    """

    def __init__(self, dataset: Dataset, reseed: Reseed) -> None:
        self.dataset = dataset
        self.reseed = reseed

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: int | tuple[int, int]) -> Any:
        if isinstance(key, tuple):
            index, seed = key
            self.reseed(self.dataset, seed)
            return self.dataset[index]
        return self.dataset[key]
