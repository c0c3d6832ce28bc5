"""Which LOBSTER events go to which split: per-split file lists or one time-ordered cut of all files.

Splits never mix: a window never spans two files (days) or two splits, and the training split alone
gives the normalisation statistics and label thresholds. With ``files`` plus fractions, the kept events
of all files, sorted by date and start time, are cut in time order (train first, test last).
"""

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.utils import InputError
from domains.finance.features import DayEvents
from domains.finance.labels import smoothed_returns
from domains.finance.readers import LobsterFileInfo, parse_lobster_filename

__all__ = [
    "Segment",
    "SplitEvents",
    "SplitOverlapWarning",
    "fraction_segments",
    "resolve_levels",
    "resolve_split_files",
    "shared_split_files",
    "split_events",
    "walk_forward_bounds",
]

Fractions = tuple[float, float, float]
SPLIT_NAMES = {"train": "training", "val": "validation", "test": "test"}


class SplitOverlapWarning(UserWarning):
    """One file is given to two of the training, validation and test splits: the later one's metrics leak."""


@dataclass
class Segment:
    """Events ``start:stop`` of day ``day`` (index into the split's file list) at ``path``."""

    day: int
    path: Path
    start: int
    stop: int


@dataclass
class SplitEvents:
    """Concatenated segments of one split: raw features, smoothed returns and bookkeeping per event."""

    features: np.ndarray  # (n, F) raw (or already normalised by rolling statistics)
    returns: np.ndarray  # (n, H) smoothed returns l (NaN where undefined)
    mid: np.ndarray  # (n,) mid-price after each event
    price_scale: np.ndarray  # (n,) rolling std of the prices (1 without rolling normalisation)
    spread_over_mid: np.ndarray
    time: np.ndarray
    day: np.ndarray
    row: np.ndarray
    bounds: list[tuple[int, int]]  # (offset, length) of each segment


def resolve_split_files(
    train: list[str] | None,
    val: list[str] | None,
    test: list[str] | None,
    predict: list[str] | None,
    files: list[str] | None,
    split: Sequence[float],
) -> tuple[dict[str, list[Path]], Fractions | None]:
    """The message files of every split, and the time-order fractions when ``files`` is cut by them.

    Returns:
        ``({"train": [...], "val": [...], "test": [...], "predict": [...]}, fractions or None)``. With
        ``files``, every split lists all of them (sorted by date and start time) and the fractions say
        which part of their events each split takes. Prediction defaults to the test split.

    Raises:
        InputError: For both kinds of options at once, no training data, or fractions that are not 3
            non-negative numbers (train > 0) summing to 1.
    """
    explicit = any(x is not None for x in (train, val, test))
    if files is not None and explicit:
        raise InputError("give either files (+ split) or train_files/val_files/test_files, not both")
    if files is None and not train:
        raise InputError(
            "LOBSTERDataModule needs training data: pass train_files (and val_files/test_files) or files "
            "(+ split); normalisation statistics and label thresholds come from the training split"
        )
    if files is not None:
        if not files:
            raise InputError("files is empty")
        fractions = tuple(float(f) for f in split)
        if len(fractions) != 3 or min(fractions) < 0 or fractions[0] <= 0 or abs(sum(fractions) - 1) > 1e-6:
            raise InputError(f"split must be 3 non-negative fractions (train > 0) summing to 1, got {split}")
        ordered = sorted((Path(f) for f in files), key=lambda p: _sort_key(parse_lobster_filename(p)))
        out = {name: list(ordered) for name in ("train", "val", "test")}
        out["predict"] = [Path(f) for f in predict] if predict is not None else list(ordered)
        return out, fractions  # type: ignore[return-value]
    out = {"train": [Path(f) for f in train or []], "val": [Path(f) for f in val or []]}
    out["test"] = [Path(f) for f in test or []]
    out["predict"] = [Path(f) for f in predict] if predict is not None else list(out["test"])
    return out, None


def shared_split_files(split_files: dict[str, list[Path]]) -> dict[Path, list[str]]:
    """Files listed in more than one of the train, val and test splits (compared as resolved paths).

    Prediction is left out: it defaults to the test files on purpose.

    Returns:
        ``{file: [split, ...]}`` (splits as words: ``training``, ``validation``, ``test``), in file order.
    """
    owners: dict[Path, list[str]] = {}
    shown: dict[Path, Path] = {}
    for split, word in SPLIT_NAMES.items():
        for path in split_files.get(split, []):
            key = Path(path).resolve()
            shown.setdefault(key, Path(path))
            if word not in owners.setdefault(key, []):
                owners[key].append(word)
    return {shown[key]: words for key, words in owners.items() if len(words) > 1}


def resolve_levels(split_files: dict[str, list[Path]], levels: int | None) -> int:
    """The number of book levels: ``levels`` checked against the file names, or the one they all share.

    Raises:
        InputError: If a file is not a message file, or the files (or ``levels``) disagree.
    """
    infos = {path: parse_lobster_filename(path) for paths in split_files.values() for path in paths}
    for path, info in infos.items():
        if info.kind != "message":
            raise InputError(
                f"{path}: list message files (…_message_LEVEL.csv); the orderbook file is derived"
            )
    if levels is not None:
        if levels < 1:
            raise InputError(f"levels must be >= 1, got {levels}")
        wrong = [str(p) for p, info in infos.items() if info.levels != levels]
        if wrong:
            raise InputError(f"levels={levels} but these files have another LEVEL in their name: {wrong}")
        return levels
    found = sorted({info.levels for info in infos.values()})
    if len(found) != 1:
        raise InputError(f"the files disagree on the number of levels ({found}); use files of one depth")
    return found[0]


