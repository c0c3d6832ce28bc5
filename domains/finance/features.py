"""Per-event features of LOBSTER days and their normalisation.

* :func:`day_events` keeps the chosen event types of a :class:`~domains.finance.readers.LobsterDay` and
  computes its unnormalised features: the book (empty levels filled; prices raw or relative to the mid in
  ticks; sizes raw or log), optionally the :data:`ORDER_FEATURES` of each event and the handcrafted
  microstructure features (:func:`handcrafted_names`), plus the mid-price and relative spread.
* :class:`FeatureLayout` names the columns and the groups that share z-score statistics.
* ``global`` normalisation: :func:`normalization_stats` fits statistics on the training split and
  :func:`normalise` applies them; ``rolling``: :func:`rolling_normalise` uses the statistics of the last
  N events of the same day up to the current one (never later ones); ``previous_days``:
  :func:`previous_days_normalise` uses the statistics of the previous N days' events; ``window``
  normalisation is done per window by :class:`~domains.finance.windows.LOBWindowDataset`.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from domains.finance.labels import mid_price, relative_spread
from domains.finance.readers import (
    HALT_EVENT,
    LOBSTER_DUMMY_ASK,
    LOBSTER_DUMMY_BID,
    LobsterDay,
    LobsterFileInfo,
)

__all__ = [
    "HANDCRAFTED_BASE",
    "ORDER_FEATURES",
    "ZSCORED_ORDER_COLUMNS",
    "DayEvents",
    "FeatureLayout",
    "Normalization",
    "PriceFeatures",
    "SizeFeatures",
    "column_stats",
    "day_events",
    "handcrafted_features",
    "handcrafted_names",
    "normalise",
    "normalization_stats",
    "previous_days_normalise",
    "rolling_normalise",
]

PriceFeatures = Literal["raw", "mid", "last_mid"]
SizeFeatures = Literal["raw", "log"]
Normalization = Literal["global", "rolling", "previous_days", "window"]

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
ZSCORED_ORDER_COLUMNS = (0, 4, 5, 7)
HANDCRAFTED_BASE = ("spread", "queue_imbalance", "depth_imbalance")


def handcrafted_names(lags: tuple[int, ...] | list[int]) -> tuple[str, ...]:
    """Names of the handcrafted columns: spread, queue and depth imbalance, then OFI and return per lag."""
    return HANDCRAFTED_BASE + tuple(f"ofi_{lag}" for lag in lags) + tuple(f"return_{lag}" for lag in lags)


@dataclass(frozen=True)
class FeatureLayout:
    """Column layout of the per-event features: book, then order features, then handcrafted ones.

    Args:
        levels: Book levels per side (4 columns each: ask price, ask size, bid price, bid size).
        order_features: Whether the 8 :data:`ORDER_FEATURES` follow the book.
        lags: Lags (events) of the handcrafted OFI and return columns; ``None``: no handcrafted columns.
    """

    levels: int
    order_features: bool
    lags: tuple[int, ...] | None = None
    names: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        book = tuple(
            f"{side}_{what}_{level}"
            for level in range(1, self.levels + 1)
            for side, what in (("ask", "price"), ("ask", "size"), ("bid", "price"), ("bid", "size"))
        )
        order = ORDER_FEATURES if self.order_features else ()
        extra = handcrafted_names(self.lags) if self.lags is not None else ()
        object.__setattr__(self, "names", book + order + extra)

    @property
    def num_lob_features(self) -> int:
        """Book columns (4 per level), first in the feature vector."""
        return 4 * self.levels

    @property
    def num_features(self) -> int:
        """All columns."""
        return len(self.names)

    @property
    def price_columns(self) -> np.ndarray:
        """Indices of the book price columns."""
        return np.arange(0, self.num_lob_features, 2)

    @property
    def handcrafted_start(self) -> int:
        """Index of the first handcrafted column."""
        return self.num_lob_features + (len(ORDER_FEATURES) if self.order_features else 0)

    def groups(self) -> list[tuple[str, np.ndarray]]:
        """Column groups that share one z-score: all book prices, all book sizes, then one per column.

        Prices and sizes are pooled over levels so that the book's shape across levels survives the
        normalisation; the one-hot event type and the direction are not z-scored (in no group).
        """
        out = [("price", self.price_columns), ("size", self.price_columns + 1)]
        if self.order_features:
            out += [(ORDER_FEATURES[j], np.array([self.num_lob_features + j])) for j in ZSCORED_ORDER_COLUMNS]
        if self.lags is not None:
            start = self.handcrafted_start
            out += [(name, np.array([start + j])) for j, name in enumerate(handcrafted_names(self.lags))]
        return out


@dataclass
class DayEvents:
    """The kept events of one LOBSTER day, with unnormalised features."""

    info: LobsterFileInfo
    message_path: Path
    time: np.ndarray  # (n,) seconds after midnight
    row: np.ndarray  # (n,) row in the message file
    features: np.ndarray  # (n, F) float64, laid out as a FeatureLayout
    mid: np.ndarray  # (n,) mid-price after each event (forward-filled over empty sides)
    spread_over_mid: np.ndarray  # (n,)
    price_scale: np.ndarray | None = None  # (n,) rolling std of the price group (rolling normalisation)

    def __len__(self) -> int:
        return len(self.time)


def _fill_empty_levels(book: np.ndarray, tick: int) -> np.ndarray:
    """Book as float64 with LOBSTER dummy prices replaced by a ladder one tick beyond the last quoted level.

    An empty best level takes the opposite best price ± one tick; a row with both sides empty keeps NaN
    prices (they become 0, the training mean, after normalisation). Sizes of empty levels stay 0.

    Args:
        book: ``(n, 4 * levels)`` LOBSTER orderbook rows (ask price, ask size, bid price, bid size, ...).
        tick: Tick size in LOBSTER price units.

    Returns:
        The filled ``(n, 4 * levels)`` float64 book (a copy).
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

    Args:
        day: The whole day, as read.
        kept: Indices of the kept events (rows of the message file).
        tick: Tick size in LOBSTER price units.

    Returns:
        float64 array ``(len(kept), 8)``.
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


