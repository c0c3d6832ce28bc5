"""Map-style datasets of in-memory patches, yielding the domain's batch dictionaries."""

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

__all__ = ["PatchDataset"]


class PatchDataset(Dataset):
    """Patches with a class (or regression target) each: ``{"image", "label" | "target", "id"}``.

    Args:
        images: Band values (N, C, H, W); NaN marks nodata.
        targets: Class index (int, N) or regression target (float, N); None for unlabelled data.
        ids: A name per patch (file and line, file name, pixel position), returned as ``"id"``.
        target_key: ``label`` (int64) or ``target`` (float32).
    """

    def __init__(
        self,
        images: np.ndarray | Tensor,
        targets: np.ndarray | Tensor | None,
        ids: Sequence[str],
        target_key: str = "label",
    ) -> None:
        self.images = torch.as_tensor(np.asarray(images, dtype=np.float32))
        self.targets = None
        if targets is not None:
            dtype = torch.int64 if target_key == "label" else torch.float32
            self.targets = torch.as_tensor(np.asarray(targets)).to(dtype)
            if len(self.targets) != len(self.images):
                raise ValueError(f"{len(self.images)} patches but {len(self.targets)} targets")
        if len(ids) != len(self.images):
            raise ValueError(f"{len(self.images)} patches but {len(ids)} ids")
        self.ids = list(ids)
        self.target_key = target_key

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, Tensor | str]:
        item: dict[str, Tensor | str] = {"image": self.images[index], "id": self.ids[index]}
        if self.targets is not None:
            item[self.target_key] = self.targets[index]
        return item
