"""Datamodules: LOBSTER splits, features, train-only statistics, windows within days; FI-2010 protocol."""

import inspect
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import SequentialSampler

from core.data import BaseDataModule
from core.data.sampling import EpochRandomSampler
from domains.finance.datamodule import LOBDataModule, LOBSTERDataModule
from domains.finance.features import ORDER_FEATURES
from domains.finance.fi2010 import FI2010DataModule
from domains.finance.labels import classify, mid_price, smoothed_returns, threshold_from_train
from domains.finance.module import LOBClassifier
from domains.finance.readers import LOBFormatError, read_lobster
from domains.finance.splits import Segment, fraction_segments, resolve_levels, resolve_split_files
from domains.finance.windows import LOBWindowDataset

SMALL = {"seq_len": 20, "horizons": [5, 10], "batch_size": 16}


def small(**kwargs) -> LOBSTERDataModule:
    return LOBSTERDataModule(**{**SMALL, **kwargs})


def orderbook_of(message: str | Path) -> Path:
    message = Path(message)
    return message.with_name(message.name.replace("_message_", "_orderbook_"))


def assert_windows_within_days(dataset: LOBWindowDataset) -> None:
    starts = dataset.ends - dataset.seq_len + 1
    assert (starts >= 0).all()
    assert (dataset.days[starts] == dataset.days[dataset.ends]).all()
    # Consecutive events of one window are consecutive rows of one message file.
    rows = np.stack([dataset.event_index[s : s + dataset.seq_len] for s in starts[:50]])
    assert (np.diff(rows, axis=1) > 0).all()


# ------------------------------------------------------------------------------------------ configuration


def test_sizes_known_after_init_without_reading_data(tmp_path: Path) -> None:
    missing = [str(tmp_path / f"SIM_2024-01-0{d}_34200000_57600000_message_10.csv") for d in (1, 2)]
    dm = LOBSTERDataModule(files=missing)
    assert (dm.num_features, dm.num_lob_features, dm.seq_len, dm.horizons, dm.num_classes) == (
        48,
        40,
        100,
        [10, 50, 100],
        3,
    )
    assert dm.class_names == ("up", "stationary", "down")
    assert dm.eval_batch_size == 4 * dm.batch_size == 512
    assert LOBSTERDataModule(files=missing, order_features=False).num_features == 40
    assert LOBSTERDataModule(files=missing, levels=10).levels == 10
    assert len(ORDER_FEATURES) == 8
    expected = r"message file not found: .*SIM_2024-01-01_34200000_57600000_message_10\.csv"
    with pytest.raises(FileNotFoundError, match=expected):
        dm.setup("fit")


def test_signature_is_cli_friendly() -> None:
    # jsonargparse reads real annotations (no `from __future__ import annotations`) and the docstring.
    for cls in (LOBSTERDataModule, FI2010DataModule, LOBDataModule):
        for name, parameter in inspect.signature(cls.__init__).parameters.items():
            if name != "self":
                assert not isinstance(parameter.annotation, str), (cls, name)
                assert f"{name}:" in (cls.__doc__ or ""), (cls, name)
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_class_arguments(LOBSTERDataModule, "data")
    text = parser.format_help()
    assert "--data.keep_event_types" in text and "Message files of the training split" in text


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "needs training data"),
        ({"files": ["a"], "train_files": ["b"]}, "either files"),
        (
            {"files": ["SIM_2024-01-01_34200000_57600000_message_10.csv"], "split": (0.5, 0.2, 0.2)},
            "summing to 1",
        ),
        (
            {"train_files": ["SIM_2024-01-01_34200000_57600000_message_10.csv"], "keep_event_types": [1, 7]},
            "halts",
        ),
        ({"train_files": ["SIM_2024-01-01_34200000_57600000_message_10.csv"], "levels": 5}, "levels=5"),
        ({"train_files": ["SIM_2024-01-01_34200000_57600000_orderbook_10.csv"]}, "list message files"),
        ({"train_files": ["bad_name.csv"]}, "not a LOBSTER file name"),
        (
            {
                "train_files": ["A_2024-01-01_34200000_57600000_message_10.csv"],
                "test_files": ["A_2024-01-02_34200000_57600000_message_5.csv"],
            },
            "disagree on the number of levels",
        ),
        ({"train_files": ["SIM_2024-01-01_34200000_57600000_message_10.csv"], "horizons": [0]}, "horizons"),
    ],
)
def test_configuration_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LOBSTERDataModule(**kwargs)


