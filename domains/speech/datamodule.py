"""Datamodules of speech separation: fixed dataset layouts, and dynamic mixing of single-speaker speech.

Both give the batches documented in :mod:`domains.speech.datasets` and link ``num_sources`` and
``sample_rate`` to the task. Training order and crops come from an :class:`EpochSampler` (reproducible,
different every epoch, the same in every worker); validation and test read every example once per
process, full length, ``eval_batch_size`` (default 1) per batch.
"""

from pathlib import Path
from typing import Any, ClassVar, Literal

from torch.utils.data import Dataset

from core.data import BaseDataModule, Split
from core.utils import InputError
from domains.speech.audio import ChannelMode
from domains.speech.datasets import (
    EpochSampler,
    PredictionDataset,
    SeparationDataset,
    collate_eval,
    collate_predict,
)
from domains.speech.layouts import Layout, SeparationExample, read_layout
from domains.speech.mixing import (
    DynamicMixingDataset,
    SpeakerFrom,
    Utterance,
    collate_mixtures,
    index_utterances,
    read_speaker_index,
    split_utterances,
)

__all__ = ["DynamicMixingDataModule", "SeparationDataModule", "SpeechDataModule"]

DEFAULT_SPLITS: dict[str, dict[str, str | None]] = {
    "librimix": {"train": "train-360", "val": "dev", "test": "test"},
    "wham": {"train": "tr", "val": "cv", "test": "tt"},
    "examples": {"train": None, "val": None, "test": "."},
}


def _split_name(layout: str, split: str, value: str | None) -> str | None:
    return DEFAULT_SPLITS[layout][split] if value == "auto" else value


class SpeechDataModule(BaseDataModule):
    """What the speech datamodules share: rates, loaders, collate functions and the prediction inputs.

    Args:
        num_sources: Sources per mixture.
        sample_rate: The model's rate; every file is resampled to it.
        segment_seconds: Length of the training crops.
        channels: Multi-channel files: ``downmix`` (average) or ``error``.
        predict_root: A folder of wav/flac files (or one file) to separate; default: the test mixtures.
        seed: Seed of training crops and order (and of the dynamic mixtures).
        batch_size: Training crops per batch.
        eval_batch_size: Full-length examples per validation/test/predict batch (zero-padded, ``lengths``).
        num_workers: DataLoader worker processes.
    """

    links: ClassVar[dict[str, str]] = {"num_sources": "num_sources", "sample_rate": "sample_rate"}
    sample_name: ClassVar[str] = "mixtures"

    def __init__(
        self,
        num_sources: int = 2,
        sample_rate: int = 8000,
        segment_seconds: float = 4.0,
        channels: ChannelMode = "downmix",
        predict_root: str | None = None,
        seed: int = 0,
        batch_size: int = 4,
        eval_batch_size: int = 1,
        num_workers: int = 0,
    ) -> None:
        super().__init__(batch_size=batch_size, eval_batch_size=eval_batch_size, num_workers=num_workers)
        if num_sources < 1:
            raise ValueError(f"num_sources must be positive, got {num_sources}")
        if sample_rate < 1:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        if segment_seconds <= 0:
            raise ValueError(f"segment_seconds must be positive, got {segment_seconds}")
        if channels not in ("downmix", "error"):
            raise ValueError(f"channels must be 'downmix' or 'error', got {channels!r}")
        self.num_sources = int(num_sources)
        self.sample_rate = int(sample_rate)
        self.segment_seconds = float(segment_seconds)
        self.segment_samples = round(segment_seconds * sample_rate)
        self.channels: ChannelMode = channels
        self.predict_root = Path(predict_root) if predict_root else None
        self.seed = int(seed)

    def test_examples(self) -> list[SeparationExample] | None:
        """The fixed test examples, whose mixtures are the default prediction inputs (None: none)."""
        return None

    def build_predict(self) -> Dataset | None:
        """The files of ``predict_root``, else the test mixtures."""
        if self.predict_root is not None:
            return PredictionDataset(self.predict_root, self.sample_rate, self.channels)
        examples = self.test_examples()
        if not examples:
            return None
        return PredictionDataset([e.mixture for e in examples], self.sample_rate, self.channels)

    def loader_options(self, split: Split) -> dict[str, Any]:
        """Training: the epoch sampler; evaluation: padding collate with ``lengths`` and ids."""
        if split == "train":
            sampler = EpochSampler(len(self.dataset("train")), seed=self.seed)  # type: ignore[arg-type]
            # Under DDP it gives this process its share of the epoch; Lightning keeps it and calls set_epoch.
            self.skip_trained_batches(sampler)
            return {
                "sampler": sampler,
                "shuffle": False,
                "generator": sampler.generator,
                "collate_fn": collate_mixtures,
            }
        if split == "predict":
            return {"collate_fn": collate_predict}
        return {"collate_fn": collate_eval}


