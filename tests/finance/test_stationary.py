"""Stationary inputs, normalisation modes, handcrafted features and walk-forward folds of LOBSTERDataModule.

Values are checked on a hand-written six-event LOBSTER day (one level) whose features are worked out in
the comments; walk-forward folds on the simulated days.
"""

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch

from domains.finance.datamodule import LOBSTERDataModule
from domains.finance.features import FeatureLayout, handcrafted_names, normalization_stats, rolling_normalise
from domains.finance.labels import threshold_from_train
from domains.finance.splits import SplitOverlapWarning, walk_forward_bounds
from domains.finance.windows import window_zscore

# time, type, order id, size, price, direction; the book (ask, ask size, bid, bid size) after each event.
MESSAGES = [
    (34200.0, 1, 1, 100, 10100, -1),
    (34200.5, 1, 2, 50, 10100, -1),
    (34201.0, 3, 3, 100, 10000, 1),
    (34202.0, 4, 1, 150, 10100, -1),
    (34203.0, 1, 4, 50, 10100, 1),
    (34204.0, 3, 5, 100, 10200, -1),
]
BOOK = [
    (10100, 100, 10000, 200),  # mid 10050, spread 1 tick
    (10100, 150, 10000, 200),
    (10100, 150, 10000, 100),
    (10200, 300, 10000, 100),  # mid 10100, spread 2 ticks
    (10200, 300, 10100, 50),  # mid 10150
    (10200, 200, 10100, 50),
]
MID = np.array([10050, 10050, 10050, 10100, 10150, 10150], dtype=float)


@pytest.fixture
def tiny_day(tmp_path: Path) -> str:
    name = "TINY_2024-01-01_34200000_57600000_{}_1.csv"
    with (tmp_path / name.format("message")).open("w") as handle:
        handle.writelines(",".join(str(v) for v in row) + "\n" for row in MESSAGES)
    with (tmp_path / name.format("orderbook")).open("w") as handle:
        handle.writelines(",".join(str(v) for v in row) + "\n" for row in BOOK)
    return str(tmp_path / name.format("message"))


def tiny(path: str, **kwargs) -> LOBSTERDataModule:
    """The six events as one training day: windows of 3 ending at events 2, 3, 4 (labels at h=1, k=1)."""
    options = {"seq_len": 3, "horizons": [1], "smoothing": 1, "order_features": False, "lags": [1, 2]}
    dm = LOBSTERDataModule(train_files=[path], **{**options, **kwargs})
    dm.setup("fit")
    return dm


def test_prices_relative_to_the_mid_and_log_sizes(tiny_day: str) -> None:
    dm = tiny(tiny_day, price_features="mid", sizes="log")
    # ask − mid in ticks: 0.5, 0.5, 0.5, 1 (10200 − 10100), 0.5, 0.5; bid − mid: the negatives.
    # Pooled over both columns: mean 0, std sqrt((10 · 0.25 + 2 · 1) / 12) = sqrt(0.375).
    assert dm.normalization["price_mean"] == pytest.approx(0.0)
    assert dm.normalization["price_std"] == pytest.approx(np.sqrt(0.375))
    x = dm.datasets["train"][1]["x"].double()  # the window of events 1, 2, 3
    price = x[:, [0, 2]] * dm.normalization["price_std"] + dm.normalization["price_mean"]
    torch.testing.assert_close(
        price, torch.tensor([[0.5, -0.5], [0.5, -0.5], [1.0, -1.0]], dtype=torch.float64)
    )
    sizes = np.log1p(np.array([[150, 200], [150, 100], [300, 100]], dtype=float))
    raw_sizes = x[:, [1, 3]] * dm.normalization["size_std"] + dm.normalization["size_mean"]
    np.testing.assert_allclose(raw_sizes.numpy(), sizes, rtol=1e-5)


def test_prices_relative_to_the_windows_last_mid(tiny_day: str) -> None:
    dm = tiny(tiny_day, price_features="last_mid")
    x = dm.datasets["train"][2]["x"].double()  # events 2, 3, 4; the last mid is 10150
    price = x[:, [0, 2]] * dm.normalization["price_std"] + dm.normalization["price_mean"]
    # (10100 − 10150) / 100 = −0.5, (10000 − 10150) / 100 = −1.5; then 10200/10000, 10200/10100.
    expected = torch.tensor([[-0.5, -1.5], [0.5, -1.5], [0.5, -0.5]], dtype=torch.float64)
    torch.testing.assert_close(price, expected)


