"""LightningDataModules for mid-price trend classification from limit order books.

* :class:`LOBSTERDataModule` reads LOBSTER message/orderbook files (real or simulated by
  ``data/finance/simulate_lob.py``), builds per-event features and TLOB or classic labels.
* :class:`FI2010DataModule` reads the FI-2010 benchmark text files (already normalised and labelled).

Both yield batches of windows ``{"x": (B, T, F) float32, "y": (B, H) int64, "time": (B,) float64,
"index": (B,) int64, "day": (B,) int64}``; class ids are 0 up, 1 stationary, 2 down (-1 undefined, only in
prediction windows whose future lies beyond the data). Windows never span two files (days) or two
splits. Everything that is estimated from data (normalisation statistics, label thresholds) comes from
the training split only.
"""

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch.utils.data import DataLoader, Dataset

from domains.finance.labels import (
    CLASS_NAMES,
    UNDEFINED,
    classify,
    mid_price,
    relative_spread,
    smoothed_returns,
    threshold_from_train,
)
from domains.finance.readers import (
    FI2010_HORIZONS,
    FI2010_NUM_FEATURES,
    LOBSTER_DUMMY_ASK,
    LOBSTER_DUMMY_BID,
    LobsterDay,
    LobsterFileInfo,
    parse_lobster_filename,
    read_fi2010,
    read_lobster,
)

__all__ = [
    "ORDER_FEATURES",
    "FI2010DataModule",
    "LOBDataModule",
    "LOBSTERDataModule",
    "LOBWindowDataset",
]

Split = Literal["train", "val", "test", "predict"]
SPLITS: tuple[Split, ...] = ("train", "val", "test", "predict")
STAGE_SPLITS: dict[str | None, tuple[Split, ...]] = {
    "fit": ("train", "val"),
    "validate": ("val",),
    "test": ("test",),
    "predict": ("predict",),
    None: SPLITS,
}
ORDER_FEATURES = (
    "log1p_dt",
    "is_submit",
    "is_cancel",
    "is_execution",
    "size",
    "price_rel_mid",
    "direction",
    "depth",
)
# z-scored order columns: log1p_dt, size, price_rel_mid, depth (one-hots and direction stay as they are)
_ZSCORED_ORDER_COLUMNS = (0, 4, 5, 7)
HALT_EVENT = 7


class LOBWindowDataset(Dataset):
    """Windows of ``seq_len`` consecutive events over a per-event feature matrix.

    Item ``i`` is the window ending (inclusively) at event ``t = ends[i]``::

        {"x": features[t - T + 1 : t + 1] (T, F) float32, "y": labels[t] (H,) int64,
         "time": float seconds after midnight of event t, "index": int event index of t,
         "day": int index of the source file of t}

    Args:
        features: ``(N, F)`` float32 features of N events (several days may be concatenated).
        labels: ``(N, H)`` int64 labels, one column per horizon (-1 undefined).
        times: ``(N,)`` float64 event times in seconds after midnight (NaN when unknown).
        ends: Valid window-end indices into the N events.
        seq_len: Window length T.
        days: ``(N,)`` int64 index of each event's source file; default all 0.
        event_index: ``(N,)`` int64 identity of each event in its source file (the 0-based message-file row
            for LOBSTER, the sample column for FI-2010); default ``0 .. N-1``.
        name: Split name, for messages.

    Raises:
        ValueError: On inconsistent shapes, or a window that starts before the data or spans two days.
    """

    def __init__(
        self,
        features: torch.Tensor,
        labels: torch.Tensor,
        times: np.ndarray,
        ends: np.ndarray,
        seq_len: int,
        days: np.ndarray | None = None,
        event_index: np.ndarray | None = None,
        name: str = "split",
    ) -> None:
        n = features.shape[0]
        self.features = features.to(torch.float32)
        self.labels = labels.to(torch.int64)
        if self.labels.ndim != 2 or self.labels.shape[0] != n or features.ndim != 2:
            raise ValueError(
                f"{name}: expected features (N, F) and labels (N, H), got {features.shape} and {labels.shape}"
            )
        self.times = np.asarray(times, dtype=np.float64)
        self.days = np.zeros(n, dtype=np.int64) if days is None else np.asarray(days, dtype=np.int64)
        self.event_index = (
            np.arange(n, dtype=np.int64) if event_index is None else np.asarray(event_index, np.int64)
        )
        if not len(self.times) == len(self.days) == len(self.event_index) == n:
            raise ValueError(f"{name}: times, days and event_index must have {n} entries")
        self.ends = np.asarray(ends, dtype=np.int64)
        self.seq_len = seq_len
        self.name = name
        starts = self.ends - seq_len + 1
        if len(self.ends) and (starts.min() < 0 or self.ends.max() >= n):
            raise ValueError(f"{name}: a window of {seq_len} events reaches outside the {n} events")
        if len(self.ends) and (self.days[starts] != self.days[self.ends]).any():
            raise ValueError(f"{name}: a window spans two days (files)")

    def __len__(self) -> int:
        return len(self.ends)

    def __getitem__(self, i: int) -> dict[str, Any]:
        t = int(self.ends[i])
        return {
            "x": self.features[t - self.seq_len + 1 : t + 1],
            "y": self.labels[t],
            "time": float(self.times[t]),
            "index": int(self.event_index[t]),
            "day": int(self.days[t]),
        }

    def label_counts(self, num_classes: int = len(CLASS_NAMES)) -> np.ndarray:
        """Count of each class per horizon over the windows.

        Args:
            num_classes: Number of classes.

        Returns:
            int64 array ``(H, num_classes + 1)``; the last column counts undefined labels.
        """
        labels = self.labels[torch.as_tensor(self.ends)].numpy()
        counts = np.zeros((labels.shape[1], num_classes + 1), dtype=np.int64)
        for k in range(labels.shape[1]):
            column = labels[:, k]
            counts[k, :num_classes] = np.bincount(column[column >= 0], minlength=num_classes)[:num_classes]
            counts[k, num_classes] = int((column == UNDEFINED).sum())
        return counts


