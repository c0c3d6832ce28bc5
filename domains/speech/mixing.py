"""Dynamic mixing: training mixtures made on the fly from single-speaker speech (the SepFormer recipe).

SpeechBrain's ``dynamic_mix_data_prep`` (used by SepFormer; MossFormer's "+DM" rows) draws, for every
example, ``num_sources`` *different* speakers, one utterance of each, a random crop, a random gain, and sums
them. :class:`DynamicMixingDataset` does the same, with three differences chosen for this framework:

* every example has the same fixed length (``segment_seconds``, 2–4 s in the recipes), so batches need no
  padding. SpeechBrain trims all sources to the shortest one instead, which works for LibriSpeech/WSJ0
  utterances of 3–15 s. Much real speech available offline is short prompts (the Asterisk utterances have
  a median of 1.3 s), so with ``fill`` (default) a source shorter than the segment is continued with further
  utterances of the same speaker after short pauses (0 to ``max_gap_seconds``), giving the near-full
  overlap of Libri2Mix ``min`` mixtures; without it, the single crop sits at a random offset in silence;
* the relative level is a uniform SNR between sources in ``snr_range`` dB (wsj0-2mix draws 0–5 dB between
  two speakers; SpeechBrain draws the first level from N(−27.43, 2.57) dB and each further one from
  N(first − 2.51, 2.66) dB), after an RMS level for the first source drawn in ``level_range`` dBFS
  (LibriMix's loudness range, −33 to −25), then a joint rescale so that no sample of the mixture or a
  source exceeds 0.9 (LibriMix's ``MAX_AMP``);
* the randomness is a function of ``(seed, epoch, index)`` (see :mod:`domains.speech.datasets`): training
  mixtures differ every epoch, and a dataset with ``fixed=True`` (validation) gives the same mixtures every
  epoch, whatever the worker count.

**All-silent crops.** A crop whose RMS is below ``silence_rms`` (a pause, or digital silence) has no level to
normalise. Up to :data:`SILENT_RETRIES` further crops (then utterances) of the same speaker are drawn from
the example's own generator; if all are silent, the source stays all-zero (gain computed against a floored
RMS, so no division by zero and no NaN) and the example's ``silent_sources`` counter says so. The task's
SI-SDR must treat such a source as undefined.

Speed perturbation (optional) resamples a source by a factor drawn from ``speed_factors`` as SpeechBrain's
``SpeedPerturb`` does: the factor is the length ratio (0.95 makes the utterance 5 % shorter, so faster and
higher-pitched).
"""

import csv
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from core.utils import InputError, InputFileNotFoundError
from domains.speech.audio import AUDIO_SUFFIXES, ChannelMode, audio_info, load_audio, resample
from domains.speech.datasets import example_rng, fit_length

__all__ = [
    "MAX_AMPLITUDE",
    "SILENT_RETRIES",
    "DynamicMixingDataset",
    "SpeakerFrom",
    "Utterance",
    "collate_mixtures",
    "index_utterances",
    "read_speaker_index",
    "split_utterances",
]

SpeakerFrom = Literal["folder", "prefix"]
MAX_AMPLITUDE = 0.9
SILENT_RETRIES = 8
MAX_PIECES = 32


@dataclass(frozen=True)
class Utterance:
    """One single-speaker recording."""

    path: Path
    speaker: str
    frames: int
    sample_rate: int


def _speaker_of(path: Path, speaker_from: SpeakerFrom) -> str:
    if speaker_from == "folder":
        return path.parent.name
    if speaker_from == "prefix":
        return path.stem.split("_")[0].split("-")[0]
    raise ValueError(f"speaker_from must be 'folder' or 'prefix', got {speaker_from!r}")


