"""leave_one_out and time_ratio_split boundaries."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from domains.recsys.data import SequenceData
from domains.recsys.preprocess import build_sequences
from domains.recsys.readers import read_interactions
from domains.recsys.splits import inject_noise, leave_one_out, time_ratio_split


def make(lengths: list[int], timestamps: list[float] | None = None) -> SequenceData:
    offsets = torch.tensor([0, *np.cumsum(lengths).tolist()])
    items = torch.arange(int(offsets[-1])) % 5 + 1
    ts = None if timestamps is None else torch.tensor(timestamps, dtype=torch.float64)
    return SequenceData(items, offsets, [f"u{u}" for u in range(len(lengths))], ["[PAD]", *"abcde"], ts)


def test_leave_one_out() -> None:
    data = make([3, 5, 4])
    split = leave_one_out(data)
    assert split.kind == "leave_one_out"
    assert split.train_end.tolist() == [1, 6, 10]
    assert split.val_positions.tolist() == [1, 6, 10] and split.test_positions.tolist() == [2, 7, 11]
    assert split.val_users.tolist() == split.test_users.tolist() == [0, 1, 2]
    assert split.train_lengths(data).tolist() == [1, 3, 2]
    # train = items[:-2], val target items[-2] with history items[:-2], test target items[-1] with items[:-1].
    seq = data.sequence(1)
    assert torch.equal(data.items[data.offsets[1] : split.train_end[1]], seq[:-2])
    assert data.items[split.val_positions[1]] == seq[-2] and data.items[split.test_positions[1]] == seq[-1]
    assert torch.equal(split.history(data, int(split.test_positions[1]), 1), seq[:-1])
    assert "3 validation and 3 test targets" in split.describe()


def test_leave_one_out_needs_three_items() -> None:
    message = "at least 3 items per user; 2 users have fewer (first: user 1 = raw id 'u1' with 2)"
    with pytest.raises(ValueError, match=re.escape(message)):
        leave_one_out(make([3, 2, 1]))


def test_time_ratio_split_exact_cuts() -> None:
    # 10 interactions, times 1..10 spread over 3 users; ratios 0.6/0.2/0.2 -> cuts at t=6 and t=8.
    data = make([4, 3, 3], [1, 2, 7, 9, 3, 5, 8, 4, 6, 10])
    split = time_ratio_split(data, (0.6, 0.2, 0.2))
    assert split.cut_times == (6.0, 8.0)
    assert split.train_end.tolist() == [2, 6, 9]  # u0: t 1, 2 | u1: t 3, 5 | u2: t 4, 6
    assert split.val_positions.tolist() == [2, 6] and split.val_users.tolist() == [0, 1]  # t 7, 8
    assert split.test_positions.tolist() == [3, 9] and split.test_users.tolist() == [0, 2]  # t 9, 10
    assert split.cold_dropped == 0
    first = time_ratio_split(data, (0.6, 0.2, 0.2), targets="first")
    assert first.val_positions.tolist() == [2, 6] and first.test_positions.tolist() == [3, 9]


def test_time_ratio_split_ties_and_cold_users() -> None:
    # Ties at the cut go to training; a user whose first item is after the cut has no history: dropped.
    data = make([3, 2], [1, 2, 2, 5, 6])
    split = time_ratio_split(data, (0.4, 0.4, 0.2), timestamps=data.timestamps)
    assert split.cut_times == (2.0, 5.0)
    assert split.train_end.tolist() == [3, 3]  # all of u0 (tie at t=2 included), nothing of u1
    assert split.val_positions.tolist() == [] and split.test_positions.tolist() == [4]
    assert split.cold_dropped == 1 and "1 cold-start targets dropped" in split.describe()
    first = time_ratio_split(make([2, 3], [1, 5, 2, 6, 7]), (0.4, 0.2, 0.4), targets="first")
    assert first.val_positions.tolist() == [1] and first.test_positions.tolist() == [3]  # not 4


def test_time_ratio_split_errors() -> None:
    with pytest.raises(ValueError, match="needs timestamps, and this data has none"):
        time_ratio_split(make([3]))
    with pytest.raises(ValueError, match=re.escape("ratios must be 3 non-negative fractions summing to 1")):
        time_ratio_split(make([3], [1, 2, 3]), (0.5, 0.1, 0.1))
    with pytest.raises(ValueError, match="not in time order within user 1"):
        time_ratio_split(make([2, 2], [5, 6, 2, 1]))
    with pytest.raises(ValueError, match=re.escape("timestamps must have shape (3,)")):
        time_ratio_split(make([3], [1, 2, 3]), timestamps=torch.ones(2))


@pytest.mark.realdata
def test_time_ratio_split_ml100k(ml100k_dir: Path) -> None:
    data, _ = build_sequences(read_interactions(ml100k_dir))
    split = time_ratio_split(data)
    n = data.num_interactions
    n_train = int(split.train_lengths(data).sum())
    assert abs(n_train / n - 0.8) < 0.01
    ts = data.timestamps
    val_ts = ts[split.val_positions]
    assert (val_ts > split.cut_times[0]).all() and (val_ts <= split.cut_times[1]).all()
    assert (ts[split.test_positions] > split.cut_times[1]).all()
    assert n_train + len(split.val_positions) + len(split.test_positions) + split.cold_dropped == n


def test_inject_noise_is_reexported() -> None:
    noisy = inject_noise(make([6, 6]), 0.5, seed=0)
    assert (noisy.items != make([6, 6]).items).sum() == 4  # 2 of the 4 training items per user