def test_handcrafted_features(tiny_day: str) -> None:
    dm = tiny(tiny_day, price_features="mid", handcrafted=True)
    names = handcrafted_names((1, 2))
    assert names == ("spread", "queue_imbalance", "depth_imbalance", "ofi_1", "ofi_2", "return_1", "return_2")
    assert dm.num_features == 4 + len(names) and dm.layout.names[4:] == names
    raw = dm._load_day(Path(tiny_day)).features[:, 4:]
    expected = np.array(
        [
            # spread, queue imbalance (b − a)/(b + a), depth imbalance (1 level: the same),
            # OFI e_t = [0, −50, −100, 150, 50, 100] summed over 1 and 2 events,
            # mid change in ticks over 1 and 2 events.
            [1, 100 / 300, 100 / 300, 0, 0, 0, 0],
            [1, 50 / 350, 50 / 350, -50, -50, 0, 0],
            [1, -50 / 250, -50 / 250, -100, -150, 0, 0],
            [2, -200 / 400, -200 / 400, 150, 50, 0.5, 0.5],
            [1, -250 / 350, -250 / 350, 50, 200, 0.5, 1.0],
            [1, -150 / 250, -150 / 250, 100, 150, 0, 0.5],
        ]
    )
    np.testing.assert_allclose(raw, expected)
    # Each handcrafted column is z-scored on its own with the training statistics.
    stats = dm.normalization
    assert stats["handcrafted_columns"] == list(names)
    np.testing.assert_allclose(stats["handcrafted_mean"], expected.mean(axis=0))
    np.testing.assert_allclose(stats["handcrafted_std"], expected.std(axis=0))


def test_rolling_normalisation_uses_past_events_only(tiny_day: str) -> None:
    dm = tiny(tiny_day, price_features="mid", normalization="rolling", rolling_events=2)
    x = dm.datasets["train"][1]["x"]  # events 1, 2, 3
    # Event 3 pools events 2 and 3: prices {0.5, −0.5, 1, −1}, mean 0, std sqrt(0.625).
    assert float(x[2, 0]) == pytest.approx(1 / np.sqrt(0.625), rel=1e-6)
    # Event 1 pools events 0 and 1: prices ±0.5, std 0.5 → ask 1, bid −1.
    assert float(x[0, 0]) == pytest.approx(1.0) and float(x[0, 2]) == pytest.approx(-1.0)
    # Nothing later than an event changes its value: normalising a prefix gives the same rows.
    raw = np.random.default_rng(0).normal(size=(50, 4)).cumsum(axis=0)
    layout = FeatureLayout(1, False)
    full, _ = rolling_normalise(raw, layout, 7)
    prefix, _ = rolling_normalise(raw[:30], layout, 7)
    np.testing.assert_array_equal(full[:30], prefix)


def test_window_normalisation(tiny_day: str) -> None:
    dm = tiny(tiny_day, price_features="mid", normalization="window")
    x = dm.datasets["train"][2]["x"]  # events 2, 3, 4: prices 0.5/−0.5, 1/−1, 0.5/−0.5
    assert float(x[1, 0]) == pytest.approx(1 / np.sqrt(0.5), rel=1e-6)  # pooled mean 0, std sqrt(0.5)
    sizes = torch.tensor([[150.0, 100.0], [300.0, 100.0], [300.0, 50.0]])
    expected = (sizes - sizes.mean()) / sizes.std(unbiased=False)
    torch.testing.assert_close(x[:, [1, 3]], expected)
    # A column in no group (e.g. a one-hot) is left alone.
    window = torch.tensor([[1.0, 5.0], [3.0, 5.0]])
    out = window_zscore(window, torch.tensor([[1.0], [0.0]]))
    torch.testing.assert_close(out, torch.tensor([[-1.0, 5.0], [1.0, 5.0]]))


def test_walk_forward_bounds_by_hand() -> None:
    # 1600 events, 3 folds, blocks of 1600 / (1 + 2 · 0.3) = 1000 events, one test block (300) apart.
    fractions = (0.6, 0.1, 0.3)
    expected = [
        {"train": (0, 600), "val": (600, 700), "test": (700, 1000)},
        {"train": (300, 900), "val": (900, 1000), "test": (1000, 1300)},
        {"train": (600, 1200), "val": (1200, 1300), "test": (1300, 1600)},
    ]
    assert [walk_forward_bounds(1600, fractions, 3, k) for k in range(3)] == expected
    assert walk_forward_bounds(1600, fractions, 3, 2, anchored=True)["train"] == (0, 1200)
    assert walk_forward_bounds(200, (0.7, 0.1, 0.2)) == {
        "train": (0, 140),
        "val": (140, 160),
        "test": (160, 200),
    }


