"""Labels: mid-prices, TLOB and classic smoothed returns against brute-force loops, train-only thresholds."""

import math

import numpy as np
import pytest

from domains.finance.labels import (
    DOWN,
    STATIONARY,
    UNDEFINED,
    UP,
    classify,
    mid_price,
    relative_spread,
    smoothed_returns,
    threshold_from_train,
)

DUMMY_ASK, DUMMY_BID = 9_999_999_999, -9_999_999_999


def random_mid(n: int = 400, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ticks = np.cumsum(rng.integers(-1, 2, size=n) * (rng.random(n) < 0.3))
    return 1_000_000.0 + 100.0 * ticks + 50.0 * (rng.random(n) < 0.2)  # half-tick mids when the spread is odd


def brute_tlob(mid: list[float], h: int, smoothing: int = 10) -> list[float]:
    k = min(smoothing, h)
    out = []
    for t in range(len(mid)):
        if t - k + 1 < 0 or t + h >= len(mid):
            out.append(math.nan)
            continue
        before = sum(mid[t - k + 1 : t + 1]) / k
        after = sum(mid[t + h - k + 1 : t + h + 1]) / k
        out.append((after - before) / before)
    return out


def brute_classic(mid: list[float], h: int) -> list[float]:
    out = []
    for t in range(len(mid)):
        if t + h >= len(mid):
            out.append(math.nan)
            continue
        after = sum(mid[t + 1 : t + h + 1]) / h
        out.append((after - mid[t]) / mid[t])
    return out


def brute_classify(values: list[float], alpha: float) -> list[int]:
    labels = []
    for v in values:
        if math.isnan(v):
            labels.append(-1)
        elif v > alpha:
            labels.append(0)
        elif v < -alpha:
            labels.append(2)
        else:
            labels.append(1)
    return labels


def book(ask: list[int], bid: list[int]) -> np.ndarray:
    n = len(ask)
    return np.column_stack([ask, np.full(n, 100), bid, np.full(n, 100)]).astype(np.int64)


def test_mid_price_forward_fills_empty_sides() -> None:
    b = book(
        [DUMMY_ASK, 1_000_200, DUMMY_ASK, 1_000_400, 1_000_400],
        [999_800, 1_000_000, 1_000_000, DUMMY_BID, 1_000_200],
    )
    mid = mid_price(b)
    assert math.isnan(mid[0])  # no earlier valid mid: never back-filled
    np.testing.assert_array_equal(mid[1:], [1_000_100, 1_000_100, 1_000_100, 1_000_300])
    with pytest.raises(ValueError, match="no valid mid-price"):
        mid_price(book([DUMMY_ASK, DUMMY_ASK], [1, 2]))
    with pytest.raises(ValueError, match="expected a LOBSTER book"):
        mid_price(np.zeros((3, 3)))


def test_relative_spread() -> None:
    spread = relative_spread(book([1_000_200, DUMMY_ASK], [1_000_000, 1_000_000]))
    assert spread[0] == pytest.approx(200 / 1_000_100) and math.isnan(spread[1])


@pytest.mark.parametrize(
    ("horizon", "smoothing"), [(1, None), (5, None), (10, None), (37, None), (50, 4), (100, 10)]
)
def test_tlob_returns_match_brute_force(horizon: int, smoothing: int | None) -> None:
    mid = random_mid()
    got = smoothed_returns(mid, horizon, smoothing=smoothing, method="tlob")
    want = brute_tlob(mid.tolist(), horizon, 10 if smoothing is None else smoothing)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-15, equal_nan=True)
    k = min(10 if smoothing is None else smoothing, horizon)
    assert np.isnan(got[: k - 1]).all() and np.isnan(got[len(mid) - horizon :]).all()
    assert np.isfinite(got[k - 1 : len(mid) - horizon]).all()


