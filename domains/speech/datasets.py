"""Datasets of fixed separation examples and of files to separate, their collate functions and epoch sampler.

Batch contracts (dicts) of the separation task:

* train: ``{"mixture": (B, T) float32, "sources": (B, S, T) float32}``, fixed-length crops;
* val/test: the same keys (full-length, zero-padded to the longest in the batch) plus
  ``"lengths": (B,) int64`` and ``"id": list[str]``;
* predict: ``{"mixture": (B, T), "lengths": (B,) int64, "path": list[str], "sample_rate": list[int],
  "id": list[str]}`` where ``sample_rate`` is the input file's own rate (the separated files are written at
  it) and ``id`` a name unique among the files predicted (see :func:`unique_names`).

Training randomness (crop positions, dynamic mixtures) is a function of ``(seed, epoch, index)`` only:
:class:`EpochSampler` hands the dataset keys ``epoch * len(dataset) + index``, so every worker process
draws the same example for a key, training crops change with the epoch (Lightning calls
``sampler.set_epoch``, also through its DDP sampler wrapper and on resume), and a run is reproducible.
"""

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from core.data.sampling import EpochRandomSampler
from core.utils import InputError, InputFileNotFoundError
from domains.speech.audio import AUDIO_SUFFIXES, ChannelMode, audio_info, load_audio
from domains.speech.layouts import SeparationExample, check_example

__all__ = [
    "EpochSampler",
    "PredictionDataset",
    "SeparationDataset",
    "collate_eval",
    "collate_predict",
    "example_rng",
    "fit_length",
    "unique_names",
]


def example_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The random generator of one example: independent streams for every ``(seed, epoch, index)``."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(epoch), int(index)])


def fit_length(waveform: torch.Tensor, length: int) -> torch.Tensor:
    """Trim or zero-pad the last axis to ``length`` samples."""
    if waveform.shape[-1] >= length:
        return waveform[..., :length]
    return torch.nn.functional.pad(waveform, (0, length - waveform.shape[-1]))


class EpochSampler(EpochRandomSampler):
    """Core's seeded per-epoch order, yielding the keys ``epoch * size + index`` instead of ``index``.

    Datasets decode a key with ``divmod(key, size)``; see the module docstring. The order, the worker
    generator and the mid-epoch resume (:meth:`skip`) are those of
    :class:`~core.data.sampling.EpochRandomSampler`.

    Args:
        size: Examples per epoch (the dataset's ``__len__``).
        seed: Seed of the order.
    """

    def __init__(self, size: int, seed: int = 0) -> None:
        if size < 1:
            raise ValueError(f"EpochSampler needs at least one example, got size={size}")
        super().__init__(size, seed)

    def __iter__(self) -> Iterator[int]:
        offset = self.epoch * self.length
        return (offset + index for index in super().__iter__())


class SeparationDataset(Dataset):
    """Fixed examples (mixture + sources): random fixed-length crops for training, whole files otherwise.

    The headers of every example are checked when the dataset is built (same length and rate for the
    mixture and its sources, no empty file), so a bad file stops the run before training starts.

    Args:
        examples: From :mod:`domains.speech.layouts`.
        sample_rate: The model's rate; files at another rate are resampled.
        segment_samples: Crop length at ``sample_rate`` for training; None gives full-length examples with
            ``lengths`` and ``id`` (validation/test). Shorter examples are zero-padded.
        seed: Seed of the crop positions (with the epoch and index, see :class:`EpochSampler`).
        channels: Multi-channel files: ``downmix`` or ``error``.
    """

    def __init__(
        self,
        examples: Sequence[SeparationExample],
        sample_rate: int = 8000,
        segment_samples: int | None = None,
        seed: int = 0,
        channels: ChannelMode = "downmix",
    ) -> None:
        if not examples:
            raise InputError("SeparationDataset: no example given")
        if segment_samples is not None and segment_samples < 1:
            raise ValueError(f"segment_samples must be positive, got {segment_samples}")
        self.examples = list(examples)
        self.sample_rate = int(sample_rate)
        self.segment_samples = segment_samples
        self.seed = int(seed)
        self.channels: ChannelMode = channels
        self.headers = [check_example(example) for example in self.examples]

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, key: int) -> dict[str, Any]:
        epoch, index = divmod(int(key), len(self.examples))
        example = self.examples[index]
        frames, rate = self.headers[index]
        if self.segment_samples is None:
            mixture = self._read(example.mixture)
            sources = torch.stack([self._read(path) for path in example.sources])
            length = min(mixture.shape[-1], sources.shape[-1])
            return {
                "mixture": mixture[:length],
                "sources": sources[:, :length],
                "length": length,
                "id": example.id,
            }
        # Crop in the file's own frames, then resample: reading a whole LibriMix file for 4 s is wasteful.
        wanted = int(np.ceil(self.segment_samples * rate / self.sample_rate))
        start = int(example_rng(self.seed, epoch, index).integers(0, max(frames - wanted, 0) + 1))
        mixture = fit_length(self._read(example.mixture, start, wanted), self.segment_samples)
        sources = torch.stack(
            [fit_length(self._read(path, start, wanted), self.segment_samples) for path in example.sources]
        )
        return {"mixture": mixture, "sources": sources}

    def _read(self, path: Path, start: int = 0, frames: int = -1) -> torch.Tensor:
        return load_audio(path, self.sample_rate, self.channels, start=start, frames=frames)[0]