def test_links_and_hyperparameters_agree_with_the_task(tmp_path: Path) -> None:
    files = [str(tmp_path / "SIM_2024-01-01_34200000_57600000_message_10.csv")]
    dm = LOBSTERDataModule(files=files, seq_len=24, horizons=[5, 10], batch_size=8)
    assert isinstance(dm, BaseDataModule) and dm.sample_name == "windows"
    sizes = {"num_features": 48, "num_lob_features": 40, "seq_len": 24, "horizons": [5, 10], "num_classes": 3}
    assert dm.link_values() == sizes
    # Lightning refuses to log when the datamodule and the task save one key with two values.
    task = LOBClassifier(**dm.link_values())
    shared = set(dm.hparams) & set(task.hparams)
    assert shared == {"seq_len", "horizons"}
    assert all(dm.hparams[k] == task.hparams[k] for k in shared)
    fi2010 = FI2010DataModule(root=str(tmp_path), features="lob", seq_len=12, horizons=[10])
    assert fi2010.link_values() == {**sizes, "num_features": 40, "seq_len": 12, "horizons": [10]}


def test_split_files_and_levels() -> None:
    names = [f"SIM_2024-01-0{d}_34200000_57600000_message_10.csv" for d in (3, 1, 2)]
    files, fractions = resolve_split_files(None, None, None, None, names, (0.8, 0.1, 0.1))
    assert fractions == (0.8, 0.1, 0.1)
    assert [p.name for p in files["train"]] == sorted(names)  # date order
    assert files["train"] == files["val"] == files["test"] == files["predict"]
    files, fractions = resolve_split_files(names[:1], names[1:2], None, None, None, (0.8, 0.1, 0.1))
    assert fractions is None and files["test"] == files["predict"] == []
    assert files["train"] == [Path(names[0])] and files["val"] == [Path(names[1])]
    files, _ = resolve_split_files(names[:1], None, names[1:2], names[2:], None, (0.8, 0.1, 0.1))
    assert files["predict"] == [Path(names[2])] and files["val"] == []
    assert resolve_levels(files, None) == 10 == resolve_levels(files, 10)


def test_fraction_segments_cut_the_events_in_time_order() -> None:
    files = [Path("a"), Path("b"), Path("c")]
    lengths = [100, 50, 50]  # 200 events: train 0-140, val 140-160, test 160-200
    fractions = (0.7, 0.1, 0.2)
    assert fraction_segments(files, lengths, fractions, "train") == [
        Segment(0, files[0], 0, 100),
        Segment(1, files[1], 0, 40),
    ]
    assert fraction_segments(files, lengths, fractions, "val") == [
        Segment(1, files[1], 40, 50),
        Segment(2, files[2], 0, 10),
    ]
    assert fraction_segments(files, lengths, fractions, "test") == [Segment(2, files[2], 10, 50)]
    assert fraction_segments(files, lengths, (1.0, 0.0, 0.0), "val") == []


# ------------------------------------------------------------------------------------------ LOBSTER


def test_fraction_split_batches_and_time_order(sim_files: list[str]) -> None:
    dm = small(files=list(reversed(sim_files)))  # sorted by date inside
    dm.setup("fit")
    dm.setup("test")
    train, val, test = (dm.datasets[s] for s in ("train", "val", "test"))
    total = sum(d.features.shape[0] for d in (train, val, test))
    kept = sum(np.isin(read_lobster(f).event_type, [1, 3, 4]).sum() for f in sim_files)
    assert total == kept
    assert train.features.shape[0] == pytest.approx(0.8 * total, abs=1)
    # Time order: every training event precedes every validation event, which precede the test events.
    key = lambda d: d.days.astype(np.float64) * 1e6 + d.times  # noqa: E731
    assert key(train).max() < key(val).min() and key(val).max() < key(test).min()
    for dataset in (train, val, test):
        assert_windows_within_days(dataset)
        assert (dataset.labels[torch.as_tensor(dataset.ends)] >= 0).all()

    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"x", "y", "time", "index", "day"}
    assert batch["x"].shape == (16, 20, 48) and batch["x"].dtype == torch.float32
    assert batch["y"].shape == (16, 2) and batch["y"].dtype == torch.int64
    assert batch["time"].dtype == torch.float64 and batch["index"].dtype == torch.int64
    assert batch["day"].dtype == torch.int64
    assert torch.isfinite(batch["x"]).all() and set(batch["y"].unique().tolist()) <= {0, 1, 2}
    assert next(iter(dm.val_dataloader()))["x"].shape[0] == 64
    assert isinstance(dm.train_dataloader().sampler, EpochRandomSampler)
    assert isinstance(dm.val_dataloader().sampler, SequentialSampler)
    assert isinstance(dm.test_dataloader().sampler, SequentialSampler)
    assert "train:" in dm.describe() and "h=10: up" in dm.describe()


