"""Readers of the on-disk layouts of separation datasets, each giving a list of :class:`SeparationExample`.

* **LibriMix** as its generation scripts write it: ``Libri2Mix/wav8k/{min,max}/`` holds the split folders
  ``{train-100,train-360,dev,test}/{mix_clean,mix_both,mix_single,s1,s2,noise}/`` and ``metadata/`` with
  ``mixture_<split>_<mix type>.csv`` (``mixture_ID, mixture_path, source_1_path, ..., length``). The
  metadata is the dataset's list of examples, so it is read (not the folder listing); paths recorded at
  generation time are used when they exist and otherwise found under the given root (LibriMix is often
  moved after generation).
* **WHAM! / wsj0-2mix**: ``{tr,cv,tt}/{mix,s1,s2}/`` (WHAM! names the mixture folder ``mix_clean``,
  ``mix_both`` or ``mix_single``); a mixture and its sources share a file name.
* **Example list**: ``ex_*/{mixture,s0,s1}.wav``, one folder per example (the layout of the Libri2Mix
  samples in ``../shared/data/speech/libri2mix_8k_test/``).

:func:`check_example` compares the headers of a mixture and its sources, so a length mismatch is found when
a dataset is built, not in the middle of an epoch.
"""

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from core.utils import InputError, InputFileNotFoundError
from domains.speech.audio import AUDIO_SUFFIXES, audio_info

__all__ = [
    "LIBRIMIX_MIXTURES",
    "LIBRIMIX_SPLITS",
    "WHAM_SPLITS",
    "Layout",
    "SeparationExample",
    "check_example",
    "example_list",
    "librimix_examples",
    "read_layout",
    "wham_examples",
]

Layout = Literal["librimix", "wham", "examples"]
LIBRIMIX_SPLITS = ("train-100", "train-360", "dev", "test")
LIBRIMIX_MIXTURES = ("mix_clean", "mix_both", "mix_single")
WHAM_SPLITS = ("tr", "cv", "tt")


@dataclass(frozen=True)
class SeparationExample:
    """One mixture and its reference sources (mixture = sum of sources, plus noise for noisy mixtures)."""

    id: str
    mixture: Path
    sources: tuple[Path, ...]


def _folder(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise InputFileNotFoundError(f"{what} folder {path} does not exist")
    return path


def _audio_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)


def librimix_examples(
    root: str | Path,
    split: str = "test",
    mixture: str = "mix_clean",
) -> list[SeparationExample]:
    """The examples of one LibriMix split, from its metadata CSV.

    Args:
        root: The mode folder that holds ``metadata/`` and the split folders, e.g.
            ``Libri2Mix/wav8k/min``.
        split: ``train-100``, ``train-360``, ``dev`` or ``test``.
        mixture: ``mix_clean``, ``mix_both`` or ``mix_single`` (one source: the speech under noise).

    Raises:
        InputFileNotFoundError: If the root, its ``metadata`` folder, the CSV or an audio file is missing.
        InputError: If the CSV lacks the LibriMix columns or lists no mixture.
    """
    root = _folder(Path(root), "LibriMix")
    if split not in LIBRIMIX_SPLITS:
        raise ValueError(f"LibriMix split must be one of {LIBRIMIX_SPLITS}, got {split!r}")
    if mixture not in LIBRIMIX_MIXTURES:
        raise ValueError(f"LibriMix mixture must be one of {LIBRIMIX_MIXTURES}, got {mixture!r}")
    metadata = root / "metadata"
    if not metadata.is_dir():
        raise InputFileNotFoundError(
            f"LibriMix folder {root} has no metadata/ folder; the generation scripts write "
            f"metadata/mixture_<split>_<mix type>.csv beside the split folders"
        )
    table = metadata / f"mixture_{split}_{mixture}.csv"
    if not table.is_file():
        present = sorted(p.name for p in metadata.glob("mixture_*.csv"))
        raise InputFileNotFoundError(
            f"LibriMix metadata {table} does not exist (metadata folder {metadata} holds {present or 'none'})"
        )
    with table.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
        columns = list(rows[0]) if rows else []
    source_columns = sorted(
        (c for c in columns if c.startswith("source_") and c.endswith("_path")),
        key=lambda c: int(c.split("_")[1]),
    )
    if "mixture_ID" not in columns or not source_columns:
        raise InputError(
            f"LibriMix metadata {table} must have the columns mixture_ID, mixture_path, source_<k>_path; "
            f"found {columns or 'no rows'}"
        )
    split_folder = root / split
    examples = []
    for row in rows:
        name = row["mixture_ID"]
        mix_path = _librimix_path(row.get("mixture_path", ""), split_folder / mixture / f"{name}.wav")
        sources = tuple(
            _librimix_path(row[column], split_folder / f"s{k + 1}" / f"{name}.wav")
            for k, column in enumerate(source_columns)
        )
        examples.append(SeparationExample(name, mix_path, sources))
    return examples


def _librimix_path(recorded: str, local: Path) -> Path:
    """The file under the given root, else the one the metadata recorded; an error naming both if neither."""
    if local.is_file():
        return local
    if recorded and Path(recorded).is_file():
        return Path(recorded)
    raise InputFileNotFoundError(
        f"LibriMix audio file {local} does not exist"
        + (f" (nor {recorded} from the metadata)" if recorded else "")
    )