class SeparationDataModule(SpeechDataModule):
    """Separation on a fixed dataset: LibriMix, WHAM!/wsj0-2mix, or a list of ``ex_*`` example folders.

    Training reads random ``segment_seconds`` crops of each example (a new position every epoch);
    validation and test read whole examples. See :mod:`domains.speech.layouts` for the layouts.

    Args:
        root: The dataset folder (LibriMix: the mode folder ``Libri2Mix/wav8k/min`` with ``metadata/``;
            WHAM!: the folder of ``tr``/``cv``/``tt``; examples: the folder of the split folders).
        layout: ``librimix``, ``wham`` or ``examples``.
        train_split: ``auto`` (``train-360`` / ``tr`` / none), a split name (``examples``: a subfolder, ``.``
            for ``root`` itself) or None for no data.
        val_split: ``auto`` (``dev`` / ``cv`` / none), a name, or None.
        test_split: ``auto`` (``test`` / ``tt`` / ``.``), a name, or None.
        mixture: The mixture folder (default ``mix_clean`` for LibriMix, ``mix`` for WHAM!).

    The other arguments are those of :class:`SpeechDataModule`.
    """

    def __init__(
        self,
        root: str,
        layout: Layout = "librimix",
        train_split: str | None = "auto",
        val_split: str | None = "auto",
        test_split: str | None = "auto",
        mixture: str | None = None,
        num_sources: int = 2,
        sample_rate: int = 8000,
        segment_seconds: float = 4.0,
        channels: ChannelMode = "downmix",
        predict_root: str | None = None,
        seed: int = 0,
        batch_size: int = 4,
        eval_batch_size: int = 1,
        num_workers: int = 0,
    ) -> None:
        super().__init__(
            num_sources=num_sources,
            sample_rate=sample_rate,
            segment_seconds=segment_seconds,
            channels=channels,
            predict_root=predict_root,
            seed=seed,
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            num_workers=num_workers,
        )
        if layout not in DEFAULT_SPLITS:
            raise ValueError(f"layout must be one of {list(DEFAULT_SPLITS)}, got {layout!r}")
        self.root = Path(root)
        self.layout: Layout = layout
        self.mixture = mixture
        self.splits = {
            "train": _split_name(layout, "train", train_split),
            "val": _split_name(layout, "val", val_split),
            "test": _split_name(layout, "test", test_split),
        }
        self._examples: dict[str, list[SeparationExample]] = {}

    def examples(self, split: str) -> list[SeparationExample] | None:
        """The examples of ``split`` (``train``, ``val``, ``test``), read once; None without data."""
        name = self.splits[split]
        if name is None:
            return None
        if split not in self._examples:
            self._examples[split] = read_layout(self.layout, self.root, name, self.mixture, self.num_sources)
        return self._examples[split]

    def test_examples(self) -> list[SeparationExample] | None:
        """The test split's examples."""
        return self.examples("test")

    def build_dataset(self, split: Split) -> Dataset | None:
        """Crops for ``train``, whole examples for ``val``/``test``, files for ``predict``."""
        if split == "predict":
            return self.build_predict()
        examples = self.examples(split)
        if examples is None:
            return None
        segment = self.segment_samples if split == "train" else None
        return SeparationDataset(examples, self.sample_rate, segment, self.seed, self.channels)

    def input_paths(self) -> list[Path]:
        """The dataset root, the files LibriMix metadata points to outside it, and ``predict_root``."""
        paths = [self.root]
        for split in ("train", "val", "test"):
            for example in self.examples(split) or []:
                paths += [p.parent for p in (example.mixture, *example.sources) if self.root not in p.parents]
        if self.predict_root is not None:
            paths.append(self.predict_root)
        return list(dict.fromkeys(paths))


