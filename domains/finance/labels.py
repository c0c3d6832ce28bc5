"""Mid-price trend labels for limit-order-book data (vectorised numpy).

Two labelling methods, both returning a smoothed relative mid-price change ``l_t`` per event that is then
thresholded at ``±α`` into up / stationary / down:

* ``tlob`` — the horizon-bias-free labels of TLOB (Berti & Kasneci 2025): both sides are averaged over
  the same short window ``k = min(smoothing, h)``, so the label does not get smoother as ``h`` grows.
* ``classic`` — DeepLOB / FI-2010 labels: the current mid against the mean over the next ``h`` events.

Class ids follow TLOB and FI-2010 (minus 1): 0 up, 1 stationary, 2 down; -1 where the label is undefined.
"""

from typing import Literal

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from domains.finance.readers import LOBSTER_DUMMY_ASK, LOBSTER_DUMMY_BID

__all__ = [
    "CLASS_NAMES",
    "DOWN",
    "STATIONARY",
    "UNDEFINED",
    "UP",
    "classify",
    "mid_price",
    "relative_spread",
    "smoothed_returns",
    "threshold_from_train",
]

UP, STATIONARY, DOWN, UNDEFINED = 0, 1, 2, -1
CLASS_NAMES = ("up", "stationary", "down")
DEFAULT_SMOOTHING = 10