def wham_examples(
    root: str | Path,
    split: str = "tt",
    mixture: str = "mix",
    num_sources: int = 2,
) -> list[SeparationExample]:
    """The examples of a WHAM!/wsj0-2mix split: each file of the mixture folder and its namesakes in ``s<k>``.

    Args:
        root: The folder that holds ``tr``, ``cv`` and ``tt`` (e.g. ``wsj0-mix/2speakers/wav8k/min``).
        split: ``tr``, ``cv`` or ``tt``.
        mixture: The mixture folder (``mix`` for wsj0-2mix; ``mix_clean``/``mix_both``/``mix_single`` for
            WHAM!).
        num_sources: Source folders ``s1 .. s<num_sources>``.

    Raises:
        InputFileNotFoundError: If a folder or a source file of a mixture is missing.
        InputError: If the mixture folder holds no wav/flac file.
    """
    root = _folder(Path(root), "WHAM!/wsj0-2mix")
    if split not in WHAM_SPLITS:
        raise ValueError(f"WHAM!/wsj0-2mix split must be one of {WHAM_SPLITS}, got {split!r}")
    split_folder = _folder(root / split, "WHAM!/wsj0-2mix split")
    mix_folder = _folder(split_folder / mixture, "mixture")
    source_folders = [_folder(split_folder / f"s{k + 1}", "source") for k in range(num_sources)]
    files = _audio_files(mix_folder)
    if not files:
        raise InputError(f"mixture folder {mix_folder} holds no .wav/.flac file")
    examples = []
    for path in files:
        sources = tuple(folder / path.name for folder in source_folders)
        for source in sources:
            if not source.is_file():
                raise InputFileNotFoundError(f"source file {source} of mixture {path} does not exist")
        examples.append(SeparationExample(path.stem, path, sources))
    return examples


def example_list(root: str | Path, num_sources: int | None = None) -> list[SeparationExample]:
    """The examples of ``root/ex_*/{mixture,s0,s1,...}.wav`` (``.flac`` also read), in name order.

    Args:
        root: The folder of ``ex_*`` folders.
        num_sources: Sources per example; default: as many as the first example has (``s0``, ``s1``, ...).
            Every example must have the same number.

    Raises:
        InputFileNotFoundError: If the root is missing, or an example lacks its mixture or a source.
        InputError: If there is no ``ex_*`` folder, or examples differ in their number of sources.
    """
    root = _folder(Path(root), "example list")
    folders = sorted(p for p in root.glob("ex_*") if p.is_dir())
    if not folders:
        raise InputError(f"example folder {root} holds no ex_*/ folder with mixture.wav, s0.wav, s1.wav, ...")
    examples = []
    for folder in folders:
        mix = _named_audio(folder, "mixture")
        if mix is None:
            raise InputFileNotFoundError(f"example folder {folder} has no mixture.wav")
        found = []
        while (path := _named_audio(folder, f"s{len(found)}")) is not None:
            found.append(path)
        wanted = num_sources if num_sources is not None else len(examples[0].sources) if examples else None
        if wanted is not None and len(found) < wanted:
            raise InputFileNotFoundError(
                f"example folder {folder} has {len(found)} source files (s0.wav ...); {wanted} are expected "
                f"(missing s{len(found)}.wav)"
            )
        if not found:
            raise InputFileNotFoundError(f"example folder {folder} has no source file s0.wav")
        if wanted is not None and len(found) > wanted and num_sources is None:
            raise InputError(
                f"example folder {folder} has {len(found)} sources, but {examples[0].mixture.parent} has "
                f"{wanted}"
            )
        examples.append(SeparationExample(folder.name, mix, tuple(found[: wanted or len(found)])))
    return examples


def _named_audio(folder: Path, stem: str) -> Path | None:
    for suffix in AUDIO_SUFFIXES:
        if (folder / f"{stem}{suffix}").is_file():
            return folder / f"{stem}{suffix}"
    return None


def read_layout(
    layout: Layout,
    root: str | Path,
    split: str | None = None,
    mixture: str | None = None,
    num_sources: int = 2,
) -> list[SeparationExample]:
    """The examples of ``split`` of a dataset in ``layout``, with its number of sources checked.

    Args:
        layout: ``librimix``, ``wham`` or ``examples``.
        root: See :func:`librimix_examples`, :func:`wham_examples`, :func:`example_list`.
        split: The split name (``examples``: a subfolder of ``root``; None or ``.`` for ``root`` itself).
        mixture: The mixture folder (default ``mix_clean`` for LibriMix, ``mix`` for WHAM!).
        num_sources: Sources expected per example.
    """
    if layout == "librimix":
        examples = librimix_examples(root, split or "test", mixture or "mix_clean")
    elif layout == "wham":
        examples = wham_examples(root, split or "tt", mixture or "mix", num_sources)
    elif layout == "examples":
        examples = example_list(Path(root) / (split or "."), num_sources)
    else:
        raise ValueError(f"layout must be librimix, wham or examples, got {layout!r}")
    for example in examples:
        if len(example.sources) != num_sources:
            raise InputError(
                f"mixture {example.mixture} has {len(example.sources)} sources; num_sources={num_sources}"
            )
    return examples


def check_example(example: SeparationExample) -> tuple[int, int]:
    """Check from the headers that the mixture and its sources are readable and of one length and rate.

    Returns:
        ``(frames, sample_rate)`` of the mixture.

    Raises:
        InputError: Naming the files whose lengths or rates differ (or the unreadable/empty file).
    """
    mix = audio_info(example.mixture)
    for source in example.sources:
        info = audio_info(source)
        if info.frames != mix.frames:
            raise InputError(
                f"mixture {example.mixture} has {mix.frames} samples but its source {source} has "
                f"{info.frames}; a mixture and its sources must have the same length"
            )
        if info.samplerate != mix.samplerate:
            raise InputError(
                f"mixture {example.mixture} is at {mix.samplerate} Hz but its source {source} is at "
                f"{info.samplerate} Hz"
            )
    return int(mix.frames), int(mix.samplerate)