def test_explicit_files_days_dates_and_predict(sim_lobster: dict[str, list[str]]) -> None:
    dm = small(train_files=sim_lobster["train"], val_files=sim_lobster["val"], test_files=sim_lobster["test"])
    dm.setup("fit")
    train = dm.datasets["train"]
    assert set(np.unique(train.days)) == {0, 1}
    assert_windows_within_days(train)
    dm.setup("predict")
    predict = dm.datasets["predict"]
    assert [d.isoformat() for d in dm.predict_dates] == ["2024-01-04"]
    # Prediction keeps the windows whose future lies beyond the data (label -1); test drops them.
    dm.setup("test")
    assert len(predict) == len(dm.datasets["test"]) + max(SMALL["horizons"])
    assert (predict.labels[torch.as_tensor(predict.ends[-10:]), 1] == -1).all()  # h=10
    assert (predict.labels[torch.as_tensor(predict.ends[-5:]), 0] == -1).all()  # h=5
    item = predict[len(predict) - 1]
    day = read_lobster(sim_lobster["test"][0])
    assert item["index"] == np.flatnonzero(np.isin(day.event_type, [1, 3, 4]))[-1]  # row in the message file
    assert item["time"] == pytest.approx(day.time[item["index"]])
    paths = dm.input_paths()
    assert all(isinstance(p, Path) for p in paths) and len(paths) == 2 * 4  # message + orderbook per day
    assert orderbook_of(sim_lobster["test"][0]) in paths and Path(sim_lobster["train"][0]) in paths


def test_unconfigured_splits_build_no_dataset(sim_lobster: dict[str, list[str]]) -> None:
    dm = small(train_files=sim_lobster["train"][:1])
    assert [dm.build_dataset(s) for s in ("val", "test", "predict")] == [None, None, None]
    cut = small(files=sim_lobster["train"], split=(0.9, 0.0, 0.1))
    assert cut.build_dataset("val") is None and len(cut.build_dataset("test")) > 0
    # Explicit prediction files are predicted whole, as with per-split files: every window of the day.
    whole = small(files=sim_lobster["train"], predict_files=sim_lobster["test"]).build_dataset("predict")
    by_day = small(train_files=sim_lobster["train"], test_files=sim_lobster["test"]).build_dataset("predict")
    kept = int(np.isin(read_lobster(sim_lobster["test"][0]).event_type, [1, 3, 4]).sum())
    assert len(whole) == len(by_day) == kept - SMALL["seq_len"] + 1
    assert set(np.unique(whole.days)) == {0}


def test_labels_match_a_per_segment_computation(sim_lobster: dict[str, list[str]]) -> None:
    dm = small(train_files=sim_lobster["train"], val_files=sim_lobster["val"])
    dm.setup("fit")
    # Recompute by hand: per file, keep 1/3/4, mid after each kept event, TLOB returns, α from train only.
    mids = []
    for path in sim_lobster["train"]:
        day = read_lobster(path)
        mids.append(mid_price(day.book)[np.isin(day.event_type, [1, 3, 4])])
    for k, h in enumerate(SMALL["horizons"]):
        returns = [smoothed_returns(m, h) for m in mids]
        alpha = threshold_from_train(np.concatenate(returns))
        assert dm.alpha[k] == pytest.approx(alpha)
        want = np.concatenate([classify(r, alpha) for r in returns])
        train = dm.datasets["train"]
        np.testing.assert_array_equal(train.labels[:, k].numpy(), want)
    # The last max(h) events of each day have an undefined label and end no window.
    train = dm.datasets["train"]
    first_day = int((train.days == 0).sum())
    assert train.ends[train.days[train.ends] == 0].max() == first_day - 1 - max(SMALL["horizons"])