def _best_quotes(book: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best ask, best bid (float64) and a mask of rows where both sides are quoted."""
    book = np.asarray(book)
    if book.ndim != 2 or book.shape[1] < 4:
        raise ValueError(f"expected a LOBSTER book of shape (N, 4 * levels), got {book.shape}")
    ask = book[:, 0].astype(np.float64)
    bid = book[:, 2].astype(np.float64)
    valid = (book[:, 0] < LOBSTER_DUMMY_ASK) & (book[:, 2] > LOBSTER_DUMMY_BID)
    return ask, bid, valid


def _forward_fill(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Replace invalid entries by the last valid one before them (NaN before the first valid one)."""
    last = np.maximum.accumulate(np.where(valid, np.arange(len(values)), -1))
    out = np.where(last >= 0, values[np.maximum(last, 0)], np.nan)
    return out


def mid_price(book: np.ndarray) -> np.ndarray:
    """Mid-price ``(best ask + best bid) / 2`` after each event.

    Rows where a side is empty (LOBSTER dummy prices ±9999999999) take the previous valid mid (forward
    fill); rows before the first valid mid are NaN (never back-filled, which would look ahead).

    Args:
        book: LOBSTER book ``(N, 4 * levels)``: ask price 1, ask size 1, bid price 1, bid size 1, ...

    Returns:
        float64 mid-prices of shape ``(N,)``, in the book's price unit.

    Raises:
        ValueError: If the book has the wrong shape or no row has both sides quoted.
    """
    ask, bid, valid = _best_quotes(book)
    if not valid.any():
        raise ValueError(
            f"no valid mid-price in {len(valid)} book rows: every row has an empty ask or bid side "
            f"(dummy prices {LOBSTER_DUMMY_ASK} / {LOBSTER_DUMMY_BID})"
        )
    return _forward_fill((ask + bid) / 2.0, valid)


def relative_spread(book: np.ndarray) -> np.ndarray:
    """Bid-ask spread over mid, ``(ask - bid) / mid``, per row; NaN where a side is empty.

    Args:
        book: LOBSTER book ``(N, 4 * levels)``.

    Returns:
        float64 array ``(N,)``.
    """
    ask, bid, valid = _best_quotes(book)
    mid = (ask + bid) / 2.0
    return np.where(valid, (ask - bid) / np.where(valid, mid, 1.0), np.nan)


def _window_means(values: np.ndarray, width: int) -> np.ndarray:
    """``out[i] = mean(values[i : i + width])`` for ``i = 0 .. N - width``."""
    return sliding_window_view(values, width).mean(axis=1)


def smoothed_returns(
    mid: np.ndarray,
    horizon: int,
    smoothing: int | None = None,
    method: Literal["tlob", "classic"] = "tlob",
) -> np.ndarray:
    """Smoothed relative mid-price change ``l_t`` at ``horizon`` events after each event ``t``.

    * ``tlob`` (horizon-bias free, Berti & Kasneci 2025): with ``k = min(smoothing, h)`` (smoothing 10 by
      default), ``m⁻_t = mean(mid[t-k+1 .. t])``, ``m⁺_t = mean(mid[t+h-k+1 .. t+h])``.
    * ``classic`` (DeepLOB / FI-2010): ``m⁻_t = mid_t``, ``m⁺_t = mean(mid[t+1 .. t+h])``.

    Then ``l_t = (m⁺_t - m⁻_t) / m⁻_t``.

    Args:
        mid: Mid-prices ``(N,)`` in event order (one day or one split; never across a boundary).
        horizon: Prediction horizon ``h`` in events (>= 1).
        smoothing: TLOB smoothing length (default 10); not used by ``classic``.
        method: ``tlob`` or ``classic``.

    Returns:
        float64 ``(N,)``; NaN where a window reaches outside the series (the first ``k - 1`` and the last
        ``h`` events for tlob; the last ``h`` for classic) or covers a NaN mid.

    Raises:
        ValueError: On a non-positive horizon or smoothing, an unknown method, or smoothing with classic.
    """
    mid = np.asarray(mid, dtype=np.float64)
    if mid.ndim != 1:
        raise ValueError(f"mid must be 1-D, got shape {mid.shape}")
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    n = len(mid)
    out = np.full(n, np.nan)
    if method == "tlob":
        k = min(DEFAULT_SMOOTHING if smoothing is None else smoothing, horizon)
        if k < 1:
            raise ValueError(f"smoothing must be >= 1, got {smoothing}")
        if n < horizon + k:
            return out
        means = _window_means(mid, k)  # means[j] = mean(mid[j .. j+k-1])
        # t runs over k-1 .. n-1-h: m⁻_t = means[t-k+1], m⁺_t = means[t+h-k+1].
        before = means[: n - horizon - k + 1]
        after = means[horizon:]
        out[k - 1 : n - horizon] = (after - before) / before
    elif method == "classic":
        if smoothing is not None:
            raise ValueError(
                "smoothing applies to method='tlob' only (classic averages over the whole horizon)"
            )
        if n <= horizon:
            return out
        after = _window_means(mid[1:], horizon)  # after[t] = mean(mid[t+1 .. t+h])
        before = mid[: n - horizon]
        out[: n - horizon] = (after - before) / before
    else:
        raise ValueError(f"unknown label method {method!r}; expected 'tlob' or 'classic'")
    return out


def threshold_from_train(
    l_train: np.ndarray,
    mode: Literal["half_mean_abs", "spread"] = "half_mean_abs",
    spread_over_mid: np.ndarray | None = None,
) -> float:
    """Stationarity threshold α, from the TRAINING split only.

    ``half_mean_abs``: α = mean(|l|) / 2 (TLOB). ``spread``: α = mean(spread / mid), the transaction-cost
    threshold of the TLOB paper (commented out in its code). NaNs are ignored.

    The official TLOB code computes α separately on each split (train, val and test), so the test labels
    depend on test-set statistics (a leak, and the class boundaries move between splits). We fix this: α is
    computed here on the training split and the same α labels validation and test.

    Args:
        l_train: Smoothed returns of the training split (see :func:`smoothed_returns`).
        mode: ``half_mean_abs`` or ``spread``.
        spread_over_mid: Training-split ``spread / mid`` per event (see :func:`relative_spread`); required
            by ``spread``.

    Returns:
        α (a non-negative float).

    Raises:
        ValueError: If there is no finite value to average, on an unknown mode, or if ``spread`` is asked
            without ``spread_over_mid``.
    """
    if mode == "half_mean_abs":
        values = np.abs(np.asarray(l_train, dtype=np.float64))
        scale = 0.5
    elif mode == "spread":
        if spread_over_mid is None:
            raise ValueError("threshold mode 'spread' needs spread_over_mid of the training split")
        values = np.asarray(spread_over_mid, dtype=np.float64)
        scale = 1.0
    else:
        raise ValueError(f"unknown threshold mode {mode!r}; expected 'half_mean_abs' or 'spread'")
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        raise ValueError(f"cannot compute the threshold ({mode}): the training split has no finite value")
    return float(finite.mean() * scale)


def classify(l: np.ndarray, alpha: float) -> np.ndarray:  # noqa: E741 - the paper's symbol
    """Labels from smoothed returns: 0 up (l > α), 1 stationary, 2 down (l < -α), -1 where l is NaN.

    Args:
        l: Smoothed returns.
        alpha: Threshold α >= 0 (from :func:`threshold_from_train`).

    Returns:
        int64 array of the same shape as ``l``.

    Raises:
        ValueError: If α is negative or not finite.
    """
    if not np.isfinite(alpha) or alpha < 0:
        raise ValueError(f"alpha must be a finite non-negative number, got {alpha}")
    l = np.asarray(l, dtype=np.float64)  # noqa: E741
    labels = np.full(l.shape, STATIONARY, dtype=np.int64)
    labels[l > alpha] = UP
    labels[l < -alpha] = DOWN
    labels[np.isnan(l)] = UNDEFINED
    return labels
