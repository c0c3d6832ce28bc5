"""LightningDataModules for mid-price trend classification from limit order books.

* :class:`LOBSTERDataModule` reads LOBSTER message/orderbook files (real or simulated by
  ``data/finance/simulate_lob.py``), builds per-event features and TLOB or classic labels.
* :class:`~domains.finance.fi2010.FI2010DataModule` reads the FI-2010 benchmark text files.

Both yield batches of windows ``{"x": (B, T, F) float32, "y": (B, H) int64, "time": (B,) float64,
"index": (B,) int64, "day": (B,) int64}``; class ids are 0 up, 1 stationary, 2 down (-1 undefined, only in
prediction windows whose future lies beyond the data). Windows never span two files (days) or two
splits. Everything that is estimated from data (normalisation statistics, label thresholds) comes from
the training split only.
"""

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from core.data import BaseDataModule, Split
from core.utils import InputError
from domains.finance.features import (
    ORDER_FEATURES,
    DayEvents,
    FeatureLayout,
    Normalization,
    PriceFeatures,
    SizeFeatures,
    day_events,
    normalise,
    normalization_stats,
    previous_days_normalise,
    rolling_normalise,
)
from domains.finance.labels import CLASS_NAMES, UNDEFINED, classify, threshold_from_train
from domains.finance.readers import orderbook_file_for, parse_lobster_filename, read_lobster
from domains.finance.splits import (
    SPLIT_NAMES,
    Segment,
    SplitEvents,
    SplitOverlapWarning,
    fraction_segments,
    resolve_levels,
    resolve_split_files,
    shared_split_files,
    split_events,
)
from domains.finance.windows import LOBWindowDataset, segment_window_ends

__all__ = ["ORDER_FEATURES", "LOBDataModule", "LOBSTERDataModule", "LOBWindowDataset"]


class LOBDataModule(BaseDataModule):
    """Base of the order-book datamodules: window length, horizons, the sizes the task needs, summaries.

    Subclasses build :class:`LOBWindowDataset` splits. The sizes the networks need (``num_features``,
    ``num_lob_features``, ``seq_len``, ``horizons``, ``num_classes``) are known right after ``__init__``,
    without reading data.

    Args:
        seq_len: Window length T in events.
        horizons: Prediction horizons in events, one label column each.
        batch_size: Training batch size.
        eval_batch_size: Batch size of validation, test and prediction; default ``4 * batch_size`` (TLOB).
        num_workers: DataLoader worker processes.
    """

    links: ClassVar[dict[str, str]] = {
        name: name for name in ("num_features", "num_lob_features", "seq_len", "horizons", "num_classes")
    }
    sample_name = "windows"
    class_names: tuple[str, ...] = CLASS_NAMES

    def __init__(
        self,
        seq_len: int,
        horizons: list[int],
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
    ) -> None:
        super().__init__(
            batch_size, 4 * batch_size if eval_batch_size is None else eval_batch_size, num_workers
        )
        if seq_len < 1:
            raise InputError(f"seq_len must be >= 1, got {seq_len}")
        if not horizons or any(h < 1 for h in horizons) or len(set(horizons)) != len(horizons):
            raise InputError(f"horizons must be distinct positive event counts, got {horizons}")
        self._seq_len = int(seq_len)
        self._horizons = [int(h) for h in horizons]

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

    def setup(self, stage: str | None = None) -> None:
        """Build the stage's windows, then log the label shares of every split."""
        super().setup(stage)
        rank_zero_info(self.describe())

    def describe(self) -> str:
        """Multi-line summary: sizes, then per split the windows and label distribution per horizon."""
        lines = [repr(self)]
        for split, dataset in self.datasets.items():
            if dataset is None:
                continue
            assert isinstance(dataset, LOBWindowDataset)
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


