"""A CSV table of numeric features and a label column, split into train/val/test rows with a seed."""

import csv
from pathlib import Path
from typing import ClassVar

import torch
from torch.utils.data import TensorDataset

from core.data import BaseDataModule, Split


class CSVDataModule(BaseDataModule):
    """Rows of ``path``: every column but ``label_column`` is a feature; batches are ``(x, y)``.

    Args:
        path: The CSV file (header row first).
        label_column: Name of the class column.
        val_fraction: Share of the rows for validation.
        test_fraction: Share of the rows for test (also predicted).
        seed: Seed of the row shuffle before the split.
        batch_size: Rows per training batch.
        num_workers: DataLoader worker processes.
    """

    links: ClassVar[dict[str, str]] = {
        "num_features": "num_features",
        "num_classes": "num_classes",
        "class_names": "class_names",
    }
    sample_name = "rows"

    def __init__(
        self,
        path: str,
        label_column: str = "label",
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
        seed: int = 0,
        batch_size: int = 32,
        num_workers: int = 0,
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers)
        self.path = Path(path)
        with self.path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        if not rows or label_column not in rows[0]:
            raise ValueError(f"{self.path}: expected a header row with a {label_column!r} column")
        features = [c for c in rows[0] if c != label_column]
        self.class_names = sorted({row[label_column] for row in rows})
        index = {name: i for i, name in enumerate(self.class_names)}
        try:
            x = torch.tensor([[float(row[c]) for c in features] for row in rows])
        except ValueError as err:
            raise ValueError(f"{self.path}: every feature column must be numeric ({err})") from None
        y = torch.tensor([index[row[label_column]] for row in rows])
        order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed))
        n_val, n_test = round(val_fraction * len(rows)), round(test_fraction * len(rows))
        parts = {
            "val": order[:n_val],
            "test": order[n_val : n_val + n_test],
            "train": order[n_val + n_test :],
        }
        parts["predict"] = parts["test"]
        self.parts = {split: (x[rows_], y[rows_]) for split, rows_ in parts.items()}
        self.num_features = x.shape[1]
        self.num_classes = len(self.class_names)

    def build_dataset(self, split: Split) -> TensorDataset | None:
        """The rows of ``split`` (None when its share is 0)."""
        x, y = self.parts[split]
        return TensorDataset(x, y) if len(x) else None

    def input_paths(self) -> list[Path]:
        """The CSV file."""
        return [self.path]
