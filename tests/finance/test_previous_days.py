"""``normalization: previous_days``: each day z-scored with the statistics of the previous days' events only.

The fixture writes the six-event day of ``test_stationary`` on three dates, the book sizes multiplied by
1, 2 and 3, so that the statistics of each day differ and can be worked out by hand: the pooled sizes of
day 1 are ask 100, 150, 150, 300, 300, 200 and bid 200, 200, 100, 100, 50, 50 (sum 1900, sum of squares
380,000 over 12 values); day ``d`` has ``d`` times them. Prices relative to the mid are the same every day
(±0.5 ticks, ±1 at event 3): mean 0, std sqrt(0.375).
"""

from pathlib import Path

import numpy as np
import pytest

from core.utils import InputError
from domains.finance.datamodule import LOBSTERDataModule
from tests.finance.test_stationary import BOOK, MESSAGES

SIZES = np.array([[100, 200], [150, 200], [150, 100], [300, 100], [300, 50], [200, 50]], dtype=float)
PRICE_STD = np.sqrt(0.375)


def size_stats(multipliers: list[int]) -> tuple[float, float]:
    """Mean and std of the pooled book sizes of the days with these multipliers (by hand, see above)."""
    n = 12 * len(multipliers)
    mean = sum(m * 1900 for m in multipliers) / n
    second = sum(m * m * 380_000 for m in multipliers) / n
    return mean, np.sqrt(second - mean**2)


@pytest.fixture
def days(tmp_path: Path) -> list[str]:
    """Three days of TINY (2024-01-01..03); sizes × 1, 2, 3."""
    paths = []
    for k in (1, 2, 3):
        name = f"TINY_2024-01-0{k}_34200000_57600000_{{}}_1.csv"
        with (tmp_path / name.format("message")).open("w") as handle:
            handle.writelines(",".join(str(v) for v in row) + "\n" for row in MESSAGES)
        with (tmp_path / name.format("orderbook")).open("w") as handle:
            for ask, ask_size, bid, bid_size in BOOK:
                handle.write(f"{ask},{k * ask_size},{bid},{k * bid_size}\n")
        paths.append(str(tmp_path / name.format("message")))
    return paths


def module(**kwargs) -> LOBSTERDataModule:
    options = {
        "seq_len": 3,
        "horizons": [1],
        "smoothing": 1,
        "order_features": False,
        "price_features": "mid",
        "normalization": "previous_days",
    }
    return LOBSTERDataModule(**{**options, **kwargs})


def test_each_day_uses_the_previous_days_statistics(days: list[str]) -> None:
    # Listed out of date order: the days are ordered by the date in their names.
    dm = module(train_files=[days[2], days[1], days[0]], rolling_days=1)
    dm.setup("fit")
    train = dm.datasets["train"]
    # Day 1 (the first) only supplies statistics: windows (ends at events 2, 3, 4) of days 2 and 3 only.
    assert sorted(set(np.asarray(train.days).tolist())) == [0, 1]  # indices of days[2], days[1]
    assert len(train) == 6
    assert dm.normalization == {"rolling_days": 1}
    for file_index, multiplier in ((1, 2), (0, 3)):  # day 2 uses day 1's statistics, day 3 day 2's
        mean, std = size_stats([multiplier - 1])
        first = int(np.flatnonzero(train.days[train.ends] == file_index)[0])
        x = train[first]["x"].double().numpy()  # events 0, 1, 2 of that day
        np.testing.assert_allclose(x[:, [1, 3]], (multiplier * SIZES[:3] - mean) / std, rtol=1e-5)
        np.testing.assert_allclose(x[:, [0, 2]], np.array([[0.5, -0.5]] * 3) / PRICE_STD, rtol=1e-5)


def test_several_previous_days_are_pooled_and_later_days_never_used(days: list[str]) -> None:
    dm = module(train_files=days, rolling_days=2)
    dm.setup("fit")
    train = dm.datasets["train"]
    assert len(train) == 3 and set(np.asarray(train.days).tolist()) == {2}  # only day 3 has 2 earlier days
    mean, std = size_stats([1, 2])  # 237.5 and sqrt(1,900,000 / 24 − 237.5²)
    assert mean == pytest.approx(237.5)
    np.testing.assert_allclose(
        train[0]["x"].double().numpy()[:, [1, 3]], (3 * SIZES[:3] - mean) / std, rtol=1e-5
    )
    # Day 2 normalised with days 1-2 configured equals day 2 with day 3 configured too: nothing later leaks.
    two = module(train_files=days[:2], rolling_days=1)
    three = module(train_files=days, rolling_days=1)
    for dm in (two, three):
        dm.setup("fit")
    np.testing.assert_array_equal(
        two._load_day(Path(days[1])).features, three._load_day(Path(days[1])).features
    )


def test_validation_and_test_days_use_earlier_days_of_any_split(days: list[str]) -> None:
    dm = module(train_files=days[:2], val_files=days[2:], rolling_days=1)
    dm.setup("fit")
    mean, std = size_stats([2])  # the validation day 3 is scaled by the training day 2
    x = dm.datasets["val"][0]["x"].double().numpy()
    np.testing.assert_allclose(x[:, [1, 3]], (3 * SIZES[:3] - mean) / std, rtol=1e-5)


def test_a_split_of_first_days_only_is_an_error(days: list[str]) -> None:
    with pytest.raises(InputError, match=r"training split's days .*only supply statistics"):
        module(train_files=days[:1]).setup("fit")
    with pytest.raises(InputError, match=r"test split's days .*TINY_2024-01-01.*only supply statistics"):
        module(train_files=days[1:], test_files=days[:1]).setup("test")
    with pytest.raises(InputError, match="rolling_days"):
        module(train_files=days, rolling_days=0)


def test_fractions_cut_the_days_after_the_first(days: list[str]) -> None:
    # files + split: day 1 gives statistics only; the 12 events of days 2 and 3 are cut 50 / 25 / 25 %.
    dm = module(files=days, split=(0.5, 0.25, 0.25), rolling_days=1, seq_len=2)
    dm.setup("fit")
    dm.setup("test")
    assert set(np.asarray(dm.datasets["train"].days).tolist()) == {1}  # events 0-5: all of day 2
    assert dm.datasets["train"].features.shape[0] == 6
    assert dm.datasets["val"].features.shape[0] == 3 and dm.datasets["test"].features.shape[0] == 3
    assert "only supply previous_days statistics" in dm.describe()