class LOBSTERDataModule(LOBDataModule):
    """LOBSTER message/orderbook files → windows of per-event order-book features and trend labels.

    Give either explicit per-split files (``train_files``, ``val_files``, ``test_files``, optionally
    ``predict_files``) or ``files`` plus a ``split`` of fractions: the kept events of all files, sorted by
    date and start time, are cut in time order. Only message files are listed; each orderbook file is
    found by replacing ``_message_`` with ``_orderbook_``. Input files are only read.

    Per kept event the features are the ``4 * levels`` book columns (ask price 1, ask size 1, bid price 1,
    bid size 1, ask price 2, ...); empty levels (LOBSTER dummy prices) take the price one tick beyond the
    last quoted level of their side (an empty side: the opposite best ± one tick) and size 0. With
    ``order_features`` 8 columns follow: log1p of the seconds since the previous kept event, a one-hot of
    the event type (submission 1, cancellation 2/3, execution 4/5), the order size, its price relative to
    the mid in ticks, its direction (+1 buy, -1 sell) and its depth (ticks behind the best price of its
    side, negative inside the spread), both against the book before the event. With ``handcrafted`` the
    microstructure columns of :func:`~domains.finance.features.handcrafted_features` follow (spread, queue
    and depth imbalance, order-flow imbalance and mid returns over each of ``lags``).

    Stationary inputs: raw prices drift through a session, so a model that learnt the training block's
    price level sees out-of-range inputs on a later block (DeepLOB and a linear model on raw prices
    collapse to one class there). ``price_features: mid`` expresses each quote in ticks from the mid after
    the same event, ``last_mid`` in ticks from the mid at the window's last event (the window keeps its
    price path, and its scale is the same on every day); ``sizes: log`` tames the heavy-tailed sizes.

    Normalisation z-scores prices with one mean/std pooled over all price columns, sizes likewise, and
    the time gap, order size, relative price, depth and every handcrafted column per column (the one-hot
    and the direction are left as they are). ``global``: statistics of the training block; ``rolling``:
    of the last ``rolling_events`` events of the same day up to the current one (never a later event:
    the statistics follow the level of the day); ``previous_days``: of the events of the ``rolling_days``
    previous trading days of the same ticker among all configured files (ordered by the date in the file
    names), as the original DeepLOB pipeline normalises each day with the previous days' statistics; the
    first ``rolling_days`` days have no such statistics, so they only supply them and give no windows (a
    split left with no day is an error); ``window``: of the window itself. Label thresholds always come
    from the training block only.

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
        split: Train/val/test fractions of the events of ``files``, in time order; they sum to 1. With
            ``folds`` > 1 they are the shares of each fold's block.
        folds: Walk-forward folds over ``files`` (:func:`~domains.finance.splits.walk_forward_bounds`):
            consecutive train/val/test blocks, each fold one test block later than the previous one, the
            test blocks disjoint. Evaluates on several later periods instead of one; 1 = a single cut.
        fold: Which fold (0-based) this run trains and tests on; run every ``fold`` in ``0..folds-1``.
        anchored: Walk-forward training blocks all start at the first event (growing with the fold)
            instead of sliding with it.
        levels: Book levels per side; default: from the file names (all files must agree).
        keep_event_types: LOBSTER event types fed to the model (TLOB keeps submissions 1, deletions 3 and
            visible executions 4). Halts (7) are always dropped.
        order_features: Append the 8 order features to the book columns.
        price_features: Book prices ``raw``, relative to each event's ``mid`` (ticks) or to the window's
            ``last_mid`` (ticks); the relative ones are stationary across sessions.
        sizes: Book and order sizes ``raw`` or ``log`` (``log1p``).
        handcrafted: Append the handcrafted microstructure features.
        lags: Lags (events) of the handcrafted order-flow imbalance and mid-return columns.
        normalization: ``global`` (training-block statistics), ``rolling`` (last ``rolling_events`` events
            up to the current one), ``previous_days`` (the events of the previous ``rolling_days`` days;
            the first ``rolling_days`` days give no windows) or ``window`` (each window on its own).
        rolling_events: Window length in events of the ``rolling`` statistics.
        rolling_days: Earlier trading days whose events give the ``previous_days`` statistics.
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
        folds: int = 1,
        fold: int = 0,
        anchored: bool = False,
        levels: int | None = None,
        keep_event_types: list[int] = [1, 3, 4],  # noqa: B006 - copied, never mutated; shown by --help
        order_features: bool = True,
        price_features: PriceFeatures = "raw",
        sizes: SizeFeatures = "raw",
        handcrafted: bool = False,
        lags: list[int] = [1, 10, 100],  # noqa: B006
        normalization: Normalization = "global",
        rolling_events: int = 1000,
        rolling_days: int = 1,
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
        keep = sorted({int(t) for t in keep_event_types})
        if not keep or any(t < 1 or t > 6 for t in keep):
            raise InputError(
                f"keep_event_types must be a non-empty subset of LOBSTER types 1..6, got {keep} "
                "(halts, type 7, are never fed to the model)"
            )
        if tick_size < 1 or smoothing < 1:
            raise InputError(f"tick_size ({tick_size}) and smoothing ({smoothing}) must be >= 1")
        if not lags or any(lag < 1 for lag in lags):
            raise InputError(f"lags must be positive event counts, got {lags}")
        if rolling_events < 1 or rolling_days < 1:
            raise InputError(
                f"rolling_events ({rolling_events}) and rolling_days ({rolling_days}) must be >= 1"
            )
        if folds < 1 or not 0 <= fold < folds:
            raise InputError(f"fold must be in 0..folds-1 with folds >= 1, got fold={fold}, folds={folds}")
        if folds > 1 and files is None:
            raise InputError("folds > 1 (walk-forward) cuts files (+ split): give files, not per-split lists")
        self.keep_event_types = keep
        self.order_features = order_features
        self.price_features = price_features
        self.sizes = sizes
        self.handcrafted = handcrafted
        self.lags = tuple(int(lag) for lag in lags)
        self.normalization_mode = normalization
        self.rolling_events = int(rolling_events)
        self.rolling_days = int(rolling_days)
        self.folds, self.fold, self.anchored = int(folds), int(fold), bool(anchored)
        self.tick_size = tick_size
        self.label_method = label_method
        self.threshold = threshold
        self.smoothing = smoothing
        self.split_files, self.fractions = resolve_split_files(
            train_files, val_files, test_files, predict_files, files, split
        )
        self._explicit_predict = predict_files is not None
        if self.fractions is None:
            for path, splits in shared_split_files(self.split_files).items():
                rank_zero_warn(
                    f"{path} is given as {' and '.join(splits)} data: the {splits[-1]} metrics are then "
                    "measured on events the model was trained or selected on (a leak); give each split its "
                    "own days",
                    category=SplitOverlapWarning,
                )
        self.levels = resolve_levels(self.split_files, levels)
        self.alpha: list[float] | None = None
        self.normalization: dict[str, Any] | None = None
        self._days: dict[Path, DayEvents] = {}
        self._raw_days: dict[Path, DayEvents] = {}
        self._earlier_days = self._previous_days() if normalization == "previous_days" else {}

    @property
    def layout(self) -> FeatureLayout:
        """Names and normalisation groups of the feature columns."""
        return FeatureLayout(self.levels, self.order_features, self.lags if self.handcrafted else None)

    @property
    def num_lob_features(self) -> int:
        """Order-book columns: 4 per level (ask price, ask size, bid price, bid size)."""
        return 4 * self.levels

    @property
    def num_features(self) -> int:
        """``4 * levels``, plus 8 order features, plus the handcrafted ones (``3 + 2 * len(lags)``)."""
        return self.layout.num_features

    @property
    def predict_dates(self) -> list[dt.date] | None:
        """Trading date of each ``day`` index of the prediction split."""
        return [parse_lobster_filename(p).date for p in self.split_files["predict"]]

    def input_paths(self) -> list[Path]:
        """Every configured message and orderbook file."""
        paths: list[Path] = []
        for path in dict.fromkeys(p for files in self.split_files.values() for p in files):
            paths += [path, orderbook_file_for(path)]
        return paths

    def build_dataset(self, split: Split) -> LOBWindowDataset | None:
        """The windows of ``split``; training statistics are fitted first, from the training split only.

        Raises:
            InputError: If a split holds fewer events than ``seq_len``, or no complete window.
        """
        if self.normalization is None:
            self._fit_train_statistics()
        events = self._split_events(split)
        return None if events is None else self._windows(split, events)

    def _previous_days(self) -> dict[Path, list[Path] | None]:
        """Per configured file, the files of the ``rolling_days`` previous dates of its ticker.

        ``None`` for a file with fewer earlier dates among the configured files: it only supplies
        statistics. Files are compared as resolved paths, so one day listed in two splits is one day.
        """
        by_path: dict[Path, Path] = {}
        for files in self.split_files.values():
            for path in files:
                by_path.setdefault(path.resolve(), path)
        infos = {key: parse_lobster_filename(path) for key, path in by_path.items()}
        out: dict[Path, list[Path] | None] = {}
        for key, info in infos.items():
            dates = sorted({i.date for i in infos.values() if i.ticker == info.ticker and i.date < info.date})
            wanted = set(dates[-self.rolling_days :])
            earlier = [
                by_path[k]
                for k, i in sorted(infos.items(), key=lambda item: (item[1].date, item[1].start_ms))
                if i.ticker == info.ticker and i.date in wanted
            ]
            out[key] = earlier if len(dates) >= self.rolling_days else None
        return out

    def _stats_only(self, path: Path) -> bool:
        """Whether ``path`` is among the first ``rolling_days`` days (``previous_days`` statistics only)."""
        return self.normalization_mode == "previous_days" and self._earlier_days[path.resolve()] is None

    def _raw_day(self, path: Path) -> DayEvents:
        if path not in self._raw_days:
            self._raw_days[path] = day_events(
                read_lobster(path),
                self.keep_event_types,
                self.tick_size,
                self.order_features,
                self.price_features,
                self.sizes,
                self.lags if self.handcrafted else None,
            )
        return self._raw_days[path]

    def _load_day(self, path: Path) -> DayEvents:
        """The kept events of a day, normalised already for ``rolling`` and ``previous_days``."""
        if path not in self._days:
            day = self._raw_day(path)
            if self.normalization_mode == "rolling":
                features, scale = rolling_normalise(day.features, self.layout, self.rolling_events)
                day = dataclasses.replace(day, features=features, price_scale=scale)
                del self._raw_days[path]  # only previous_days reads raw days again
            elif self.normalization_mode == "previous_days":
                earlier = self._earlier_days[path.resolve()]
                if earlier is None:
                    raise InputError(
                        f"{path}: normalization previous_days needs the {self.rolling_days} previous day(s) "
                        "of its ticker among the configured files; this day only supplies statistics"
                    )
                previous = [self._raw_day(p).features for p in earlier]
                features, scale = previous_days_normalise(day.features, previous, self.layout)
                day = dataclasses.replace(day, features=features, price_scale=scale)
            self._days[path] = day
        return self._days[path]

    def _segments(self, split: Split) -> list[Segment]:
        files = self.split_files[split]
        if self.fractions is None or (split == "predict" and self._explicit_predict):
            return [
                Segment(d, p, 0, len(self._load_day(p)))
                for d, p in enumerate(files)
                if not self._stats_only(p)
            ]
        # previous_days: the first days supply statistics only; the fractions cut the other days' events
        lengths = [0 if self._stats_only(p) else len(self._load_day(p)) for p in files]
        which = "test" if split == "predict" else split
        return fraction_segments(files, lengths, self.fractions, which, self.folds, self.fold, self.anchored)

    def _split_events(self, split: Split) -> SplitEvents | None:
        segments = self._segments(split)
        if not segments:
            files = self.split_files[split]
            if files and all(self._stats_only(p) for p in files):
                raise InputError(
                    f"the {SPLIT_NAMES.get(split, split)} split's days {[str(p) for p in files]} are all "
                    f"among the first {self.rolling_days} day(s) of their ticker: with normalization "
                    "previous_days they only supply statistics and give no windows; give the split later "
                    "days or lower rolling_days"
                )
            return None
        smoothing = self.smoothing if self.label_method == "tlob" else None
        events = split_events(segments, self._load_day, self._horizons, smoothing, self.label_method)
        if len(events.time) < self.seq_len:
            raise InputError(
                f"the {split} split has {len(events.time)} events (after keeping types "
                f"{self.keep_event_types}), fewer than seq_len={self.seq_len}: a window cannot be longer "
                "than the data of a split; lower seq_len or give the split more data"
            )
        return events

    def _fit_train_statistics(self) -> None:
        """Normalisation statistics and label thresholds, from the training split only."""
        train = self._split_events("train")
        if train is None:
            raise InputError("the training split is empty")
        self._check_horizons(train)
        if self.normalization_mode == "global":
            self.normalization = normalization_stats(train.features, self.layout)
        elif self.normalization_mode == "rolling":
            self.normalization = {"rolling_events": self.rolling_events}
        elif self.normalization_mode == "previous_days":
            self.normalization = {"rolling_days": self.rolling_days}
        else:
            self.normalization = {"window_events": self.seq_len}
        spread = train.spread_over_mid if self.threshold == "spread" else None
        self.alpha = [
            threshold_from_train(train.returns[:, k], self.threshold, spread)
            for k in range(len(self._horizons))
        ]

    def _check_horizons(self, train: SplitEvents) -> None:
        """Every horizon must fit in a training day: else no label, and so no threshold, can be computed."""
        longest = int(np.argmax([length for _, length in train.bounds]))
        offset, length = train.bounds[longest]
        for k, h in enumerate(self._horizons):
            need = h + (min(self.smoothing, h) if self.label_method == "tlob" else 1)
            if length < need and not np.isfinite(train.returns[:, k]).any():
                path = self.split_files["train"][int(train.day[offset])]
                raise InputError(
                    f"horizon {h} exceeds the events available: a {self.label_method} label at horizon {h} "
                    f"needs {need} events of one day, but the training split's longest day ({path}) has "
                    f"{length} (after keeping types {self.keep_event_types}); lower data.horizons or give "
                    "the training split longer days"
                )

    def _windows(self, split: Split, events: SplitEvents) -> LOBWindowDataset:
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
            raise InputError(
                f"the {split} split has {len(events.time)} events but no complete window: "
                f"seq_len={self.seq_len} plus the largest horizon {max(self._horizons)} do not fit in any of "
                "its days"
            )
        layout = self.layout
        if self.normalization_mode == "global":
            features = normalise(events.features, self.normalization, layout)
            scale = np.full(len(features), self.normalization["price_std"])
        else:  # rolling, previous_days: normalised per day when loaded; window: by the dataset
            features = np.nan_to_num(events.features, nan=0.0, posinf=0.0, neginf=0.0)
            scale = events.price_scale
        last_mid = None
        if self.price_features == "last_mid":
            last_mid = (events.mid / self.tick_size, scale, layout.price_columns)
        window_groups = [c for _, c in layout.groups()] if self.normalization_mode == "window" else None
        return LOBWindowDataset(
            features=torch.from_numpy(features.astype(np.float32)),
            labels=torch.from_numpy(labels),
            times=events.time,
            ends=ends_all,
            seq_len=self.seq_len,
            days=events.day,
            event_index=events.row,
            name=split,
            last_mid=last_mid,
            window_groups=window_groups,
        )

    def state_dict(self) -> dict[str, Any]:
        """Training-split statistics saved into checkpoints (for the record and a consistency check).

        Returns:
            The base's state (the training order's seed), plus ``{"normalization": ..., "alpha": [...]}``
            after ``setup``.
        """
        state = super().state_dict()
        if self.normalization is None:
            return state
        return {**state, "normalization": dict(self.normalization), "alpha": list(self.alpha or [])}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Warn when a checkpoint's training statistics differ from those of the configured data.

        Args:
            state_dict: What :meth:`state_dict` returned when the checkpoint was saved.
        """
        super().load_state_dict(state_dict)
        if "normalization" not in state_dict or self.normalization is None:
            return
        saved_alpha, alpha = state_dict.get("alpha") or [], self.alpha or []
        same = len(saved_alpha) == len(alpha) and np.allclose(saved_alpha, alpha, rtol=1e-6)
        for key, value in state_dict.get("normalization", {}).items():
            current = self.normalization.get(key)
            if key.endswith("_columns"):
                continue
            if current is None or not np.allclose(value, current, rtol=1e-6):
                same = False
        if not same:
            rank_zero_warn(
                "the checkpoint was trained with other training-split statistics (normalisation or α) than "
                "this data gives: the training files differ from the run that saved it"
            )

    def describe(self) -> str:
        """Summary: files, sizes, normalisation, α per horizon, and per split windows and label shares."""
        lines = [super().describe()]
        if self.fractions is not None:
            lines.append(
                f"  split fractions (time order over {len(self.split_files['train'])} files): "
                f"{self.fractions}"
                + (f", walk-forward fold {self.fold} of {self.folds}" if self.folds > 1 else "")
            )
        if self.normalization is not None:
            stats = ", ".join(f"{key}={_fmt(value)}" for key, value in self.normalization.items())
            lines.append(f"  normalisation (train): {stats}")
            first = [str(p) for p in self.input_paths()[::2] if self._stats_only(p)]
            if first:
                lines.append(f"  days that only supply previous_days statistics (no windows): {first}")
            alphas = ", ".join(
                f"h={h}: {a:.3g}" for h, a in zip(self._horizons, self.alpha or [], strict=True)
            )
            lines.append(f"  α ({self.threshold}, train, {self.label_method} labels): {alphas}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + (
            f", levels={self.levels}, label_method={self.label_method!r}, "
            f"price_features={self.price_features!r}, sizes={self.sizes!r}, handcrafted={self.handcrafted}, "
            f"normalization={self.normalization_mode!r})"
        )


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)
