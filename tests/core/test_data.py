"""``BaseDataModule``: options, splits per stage, loaders, every evaluation sample once under DDP."""

from pathlib import Path

import pytest
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import TensorDataset

from core.data import BaseDataModule, Split


class Rows(BaseDataModule):
    sample_name = "rows"

    def __init__(self, sizes: dict[str, int], **kwargs) -> None:
        super().__init__(**kwargs)
        self.sizes = sizes
        self.built: list[str] = []

    def build_dataset(self, split: Split) -> TensorDataset | None:
        self.built.append(split)
        n = self.sizes.get(split, 0)
        return TensorDataset(torch.arange(n, dtype=torch.float32)) if n else None

    def input_paths(self) -> list[Path]:
        return []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "batch_size must be >= 1"),
        ({"eval_batch_size": 0}, "eval_batch_size"),
        ({"num_workers": -1}, "num_workers"),
    ],
)
def test_bad_options_name_themselves(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=f"Rows: {message}"):
        Rows({}, **kwargs)


def test_stages_build_their_splits_once(capsys) -> None:
    rows = Rows({"train": 10, "val": 4, "test": 3, "predict": 2}, batch_size=4)
    rows.setup("fit")
    rows.setup("fit")
    rows.setup("test")
    assert rows.built == ["train", "val", "test"]
    assert rows.summary() == "Rows: train 10 rows, val 4 rows, test 3 rows"
    assert rows.eval_batch_size == 4
    train = rows.train_dataloader()
    assert train.batch_size == 4 and len(train) == 3
    assert [len(b[0]) for b in rows.test_dataloader()] == [3]
    with pytest.raises(RuntimeError, match="the predict split is not set up"):
        rows.predict_dataloader()


def test_missing_validation_skips_it_and_a_missing_test_is_an_error() -> None:
    rows = Rows({"train": 4})
    rows.setup(None)
    with pytest.warns(UserWarning, match="validation is skipped"):
        assert rows.val_dataloader() == []
    with pytest.raises(ValueError, match="no test data is configured"):
        rows.test_dataloader()


def test_evaluation_under_ddp_gives_every_sample_to_one_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda group=None: 2)
    seen = []
    for rank in (0, 1):
        monkeypatch.setattr(torch.distributed, "get_rank", lambda group=None, rank=rank: rank)
        rows = Rows({"train": 8, "val": 5}, batch_size=2)
        rows.setup("fit")
        loader = rows.val_dataloader()
        assert isinstance(loader.sampler, UnrepeatedDistributedSampler)
        seen += [float(v) for batch in loader for v in batch[0]]
        assert rows.train_dataloader().sampler is not None  # Lightning puts its own sampler there
    assert sorted(seen) == [0.0, 1.0, 2.0, 3.0, 4.0], "a validation sample was scored twice or lost"
    small = Rows({"train": 8, "val": 1})
    small.setup("fit")
    with pytest.raises(ValueError, match="the val split has 1 rows, fewer than the 2 processes"):
        small.val_dataloader()