def test_validation_uses_the_training_alpha(sim_lobster: dict[str, list[str]]) -> None:
    dm = small(train_files=sim_lobster["train"], val_files=sim_lobster["val"])
    dm.setup("fit")
    day = read_lobster(sim_lobster["val"][0])
    mid = mid_price(day.book)[np.isin(day.event_type, [1, 3, 4])]
    returns = smoothed_returns(mid, 10)
    val_alpha = threshold_from_train(returns)
    assert val_alpha != pytest.approx(dm.alpha[1])
    np.testing.assert_array_equal(dm.datasets["val"].labels[:, 1].numpy(), classify(returns, dm.alpha[1]))


def test_normalisation_uses_the_training_split_only(
    sim_lobster: dict[str, list[str]], tmp_path: Path
) -> None:
    def run(test_file: str) -> LOBSTERDataModule:
        dm = small(train_files=sim_lobster["train"], val_files=sim_lobster["val"], test_files=[test_file])
        dm.setup("fit")
        dm.setup("test")
        return dm

    base = run(sim_lobster["test"][0])
    # A copy of the test day with every size ×7 and prices shifted by $5: a different day, same train data.
    changed = tmp_path / Path(sim_lobster["test"][0]).name
    shutil.copy(sim_lobster["test"][0], changed)
    book = np.loadtxt(orderbook_of(sim_lobster["test"][0]), delimiter=",", dtype=np.int64)
    book[:, 1::2] *= 7
    book[:, 0::2] += 50_000
    np.savetxt(orderbook_of(changed), book, fmt="%d", delimiter=",")
    other = run(str(changed))
    assert other.normalization == base.normalization and other.alpha == base.alpha
    assert not torch.equal(other.datasets["test"].features, base.datasets["test"].features)
    # The training features are exactly z-scored with their own statistics.
    x = base.datasets["train"].features.double()
    prices, sizes = x[:, 0:40:2], x[:, 1:40:2]
    assert abs(float(prices.mean())) < 1e-4 and float(prices.std()) == pytest.approx(1.0, abs=1e-3)
    assert abs(float(sizes.mean())) < 1e-4 and float(sizes.std()) == pytest.approx(1.0, abs=1e-3)
    state = base.state_dict()
    assert state["alpha"] == base.alpha and state["normalization"]["price_std"] > 0


def test_order_features(sim_lobster: dict[str, list[str]]) -> None:
    dm = small(train_files=sim_lobster["train"][:1], keep_event_types=[1, 2, 3, 4])
    dm.setup("fit")
    x = dm.datasets["train"].features.numpy()
    onehot = x[:, 40 + 1 : 40 + 4]
    assert set(np.unique(onehot)) == {0.0, 1.0} and (onehot.sum(axis=1) == 1).all()
    assert set(np.unique(x[:, 40 + 6])) == {-1.0, 1.0}  # direction is not normalised
    day = read_lobster(sim_lobster["train"][0])
    kept = np.isin(day.event_type, [1, 2, 3, 4])
    np.testing.assert_array_equal(onehot[:, 2] == 1, day.event_type[kept] == 4)
    # Depth of executions against the book before the event is 0 (they hit the best level).
    depth_raw = x[:, 47] * dm.normalization["order_std"][3] + dm.normalization["order_mean"][3]
    np.testing.assert_allclose(depth_raw[onehot[:, 2] == 1][1:], 0.0, atol=1e-4)
    assert small(train_files=sim_lobster["train"][:1], order_features=False).num_features == 40


def test_window_longer_than_a_split_is_an_error(sim_lobster: dict[str, list[str]]) -> None:
    dm = small(train_files=sim_lobster["train"], val_files=sim_lobster["val"], seq_len=5000)
    with pytest.raises(ValueError, match=r"the train split has \d+ events .*fewer than seq_len=5000"):
        dm.setup("fit")
    dm = small(files=sim_lobster["train"], split=(0.95, 0.04, 0.01), seq_len=150)
    with pytest.raises(ValueError, match=r"the test split has \d+ events .*seq_len=150"):
        dm.setup("test")


