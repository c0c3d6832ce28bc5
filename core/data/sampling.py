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

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler

__all__ = ["EpochRandomSampler", "Reseed", "SeededDataset", "sample_seed"]

Reseed = Callable[[Dataset, int], None]

# Seeds of consecutive epochs are spread apart so their generators do not start from neighbouring states.
_EPOCH_STRIDE = 0x9E3779B1


class EpochRandomSampler(Sampler[int]):
    """Random order of ``length`` indices, one permutation per epoch drawn from ``(seed, epoch)``.

    Lightning calls :meth:`set_epoch` before every training epoch. :attr:`generator` is reseeded at the
    same time; given to the DataLoader, it makes the worker seeds of an epoch independent of the global
    random state too.

    Args:
        length: Number of samples.
        seed: Base seed of every epoch's order.
        with_seeds: Yield ``(index, sample_seed)`` pairs for a :class:`SeededDataset` instead of indices.
    """

    def __init__(self, length: int, seed: int, with_seeds: bool = False) -> None:
        self.length = int(length)
        self.seed = int(seed)
        self.with_seeds = with_seeds
        self.epoch = 0
        self.generator = torch.Generator()
        self._skip = 0
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Select the order of ``epoch``."""
        self.epoch = int(epoch)
        self.generator.manual_seed(self._epoch_seed(1))

    def skip(self, count: int) -> None:
        """Leave out the first ``count`` indices of the next iteration only (a mid-epoch resume)."""
        if not 0 <= count <= self.length:
            raise ValueError(f"cannot skip {count} of {self.length} samples")
        self._skip = int(count)

    def __iter__(self) -> Iterator[Any]:
        order = torch.Generator().manual_seed(self._epoch_seed(0))
        permutation = torch.randperm(self.length, generator=order).tolist()
        start, self._skip = self._skip, 0
        for index in permutation[start:]:
            yield (index, sample_seed(self.seed, self.epoch, index)) if self.with_seeds else index

    def __len__(self) -> int:
        return self.length

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