def index_utterances(
    roots: str | Path | Sequence[str | Path],
    speaker_from: SpeakerFrom = "folder",
    min_seconds: float = 0.0,
) -> list[Utterance]:
    """Every wav/flac file under ``roots`` (recursively), with its speaker and header.

    Args:
        roots: Folders of single-speaker speech.
        speaker_from: ``folder`` (the file's parent folder names the speaker) or ``prefix`` (the file name
            up to the first ``_`` or ``-``, e.g. ``spk1`` for ``spk1_snt3.wav``; also LibriSpeech's
            ``<speaker>/<chapter>/<speaker>-<chapter>-<n>.flac``, whose parent folder is the chapter).
        min_seconds: Files shorter than this are left out.

    Raises:
        InputFileNotFoundError: If a root does not exist.
        InputError: If a root holds no audio file, or a file is unreadable or empty.
    """
    roots = [roots] if isinstance(roots, (str, Path)) else list(roots)
    utterances = []
    for root in map(Path, roots):
        if not root.is_dir():
            raise InputFileNotFoundError(f"speech folder {root} does not exist")
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
        if not files:
            raise InputError(f"speech folder {root} holds no .wav/.flac file")
        for path in files:
            info = audio_info(path)
            if info.frames >= min_seconds * info.samplerate:
                utterances.append(
                    Utterance(path, _speaker_of(path, speaker_from), int(info.frames), int(info.samplerate))
                )
    return utterances


def read_speaker_index(
    index: str | Path,
    min_seconds: float = 0.0,
    sources: Sequence[str] | None = None,
) -> list[Utterance]:
    """The utterances of a speaker index CSV (columns ``path``, ``speaker``, optionally ``source``, ...).

    Relative paths are relative to the CSV's folder (``data/speech/prepare.py`` writes such an index).

    Args:
        index: The CSV file.
        min_seconds: Files shorter than this are left out.
        sources: Keep only rows whose ``source`` column is one of these (e.g. ``["asterisk", "codec2"]``).

    Raises:
        InputFileNotFoundError: If the CSV or a file it lists does not exist.
        InputError: If the columns are missing or a file is unreadable or empty.
    """
    index = Path(index)
    if not index.is_file():
        raise InputFileNotFoundError(f"speaker index {index} does not exist")
    with index.open(newline="") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        if "path" not in columns or "speaker" not in columns:
            raise InputError(f"speaker index {index} needs the columns path and speaker; found {columns}")
        if sources is not None and "source" not in columns:
            raise InputError(f"speaker index {index} has no source column to select {list(sources)} by")
        rows = [row for row in reader if sources is None or row["source"] in sources]
    utterances = []
    for row in rows:
        path = Path(row["path"])
        path = path if path.is_absolute() else index.parent / path
        try:
            info = audio_info(path)
        except InputFileNotFoundError as error:
            raise InputFileNotFoundError(f"{error} (listed in speaker index {index})") from error
        if info.frames >= min_seconds * info.samplerate:
            utterances.append(Utterance(path, row["speaker"], int(info.frames), int(info.samplerate)))
    if not utterances:
        selected = f" of sources {list(sources)}" if sources else ""
        raise InputError(f"speaker index {index} lists no utterance{selected}")
    return utterances