def test_empty_side_prices_are_filled(sim_copy: Callable[..., tuple[Path, Path]]) -> None:
    message, orderbook = sim_copy()
    book = np.loadtxt(orderbook, delimiter=",", dtype=np.int64)
    book[100:110, 36] = 9_999_999_999  # ask level 10 empty
    book[100:110, 37] = 0
    book[200:205, 0::4] = 9_999_999_999  # the whole ask side empty
    book[200:205, 1::4] = 0
    np.savetxt(orderbook, book, fmt="%d", delimiter=",")
    dm = small(train_files=[str(message)], keep_event_types=[1, 2, 3, 4])
    dm.setup("fit")
    train = dm.datasets["train"]
    x = train.features.double()
    assert torch.isfinite(x).all() and float(x[:, 0:40:2].abs().max()) < 50
    prices = x[:, 0:40:2] * dm.normalization["price_std"] + dm.normalization["price_mean"]
    rows = {int(r): i for i, r in enumerate(train.event_index)}
    level9, level10 = prices[rows[105], 16], prices[rows[105], 18]  # ask price 9 and 10
    assert float(level10 - level9) == pytest.approx(100, abs=1e-3)
    best_ask, best_bid = prices[rows[202], 0], prices[rows[202], 1]
    assert float(best_ask - best_bid) == pytest.approx(100, abs=1e-3)  # empty side: opposite best + 1 tick
    assert float(prices[rows[202], 2] - best_ask) == pytest.approx(100, abs=1e-3)


def test_dataset_refuses_windows_across_days() -> None:
    features, labels = torch.zeros(10, 3), torch.zeros(10, 1, dtype=torch.int64)
    days = np.array([0] * 5 + [1] * 5)
    with pytest.raises(ValueError, match="spans two days"):
        LOBWindowDataset(features, labels, np.zeros(10), np.array([6]), seq_len=3, days=days)
    with pytest.raises(ValueError, match="reaches outside"):
        LOBWindowDataset(features, labels, np.zeros(10), np.array([1]), seq_len=3, days=days)
    dataset = LOBWindowDataset(features, labels, np.arange(10.0), np.array([4, 9]), seq_len=3, days=days)
    assert dataset[1]["day"] == 1 and dataset[1]["x"].shape == (3, 3) and dataset[1]["time"] == 9.0


def test_malformed_input_surfaces_through_setup(sim_copy: Callable[..., tuple[Path, Path]]) -> None:
    message, _ = sim_copy()
    lines = message.read_text().splitlines()
    lines[9] = lines[9] + ",1,2"
    message.write_text("\n".join(lines) + "\n")
    with pytest.raises(LOBFormatError, match="line 10"):
        small(train_files=[str(message)]).setup("fit")


@pytest.mark.realdata
def test_real_amzn_sample_fraction_split(amzn_message: Path) -> None:
    dm = LOBSTERDataModule(files=[str(amzn_message)])
    assert (dm.levels, dm.num_features, dm.num_lob_features) == (1, 12, 4)
    dm.setup("fit")
    dm.setup("test")
    counts = {s: dm.datasets[s].label_counts() for s in ("train", "val", "test")}
    for split, c in counts.items():
        assert (c[:, :3] > 0).all(), split
    assert sum(len(dm.datasets[s]) for s in ("train", "val", "test")) > 27_000
    batch = next(iter(dm.val_dataloader()))
    assert batch["x"].shape == (512, 100, 12) and torch.isfinite(batch["x"]).all()
    assert [d.isoformat() for d in dm.predict_dates] == ["2012-06-21"]


# ------------------------------------------------------------------------------------------ FI-2010