@pytest.mark.parametrize("total", [97, 1000, 28_131])
@pytest.mark.parametrize("folds", [2, 3, 5])
@pytest.mark.parametrize("anchored", [False, True])
def test_walk_forward_folds_never_overlap(total: int, folds: int, anchored: bool) -> None:
    bounds = [walk_forward_bounds(total, (0.5, 0.2, 0.3), folds, k, anchored) for k in range(folds)]
    for b in bounds:
        assert b["train"][0] < b["train"][1] == b["val"][0] < b["val"][1] == b["test"][0] < b["test"][1]
    tests = [b["test"] for b in bounds]
    assert all(a[1] == c[0] for a, c in itertools.pairwise(tests))  # consecutive, disjoint
    assert tests[-1][1] == total


def test_walk_forward_datamodule_uses_each_training_block_only(sim_files: list[str]) -> None:
    seen_tests = []
    for fold in range(3):
        dm = LOBSTERDataModule(
            files=sim_files, split=(0.5, 0.2, 0.3), folds=3, fold=fold, seq_len=20, horizons=[5, 10],
            price_features="last_mid", sizes="log", handcrafted=True,
        )  # fmt: skip
        dm.setup("fit")
        dm.setup("test")
        keys = {}
        for split in ("train", "val", "test"):
            ds = dm.datasets[split]
            keys[split] = ds.days.astype(np.int64) * 10**6 + ds.event_index  # (day, row) in time order
        assert keys["train"].max() < keys["val"].min() and keys["val"].max() < keys["test"].min()
        seen_tests.append(keys["test"])
        train = dm._split_events("train")
        assert dm.normalization == normalization_stats(train.features, dm.layout)
        assert dm.alpha == [threshold_from_train(train.returns[:, k]) for k in range(2)]
        assert train.features.shape[0] == len(keys["train"])
    assert all(a.max() < b.min() for a, b in itertools.pairwise(seen_tests))


def test_walk_forward_options_are_checked(sim_lobster: dict[str, list[str]], sim_files: list[str]) -> None:
    with pytest.raises(ValueError, match=r"fold must be in 0\.\.folds-1"):
        LOBSTERDataModule(files=sim_files, folds=3, fold=3)
    with pytest.raises(ValueError, match="walk-forward"):
        LOBSTERDataModule(train_files=sim_lobster["train"], folds=2)
    with pytest.raises(ValueError, match="lags must be positive"):
        LOBSTERDataModule(files=sim_files, lags=[0])


def test_baselines_see_the_windows_and_labels_of_the_neural_models(sim_files: list[str]) -> None:
    from benchmarks.finance_walkforward import baseline_data, classical, macro_f1

    common = {
        "files": sim_files,
        "split": (0.5, 0.2, 0.3),
        "folds": 2,
        "fold": 1,
        "seq_len": 20,
        "horizons": [5, 10],
    }
    data = baseline_data(common, snapshots=4)
    neural = LOBSTERDataModule(**common, price_features="last_mid", sizes="log", handcrafted=True)
    neural.setup("fit")
    neural.setup("test")
    for k, split in enumerate(("train", "val", "test")):
        ds = neural.datasets[split]
        np.testing.assert_array_equal(data["ends"][k], ds.ends)
        np.testing.assert_array_equal(data["snap"][k][1], ds.labels[ds.ends].numpy())
    assert data["snap"][0][0].shape[1] == 4 * 4 * 10  # 4 snapshots of 10 levels × 4 book columns
    assert data["hand"][0][0].shape[1] == 40 + 8 + 9  # book, order and handcrafted features of one event
    scores = classical(data, seed=0)
    assert set(scores) == {"majority", "sk-logreg", "sk-hgb"}
    assert all(len(v) == 2 and all(0 <= s <= 1 for s in v) for v in scores.values())
    # macro-F1, checked by hand: class 0 has tp 1, fp 1, fn 1 (F1 1/2), class 1 F1 0, class 2 F1 1.
    assert macro_f1(np.array([0, 0, 1, 2]), np.array([0, 1, 0, 2])) == pytest.approx(0.5)
    # A class absent from both is left out of the mean (as torchmetrics' macro average).
    assert macro_f1(np.array([0, 2]), np.array([0, 0])) == pytest.approx(2 / 3 / 2)


def test_overlap_warning_still_raised_with_new_options(sim_lobster: dict[str, list[str]]) -> None:
    with pytest.warns(SplitOverlapWarning):
        LOBSTERDataModule(
            train_files=sim_lobster["train"], test_files=sim_lobster["train"][:1], normalization="rolling"
        )