@pytest.mark.parametrize("horizon", [1, 10, 50])
def test_classic_returns_match_brute_force(horizon: int) -> None:
    mid = random_mid(seed=3)
    got = smoothed_returns(mid, horizon, method="classic")
    np.testing.assert_allclose(
        got, brute_classic(mid.tolist(), horizon), rtol=1e-9, atol=1e-15, equal_nan=True
    )
    assert np.isfinite(got[: len(mid) - horizon]).all()


def test_tlob_removes_horizon_bias() -> None:
    # A single step in the mid: TLOB sees the full step at every horizon, classic averages it away.
    mid = np.r_[np.full(200, 100.0), np.full(200, 101.0)]
    t = 150
    tlob = [smoothed_returns(mid, h)[t] for h in (60, 100)]
    classic = [smoothed_returns(mid, h, method="classic")[t] for h in (60, 100)]
    assert tlob[0] == pytest.approx(0.01) and tlob[1] == pytest.approx(0.01)
    assert classic[0] == pytest.approx(0.01 * 11 / 60) and classic[1] == pytest.approx(0.01 * 51 / 100)


def test_short_series_and_bad_arguments() -> None:
    assert np.isnan(smoothed_returns(np.ones(5), 10)).all()
    assert np.isnan(smoothed_returns(np.ones(5), 5, method="classic")).all()
    with pytest.raises(ValueError, match="horizon"):
        smoothed_returns(np.ones(5), 0)
    with pytest.raises(ValueError, match="smoothing applies to method='tlob'"):
        smoothed_returns(np.ones(50), 5, smoothing=3, method="classic")
    with pytest.raises(ValueError, match="unknown label method"):
        smoothed_returns(np.ones(50), 5, method="deeplob")  # type: ignore[arg-type]


def test_nan_mid_gives_undefined_returns() -> None:
    mid = random_mid(50)
    mid[:3] = np.nan
    l = smoothed_returns(mid, 5, smoothing=2)  # noqa: E741
    assert np.isnan(l[:4]).all() and np.isfinite(l[4:45]).all()


def test_classify_matches_brute_force() -> None:
    values = smoothed_returns(random_mid(seed=5), 20)
    alpha = threshold_from_train(values)
    labels = classify(values, alpha)
    assert labels.dtype == np.int64
    assert labels.tolist() == brute_classify(values.tolist(), alpha)
    assert classify(np.array([0.2, -0.2, 0.1, -0.1, np.nan]), 0.1).tolist() == [
        UP,
        DOWN,
        STATIONARY,
        STATIONARY,
        UNDEFINED,
    ]
    with pytest.raises(ValueError, match="alpha"):
        classify(values, -1.0)


def test_threshold_half_mean_abs_and_spread() -> None:
    values = np.array([0.1, -0.3, np.nan, 0.2])
    assert threshold_from_train(values) == pytest.approx(0.1)
    assert threshold_from_train(
        values, "spread", spread_over_mid=np.array([1e-4, 3e-4, np.nan])
    ) == pytest.approx(2e-4)
    with pytest.raises(ValueError, match="spread_over_mid"):
        threshold_from_train(values, "spread")
    with pytest.raises(ValueError, match="no finite value"):
        threshold_from_train(np.array([np.nan]))
    with pytest.raises(ValueError, match="unknown threshold mode"):
        threshold_from_train(values, "median")  # type: ignore[arg-type]


def test_threshold_docstring_states_the_tlob_leak_fix() -> None:
    doc = " ".join((threshold_from_train.__doc__ or "").split())
    assert "official TLOB code computes α separately on each split" in doc
    assert "We fix this" in doc


def test_train_alpha_labels_test_data() -> None:
    """α comes from the training split; a test split with larger moves keeps the train threshold."""
    train = smoothed_returns(random_mid(2000, seed=1), 10)
    test = 3.0 * smoothed_returns(random_mid(2000, seed=2), 10)  # a more volatile day
    alpha = threshold_from_train(train)
    assert threshold_from_train(test) > 2 * alpha  # what the per-split (leaky) α would have been
    labels = classify(test, alpha)
    leaky = classify(test, threshold_from_train(test))
    assert (labels == STATIONARY).sum() < (leaky == STATIONARY).sum()
