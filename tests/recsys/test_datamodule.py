"""SeqRecDataModule: batches against a per-user Python reference, sampled candidates, noise, real files."""

import inspect
from pathlib import Path

import pytest
import torch

from domains.recsys.batching import left_pad_windows, right_pad_slices, sample_negatives
from domains.recsys.data import PAD_TOKEN, SequenceData
from domains.recsys.datamodule import SeqRecDataModule

# ------------------------------------------------------------------------------------------ helpers


def make_data(
    seqs: list[list[int]], num_items: int, timestamps: list[list[float]] | None = None
) -> SequenceData:
    lengths = torch.tensor([len(s) for s in seqs])
    ts = (
        None
        if timestamps is None
        else torch.tensor([t for row in timestamps for t in row], dtype=torch.float64)
    )
    return SequenceData(
        items=torch.tensor([i for s in seqs for i in s], dtype=torch.long),
        offsets=torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(lengths, 0)]),
        user_ids=[f"u{k}" for k in range(len(seqs))],
        item_ids=[PAD_TOKEN, *(f"i{k}" for k in range(1, num_items + 1))],
        timestamps=ts,
    )


def random_sequences(
    num_users: int, num_items: int, seed: int, low: int = 3, high: int = 30
) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(low, high, (num_users,), generator=g).tolist()
    return [(torch.randperm(num_items, generator=g)[:n] + 1).tolist() for n in lengths]


def pad_left(seq: list[int], length: int) -> list[int]:
    seq = seq[-length:] if length else []
    return [0] * (length - len(seq)) + seq


def all_batches(dm: SeqRecDataModule, split: str) -> dict[str, torch.Tensor]:
    """Concatenate a split's batches (``seen`` re-padded to a common width)."""
    loader = {
        "train": dm.train_dataloader,
        "val": dm.val_dataloader,
        "test": dm.test_dataloader,
        "predict": dm.predict_dataloader,
    }[split]()
    batches = list(loader)
    out = {}
    for key in batches[0]:
        parts = [b[key] for b in batches]
        if key == "seen":
            width = max(p.shape[1] for p in parts)
            parts = [torch.nn.functional.pad(p, (0, width - p.shape[1])) for p in parts]
        out[key] = torch.cat(parts)
    return out


def reference_rows(seqs: list[list[int]], max_len: int) -> dict[str, list[tuple]]:
    """Per-user leave-one-out samples written directly from the protocol."""
    ref: dict[str, list[tuple]] = {"train": [], "val": [], "test": [], "predict": []}
    for u, s in enumerate(seqs):
        if len(s) - 2 >= 2:
            ref["train"].append((u, pad_left(s[:-2], max_len + 1)))
        ref["val"].append((u, pad_left(s[:-2], max_len), s[-2], s[:-2]))
        ref["test"].append((u, pad_left(s[:-1], max_len), s[-1], s[:-1]))
        ref["predict"].append((u, pad_left(s, max_len), 0, s))
    return ref


def check_eval_rows(batch: dict[str, torch.Tensor], ref: list[tuple], seqs: list[list[int]]) -> None:
    assert len(batch["user"]) == len(ref)
    for row, (u, items, target, history) in enumerate(ref):
        assert int(batch["user"][row]) == u
        assert batch["items"][row].tolist() == items
        assert int(batch["target"][row]) == target
        seen = batch["seen"][row]
        assert seen[: len(history)].tolist() == history and not bool(seen[len(history) :].any())


# ------------------------------------------------------------------------------------------ configuration