class PredictionDataset(Dataset):
    """Every wav/flac file of a folder (not its subfolders), or the files given, at the model's rate.

    Args:
        inputs: A folder, or a list of files.
        sample_rate: The model's rate.
        channels: Multi-channel files: ``downmix`` or ``error``.
    """

    def __init__(
        self,
        inputs: str | Path | Sequence[str | Path],
        sample_rate: int = 8000,
        channels: ChannelMode = "downmix",
    ) -> None:
        if isinstance(inputs, (str, Path)):
            folder = Path(inputs)
            if not folder.exists():
                raise InputFileNotFoundError(f"prediction input {folder} does not exist")
            if folder.is_file():
                files = [folder]
            else:
                files = sorted(
                    p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES
                )
                if not files:
                    raise InputError(f"prediction folder {folder} holds no .wav/.flac file")
        else:
            files = [Path(p) for p in inputs]
        if not files:
            raise InputError("PredictionDataset: no file given")
        self.files = files
        self.sample_rate = int(sample_rate)
        self.channels: ChannelMode = channels
        self.rates = [int(audio_info(path).samplerate) for path in files]
        self.ids = unique_names(files)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, Any]:
        path = self.files[index]
        mixture, _ = load_audio(path, self.sample_rate, self.channels)
        return {
            "mixture": mixture,
            "length": mixture.shape[-1],
            "path": str(path),
            "sample_rate": self.rates[index],
            "id": self.ids[index],
        }


def unique_names(files: Sequence[Path]) -> list[str]:
    """A distinct output name per file, so that separated files never overwrite each other.

    The stem; else the folder (``ex_3/mixture.wav`` -> ``ex_3``) when every stem is the same and the folders
    differ; else ``<folder>_<stem>``, numbered where that still repeats.
    """
    stems = [p.stem for p in files]
    if len(set(stems)) == len(stems):
        return stems
    folders = [p.parent.name for p in files]
    if len(set(stems)) == 1 and len(set(folders)) == len(folders):
        return folders
    names = [f"{p.parent.name}_{p.stem}" for p in files]
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        unique.append(name if names.count(name) == 1 else f"{name}_{seen[name]}")
    return unique


def _pad_stack(waveforms: Sequence[torch.Tensor]) -> torch.Tensor:
    longest = max(w.shape[-1] for w in waveforms)
    return torch.stack([fit_length(w, longest) for w in waveforms])


def collate_eval(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Full-length validation/test examples, zero-padded to the longest: adds ``lengths`` and ``id``."""
    return {
        "mixture": _pad_stack([item["mixture"] for item in items]),
        "sources": _pad_stack([item["sources"] for item in items]),
        "lengths": torch.tensor([item["length"] for item in items], dtype=torch.int64),
        "id": [item["id"] for item in items],
    }


def collate_predict(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Files to separate, zero-padded to the longest, with their paths and own sample rates."""
    return {
        "mixture": _pad_stack([item["mixture"] for item in items]),
        "lengths": torch.tensor([item["length"] for item in items], dtype=torch.int64),
        "path": [item["path"] for item in items],
        "sample_rate": [item["sample_rate"] for item in items],
        "id": [item["id"] for item in items],
    }
