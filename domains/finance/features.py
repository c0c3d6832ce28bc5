"""Per-event features of LOBSTER days and their z-score normalisation.

* :func:`day_events` keeps the chosen event types of a :class:`~domains.finance.readers.LobsterDay` and
  computes its raw (unnormalised) features: the book with empty levels filled, then optionally the
  :data:`ORDER_FEATURES` of each event, plus the mid-price and relative spread after each event.
* :func:`normalization_stats` fits z-score statistics on the raw features of the training split and
  :func:`normalise` applies them to any split.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    "ORDER_FEATURES",
    "ZSCORED_ORDER_COLUMNS",
    "DayEvents",
    "day_events",
    "normalise",
    "normalization_stats",
]

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


@dataclass
class DayEvents:
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


def day_events(day: LobsterDay, keep: list[int], tick: int, order_features: bool) -> DayEvents:
    """Keep the chosen event types of a day (never halts) and compute its raw features and mid-prices.

    Args:
        day: The whole day, as read by :func:`~domains.finance.readers.read_lobster`.
        keep: LOBSTER event types to keep; halts (7) are dropped regardless.
        tick: Tick size in LOBSTER price units.
        order_features: Append the 8 :data:`ORDER_FEATURES` to the book columns.

    Returns:
        The kept events with unnormalised features.
    """
    kept = np.flatnonzero(np.isin(day.event_type, keep) & (day.event_type != HALT_EVENT))
    book = _fill_empty_levels(day.book[kept], tick)
    parts = [book, _order_features(day, kept, tick)] if order_features else [book]
    has_mid = ((day.book[:, 0] < LOBSTER_DUMMY_ASK) & (day.book[:, 2] > LOBSTER_DUMMY_BID)).any()
    mid = mid_price(day.book)[kept] if has_mid else np.full(len(kept), np.nan)
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


def normalization_stats(features: np.ndarray, num_lob_features: int, order_features: bool) -> dict[str, Any]:
    """Z-score statistics of raw features (of the training split).

    Prices get one mean/std pooled over all book price columns, sizes one pooled over all book size
    columns; the order features listed in :data:`ZSCORED_ORDER_COLUMNS` get one per column.

    Args:
        features: ``(n, F)`` raw features: ``num_lob_features`` book columns, then the order features.
        num_lob_features: Book columns (4 per level).
        order_features: Whether the 8 order features follow the book columns.

    Returns:
        ``price_mean``, ``price_std``, ``size_mean``, ``size_std`` and, with order features,
        ``order_columns`` (names), ``order_mean`` and ``order_std`` (lists, one entry per z-scored column).
    """
    lob = features[:, :num_lob_features]
    price_mean, price_std = _zscore_stats(lob[:, 0::2])
    size_mean, size_std = _zscore_stats(lob[:, 1::2])
    stats: dict[str, Any] = {
        "price_mean": price_mean,
        "price_std": price_std,
        "size_mean": size_mean,
        "size_std": size_std,
    }
    if order_features:
        order = features[:, num_lob_features:]
        pairs = [_zscore_stats(order[:, j]) for j in ZSCORED_ORDER_COLUMNS]
        stats["order_columns"] = [ORDER_FEATURES[j] for j in ZSCORED_ORDER_COLUMNS]
        stats["order_mean"] = [m for m, _ in pairs]
        stats["order_std"] = [s for _, s in pairs]
    return stats


def normalise(
    raw: np.ndarray, stats: dict[str, Any], num_lob_features: int, order_features: bool
) -> np.ndarray:
    """Z-score raw features with statistics from :func:`normalization_stats`.

    Args:
        raw: ``(n, F)`` raw features, laid out as for :func:`normalization_stats`.
        stats: What :func:`normalization_stats` returned (on the training split).
        num_lob_features: Book columns (4 per level).
        order_features: Whether the 8 order features follow the book columns.

    Returns:
        The normalised ``(n, F)`` features (a copy), with NaN and ±inf set to 0.
    """
    out = raw.copy()
    lob = out[:, :num_lob_features]
    lob[:, 0::2] = (lob[:, 0::2] - stats["price_mean"]) / stats["price_std"]
    lob[:, 1::2] = (lob[:, 1::2] - stats["size_mean"]) / stats["size_std"]
    if order_features:
        for j, mean, std in zip(ZSCORED_ORDER_COLUMNS, stats["order_mean"], stats["order_std"], strict=True):
            column = num_lob_features + j
            out[:, column] = (out[:, column] - mean) / std
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)