def test_signature_is_cli_friendly() -> None:
    doc = SeqRecDataModule.__doc__ or ""
    for name, parameter in inspect.signature(SeqRecDataModule.__init__).parameters.items():
        if name != "self":
            assert not isinstance(parameter.annotation, str), name
            assert f"{name}:" in doc, name
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_class_arguments(SeqRecDataModule, "data")
    text = parser.format_help()
    assert "--data.ranking" in text and "--data.train_windows" in text and "--data.noise_prob" in text


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"ranking": "uni50"}, "ranking"),
        ({"split": "random"}, "split"),
        ({"train_windows": "all"}, "train_windows"),
        ({"max_len": 0}, "max_len"),
        ({"noise_prob": 1.0}, "noise_prob"),
        ({"ratios": (0.5, 0.5, 0.5)}, "ratios"),
        ({"batch_size": 0}, "batch_size"),
        ({"k_core": 0}, "k_core"),
    ],
)
def test_invalid_options_raise(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SeqRecDataModule(path="unused.inter", **kwargs)


def test_sizes_are_known_before_setup_and_protocol() -> None:
    data = make_data([[1, 2, 3, 4], [2, 3, 4]], num_items=5)
    dm = SeqRecDataModule.from_sequences(
        data, max_len=7, ranking="uni100", num_negatives=1, mask_history=False
    )
    assert (dm.num_items, dm.max_len, dm.mask_history) == (5, 7, False)
    assert dm.protocol_info["split"] == "leave_one_out" and dm.protocol_info["ranking"] == "uni100"
    assert "ranking=uni100" in dm.protocol and "mask_history=False" in dm.protocol
    assert dm.item_counts.tolist() == [0, 1, 2, 0, 0, 0]  # train parts [1, 2] and [2]


def test_links_input_paths_and_stage_splits(tmp_path: Path, write_sequences) -> None:
    """The BaseDataModule contract: linked values, the files read, only the stage's splits built."""
    assert SeqRecDataModule.links == {
        "num_items": "num_items",
        "max_len": "max_len",
        "mask_history": "mask_history",
    }
    seqs = {1: [1, 2, 3, 4], 2: [2, 3, 4], 3: [4, 1, 5, 2, 3]}
    path = write_sequences(seqs)
    predict = tmp_path / "new.txt"
    predict.write_text("alice 1 2\n")
    dm = SeqRecDataModule(
        path=str(path), format="sequence", max_len=7, mask_history=False, predict_file=str(predict)
    )
    assert dm.link_values() == {"num_items": 5, "max_len": 7, "mask_history": False}
    assert dm.input_paths() == [path, predict]
    assert "pin_memory" not in dm.hparams and dm.hparams.max_len == 7
    dm.setup("validate")
    assert set(dm.datasets) == {"val"} and len(dm.datasets["val"]) == 3
    assert dm.summary() == "SeqRecDataModule: val 3 sequences"
    dm.setup("predict")
    assert [b["user"].tolist() for b in dm.predict_dataloader()] == [[0]] and dm.predict_user_ids == ["alice"]
    assert SeqRecDataModule.from_sequences(make_data([[1, 2, 3]], 3)).input_paths() == []


def test_training_shuffle_is_seeded() -> None:
    seqs = random_sequences(40, 30, seed=3, low=4)
    orders = []
    for seed in (0, 0, 1):
        dm = SeqRecDataModule.from_sequences(make_data(seqs, 30), batch_size=8, seed=seed)
        dm.setup("fit")
        orders.append(torch.cat([b["user"] for b in dm.train_dataloader()]).tolist())
    assert orders[0] == orders[1] != orders[2] and sorted(orders[0]) == list(range(40))


def test_empty_validation_split_is_skipped() -> None:
    seqs = [[1, 2, 3, 4], [5, 6, 7], [8, 9, 1, 2]]
    times = [[1, 2, 9, 10], [3, 4, 11], [5, 6, 7, 12]]
    dm = SeqRecDataModule.from_sequences(
        make_data(seqs, 9, times), split="time_ratio", ratios=(0.8, 0.0, 0.2)
    )
    dm.setup("fit")
    assert dm.datasets["val"] is None
    with pytest.warns(UserWarning, match="validation is skipped"):
        assert dm.val_dataloader() == []


def test_missing_file_is_named(tmp_path: Path) -> None:
    dm = SeqRecDataModule(path=str(tmp_path / "nope.inter"), format="recbole")
    with pytest.raises(FileNotFoundError, match=r"nope\.inter"):
        dm.setup("fit")


# ------------------------------------------------------------------------------------------ batch building


def test_padding_helpers() -> None:
    items = torch.tensor([5, 6, 7, 8, 9])
    starts, ends = torch.tensor([0, 1, 4]), torch.tensor([4, 2, 4])
    assert left_pad_windows(items, starts, ends, 3).tolist() == [[6, 7, 8], [0, 0, 6], [0, 0, 0]]
    assert right_pad_slices(items, starts, ends).tolist() == [[5, 6, 7, 8], [6, 0, 0, 0], [0, 0, 0, 0]]


@pytest.mark.parametrize("max_len", [1, 4, 40])
def test_leave_one_out_batches_match_reference(max_len: int) -> None:
    seqs = random_sequences(23, 60, seed=max_len)
    dm = SeqRecDataModule.from_sequences(
        make_data(seqs, 60), max_len=max_len, batch_size=5, eval_batch_size=7, pad_to="max_len"
    )
    dm.setup()
    ref = reference_rows(seqs, max_len)
    train = all_batches(dm, "train")
    assert train["items"].shape == (len(ref["train"]), max_len + 1)
    got = sorted(zip(train["user"].tolist(), train["items"].tolist(), strict=True))
    assert got == sorted(ref["train"])  # shuffled: compare as sets of rows
    for split in ("val", "test", "predict"):
        batch = all_batches(dm, split)
        assert batch["items"].shape == (len(seqs), max_len) and batch["items"].dtype == torch.long
        assert "candidates" not in batch
        check_eval_rows(batch, ref[split], seqs)


@pytest.mark.parametrize("split", ["train", "val", "test", "predict"])
def test_pad_to_batch_drops_only_all_padding_columns(split: str) -> None:
    seqs = random_sequences(23, 60, seed=1)
    kwargs = {"max_len": 30, "batch_size": 5, "eval_batch_size": 7}
    full = SeqRecDataModule.from_sequences(make_data(seqs, 60), pad_to="max_len", **kwargs)
    trimmed = SeqRecDataModule.from_sequences(make_data(seqs, 60), **kwargs)  # pad_to="batch"
    widths = set()
    for dm in (full, trimmed):
        dm.setup()
    torch.manual_seed(0)
    full_batches = list(getattr(full, f"{split}_dataloader")())
    torch.manual_seed(0)
    trimmed_batches = list(getattr(trimmed, f"{split}_dataloader")())
    for a, b in zip(full_batches, trimmed_batches, strict=True):
        cut = a["items"].shape[1] - b["items"].shape[1]
        assert cut >= 0 and not a["items"][:, :cut].any()  # only columns that are padding in every row
        assert b["items"][:, 0].any()  # and no more: the first kept column holds an item
        torch.testing.assert_close(a["items"][:, cut:], b["items"])
        assert all(torch.equal(a[k], b[k]) for k in a if k != "items")
        widths.add(b["items"].shape[1])
    assert len(widths) > 1  # the batches really differ in width


def test_short_training_prefix_is_skipped_but_evaluated() -> None:
    seqs = [[1, 2, 3], [4, 5, 6, 7], [1, 4, 7, 2, 5]]
    dm = SeqRecDataModule.from_sequences(make_data(seqs, 7), max_len=3)
    dm.setup("fit")
    assert sorted(all_batches(dm, "train")["user"].tolist()) == [1, 2]  # user 0 trains on one item only
    assert dm.sample_count("val") == dm.sample_count("test") == 3


def test_too_short_users_are_an_error() -> None:
    dm = SeqRecDataModule.from_sequences(make_data([[1, 2, 3], [1, 2]], 3))
    with pytest.raises(ValueError, match="at least 3 items"):
        dm.setup()


def test_random_windows_are_contiguous_training_slices() -> None:
    seqs = [list(range(1, 31)), [3, 1, 2, 5, 4]]
    dm = SeqRecDataModule.from_sequences(make_data(seqs, 30), max_len=4, train_windows="random", batch_size=2)
    dm.setup("fit")
    starts = set()
    for _ in range(30):
        batch = next(iter(dm.train_dataloader()))
        for user, row in zip(batch["user"].tolist(), batch["items"].tolist(), strict=True):
            if user == 0:
                assert row == list(range(row[0], row[0] + 5)) and row[-1] <= 28  # within items[:-2]
                starts.add(row[0])
            else:
                assert row == [0, 0, 3, 1, 2]  # shorter than L + 1: the whole training part
    assert len(starts) > 5  # the windows move


def test_prefix_windows_are_random_training_prefixes() -> None:
    seqs = [list(range(1, 31)), [3, 1, 2, 5, 4]]
    dm = SeqRecDataModule.from_sequences(make_data(seqs, 30), max_len=4, train_windows="prefix", batch_size=2)
    dm.setup("fit")
    ends = {0: set(), 1: set()}
    for _ in range(60):
        batch = next(iter(dm.train_dataloader()))
        for user, row in zip(batch["user"].tolist(), batch["items"].tolist(), strict=True):
            items = [i for i in row if i]
            training = seqs[user][:-2]  # leave-one-out: the last two are validation and test
            assert len(items) >= 2 and row[-1] in training  # at least one input and its target
            end = training.index(row[-1]) + 1
            assert items == training[max(0, end - 5) : end]  # the last L + 1 items of a prefix
            ends[user].add(end)
    assert ends[1] == {2, 3} and len(ends[0]) > 10  # every prefix length can be drawn


def test_time_ratio_split_uses_global_cuts() -> None:
    seqs = [[1, 2, 3, 4], [5, 6, 7], [8, 9, 1, 2]]
    times = [[1, 2, 9, 10], [3, 4, 11], [5, 6, 7, 12]]
    dm = SeqRecDataModule.from_sequences(
        make_data(seqs, 9, times), split="time_ratio", ratios=(0.5, 0.25, 0.25)
    )
    dm.setup()
    # 11 interactions: train t <= 6 (round(5.5) = 6th time), val 6 < t <= 9 (round(8.25) = 8th time = 9).
    val, test = all_batches(dm, "val"), all_batches(dm, "test")
    assert sorted(zip(val["user"].tolist(), val["target"].tolist(), strict=True)) == [(0, 3), (2, 1)]
    assert sorted(zip(test["user"].tolist(), test["target"].tolist(), strict=True)) == [
        (0, 4),
        (1, 7),
        (2, 2),
    ]
    row = test["user"].tolist().index(2)
    assert test["seen"][row].tolist()[:3] == [8, 9, 1]
    assert dm.item_counts.tolist() == [0, 1, 1, 0, 0, 1, 1, 0, 1, 1]


# ------------------------------------------------------------------------------------------ sampled ranking


def test_sample_negatives_excludes_history_and_target() -> None:
    items = torch.tensor([1, 2, 3, 4, 5, 6, 7, 8])
    starts, targets = torch.tensor([0, 3]), torch.tensor([3, 7])
    weights = torch.tensor([0, 1, 1, 1, 1, 1, 1, 1, 1, 5, 0, 1], dtype=torch.float)
    out = sample_negatives(items, starts, targets, 11, 5, weights=weights, seed=3)
    assert out[:, 0].tolist() == [4, 8]
    for row, excluded in zip(out.tolist(), ([1, 2, 3, 4, 10], [4, 5, 6, 7, 8, 10]), strict=True):
        assert len(set(row[1:])) == 5 and not set(row[1:]) & set(excluded) and 0 not in row
    assert torch.equal(out, sample_negatives(items, starts, targets, 11, 5, weights=weights, seed=3))
    with pytest.raises(ValueError, match="user 'b' has only 5 items"):
        sample_negatives(items, starts, targets, 11, 6, weights=weights, users=["a", "b"])


def test_sample_negatives_follows_popularity() -> None:
    items = torch.tensor([1, 2])
    weights = torch.tensor([0.0, 0.0, 0.0, 8.0, 1.0, 1.0])
    out = sample_negatives(items, torch.tensor([0] * 400), torch.tensor([1] * 400), 5, 1, weights=weights)
    share = (out[:, 1] == 3).float().mean()
    assert 0.7 < share < 0.9  # 8 / 10 of the mass


# ------------------------------------------------------------------------------------------ noise


def test_noise_only_touches_training_prefixes() -> None:
    seqs = random_sequences(40, 80, seed=1, low=10, high=40)
    clean = make_data(seqs, 80)
    dm = SeqRecDataModule.from_sequences(clean, max_len=50, noise_prob=0.3, noise_seed=5, pad_to="max_len")
    dm.setup()
    assert dm.data is not None and torch.equal(dm.clean_data.items, clean.items)
    changed = dm.data.items != clean.items
    position = torch.arange(len(clean.items)) - torch.repeat_interleave(clean.offsets[:-1], clean.lengths)
    in_train = position < torch.repeat_interleave(clean.lengths - 2, clean.lengths)
    assert not bool(changed[~in_train].any())  # validation and test targets stay clean
    assert 0.2 < float(changed[in_train].float().mean()) < 0.4
    val, test = all_batches(dm, "val"), all_batches(dm, "test")
    assert val["target"].tolist() == [s[-2] for s in seqs] and test["target"].tolist() == [
        s[-1] for s in seqs
    ]
    noisy_seqs = [dm.data.sequence(u).tolist() for u in range(len(seqs))]
    assert test["items"].tolist() == [pad_left(s[:-1], 50) for s in noisy_seqs]  # histories hold the noise
    assert dm.item_counts.sum() == int(in_train.sum())
    again = SeqRecDataModule.from_sequences(clean, max_len=50, noise_prob=0.3, noise_seed=5)
    again.setup()
    assert torch.equal(again.data.items, dm.data.items)


# ------------------------------------------------------------------------------------------ raw ids


def test_ids_encode_decode_and_unknown_ids() -> None:
    seqs = [[1, 2, 3], [2, 3, 4]]
    dm = SeqRecDataModule.from_sequences(make_data(seqs, 4), predict_users=["u1"])
    assert dm.decode_items(torch.tensor([[4, 1]])) == ["i4", "i1"]
    assert dm.encode_items(["i3", "i1"]).tolist() == [3, 1]
    with pytest.raises(KeyError, match="unknown item id 'i9'"):
        dm.encode_items(["i1", "i9"])
    with pytest.raises(IndexError, match="item index 5"):
        dm.decode_items([5])
    dm.setup("predict")
    batch = all_batches(dm, "predict")
    assert batch["user"].tolist() == [1] and batch["items"][0, -3:].tolist() == [2, 3, 4]
    bad = SeqRecDataModule.from_sequences(make_data(seqs, 4), predict_users=["u1", "nobody"])
    with pytest.raises(KeyError, match="unknown user id 'nobody'"):
        bad.setup("predict")


# ------------------------------------------------------------------------------------------ real files


@pytest.fixture(scope="module")
def ml100k(ml100k_dir: Path) -> SeqRecDataModule:
    dm = SeqRecDataModule(path=str(ml100k_dir / "ml-100k.inter"), max_len=50, eval_batch_size=256)
    dm.setup()
    return dm


@pytest.mark.realdata
def test_ml100k_batches_match_reference(ml100k: SeqRecDataModule) -> None:
    data = ml100k.data
    assert (data.num_users, data.num_items, data.num_interactions) == (943, 1682, 100_000)
    assert ml100k.num_items == 1682 and ml100k.item_ids[0] == PAD_TOKEN
    train = next(iter(ml100k.train_dataloader()))
    assert train["items"].shape == (128, 51) and train["user"].shape == (128,)
    for split in ("val", "test", "predict"):
        batch = next(iter(getattr(ml100k, f"{split}_dataloader")()))
        assert batch["items"].shape == (256, 50) and batch["target"].shape == (256,)
        assert batch["seen"].shape[0] == 256 and set(batch) == {"items", "target", "user", "seen"}
        rows = [0, 1, 17, 255]
        users = batch["user"][rows].tolist()
        seqs = [data.sequence(u).tolist() for u in users]
        ref = [(u, *rest) for u, (_, *rest) in zip(users, reference_rows(seqs, 50)[split], strict=True)]
        check_eval_rows({k: v[rows] for k, v in batch.items()}, ref, seqs)
    # Left padding: short histories start with zeros, real items are contiguous at the end.
    batch = next(iter(ml100k.val_dataloader()))
    real = batch["items"] > 0
    assert bool((real.long().diff(dim=1) >= 0).all()) and bool(real[:, -1].all())


@pytest.mark.realdata
def test_ml100k_train_windows_are_the_last_items(ml100k: SeqRecDataModule) -> None:
    batch = next(iter(ml100k.train_dataloader()))
    for user, row in zip(batch["user"][:20].tolist(), batch["items"][:20].tolist(), strict=True):
        assert row == pad_left(ml100k.data.sequence(user).tolist()[:-2], 51)


@pytest.mark.realdata
@pytest.mark.parametrize("ranking", ["uni100", "pop100"])
def test_ml100k_sampled_candidates(ml100k_dir: Path, ranking: str) -> None:
    path = str(ml100k_dir / "ml-100k.inter")
    dm = SeqRecDataModule(path=path, ranking=ranking, eval_batch_size=512)
    dm.setup()
    counts = dm.item_counts
    for split in ("val", "test"):
        batch = next(iter(getattr(dm, f"{split}_dataloader")()))
        cands = batch["candidates"]
        assert cands.shape == (512, 101) and torch.equal(cands[:, 0], batch["target"])
        for row in range(0, 512, 37):
            negatives = set(cands[row, 1:].tolist())
            assert len(negatives) == 100 and 0 not in negatives
            assert (
                not negatives & set(batch["seen"][row].tolist())
                and int(batch["target"][row]) not in negatives
            )
            if ranking == "pop100":
                assert bool((counts[cands[row, 1:]] > 0).all())
    again = SeqRecDataModule(path=path, ranking=ranking, eval_batch_size=512)
    again.setup("test")  # the same candidates whichever stage is set up first
    assert torch.equal(next(iter(again.test_dataloader()))["candidates"], cands)


@pytest.mark.realdata
def test_ml100k_setup_is_deterministic(ml100k_dir: Path, ml100k: SeqRecDataModule) -> None:
    other = SeqRecDataModule(path=str(ml100k_dir / "ml-100k.inter"), max_len=50, eval_batch_size=256)
    other.setup("fit")
    assert torch.equal(other.data.items, ml100k.data.items) and other.item_ids == ml100k.item_ids
    for a, b in zip(other.train_dataloader(), ml100k.train_dataloader(), strict=True):
        assert torch.equal(a["items"], b["items"]) and torch.equal(a["user"], b["user"])
    assert torch.equal(other.item_counts, ml100k.item_counts)
    assert int(ml100k.item_counts.sum()) == 100_000 - 2 * 943


@pytest.mark.realdata
def test_toys_sequence_file(toys_file: Path) -> None:
    dm = SeqRecDataModule(path=str(toys_file), format="sequence", max_len=50, eval_batch_size=512)
    dm.setup("test")
    data = dm.data
    assert data.num_users == 19412 and data.num_items == 11924 and data.timestamps is None
    batch = next(iter(dm.test_dataloader()))
    first_line = toys_file.read_text().split("\n", 1)[0].split()
    user = int(batch["user"][0])
    assert data.user_ids[user] == first_line[0]
    assert dm.decode_items([int(batch["target"][0])]) == [first_line[-1]]
    assert dm.decode_items(batch["seen"][0][batch["seen"][0] > 0]) == first_line[1:-1]


# ------------------------------------------------------------------------------------------ simulator


def test_simulator_is_deterministic(sequence_simulator) -> None:
    a = sequence_simulator.simulate_sequences(num_users=30, num_items=60, seed=2)
    b = sequence_simulator.simulate_sequences(num_users=30, num_items=60, seed=2)
    c = sequence_simulator.simulate_sequences(num_users=30, num_items=60, seed=3)
    assert all((getattr(a, f) == getattr(b, f)).all() for f in ("user", "item", "rating", "timestamp"))
    assert len(a) != len(c) or not (a.item == c.item).all()
    assert set(a.rating.tolist()) <= {1, 2, 3, 4, 5} and a.item.min() >= 1 and a.item.max() <= 60


def test_simulator_output_round_trips(sim_inter: Path, sequence_simulator) -> None:
    assert sim_inter.read_text().split("\n", 1)[0] == sequence_simulator.HEADER
    sim = sequence_simulator.simulate_sequences(
        num_users=200,
        num_items=150,
        seed=0,
        params=sequence_simulator.SequenceSimParams(mean_len=20.0, num_clusters=10),
    )
    dm = SeqRecDataModule(path=str(sim_inter), max_len=20, split="time_ratio")
    dm.setup()
    data = dm.data
    assert data.num_interactions == len(sim) and data.num_users == 200 and data.timestamps is not None
    for u in (0, 57, 199):
        raw = data.user_ids[u]
        mine = sim.user == int(raw)
        order = sim.timestamp[mine].argsort(kind="stable")
        assert dm.decode_items(data.sequence(u)) == [str(i) for i in sim.item[mine][order]]
        assert len(set(data.sequence(u).tolist())) == len(data.sequence(u))  # no repeats
    assert dm.sample_count("val") > 0 and dm.sample_count("test") > 0
    batch = next(iter(dm.test_dataloader()))
    assert batch["items"].shape[1] == 20 and bool((batch["target"] > 0).all())