def handcrafted_features(book: np.ndarray, mid: np.ndarray, tick: int, lags: tuple[int, ...]) -> np.ndarray:
    """Microstructure features of consecutive (kept) events, from the filled book after each one.

    Columns (see :func:`handcrafted_names`), all using the current and earlier events only:

    * ``spread``: best ask − best bid, in ticks.
    * ``queue_imbalance``: ``(bid size 1 − ask size 1) / (bid size 1 + ask size 1)`` (0 when both are 0).
    * ``depth_imbalance``: the same over the sizes summed over all levels (equal to the queue imbalance
      with one level).
    * ``ofi_L``: order-flow imbalance of Cont, Kukanov & Stoikov (2014) summed over the last ``L`` events
      (fewer at the start of the day); per event
      ``e_t = 1[b_t ≥ b_{t−1}] q^b_t − 1[b_t ≤ b_{t−1}] q^b_{t−1} − 1[a_t ≤ a_{t−1}] q^a_t
      + 1[a_t ≥ a_{t−1}] q^a_{t−1}`` (``a``/``b`` best prices, ``q`` their sizes; ``e_0 = 0``).
    * ``return_L``: ``(mid_t − mid_{t−L}) / tick`` (from the day's first event when ``t < L``).

    Args:
        book: ``(n, 4 * levels)`` filled book after each event (raw prices and sizes).
        mid: ``(n,)`` mid-price after each event (NaN before the first valid one).
        tick: Tick size in price units.
        lags: Lags ``L`` in events.

    Returns:
        float64 ``(n, 3 + 2 * len(lags))``; NaN where a price is unknown (set to 0 by the normalisation).
    """
    n = len(book)
    ask, ask_size, bid, bid_size = book[:, 0], book[:, 1], book[:, 2], book[:, 3]
    spread = (ask - bid) / tick
    queue = _ratio(bid_size - ask_size, bid_size + ask_size)
    bid_depth, ask_depth = book[:, 3::4].sum(axis=1), book[:, 1::4].sum(axis=1)
    depth = _ratio(bid_depth - ask_depth, bid_depth + ask_depth)
    e = np.zeros(n)
    if n > 1:
        b0, b1, a0, a1 = bid[:-1], bid[1:], ask[:-1], ask[1:]
        e[1:] = (
            (b1 >= b0) * bid_size[1:]
            - (b1 <= b0) * bid_size[:-1]
            - (a1 <= a0) * ask_size[1:]
            + (a1 >= a0) * ask_size[:-1]
        )
    cumulative = np.concatenate([[0.0], np.cumsum(e)])
    index = np.arange(n)
    ofi = [cumulative[index + 1] - cumulative[np.maximum(index + 1 - lag, 0)] for lag in lags]
    returns = [(mid - mid[np.maximum(index - lag, 0)]) / tick for lag in lags]
    return np.column_stack([spread, queue, depth, *ofi, *returns]).astype(np.float64)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros_like(num, dtype=np.float64), where=den != 0)


