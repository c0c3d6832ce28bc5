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
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch.utils.data import DataLoader

from domains.finance.features import (
    ORDER_FEATURES,
    DayEvents,
    Segment,
    SplitEvents,
    day_events,
    normalise,
    normalization_stats,
)
from domains.finance.labels import CLASS_NAMES, UNDEFINED, classify, smoothed_returns, threshold_from_train
from domains.finance.readers import (
    FI2010_HORIZONS,
    FI2010_NUM_FEATURES,
    LobsterFileInfo,
    orderbook_file_for,
    parse_lobster_filename,
    read_fi2010,
    read_lobster,
)
from domains.finance.readers import HALT_EVENT as HALT_EVENT  # kept importable from here
from domains.finance.windows import LOBWindowDataset, segment_window_ends

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
        self._days: dict[Path, DayEvents] = {}
        self._events: dict[str, SplitEvents | None] = {}

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
            paths += [str(path), str(orderbook_file_for(path))]
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

    def _load_day(self, path: Path) -> DayEvents:
        if path not in self._days:
            self._days[path] = day_events(
                read_lobster(path), self.keep_event_types, self.tick_size, self.order_features
            )
        return self._days[path]

    def _segments(self, split: str) -> list[Segment]:
        files = self.split_files[split]
        if self.fractions is None or (split == "predict" and self._explicit_predict):
            return [Segment(d, p, 0, len(self._load_day(p))) for d, p in enumerate(files)]
        name = "test" if split == "predict" else split
        lengths = [len(self._load_day(p)) for p in files]
        total = sum(lengths)
        cuts = np.round(np.cumsum((0.0, *self.fractions)) * total).astype(int)
        lo, hi = {"train": (cuts[0], cuts[1]), "val": (cuts[1], cuts[2]), "test": (cuts[2], total)}[name]
        segments, offset = [], 0
        for d, (path, n) in enumerate(zip(files, lengths, strict=True)):
            start, stop = max(lo - offset, 0), min(hi - offset, n)
            if start < stop:
                segments.append(Segment(d, path, start, stop))
            offset += n
        return segments

    def _split_events(self, split: str) -> SplitEvents | None:
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
        events = SplitEvents(
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

    def _check_length(self, split: str, events: SplitEvents) -> None:
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
        self.normalization = normalization_stats(train.features, self.num_lob_features, self.order_features)
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

    def _build_dataset(self, split: str, events: SplitEvents) -> LOBWindowDataset:
        assert self.alpha is not None and self.normalization is not None
        labels = np.stack([classify(events.returns[:, k], a) for k, a in enumerate(self.alpha)], axis=1)
        ends = []
        for offset, length in events.bounds:
            local = segment_window_ends(offset, length, self.seq_len, f"a {split} segment")
            if split != "predict":
                local = local[(labels[local] != UNDEFINED).all(axis=1)]
            ends.append(local)
        ends_all = np.concatenate(ends)
        if len(ends_all) == 0:
            raise ValueError(
                f"the {split} split has {len(events.time)} events but no complete window: "
                f"seq_len={self.seq_len} plus the largest horizon {max(self._horizons)} do not fit in any of "
                "its days"
            )
        features = normalise(events.features, self.normalization, self.num_lob_features, self.order_features)
        return LOBWindowDataset(
            features=torch.from_numpy(features.astype(np.float32)),
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
            ends.append(segment_window_ends(offset, n, self.seq_len, f"FI-2010 {split} file {day}"))
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