def test_fi2010_protocol(fi2010_root: Path) -> None:
    dm = FI2010DataModule(root=str(fi2010_root), seq_len=10, horizons=[10, 50], batch_size=8)
    assert (dm.num_features, dm.num_lob_features, dm.seq_len, dm.horizons) == (144, 40, 10, [10, 50])
    dm.setup("fit")
    dm.setup("test")
    train, val, test = (dm.datasets[s] for s in ("train", "val", "test"))
    assert (train.features.shape[0], val.features.shape[0], test.features.shape[0]) == (240, 60, 300)
    assert (len(train), len(val), len(test)) == (240 - 9, 60 - 9, 3 * (100 - 9))
    assert val.event_index[0] == 240 and set(np.unique(test.days)) == {0, 1, 2}
    assert_windows_within_days(test)

    raw = np.loadtxt(fi2010_root / "Train_Dst_NoAuction_ZScore_CF_7.txt")
    np.testing.assert_allclose(train.features.numpy(), raw[:144, :240].T, rtol=1e-6)
    np.testing.assert_array_equal(train.labels.numpy(), raw[[144, 147], :240].T.astype(np.int64) - 1)
    assert set(np.unique(train.labels.numpy())) == {0, 1, 2}

    batch = next(iter(dm.train_dataloader()))
    assert batch["x"].shape == (8, 10, 144) and batch["y"].shape == (8, 2) and batch["y"].dtype == torch.int64
    assert torch.isnan(batch["time"]).all()
    assert isinstance(dm.train_dataloader().sampler, EpochRandomSampler)
    last = val[len(val) - 1]
    np.testing.assert_allclose(last["x"][-1].numpy(), raw[:144, 299], rtol=1e-6)
    assert last["y"].tolist() == [int(raw[144, 299]) - 1, int(raw[147, 299]) - 1]


def test_fi2010_lob_features_and_errors(fi2010_root: Path, fi2010_writer: Callable[..., np.ndarray]) -> None:
    dm = FI2010DataModule(root=str(fi2010_root), features="lob", seq_len=5, horizons=[100])
    assert dm.num_features == 40
    dm.setup("fit")
    assert dm.datasets["train"].features.shape == (240, 40)
    with pytest.raises(ValueError, match=r"horizons \(10, 20, 30, 50, 100\) only; got \[15\]"):
        FI2010DataModule(root=str(fi2010_root), horizons=[15])
    with pytest.raises(ValueError, match=r"the FI-2010 val split has 60 samples, fewer than seq_len=128"):
        FI2010DataModule(root=str(fi2010_root)).setup("fit")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        FI2010DataModule(root=str(fi2010_root / "nowhere"), seq_len=5).setup("fit")
    fi2010_writer(fi2010_root / "Test_Dst_NoAuction_ZScore_CF_8.txt", 100, rows=148)
    with pytest.raises(LOBFormatError, match=r"Test_Dst_NoAuction_ZScore_CF_8\.txt: found 148 rows"):
        FI2010DataModule(root=str(fi2010_root), seq_len=5).setup("test")


def test_classic_labels_and_spread_threshold(sim_lobster: dict[str, list[str]]) -> None:
    dm = small(train_files=sim_lobster["train"][:1], label_method="classic", threshold="spread")
    dm.setup("fit")
    day = read_lobster(sim_lobster["train"][0])
    kept = np.isin(day.event_type, [1, 3, 4])
    mid = mid_price(day.book)[kept]
    spread = ((day.book[:, 0] - day.book[:, 2]) / ((day.book[:, 0] + day.book[:, 2]) / 2))[kept]
    assert dm.alpha == pytest.approx([spread.mean()] * 2)
    for k, h in enumerate(SMALL["horizons"]):
        want = classify(smoothed_returns(mid, h, method="classic"), spread.mean())
        np.testing.assert_array_equal(dm.datasets["train"].labels[:, k].numpy(), want)


def test_missing_validation_split_and_checkpoint_state(sim_lobster: dict[str, list[str]]) -> None:
    dm = small(train_files=sim_lobster["train"][:1])
    dm.setup("fit")
    assert dm.datasets["val"] is None  # no validation files: the split has no data
    assert dm.summary() == f"LOBSTERDataModule: train {len(dm.datasets['train']):,} windows, val none"
    with pytest.warns(UserWarning, match="no validation data"):
        assert dm.val_dataloader() == []
    with pytest.raises(RuntimeError, match="test split is not set up"):
        dm.test_dataloader()
    state = dm.state_dict()
    dm.load_state_dict(state)  # the same statistics: silent
    state["alpha"] = [a * 2 for a in state["alpha"]]
    with pytest.warns(UserWarning, match="other training-split statistics"):
        dm.load_state_dict(state)