def day_events(
    day: LobsterDay,
    keep: list[int],
    tick: int,
    order_features: bool,
    price_features: PriceFeatures = "raw",
    sizes: SizeFeatures = "raw",
    lags: tuple[int, ...] | None = None,
) -> DayEvents:
    """Keep the chosen event types of a day (never halts) and compute its raw features and mid-prices.

    Args:
        day: The whole day, as read by :func:`~domains.finance.readers.read_lobster`.
        keep: LOBSTER event types to keep; halts (7) are dropped regardless.
        tick: Tick size in LOBSTER price units.
        order_features: Append the 8 :data:`ORDER_FEATURES` to the book columns.
        price_features: ``raw`` book prices, or (``mid`` and ``last_mid``) each price minus the mid after
            the same event, in ticks; ``last_mid`` is re-based on the window's last mid by the dataset.
        sizes: ``raw`` book (and order) sizes, or ``log`` = ``log1p`` of them.
        lags: Append :func:`handcrafted_features` with these lags; ``None``: none.

    Returns:
        The kept events with unnormalised features, laid out as ``FeatureLayout(levels, order_features,
        lags)``.
    """
    kept = np.flatnonzero(np.isin(day.event_type, keep) & (day.event_type != HALT_EVENT))
    raw_book = _fill_empty_levels(day.book[kept], tick)
    has_mid = ((day.book[:, 0] < LOBSTER_DUMMY_ASK) & (day.book[:, 2] > LOBSTER_DUMMY_BID)).any()
    mid = mid_price(day.book)[kept] if has_mid else np.full(len(kept), np.nan)
    book = raw_book.copy()
    if price_features != "raw":
        book[:, 0::2] = (book[:, 0::2] - mid[:, None]) / tick
    if sizes == "log":
        book[:, 1::2] = np.log1p(np.maximum(book[:, 1::2], 0.0))
    parts = [book]
    if order_features:
        order = _order_features(day, kept, tick)
        if sizes == "log":
            order[:, 4] = np.log1p(np.maximum(order[:, 4], 0.0))
        parts.append(order)
    if lags is not None:
        parts.append(handcrafted_features(raw_book, mid, tick, lags))
    return DayEvents(
        info=day.info,
        message_path=day.message_path,
        time=day.time[kept],
        row=kept.astype(np.int64),
        features=np.concatenate(parts, axis=1),
        mid=mid,
        spread_over_mid=relative_spread(day.book)[kept],
    )


