"""The LOB simulator: reproducible, valid LOBSTER output, a plausible book, partly predictable labels."""

import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from domains.finance.labels import classify, mid_price, smoothed_returns, threshold_from_train
from domains.finance.readers import parse_lobster_filename, read_lobster

REPO = Path(__file__).resolve().parents[2]


def test_deterministic_with_seed(simulator: ModuleType) -> None:
    a = simulator.simulate_day(n_events=1500, levels=5, seed=3, day=1)
    b = simulator.simulate_day(n_events=1500, levels=5, seed=3, day=1)
    c = simulator.simulate_day(n_events=1500, levels=5, seed=4, day=1)
    for name in ("time", "event_type", "order_id", "size", "price", "direction", "book"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.price, c.price)
    assert a.date.isoformat() == "2024-01-02"


def test_written_files_pass_validation(simulator: ModuleType, tmp_path: Path) -> None:
    day = simulator.simulate_day(n_events=3000, levels=10, seed=0)
    message, orderbook = simulator.write_lobster_day(day, tmp_path)
    assert message.name == "SIM_2024-01-01_34200000_57600000_message_10.csv"
    assert orderbook.name == "SIM_2024-01-01_34200000_57600000_orderbook_10.csv"
    first = message.read_text().splitlines()[0].split(",")
    assert len(first) == 6 and re.fullmatch(r"\d+\.\d{9}", first[0])
    read = read_lobster(message)  # every validation check passes
    info = parse_lobster_filename(message)
    assert len(read) == 3000 and read.book.shape == (3000, 40)
    assert info.start_ms / 1000 <= read.time[0] and read.time[-1] <= info.end_ms / 1000
    np.testing.assert_array_equal(read.book, day.book)
    np.testing.assert_array_equal(read.price, day.price)
    assert set(np.unique(read.event_type)) == {1, 2, 3, 4}
    assert set(np.unique(read.direction)) == {-1, 1}
    assert (read.price % 100 == 0).all()  # on the tick grid


def test_book_is_never_crossed_or_empty(simulator: ModuleType) -> None:
    day = simulator.simulate_day(n_events=20_000, levels=10, seed=1)
    ask, bid = day.book[:, 0], day.book[:, 2]
    assert (ask > bid).all()
    assert (ask < 9_999_999_999).all() and (bid > -9_999_999_999).all()
    spread_ticks = (ask - bid) // 100
    assert np.median(spread_ticks) <= 2 and np.percentile(spread_ticks, 99) < 20
    mid = mid_price(day.book)
    assert (mid.max() - mid.min()) / mid.mean() < 0.1  # a plausible intraday range
    # Executions happen at the best price of the resting side, against the book before the event.
    executions = np.flatnonzero(day.event_type == 4)[1:]
    before = day.book[executions - 1]
    best = np.where(day.direction[executions] > 0, before[:, 2], before[:, 0])
    np.testing.assert_array_equal(day.price[executions], best)


def test_labels_are_mixed_and_partly_predictable(simulator: ModuleType) -> None:
    day = simulator.simulate_day(n_events=20_000, levels=10, seed=2)
    kept = np.isin(day.event_type, [1, 3, 4])
    mid = mid_price(day.book)[kept]
    returns = smoothed_returns(mid, 50)
    labels = classify(returns, threshold_from_train(returns))
    shares = np.bincount(labels[labels >= 0], minlength=3) / (labels >= 0).sum()
    assert (shares > 0.15).all(), shares
    # Recent market-order imbalance (buys lift asks: resting direction -1) points to the next move.
    flow = np.where(day.event_type == 4, -day.direction, 0)[kept].astype(float)
    recent = np.convolve(flow, np.ones(100), mode="full")[: len(flow)]
    moving = (labels == 0) | (labels == 2)
    agree = np.sign(recent[moving]) == np.where(labels[moving] == 0, 1, -1)
    assert 0.55 < agree.mean() < 0.95, agree.mean()


def test_command_line(tmp_path: Path) -> None:
    script = REPO / "data" / "finance" / "simulate_lob.py"
    args = ["--out", str(tmp_path), "--days", "2", "--events", "400", "--levels", "3", "--seed", "5"]
    done = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, check=True)
    messages = sorted(tmp_path.glob("*_message_3.csv"))
    assert [p.name[:14] for p in messages] == ["SIM_2024-01-01", "SIM_2024-01-02"]
    assert done.stdout.split() == [str(p) for p in messages]
    assert all(len(read_lobster(p)) == 400 for p in messages)


def test_bad_arguments(simulator: ModuleType) -> None:
    with pytest.raises(ValueError, match="n_events"):
        simulator.simulate_day(n_events=0)
    with pytest.raises(ValueError, match="end_ms"):
        simulator.simulate_day(n_events=10, start_ms=5, end_ms=5)