class LOBDataModule(pl.LightningDataModule):
    """Base of the order-book datamodules: loaders, data-derived sizes and summaries.

    Subclasses fill ``self.datasets`` (split name → :class:`LOBWindowDataset`) in ``setup``. The sizes the
    models need (``num_features``, ``num_lob_features``, ``seq_len``, ``horizons``, ``num_classes``) are
    known right after ``__init__``, without reading data.

    Args:
        seq_len: Window length T in events.
        horizons: Prediction horizons in events, one label column each.
        batch_size: Training batch size.
        eval_batch_size: Batch size of validation, test and prediction; default ``4 * batch_size`` (TLOB).
        num_workers: DataLoader worker processes.
    """

    class_names: tuple[str, ...] = CLASS_NAMES

    def __init__(
        self,
        seq_len: int,
        horizons: list[int],
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        if seq_len < 1:
            raise ValueError(f"seq_len must be >= 1, got {seq_len}")
        if not horizons or any(h < 1 for h in horizons) or len(set(horizons)) != len(horizons):
            raise ValueError(f"horizons must be distinct positive event counts, got {horizons}")
        if batch_size < 1 or (eval_batch_size is not None and eval_batch_size < 1) or num_workers < 0:
            raise ValueError(
                f"batch_size ({batch_size}) and eval_batch_size ({eval_batch_size}) must be >= 1, "
                f"num_workers ({num_workers}) >= 0"
            )
        self._seq_len = int(seq_len)
        self._horizons = [int(h) for h in horizons]
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size if eval_batch_size is not None else 4 * batch_size
        self.num_workers = num_workers
        self.datasets: dict[str, LOBWindowDataset] = {}

    @property
    def num_features(self) -> int:
        """Features per event F."""
        raise NotImplementedError

    @property
    def num_lob_features(self) -> int:
        """Order-book columns (4 per level), which come first in the feature vector."""
        raise NotImplementedError

    @property
    def seq_len(self) -> int:
        """Window length T in events."""
        return self._seq_len

    @property
    def horizons(self) -> list[int]:
        """Prediction horizons in events (one label column each)."""
        return list(self._horizons)

    @property
    def num_classes(self) -> int:
        """Number of trend classes (3: up, stationary, down)."""
        return len(self.class_names)

    @property
    def predict_dates(self) -> list[dt.date] | None:
        """Date of each ``day`` index of the prediction split, or None when the data has no dates."""
        return None

    def input_paths(self) -> list[str]:
        """Every input file this datamodule reads (prediction writers refuse to write among them)."""
        return []

    def has_split(self, split: Split) -> bool:
        """Whether data is configured for ``split`` (known without reading data)."""
        return True

    def train_dataloader(self) -> DataLoader:
        """Shuffled windows of the training split (never mixed with another split)."""
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        """Validation windows in time order; an empty list (validation skipped) when none is configured."""
        if "val" not in self.datasets and not self.has_split("val"):
            rank_zero_warn(f"{type(self).__name__}: no validation data is configured; validation is skipped")
            return []
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        """Test windows in time order."""
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        """Prediction windows in time order."""
        return self._loader("predict", shuffle=False)

    def _loader(self, split: Split, shuffle: bool) -> DataLoader:
        dataset = self.datasets.get(split)
        if dataset is None:
            raise RuntimeError(
                f"{type(self).__name__}: the {split} split is not set up; call setup() for the matching "
                f"stage and make sure {split} data is configured"
            )
        return DataLoader(
            dataset,
            batch_size=self.batch_size if split == "train" else self.eval_batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def describe(self) -> str:
        """Multi-line summary: sizes, then per split the windows and label distribution per horizon.

        Returns:
            The summary text (also logged by ``setup``).
        """
        lines = [repr(self)]
        for split, dataset in self.datasets.items():
            lines.append(f"  {split}: {len(dataset)} windows over {dataset.features.shape[0]} events")
            for h, counts in zip(self._horizons, dataset.label_counts(self.num_classes), strict=True):
                total = max(int(counts[: self.num_classes].sum()), 1)
                shares = ", ".join(
                    f"{name} {c / total:.1%}" for name, c in zip(self.class_names, counts, strict=False)
                )
                undefined = f", undefined {counts[-1]}" if counts[-1] else ""
                lines.append(f"    h={h}: {shares}{undefined}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.describe()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_features={self.num_features}, "
            f"num_lob_features={self.num_lob_features}, seq_len={self.seq_len}, horizons={self.horizons}, "
            f"batch_size={self.batch_size}, eval_batch_size={self.eval_batch_size})"
        )


# --------------------------------------------------------------------------------------------- LOBSTER


@dataclass
class _DayEvents:
    """The kept events of one LOBSTER day, with unnormalised features."""

    info: LobsterFileInfo
    message_path: Path
    time: np.ndarray  # (n,) seconds after midnight
    row: np.ndarray  # (n,) row in the message file
    features: np.ndarray  # (n, F) float64: book (empty levels filled, raw units) then raw order features
    mid: np.ndarray  # (n,) mid-price after each event (forward-filled over empty sides)
    spread_over_mid: np.ndarray  # (n,)

    def __len__(self) -> int:
        return len(self.time)


@dataclass
class _Segment:
    """Events ``start:stop`` of day ``day`` (index into the split's file list) at ``path``."""

    day: int
    path: Path
    start: int
    stop: int


def _fill_empty_levels(book: np.ndarray, tick: int) -> np.ndarray:
    """Book as float64 with LOBSTER dummy prices replaced by a ladder one tick beyond the last quoted level.

    An empty best level takes the opposite best price ± one tick; a row with both sides empty keeps NaN
    prices (they become 0, the training mean, after normalisation). Sizes of empty levels stay 0.
    """
    levels = book.shape[1] // 4
    out = book.astype(np.float64)
    ask = out[:, 0::4]
    bid = out[:, 2::4]
    ask[book[:, 0::4] >= LOBSTER_DUMMY_ASK] = np.nan
    bid[book[:, 2::4] <= LOBSTER_DUMMY_BID] = np.nan
    best_ask, best_bid = ask[:, 0].copy(), bid[:, 0].copy()
    ask[:, 0] = np.where(np.isnan(best_ask), best_bid + tick, best_ask)
    bid[:, 0] = np.where(np.isnan(best_bid), best_ask - tick, best_bid)
    for j in range(1, levels):
        ask[:, j] = np.where(np.isnan(ask[:, j]), ask[:, j - 1] + tick, ask[:, j])
        bid[:, j] = np.where(np.isnan(bid[:, j]), bid[:, j - 1] - tick, bid[:, j])
    out[:, 0::4], out[:, 2::4] = ask, bid
    return out


def _order_features(day: LobsterDay, kept: np.ndarray, tick: int) -> np.ndarray:
    """Raw order features ``(n, 8)`` of the kept events (see :data:`ORDER_FEATURES`).

    Prices are compared with the book BEFORE the event (the previous orderbook row); the first event of
    the file has no such book and gets 0 for its relative price and depth.
    """
    book = day.book
    ask = np.where(book[:, 0] >= LOBSTER_DUMMY_ASK, np.nan, book[:, 0].astype(np.float64))
    bid = np.where(book[:, 2] <= LOBSTER_DUMMY_BID, np.nan, book[:, 2].astype(np.float64))
    ask_before = np.concatenate([[np.nan], ask[:-1]])[kept]
    bid_before = np.concatenate([[np.nan], bid[:-1]])[kept]
    price = day.price[kept].astype(np.float64)
    direction = day.direction[kept].astype(np.float64)
    event_type = day.event_type[kept]
    times = day.time[kept]
    gap = np.diff(times, prepend=times[:1]) if len(times) else times
    rel_mid = (price - (ask_before + bid_before) / 2.0) / tick
    depth = np.where(direction > 0, bid_before - price, price - ask_before) / tick
    return np.column_stack(
        [
            np.log1p(np.maximum(gap, 0.0)),
            event_type == 1,
            (event_type == 2) | (event_type == 3),
            (event_type == 4) | (event_type == 5),
            day.size[kept].astype(np.float64),
            np.nan_to_num(rel_mid, nan=0.0),
            direction,
            np.nan_to_num(depth, nan=0.0),
        ]
    ).astype(np.float64)


def _day_events(day: LobsterDay, keep: list[int], tick: int, order_features: bool) -> _DayEvents:
    """Keep the chosen event types of a day (never halts) and compute its raw features and mid-prices."""
    kept = np.flatnonzero(np.isin(day.event_type, keep) & (day.event_type != HALT_EVENT))
    book = _fill_empty_levels(day.book[kept], tick)
    parts = [book, _order_features(day, kept, tick)] if order_features else [book]
    has_mid = ((day.book[:, 0] < LOBSTER_DUMMY_ASK) & (day.book[:, 2] > LOBSTER_DUMMY_BID)).any()
    mid = mid_price(day.book)[kept] if has_mid else np.full(len(kept), np.nan)
    return _DayEvents(
        info=day.info,
        message_path=day.message_path,
        time=day.time[kept],
        row=kept.astype(np.int64),
        features=np.concatenate(parts, axis=1),
        mid=mid,
        spread_over_mid=relative_spread(day.book)[kept],
    )


@dataclass
class _SplitEvents:
    """Concatenated segments of one split: raw features, smoothed returns and bookkeeping per event."""

    features: np.ndarray  # (n, F) raw
    returns: np.ndarray  # (n, H) smoothed returns l (NaN where undefined)
    spread_over_mid: np.ndarray
    time: np.ndarray
    day: np.ndarray
    row: np.ndarray
    bounds: list[tuple[int, int]]  # (offset, length) of each segment


def _zscore_stats(values: np.ndarray) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0, 1.0
    std = float(finite.std())
    return float(finite.mean()), std if std > 1e-12 else 1.0


class LOBSTERDataModule(LOBDataModule):
    """LOBSTER message/orderbook files → windows of per-event order-book features and trend labels.

    Give either explicit per-split files (``train_files``, ``val_files``, ``test_files``, optionally
    ``predict_files``) or ``files`` plus a ``split`` of fractions: the kept events of all files, sorted by
    date and start time, are cut in time order. Only message files are listed; each orderbook file is
    found by replacing ``_message_`` with ``_orderbook_``. Input files are only read.

    Per kept event the features are the ``4 * levels`` book columns (ask price 1, ask size 1, bid price 1,
    bid size 1, ask price 2, ...), prices z-scored with one mean/std pooled over all price columns and
    sizes with one pooled over all size columns; empty levels (LOBSTER dummy prices) take the price one tick
    beyond the last quoted level of their side (an empty side: the opposite best ± one tick) and size 0.
    With ``order_features`` 8 columns follow: log1p of the seconds since the previous kept event, a
    one-hot of the event type (submission 1, cancellation 2/3, execution 4/5), the order size, its price
    relative to the mid in ticks, its direction (+1 buy, -1 sell) and its depth (ticks behind the best
    price of its side, negative inside the spread), both against the book before the event. The time
    gap, size, relative price and depth are z-scored per column; the one-hot and the direction are not.
    All statistics come from the training split only.

    Labels are computed within each day and split (a window's label never looks across a boundary):
    ``tlob`` (horizon-bias free, Berti & Kasneci 2025) or ``classic`` smoothed returns, thresholded at α
    per horizon, which is estimated on the training split and then applied to validation, test and
    prediction (the official TLOB code estimates it on each split). Training/validation/test windows whose
    label is undefined at any horizon (the last events of a segment) are dropped; prediction windows are
    kept with label -1.

    Batches: ``x`` (B, seq_len, num_features) float32, ``y`` (B, len(horizons)) int64, ``time`` seconds
    after midnight, ``index`` the event's 0-based row in its message file, ``day`` the index of its file
    in the split's file list (for ``files``: in the sorted ``files``).

    Args:
        train_files: Message files of the training split.
        val_files: Message files of the validation split.
        test_files: Message files of the test split.
        predict_files: Message files to predict; default: the test split.
        files: Message files to cut into train/val/test by ``split`` (instead of the per-split lists).
        split: Train/val/test fractions of the events of ``files``, in time order; they sum to 1.
        levels: Book levels per side; default: from the file names (all files must agree).
        keep_event_types: LOBSTER event types fed to the model (TLOB keeps submissions 1, deletions 3 and
            visible executions 4). Halts (7) are always dropped.
        order_features: Append the 8 order features to the book columns.
        tick_size: Tick size in LOBSTER price units (100 = $0.01).
        label_method: ``tlob`` (smoothed over ``min(smoothing, h)`` events on both sides) or ``classic``
            (the current mid against the mean of the next h mids; ``smoothing`` unused).
        threshold: ``half_mean_abs`` (α = mean |l| / 2) or ``spread`` (α = mean spread / mid), on the
            training split.
        smoothing: TLOB smoothing length k (``min(smoothing, h)`` is used).
        horizons: Prediction horizons in events.
        seq_len: Window length T in events.
        batch_size: Training batch size (TLOB: 128).
        eval_batch_size: Validation/test/prediction batch size; default ``4 * batch_size``.
        num_workers: DataLoader worker processes.
    """

    def __init__(
        self,
        train_files: list[str] | None = None,
        val_files: list[str] | None = None,
        test_files: list[str] | None = None,
        predict_files: list[str] | None = None,
        files: list[str] | None = None,
        split: tuple[float, float, float] = (0.8, 0.1, 0.1),
        levels: int | None = None,
        keep_event_types: list[int] = [1, 3, 4],  # noqa: B006 - copied, never mutated; shown by --help
        order_features: bool = True,
        tick_size: int = 100,
        label_method: Literal["tlob", "classic"] = "tlob",
        threshold: Literal["half_mean_abs", "spread"] = "half_mean_abs",
        smoothing: int = 10,
        horizons: list[int] = [10, 50, 100],  # noqa: B006
        seq_len: int = 100,
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
    ) -> None:
        super().__init__(seq_len, horizons, batch_size, eval_batch_size, num_workers)
        self.save_hyperparameters()
        self.order_features = order_features
        self.keep_event_types = self._check_event_types(keep_event_types)
        if tick_size < 1 or smoothing < 1:
            raise ValueError(f"tick_size ({tick_size}) and smoothing ({smoothing}) must be >= 1")
        if label_method not in ("tlob", "classic") or threshold not in ("half_mean_abs", "spread"):
            raise ValueError(f"unknown label_method {label_method!r} or threshold {threshold!r}")
        self.tick_size = tick_size
        self.label_method = label_method
        self.threshold = threshold
        self.smoothing = smoothing
        self.split_files, self.fractions = self._resolve_files(
            train_files, val_files, test_files, predict_files, files, split
        )
        self._explicit_predict = predict_files is not None
        self.levels = self._resolve_levels(levels)
        self.alpha: list[float] | None = None
        self.normalization: dict[str, Any] | None = None
        self._days: dict[Path, _DayEvents] = {}
        self._events: dict[str, _SplitEvents | None] = {}

    # ------------------------------------------------------------------ configuration (no data read)

    @staticmethod
    def _check_event_types(keep: list[int]) -> list[int]:
        keep = sorted({int(t) for t in keep})
        if not keep or any(t < 1 or t > 6 for t in keep):
            raise ValueError(
                f"keep_event_types must be a non-empty subset of LOBSTER types 1..6, got {keep} "
                "(halts, type 7, are never fed to the model)"
            )
        return keep

    @staticmethod
    def _resolve_files(
        train: list[str] | None,
        val: list[str] | None,
        test: list[str] | None,
        predict: list[str] | None,
        files: list[str] | None,
        split: tuple[float, float, float],
    ) -> tuple[dict[str, list[Path]], tuple[float, float, float] | None]:
        explicit = any(x is not None for x in (train, val, test))
        if files is not None and explicit:
            raise ValueError("give either files (+ split) or train_files/val_files/test_files, not both")
        if files is None and not train:
            raise ValueError(
                "LOBSTERDataModule needs training data: pass train_files (and val_files/test_files) or files "
                "(+ split); normalisation statistics and label thresholds come from the training split"
            )
        if files is not None:
            if not files:
                raise ValueError("files is empty")
            fractions = tuple(float(f) for f in split)
            if (
                len(fractions) != 3
                or min(fractions) < 0
                or fractions[0] <= 0
                or abs(sum(fractions) - 1) > 1e-6
            ):
                raise ValueError(
                    f"split must be 3 non-negative fractions (train > 0) summing to 1, got {split}"
                )
            ordered = sorted((Path(f) for f in files), key=lambda p: _sort_key(parse_lobster_filename(p)))
            out = {name: list(ordered) for name in ("train", "val", "test")}
            out["predict"] = [Path(f) for f in predict] if predict is not None else list(ordered)
            return out, fractions  # type: ignore[return-value]
        out = {
            "train": [Path(f) for f in train or []],
            "val": [Path(f) for f in val or []],
            "test": [Path(f) for f in test or []],
        }
        out["predict"] = [Path(f) for f in predict] if predict is not None else list(out["test"])
        return out, None

    def _resolve_levels(self, levels: int | None) -> int:
        infos = {path: parse_lobster_filename(path) for paths in self.split_files.values() for path in paths}
        for path, info in infos.items():
            if info.kind != "message":
                raise ValueError(
                    f"{path}: list message files (…_message_LEVEL.csv); the orderbook file is derived"
                )
        found = sorted({info.levels for info in infos.values()})
        if levels is not None:
            if levels < 1:
                raise ValueError(f"levels must be >= 1, got {levels}")
            wrong = [str(p) for p, info in infos.items() if info.levels != levels]
            if wrong:
                raise ValueError(f"levels={levels} but these files have another LEVEL in their name: {wrong}")
            return levels
        if len(found) != 1:
            raise ValueError(f"the files disagree on the number of levels ({found}); use files of one depth")
        return found[0]

    @property
    def num_lob_features(self) -> int:
        """Order-book columns: 4 per level (ask price, ask size, bid price, bid size)."""
        return 4 * self.levels

    @property
    def num_features(self) -> int:
        """``4 * levels``, plus 8 order features when ``order_features``."""
        return self.num_lob_features + (len(ORDER_FEATURES) if self.order_features else 0)

    def has_split(self, split: Split) -> bool:
        """Whether files are configured for ``split`` (for ``files``, whether its fraction is positive)."""
        if self.fractions is not None and split in ("train", "val", "test"):
            return self.fractions[("train", "val", "test").index(split)] > 0
        return bool(self.split_files[split])

    @property
    def predict_dates(self) -> list[dt.date] | None:
        """Trading date of each ``day`` index of the prediction split."""
        return [parse_lobster_filename(p).date for p in self.split_files["predict"]]

    def input_paths(self) -> list[str]:
        """Every configured message and orderbook file."""
        paths: list[str] = []
        for path in dict.fromkeys(p for files in self.split_files.values() for p in files):
            paths += [str(path), str(path.with_name(path.name.replace("_message_", "_orderbook_")))]
        return paths

    # ------------------------------------------------------------------ setup

    def setup(self, stage: str | None = None) -> None:
        """Read the files, fit normalisation and thresholds on the training split, build the stage's splits.

        Args:
            stage: ``fit``, ``validate``, ``test``, ``predict`` or None (every configured split).

        Raises:
            ValueError: If a split holds fewer events than ``seq_len``, or no complete window.
        """
        if self.normalization is None:
            self._fit_train_statistics()
        for split in STAGE_SPLITS.get(stage, SPLITS):
            if split in self.datasets:
                continue
            events = self._split_events(split)
            if events is not None:
                self.datasets[split] = self._build_dataset(split, events)
        rank_zero_info(self.describe())

    def _load_day(self, path: Path) -> _DayEvents:
        if path not in self._days:
            self._days[path] = _day_events(
                read_lobster(path), self.keep_event_types, self.tick_size, self.order_features
            )
        return self._days[path]

    def _segments(self, split: str) -> list[_Segment]:
        files = self.split_files[split]
        if self.fractions is None or (split == "predict" and self._explicit_predict):
            return [_Segment(d, p, 0, len(self._load_day(p))) for d, p in enumerate(files)]
        name = "test" if split == "predict" else split
        lengths = [len(self._load_day(p)) for p in files]
        total = sum(lengths)
        cuts = np.round(np.cumsum((0.0, *self.fractions)) * total).astype(int)
        lo, hi = {"train": (cuts[0], cuts[1]), "val": (cuts[1], cuts[2]), "test": (cuts[2], total)}[name]
        segments, offset = [], 0
        for d, (path, n) in enumerate(zip(files, lengths, strict=True)):
            start, stop = max(lo - offset, 0), min(hi - offset, n)
            if start < stop:
                segments.append(_Segment(d, path, start, stop))
            offset += n
        return segments

    def _split_events(self, split: str) -> _SplitEvents | None:
        if split in self._events:
            return self._events[split]
        segments = self._segments(split)
        if not segments:
            self._events[split] = None
            return None
        method = self.label_method
        smoothing = self.smoothing if method == "tlob" else None
        parts: dict[str, list[np.ndarray]] = {
            k: [] for k in ("features", "returns", "spread", "time", "day", "row")
        }
        bounds, offset = [], 0
        for seg in segments:
            day, window = self._load_day(seg.path), slice(seg.start, seg.stop)
            mid = day.mid[window]
            parts["returns"].append(
                np.stack([smoothed_returns(mid, h, smoothing, method) for h in self._horizons], axis=1)
            )
            parts["features"].append(day.features[window])
            parts["spread"].append(day.spread_over_mid[window])
            parts["time"].append(day.time[window])
            parts["row"].append(day.row[window])
            parts["day"].append(np.full(seg.stop - seg.start, seg.day, dtype=np.int64))
            bounds.append((offset, seg.stop - seg.start))
            offset += seg.stop - seg.start
        events = _SplitEvents(
            features=np.concatenate(parts["features"]),
            returns=np.concatenate(parts["returns"]),
            spread_over_mid=np.concatenate(parts["spread"]),
            time=np.concatenate(parts["time"]),
            day=np.concatenate(parts["day"]),
            row=np.concatenate(parts["row"]),
            bounds=bounds,
        )
        self._check_length(split, events)
        self._events[split] = events
        return events

    def _check_length(self, split: str, events: _SplitEvents) -> None:
        n = len(events.time)
        if n < self.seq_len:
            raise ValueError(
                f"the {split} split has {n} events (after keeping types {self.keep_event_types}), fewer than "
                f"seq_len={self.seq_len}: a window cannot be longer than the data of a split; lower seq_len "
                "or give the split more data"
            )

    def _fit_train_statistics(self) -> None:
        """Normalisation statistics and label thresholds, from the training split only."""
        train = self._split_events("train")
        if train is None:
            raise ValueError("the training split is empty")
        lob = train.features[:, : self.num_lob_features]
        price_mean, price_std = _zscore_stats(lob[:, 0::2])
        size_mean, size_std = _zscore_stats(lob[:, 1::2])
        stats: dict[str, Any] = {
            "price_mean": price_mean,
            "price_std": price_std,
            "size_mean": size_mean,
            "size_std": size_std,
        }
        if self.order_features:
            order = train.features[:, self.num_lob_features :]
            pairs = [_zscore_stats(order[:, j]) for j in _ZSCORED_ORDER_COLUMNS]
            stats["order_columns"] = [ORDER_FEATURES[j] for j in _ZSCORED_ORDER_COLUMNS]
            stats["order_mean"] = [m for m, _ in pairs]
            stats["order_std"] = [s for _, s in pairs]
        self.normalization = stats
        spread = train.spread_over_mid if self.threshold == "spread" else None
        self.alpha = [
            threshold_from_train(train.returns[:, k], self.threshold, spread)
            for k in range(len(self._horizons))
        ]

    def _format_stats(self) -> str:
        def fmt(value: Any) -> str:
            if isinstance(value, float):
                return f"{value:.6g}"
            if isinstance(value, list):
                return "[" + ", ".join(fmt(v) for v in value) + "]"
            return str(value)

        return ", ".join(f"{key}={fmt(value)}" for key, value in (self.normalization or {}).items())

    def _normalise(self, raw: np.ndarray) -> np.ndarray:
        stats = self.normalization
        assert stats is not None
        out = raw.copy()
        lob = out[:, : self.num_lob_features]
        lob[:, 0::2] = (lob[:, 0::2] - stats["price_mean"]) / stats["price_std"]
        lob[:, 1::2] = (lob[:, 1::2] - stats["size_mean"]) / stats["size_std"]
        if self.order_features:
            for j, mean, std in zip(
                _ZSCORED_ORDER_COLUMNS, stats["order_mean"], stats["order_std"], strict=True
            ):
                column = self.num_lob_features + j
                out[:, column] = (out[:, column] - mean) / std
        return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)

    def _build_dataset(self, split: str, events: _SplitEvents) -> LOBWindowDataset:
        assert self.alpha is not None
        labels = np.stack([classify(events.returns[:, k], a) for k, a in enumerate(self.alpha)], axis=1)
        ends = []
        for offset, length in events.bounds:
            local = np.arange(offset + self.seq_len - 1, offset + length)
            if split != "predict":
                local = local[(labels[local] != UNDEFINED).all(axis=1)]
            if length < self.seq_len:
                rank_zero_warn(
                    f"{split}: a segment of {length} events is shorter than seq_len={self.seq_len}"
                )
            ends.append(local)
        ends_all = np.concatenate(ends)
        if len(ends_all) == 0:
            raise ValueError(
                f"the {split} split has {len(events.time)} events but no complete window: "
                f"seq_len={self.seq_len} plus the largest horizon {max(self._horizons)} do not fit in any of "
                "its days"
            )
        return LOBWindowDataset(
            features=torch.from_numpy(self._normalise(events.features).astype(np.float32)),
            labels=torch.from_numpy(labels),
            times=events.time,
            ends=ends_all,
            seq_len=self.seq_len,
            days=events.day,
            event_index=events.row,
            name=split,
        )

    # ------------------------------------------------------------------ checkpoint state and summaries

    def state_dict(self) -> dict[str, Any]:
        """Training-split statistics saved into checkpoints (for the record and a consistency check).

        Returns:
            ``{"normalization": ..., "alpha": [...]}`` (empty before ``setup``).
        """
        if self.normalization is None:
            return {}
        return {"normalization": dict(self.normalization), "alpha": list(self.alpha or [])}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Warn when a checkpoint's training statistics differ from those of the configured data.

        Args:
            state_dict: What :meth:`state_dict` returned when the checkpoint was saved.
        """
        if not state_dict or self.normalization is None:
            return
        saved_alpha, alpha = state_dict.get("alpha") or [], self.alpha or []
        same = len(saved_alpha) == len(alpha) and np.allclose(saved_alpha, alpha, rtol=1e-6)
        for key, value in state_dict.get("normalization", {}).items():
            current = self.normalization.get(key)
            if key != "order_columns" and (current is None or not np.allclose(value, current, rtol=1e-6)):
                same = False
        if not same:
            rank_zero_warn(
                "the checkpoint was trained with other training-split statistics (normalisation or α) than "
                "this data gives: the training files differ from the run that saved it"
            )

    def describe(self) -> str:
        """Summary: files, sizes, normalisation, α per horizon, and per split windows and label shares.

        Returns:
            The summary text (also logged by ``setup``).
        """
        lines = [super().describe()]
        if self.fractions is not None:
            files = len(self.split_files["train"])
            lines.append(f"  split fractions (time order over {files} files): {self.fractions}")
        if self.normalization is not None:
            lines.append(f"  normalisation (train): {self._format_stats()}")
            alphas = ", ".join(
                f"h={h}: {a:.3g}" for h, a in zip(self._horizons, self.alpha or [], strict=True)
            )
            lines.append(f"  α ({self.threshold}, train, {self.label_method} labels): {alphas}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f", levels={self.levels}, label_method={self.label_method!r})"


def _sort_key(info: LobsterFileInfo) -> tuple[dt.date, int, str]:
    return info.date, info.start_ms, info.ticker


# --------------------------------------------------------------------------------------------- FI-2010


class FI2010DataModule(LOBDataModule):
    """The FI-2010 benchmark (Ntakaris et al. 2018) with the TLOB paper's protocol.

    FI-2010 is not shipped with attnlab (no copy is in the repository). Download it from Fairdata
    (https://etsin.fairdata.fi/dataset/73eb48d7-4dbc-4a10-a52a-da745b47a649, "BenchmarkDatasets.zip",
    CC BY 4.0) or take the zips shipped in the TLOB repository (``LeonardoBerti00/TLOB``, ``data/FI_2010``),
    and unzip the ``NoAuction/1.NoAuction_Zscore`` text files into ``root``.

    Each file holds 149 whitespace-separated rows × N samples: 144 features (rows 0-39 are 10 levels × ask
    price, ask volume, bid price, bid volume), then labels for horizons 10, 20, 30, 50, 100 events, which are
    mapped from {1 up, 2 stationary, 3 down} to {0, 1, 2}. The data is already z-scored; no further
    normalisation is applied. Train = the first ``1 - val_fraction`` of ``train_file`` in time, val = the
    rest; test = ``test_files``, one day each. Windows never span two files nor the train/val boundary.

    Batches: ``x`` (B, seq_len, num_features) float32, ``y`` (B, len(horizons)) int64, ``time`` NaN
    (FI-2010 has no timestamps), ``index`` the sample column in its file, ``day`` the file index in the
    split's file list.

    Args:
        root: Folder holding the FI-2010 text files.
        train_file: Training file (train and validation splits), relative to ``root``.
        test_files: Test files (days), relative to ``root``.
        predict_files: Files to predict; default: ``test_files``.
        val_fraction: Share of ``train_file`` (its end, in time) used for validation, in (0, 1).
        features: ``all`` (144 features, TLOB/MLPLOB) or ``lob`` (the first 40: raw book, DeepLOB).
        horizons: Label horizons in events, a subset of 10, 20, 30, 50, 100.
        seq_len: Window length T (TLOB: 128, DeepLOB: 100).
        batch_size: Training batch size (TLOB: 32).
        eval_batch_size: Validation/test/prediction batch size; default ``4 * batch_size``.
        num_workers: DataLoader worker processes.
    """

    def __init__(
        self,
        root: str,
        train_file: str = "Train_Dst_NoAuction_ZScore_CF_7.txt",
        test_files: list[str] = [  # noqa: B006 - copied, never mutated; shown by --help
            "Test_Dst_NoAuction_ZScore_CF_7.txt",
            "Test_Dst_NoAuction_ZScore_CF_8.txt",
            "Test_Dst_NoAuction_ZScore_CF_9.txt",
        ],
        predict_files: list[str] | None = None,
        val_fraction: float = 0.2,
        features: Literal["all", "lob"] = "all",
        horizons: list[int] = [10, 20, 50, 100],  # noqa: B006
        seq_len: int = 128,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
    ) -> None:
        super().__init__(seq_len, horizons, batch_size, eval_batch_size, num_workers)
        self.save_hyperparameters()
        unknown = [h for h in horizons if h not in FI2010_HORIZONS]
        if unknown:
            raise ValueError(f"FI-2010 has labels for horizons {FI2010_HORIZONS} only; got {unknown}")
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        if features not in ("all", "lob"):
            raise ValueError(f"features must be 'all' or 'lob', got {features!r}")
        self.root = Path(root)
        self.train_path = self.root / train_file
        self.test_paths = [self.root / f for f in test_files]
        self.predict_paths = (
            [self.root / f for f in predict_files] if predict_files is not None else self.test_paths
        )
        self.val_fraction = val_fraction
        self.features = features
        self._label_rows = [FI2010_NUM_FEATURES + FI2010_HORIZONS.index(h) for h in self._horizons]
        self._files: dict[Path, np.ndarray] = {}

    @property
    def num_lob_features(self) -> int:
        """The 40 raw order-book columns (10 levels × 4)."""
        return 40

    @property
    def num_features(self) -> int:
        """144 (``all``) or 40 (``lob``)."""
        return FI2010_NUM_FEATURES if self.features == "all" else self.num_lob_features

    def input_paths(self) -> list[str]:
        """The configured FI-2010 files."""
        return [str(p) for p in dict.fromkeys([self.train_path, *self.test_paths, *self.predict_paths])]

    def setup(self, stage: str | None = None) -> None:
        """Read the files and build the windows of the stage's splits.

        Args:
            stage: ``fit``, ``validate``, ``test``, ``predict`` or None (every split).

        Raises:
            FileNotFoundError: If a file is missing (the message names it).
            ValueError: If a split holds fewer samples than ``seq_len``.
        """
        for split in STAGE_SPLITS.get(stage, SPLITS):
            if split not in self.datasets:
                self.datasets[split] = self._build(split)
        rank_zero_info(self.describe())

    def _read(self, path: Path) -> np.ndarray:
        if path not in self._files:
            self._files[path] = read_fi2010(path)
        return self._files[path]

    def _pieces(self, split: str) -> list[tuple[int, np.ndarray, np.ndarray]]:
        """``(day, data, sample_index)`` pieces of a split; each piece is windowed separately."""
        if split in ("train", "val"):
            data = self._read(self.train_path)
            n = data.shape[1]
            cut = int(np.floor(n * (1.0 - self.val_fraction)))
            part = slice(0, cut) if split == "train" else slice(cut, n)
            return [(0, data[:, part], np.arange(n)[part])]
        paths = self.test_paths if split == "test" else self.predict_paths
        return [(d, self._read(p), np.arange(self._read(p).shape[1])) for d, p in enumerate(paths)]

    def _build(self, split: str) -> LOBWindowDataset:
        pieces = self._pieces(split)
        total = sum(data.shape[1] for _, data, _ in pieces)
        if total < self.seq_len:
            raise ValueError(
                f"the FI-2010 {split} split has {total} samples, fewer than seq_len={self.seq_len}: a window "
                "cannot be longer than the data of a split"
            )
        features, labels, days, index, ends, offset = [], [], [], [], [], 0
        for day, data, samples in pieces:
            n = data.shape[1]
            features.append(data[: self.num_features].T)
            labels.append(data[self._label_rows].T.astype(np.int64) - 1)
            days.append(np.full(n, day, dtype=np.int64))
            index.append(samples)
            if n < self.seq_len:
                rank_zero_warn(
                    f"FI-2010 {split}: file {day} has {n} samples, fewer than seq_len={self.seq_len}"
                )
            ends.append(np.arange(offset + self.seq_len - 1, offset + n))
            offset += n
        return LOBWindowDataset(
            features=torch.from_numpy(np.concatenate(features).astype(np.float32)),
            labels=torch.from_numpy(np.concatenate(labels)),
            times=np.full(offset, np.nan),
            ends=np.concatenate(ends),
            seq_len=self.seq_len,
            days=np.concatenate(days),
            event_index=np.concatenate(index),
            name=split,
        )

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f", root={str(self.root)!r}, features={self.features!r})"