def _zscore_stats(values: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of the finite values; ``(0, 1)`` when none, std 1 when ~0."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0, 1.0
    std = float(finite.std())
    return float(finite.mean()), std if std > 1e-12 else 1.0


def normalization_stats(features: np.ndarray, layout: FeatureLayout) -> dict[str, Any]:
    """Z-score statistics of raw features (of the training split), one pair per group of the layout.

    Args:
        features: ``(n, F)`` raw features laid out as ``layout``.
        layout: The column layout.

    Returns:
        ``price_mean``, ``price_std``, ``size_mean``, ``size_std``; with order features ``order_columns``
        (names), ``order_mean`` and ``order_std``; with handcrafted features ``handcrafted_columns``,
        ``handcrafted_mean`` and ``handcrafted_std`` (lists, one entry per z-scored column).
    """
    stats: dict[str, Any] = {}
    order: list[tuple[str, float, float]] = []
    extra: list[tuple[str, float, float]] = []
    for k, (name, columns) in enumerate(layout.groups()):
        mean, std = _zscore_stats(features[:, columns])
        if k < 2:  # the pooled book prices and sizes
            stats[f"{name}_mean"], stats[f"{name}_std"] = mean, std
        elif columns[0] < layout.handcrafted_start:
            order.append((name, mean, std))
        else:
            extra.append((name, mean, std))
    for key, rows in (("order", order), ("handcrafted", extra)):
        if rows:
            stats[f"{key}_columns"] = [r[0] for r in rows]
            stats[f"{key}_mean"] = [r[1] for r in rows]
            stats[f"{key}_std"] = [r[2] for r in rows]
    return stats


def column_stats(stats: dict[str, Any], layout: FeatureLayout) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and std ``(F,)`` from :func:`normalization_stats` (0 and 1 for unscaled columns)."""
    mean, std = np.zeros(layout.num_features), np.ones(layout.num_features)
    pairs = [(stats["price_mean"], stats["price_std"]), (stats["size_mean"], stats["size_std"])]
    for key in ("order", "handcrafted"):
        pairs += list(zip(stats.get(f"{key}_mean", []), stats.get(f"{key}_std", []), strict=True))
    for (_, columns), (m, s) in zip(layout.groups(), pairs, strict=True):
        mean[columns], std[columns] = m, s
    return mean, std


def normalise(raw: np.ndarray, stats: dict[str, Any], layout: FeatureLayout) -> np.ndarray:
    """Z-score raw features with statistics from :func:`normalization_stats`.

    Returns:
        The normalised ``(n, F)`` features (a copy), with NaN and ±inf set to 0.
    """
    mean, std = column_stats(stats, layout)
    return np.nan_to_num((raw - mean) / std, nan=0.0, posinf=0.0, neginf=0.0)


def rolling_normalise(raw: np.ndarray, layout: FeatureLayout, events: int) -> tuple[np.ndarray, np.ndarray]:
    """Z-score each event with the statistics of the last ``events`` events up to and including it.

    The statistics of event ``t`` pool the finite values of its group over events
    ``max(0, t − events + 1) .. t`` of the same day: nothing later than ``t`` is used, so a later session
    is normalised by its own recent level, not by the training block's (:func:`previous_days_normalise`
    uses whole earlier days instead). A (numerically) zero std, e.g. at the day's first event, is replaced
    by 1.

    Args:
        raw: ``(n, F)`` raw features of one day, laid out as ``layout``.
        layout: The column layout.
        events: Rolling window length in events (>= 1).

    Returns:
        ``(normalised (n, F) with NaN/±inf set to 0, price std (n,))``; the price std re-scales the shift of
        ``last_mid`` prices in the windows.
    """
    n = len(raw)
    out = raw.copy()
    price_std = np.ones(n)
    index = np.arange(n)
    lo = np.maximum(index + 1 - events, 0)
    for name, columns in layout.groups():
        values = raw[:, columns]
        finite = np.isfinite(values)
        reference = values[finite][0] if finite.any() else 0.0  # keeps the cumulative sums small
        centred = np.where(finite, values - reference, 0.0)
        sums = [
            np.concatenate([[0.0], np.cumsum(part.sum(axis=1))])
            for part in (centred, centred**2, finite.astype(np.float64))
        ]
        s1, s2, count = (s[index + 1] - s[lo] for s in sums)
        count = np.maximum(count, 1.0)
        mean = s1 / count
        var = np.maximum(s2 / count - mean**2, 0.0)
        std = np.sqrt(var)
        # Rounding leaves ~1e-8 of the rms in a constant window's std: treat that as constant.
        std = np.where(std > 1e-6 * np.maximum(np.sqrt(s2 / count), 1.0), std, 1.0)
        out[:, columns] = (centred - mean[:, None]) / std[:, None]
        out[:, columns] = np.where(finite, out[:, columns], 0.0)
        if name == "price" and columns[0] == 0:
            price_std = std
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0), price_std


def previous_days_normalise(
    raw: np.ndarray, previous: list[np.ndarray], layout: FeatureLayout
) -> tuple[np.ndarray, np.ndarray]:
    """Z-score one day with the statistics of the events of earlier days only (the DeepLOB pipeline's).

    The statistics are :func:`normalization_stats` of the previous days' raw features pooled together, so
    a day is scaled by the level of the days before it and never by its own (later) events.

    Args:
        raw: ``(n, F)`` raw features of the day, laid out as ``layout``.
        previous: Raw ``(n_i, F)`` features of each earlier day (at least one).
        layout: The column layout.

    Returns:
        ``(normalised (n, F) with NaN/±inf set to 0, price std (n,))``; the price std (one value, repeated)
        re-scales the shift of ``last_mid`` prices in the windows.
    """
    if not previous:
        raise ValueError("previous_days_normalise needs at least one earlier day")
    stats = normalization_stats(np.concatenate(previous), layout)
    return normalise(raw, stats, layout), np.full(len(raw), stats["price_std"])