class DynamicMixingDataModule(SpeechDataModule):
    """Training mixtures made on the fly from single-speaker speech; validation/test seeded or fixed.

    The speech comes from folders (speaker from the parent folder or the file-name prefix) or from a
    speaker index CSV (``path, speaker, source, ...``, as ``data/speech/prepare.py`` writes it). A fraction
    of every speaker's utterances is held out: validation mixes those (seeded, the same every epoch), so it
    measures new utterances of the training speakers. Test reads a fixed dataset when ``eval_root`` is given
    (e.g. the Libri2Mix examples: unseen speakers, real mixtures), else seeded mixtures of the held-out
    utterances with another seed.

    Args:
        speech_roots: Folders of single-speaker wav/flac files.
        speaker_index: A speaker index CSV (instead of, or as well as, ``speech_roots``).
        index_sources: Keep only these values of the index's ``source`` column (e.g. ``[asterisk]``).
        speaker_from: ``folder`` or ``prefix`` for ``speech_roots``.
        min_seconds: Utterances shorter than this are left out.
        epoch_mixtures: Training mixtures per epoch.
        val_mixtures: Validation (and dynamic test) mixtures.
        val_fraction: Share of each speaker's utterances held out for validation/test mixtures.
        val: ``dynamic`` (held-out utterances), ``layout`` (``val_split`` of ``eval_root``) or ``none``.
        eval_root: A fixed dataset for test (and validation with ``val='layout'``).
        eval_layout: Its layout (``librimix``, ``wham``, ``examples``).
        val_split: Its validation split (``auto``: ``dev``/``cv``/none).
        test_split: Its test split (``auto``: ``test``/``tt``/``.``).
        snr_range: Relative level of the further sources, dB, uniform.
        level_range: RMS level of the first source, dBFS, uniform.
        speed_factors: Speed perturbation length factors (e.g. ``[0.95, 1.0, 1.05]``); None: none.
        speaker_weighting: ``uniform`` or ``utterances`` (SpeechBrain's).
        fill: Continue a source shorter than the segment with further utterances of its speaker (pauses of
            up to ``max_gap_seconds``), for near-full overlap; see :mod:`domains.speech.mixing`.
        max_gap_seconds: Longest pause between those utterances.

    The other arguments are those of :class:`SpeechDataModule`.
    """

    def __init__(
        self,
        speech_roots: list[str] | None = None,
        speaker_index: str | None = None,
        index_sources: list[str] | None = None,
        speaker_from: SpeakerFrom = "folder",
        min_seconds: float = 0.5,
        epoch_mixtures: int = 1000,
        val_mixtures: int = 50,
        val_fraction: float = 0.1,
        val: Literal["dynamic", "layout", "none"] = "dynamic",
        eval_root: str | None = None,
        eval_layout: Layout = "examples",
        val_split: str | None = "auto",
        test_split: str | None = "auto",
        snr_range: tuple[float, float] = (-5.0, 5.0),
        level_range: tuple[float, float] = (-33.0, -25.0),
        speed_factors: list[float] | None = None,
        speaker_weighting: Literal["uniform", "utterances"] = "uniform",
        fill: bool = True,
        max_gap_seconds: float = 0.3,
        num_sources: int = 2,
        sample_rate: int = 8000,
        segment_seconds: float = 3.0,
        channels: ChannelMode = "downmix",
        predict_root: str | None = None,
        seed: int = 0,
        batch_size: int = 4,
        eval_batch_size: int = 1,
        num_workers: int = 0,
    ) -> None:
        super().__init__(
            num_sources=num_sources,
            sample_rate=sample_rate,
            segment_seconds=segment_seconds,
            channels=channels,
            predict_root=predict_root,
            seed=seed,
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            num_workers=num_workers,
        )
        if not speech_roots and not speaker_index:
            raise ValueError("DynamicMixingDataModule needs speech_roots (folders) or speaker_index (a CSV)")
        if val not in ("dynamic", "layout", "none"):
            raise ValueError(f"val must be dynamic, layout or none, got {val!r}")
        if val == "layout" and eval_root is None:
            raise ValueError("val='layout' reads the validation split of eval_root; set eval_root")
        if eval_layout not in DEFAULT_SPLITS:
            raise ValueError(f"eval_layout must be one of {list(DEFAULT_SPLITS)}, got {eval_layout!r}")
        if epoch_mixtures < 1 or val_mixtures < 1:
            raise ValueError(
                f"epoch_mixtures ({epoch_mixtures}) and val_mixtures ({val_mixtures}) must be >= 1"
            )
        self.speech_roots = [Path(p) for p in speech_roots or []]
        self.speaker_index = Path(speaker_index) if speaker_index else None
        self.index_sources = list(index_sources) if index_sources else None
        self.speaker_from: SpeakerFrom = speaker_from
        self.min_seconds = float(min_seconds)
        self.epoch_mixtures = int(epoch_mixtures)
        self.val_mixtures = int(val_mixtures)
        self.val_fraction = float(val_fraction)
        self.val = val
        self.eval_root = Path(eval_root) if eval_root else None
        self.eval_layout: Layout = eval_layout
        self.eval_splits = {
            "val": _split_name(eval_layout, "val", val_split),
            "test": _split_name(eval_layout, "test", test_split),
        }
        self.mixing: dict[str, Any] = {
            "num_sources": self.num_sources,
            "sample_rate": self.sample_rate,
            "segment_seconds": self.segment_seconds,
            "snr_range": (float(snr_range[0]), float(snr_range[1])),
            "level_range": (float(level_range[0]), float(level_range[1])),
            "speaker_weighting": speaker_weighting,
            "fill": fill,
            "max_gap_seconds": float(max_gap_seconds),
            "channels": channels,
        }
        self.speed_factors = list(speed_factors) if speed_factors else None
        self._utterances: tuple[list[Utterance], list[Utterance]] | None = None
        self._eval_examples: dict[str, list[SeparationExample] | None] = {}

    def utterances(self) -> tuple[list[Utterance], list[Utterance]]:
        """``(training, held-out)`` utterances, indexed once."""
        if self._utterances is None:
            found: list[Utterance] = []
            if self.speech_roots:
                found += index_utterances(self.speech_roots, self.speaker_from, self.min_seconds)
            if self.speaker_index is not None:
                found += read_speaker_index(self.speaker_index, self.min_seconds, self.index_sources)
            # Held-out utterances make the dynamic validation mixtures, and the test ones without eval_root.
            if self.val != "dynamic" and self.eval_root is not None:
                self._utterances = (found, [])
            else:
                self._utterances = split_utterances(found, self.val_fraction, self.seed)
        return self._utterances

    def eval_examples(self, split: str) -> list[SeparationExample] | None:
        """The fixed examples of ``split`` of ``eval_root`` (None without one)."""
        if self.eval_root is None or self.eval_splits[split] is None:
            return None
        if split not in self._eval_examples:
            self._eval_examples[split] = read_layout(
                self.eval_layout, self.eval_root, self.eval_splits[split], None, self.num_sources
            )
        return self._eval_examples[split]

    def test_examples(self) -> list[SeparationExample] | None:
        """The fixed test examples of ``eval_root``."""
        return self.eval_examples("test")

    def _held_out_mixtures(self, seed: int, split: str) -> DynamicMixingDataset:
        held = self.utterances()[1]
        if not held:
            raise InputError(
                f"no utterance is held out for {split} mixtures (every speaker has a single utterance); "
                "give eval_root, or more utterances per speaker"
            )
        return DynamicMixingDataset(held, length=self.val_mixtures, seed=seed, fixed=True, **self.mixing)

    def build_dataset(self, split: Split) -> Dataset | None:
        """Dynamic mixtures for ``train`` (and ``val``/``test`` without fixed data); fixed examples else."""
        if split == "predict":
            return self.build_predict()
        if split == "train":
            return DynamicMixingDataset(
                self.utterances()[0],
                length=self.epoch_mixtures,
                seed=self.seed,
                speed_factors=self.speed_factors,
                **self.mixing,
            )
        if split == "val" and self.val == "none":
            return None
        if (split == "val" and self.val == "layout") or (split == "test" and self.eval_root is not None):
            examples = self.eval_examples(split)
            if examples is None:
                return None
            return SeparationDataset(examples, self.sample_rate, None, self.seed, self.channels)
        # Seeds away from the training seed's streams: (seed + 1, 0, i) / (seed + 2, 0, i).
        return self._held_out_mixtures(self.seed + (1 if split == "val" else 2), split)

    def input_paths(self) -> list[Path]:
        """The speech folders, the index and the folders of its files, ``eval_root`` and ``predict_root``."""
        paths = list(self.speech_roots)
        if self.speaker_index is not None:
            paths.append(self.speaker_index)
            paths += sorted({u.path.parent for group in self.utterances() for u in group})
        paths += [p for p in (self.eval_root, self.predict_root) if p is not None]
        return list(dict.fromkeys(paths))