def split_utterances(
    utterances: Sequence[Utterance], fraction: float, seed: int = 0
) -> tuple[list[Utterance], list[Utterance]]:
    """Hold out ``fraction`` of every speaker's utterances (at least one where the speaker has two or more).

    Returns:
        ``(kept, held_out)``; the held-out utterances make the validation mixtures of the same speakers.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"the held-out fraction must lie in (0, 1), got {fraction}")
    by_speaker: dict[str, list[Utterance]] = defaultdict(list)
    for utterance in utterances:
        by_speaker[utterance.speaker].append(utterance)
    rng = np.random.default_rng(seed)
    kept, held = [], []
    for speaker in sorted(by_speaker):
        group = by_speaker[speaker]
        order = rng.permutation(len(group))
        count = max(1, round(fraction * len(group))) if len(group) > 1 else 0
        held += [group[i] for i in order[:count]]
        kept += [group[i] for i in order[count:]]
    return kept, held


def _folders(utterances: Sequence[Utterance]) -> str:
    folders = sorted({str(u.path.parent) for u in utterances})
    return ", ".join(folders[:5]) + (f" and {len(folders) - 5} more" if len(folders) > 5 else "")


class DynamicMixingDataset(Dataset):
    """Mixtures of random crops of different speakers, made on the fly; map-style with a fixed length.

    Args:
        utterances: Single-speaker recordings (:func:`index_utterances`, :func:`read_speaker_index`).
        num_sources: Speakers per mixture.
        length: Mixtures per epoch (``__len__``).
        sample_rate: The model's rate; utterances at another rate are resampled.
        segment_seconds: Length of every mixture.
        snr_range: ``(low, high)`` dB of each further source's level relative to the first, uniform.
        level_range: ``(low, high)`` dBFS RMS of the first source, uniform.
        speed_factors: Length factors to draw from per source (e.g. ``[0.95, 1.0, 1.05]``); None: none.
        speaker_weighting: ``uniform`` (every speaker equally likely) or ``utterances`` (in proportion to
            their utterance counts, as SpeechBrain does).
        fill: Fill each source's segment with further utterances of the same speaker, separated by pauses
            of up to ``max_gap_seconds``, when one utterance is shorter than the segment (see the module
            docstring); False places a single crop at a random offset.
        max_gap_seconds: Longest pause between the utterances of a filled segment.
        seed: Seed of the mixtures.
        fixed: Ignore the epoch (validation: the same mixtures every epoch).
        silence_rms: RMS below which a crop counts as silent.
        channels: Multi-channel files: ``downmix`` or ``error``.

    Raises:
        InputError: If the utterances come from fewer than ``num_sources`` speakers (naming the folders).
    """

    def __init__(
        self,
        utterances: Sequence[Utterance],
        num_sources: int = 2,
        length: int = 1000,
        sample_rate: int = 8000,
        segment_seconds: float = 3.0,
        snr_range: tuple[float, float] = (-5.0, 5.0),
        level_range: tuple[float, float] = (-33.0, -25.0),
        speed_factors: Sequence[float] | None = None,
        speaker_weighting: Literal["uniform", "utterances"] = "uniform",
        fill: bool = True,
        max_gap_seconds: float = 0.3,
        seed: int = 0,
        fixed: bool = False,
        silence_rms: float = 1e-4,
        channels: ChannelMode = "downmix",
    ) -> None:
        if num_sources < 2:
            raise ValueError(f"dynamic mixing needs num_sources >= 2, got {num_sources}")
        if length < 1:
            raise ValueError(f"length (mixtures per epoch) must be positive, got {length}")
        if segment_seconds <= 0:
            raise ValueError(f"segment_seconds must be positive, got {segment_seconds}")
        if snr_range[0] > snr_range[1] or level_range[0] > level_range[1]:
            raise ValueError(f"snr_range {snr_range} and level_range {level_range} must be (low, high)")
        if speed_factors is not None and any(not 0.5 <= f <= 2.0 for f in speed_factors):
            raise ValueError(f"speed_factors must lie in [0.5, 2], got {speed_factors}")
        if speaker_weighting not in ("uniform", "utterances"):
            raise ValueError(f"speaker_weighting must be uniform or utterances, got {speaker_weighting!r}")
        if not utterances:
            raise InputError("dynamic mixing got no utterance")
        by_speaker: dict[str, list[Utterance]] = defaultdict(list)
        for utterance in utterances:
            by_speaker[utterance.speaker].append(utterance)
        if len(by_speaker) < num_sources:
            raise InputError(
                f"dynamic mixing needs utterances of at least {num_sources} different speakers; the speech "
                f"folder(s) {_folders(utterances)} hold only {len(by_speaker)} ({sorted(by_speaker)})"
            )
        self.speakers = sorted(by_speaker)
        self.by_speaker = {s: by_speaker[s] for s in self.speakers}
        counts = np.array([len(self.by_speaker[s]) for s in self.speakers], dtype=np.float64)
        self.speaker_p = counts / counts.sum() if speaker_weighting == "utterances" else None
        self.num_sources = int(num_sources)
        self.length = int(length)
        self.sample_rate = int(sample_rate)
        self.segment = round(segment_seconds * sample_rate)
        self.snr_range = (float(snr_range[0]), float(snr_range[1]))
        self.level_range = (float(level_range[0]), float(level_range[1]))
        self.speed_factors = list(speed_factors) if speed_factors else None
        self.fill = fill
        self.max_gap = round(max_gap_seconds * sample_rate)
        self.seed = int(seed)
        self.fixed = fixed
        self.silence_rms = float(silence_rms)
        self.channels: ChannelMode = channels

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, key: int) -> dict[str, Any]:
        epoch, index = divmod(int(key), self.length)
        rng = example_rng(self.seed, 0 if self.fixed else epoch, index)
        speakers = rng.choice(len(self.speakers), self.num_sources, replace=False, p=self.speaker_p)
        sources, silent = [], 0
        for speaker in speakers:
            crop = self._speaker_crop(self.speakers[speaker], rng)
            silent += crop is None
            sources.append(torch.zeros(self.segment) if crop is None else crop)
        levels = [rng.uniform(*self.level_range)]
        levels += [levels[0] - rng.uniform(*self.snr_range) for _ in range(self.num_sources - 1)]
        scaled = torch.stack(
            [
                source * (10 ** (level / 20) / max(_rms(source), self.silence_rms))
                for source, level in zip(sources, levels, strict=True)
            ]
        )
        mixture = scaled.sum(0)
        peak = max(float(mixture.abs().max()), float(scaled.abs().max()))
        if peak > MAX_AMPLITUDE:
            scaled = scaled * (MAX_AMPLITUDE / peak)
            mixture = scaled.sum(0)
        return {
            "mixture": mixture.float(),
            "sources": scaled.float(),
            "length": self.segment,
            "id": f"mix{index:06d}" if self.fixed else f"mix{epoch:03d}_{index:06d}",
            "speakers": [self.speakers[s] for s in speakers],
            "silent_sources": silent,
        }

    def _speaker_crop(self, speaker: str, rng: np.random.Generator) -> torch.Tensor | None:
        """``segment`` samples of the speaker (not silent), or None after :data:`SILENT_RETRIES` redraws."""
        group = self.by_speaker[speaker]
        for _ in range(SILENT_RETRIES + 1):
            factor = float(rng.choice(self.speed_factors)) if self.speed_factors else 1.0
            pieces = [self._crop(group[int(rng.integers(len(group)))], rng, self.segment, factor)]
            filled = pieces[0].numel()
            while self.fill and filled < self.segment and len(pieces) < MAX_PIECES:
                gap = int(rng.integers(0, self.max_gap + 1))
                if filled + gap >= self.segment:
                    break
                piece = self._crop(
                    group[int(rng.integers(len(group)))], rng, self.segment - filled - gap, factor
                )
                pieces += [torch.zeros(gap), piece]
                filled += gap + piece.numel()
            waveform = torch.cat(pieces)
            if waveform.numel() < self.segment:
                offset = int(rng.integers(0, self.segment - waveform.numel() + 1))
                waveform = fit_length(torch.nn.functional.pad(waveform, (offset, 0)), self.segment)
            if _rms(waveform) >= self.silence_rms:
                return waveform
        return None

    def _crop(
        self, utterance: Utterance, rng: np.random.Generator, length: int, factor: float
    ) -> torch.Tensor:
        """A random crop of at most ``length`` samples at the model rate, speed-perturbed by ``factor``."""
        # File frames that give `length` samples after resampling to the model rate and the speed change.
        wanted = int(np.ceil(length / factor * utterance.sample_rate / self.sample_rate)) + 1
        start = int(rng.integers(0, max(utterance.frames - wanted, 0) + 1))
        waveform, _ = load_audio(utterance.path, self.sample_rate, self.channels, start=start, frames=wanted)
        if factor != 1.0:
            waveform = resample(waveform, self.sample_rate, round(self.sample_rate * factor))
        return waveform[:length]


def _rms(waveform: torch.Tensor) -> float:
    return float(waveform.double().pow(2).mean().sqrt())


def collate_mixtures(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack fixed-length dynamic mixtures into the training batch (``mixture``, ``sources``)."""
    return {
        "mixture": torch.stack([item["mixture"] for item in items]),
        "sources": torch.stack([item["sources"] for item in items]),
    }