def walk_forward_bounds(
    total: int, fractions: Fractions, folds: int = 1, fold: int = 0, anchored: bool = False
) -> dict[str, tuple[int, int]]:
    """Event ranges ``[lo, hi)`` of the training, validation and test blocks of one walk-forward fold.

    Each fold is a block of ``L`` consecutive events cut by ``fractions`` into train, val and test (in that
    time order); fold ``k + 1`` starts one test block later than fold ``k``, so the test blocks of the folds
    are consecutive and disjoint and together cover the end of the data:
    ``L = total / (1 + (folds − 1) · test_fraction)``. ``anchored`` keeps every training block starting at
    event 0 (it grows with the fold, as FI-2010's anchored days). With ``folds=1`` this is the plain cut.

    Args:
        total: Events of all files together.
        fractions: Train, validation and test shares of one fold's block.
        folds: Number of folds.
        fold: 0-based fold index.
        anchored: Training blocks all start at the first event.

    Returns:
        ``{"train": (lo, hi), "val": (lo, hi), "test": (lo, hi)}``.
    """
    if folds < 1 or not 0 <= fold < folds:
        raise InputError(f"fold must be in 0..folds-1 with folds >= 1, got fold={fold}, folds={folds}")
    block = total / (1.0 + (folds - 1) * fractions[2])
    start = fold * fractions[2] * block
    cuts = np.round(start + np.cumsum((0.0, *fractions)) * block).astype(int)
    cuts[-1] = min(cuts[-1], total)
    lo = 0 if anchored else int(cuts[0])
    return {
        "train": (lo, int(cuts[1])),
        "val": (int(cuts[1]), int(cuts[2])),
        "test": (int(cuts[2]), int(cuts[3])),
    }


def fraction_segments(
    files: list[Path],
    lengths: list[int],
    fractions: Fractions,
    split: str,
    folds: int = 1,
    fold: int = 0,
    anchored: bool = False,
) -> list[Segment]:
    """The segments of ``split`` when the events of ``files`` (in order) are cut by ``fractions``.

    Args:
        files: The files, in time order.
        lengths: Kept events per file.
        fractions: Train, validation and test shares of all events (of one fold's block with ``folds``).
        split: ``train``, ``val`` or ``test``.
        folds: Walk-forward folds (:func:`walk_forward_bounds`); 1 = one cut of all events.
        fold: 0-based fold index.
        anchored: Training blocks all start at the first event.
    """
    lo, hi = walk_forward_bounds(sum(lengths), fractions, folds, fold, anchored)[split]
    segments, offset = [], 0
    for d, (path, n) in enumerate(zip(files, lengths, strict=True)):
        start, stop = max(lo - offset, 0), min(hi - offset, n)
        if start < stop:
            segments.append(Segment(d, path, start, stop))
        offset += n
    return segments


def split_events(
    segments: list[Segment],
    load_day: Callable[[Path], DayEvents],
    horizons: Sequence[int],
    smoothing: int | None,
    method: str,
) -> SplitEvents:
    """Concatenate the events of ``segments``, with smoothed returns computed inside each segment.

    Args:
        segments: The split's segments.
        load_day: Path → the kept events of that day (cached by the caller).
        horizons: Label horizons in events.
        smoothing: TLOB smoothing length (None for ``classic`` labels).
        method: ``tlob`` or ``classic``.
    """
    parts: dict[str, list[np.ndarray]] = {
        k: [] for k in ("features", "returns", "spread", "time", "day", "row", "mid", "scale")
    }
    bounds, offset = [], 0
    for seg in segments:
        day, window = load_day(seg.path), slice(seg.start, seg.stop)
        mid = day.mid[window]
        parts["returns"].append(
            np.stack([smoothed_returns(mid, h, smoothing, method) for h in horizons], axis=1)
        )
        parts["features"].append(day.features[window])
        parts["mid"].append(mid)
        scale = day.price_scale[window] if day.price_scale is not None else np.ones(seg.stop - seg.start)
        parts["scale"].append(scale)
        parts["spread"].append(day.spread_over_mid[window])
        parts["time"].append(day.time[window])
        parts["row"].append(day.row[window])
        parts["day"].append(np.full(seg.stop - seg.start, seg.day, dtype=np.int64))
        bounds.append((offset, seg.stop - seg.start))
        offset += seg.stop - seg.start
    return SplitEvents(
        features=np.concatenate(parts["features"]),
        returns=np.concatenate(parts["returns"]),
        mid=np.concatenate(parts["mid"]),
        price_scale=np.concatenate(parts["scale"]),
        spread_over_mid=np.concatenate(parts["spread"]),
        time=np.concatenate(parts["time"]),
        day=np.concatenate(parts["day"]),
        row=np.concatenate(parts["row"]),
        bounds=bounds,
    )


def _sort_key(info: LobsterFileInfo) -> tuple[dt.date, int, str]:
    return info.date, info.start_ms, info.ticker
