"""MONAI datasets of case items, with optional caching in memory or on disk (never among the input data)."""

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from torch.utils.data import Dataset

if TYPE_CHECKING:
    from monai.transforms import Compose

__all__ = ["CacheMode", "cache_folder", "case_dataset"]

CacheMode = Literal["none", "memory", "disk"]


def case_dataset(
    items: list[dict[str, Any]], transform: "Compose", cache: CacheMode, folder: Path | None = None
) -> Dataset:
    """A MONAI dataset of ``items`` through ``transform``.

    Args:
        items: One dict per case (``case``, ``image``, ``label``).
        transform: The split's pipeline.
        cache: ``none`` (every step on every read), ``memory`` (``CacheDataset``: the deterministic steps,
            loading included, done once when the dataset is built) or ``disk`` (``PersistentDataset`` files in
            ``folder``).
        folder: The disk cache's folder (see :func:`cache_folder`); required for ``disk``.

    Returns:
        The dataset.
    """
    from monai.data import CacheDataset, PersistentDataset
    from monai.data import Dataset as MonaiDataset

    if cache == "memory":
        return CacheDataset(items, transform=transform, cache_rate=1.0, num_workers=None, progress=False)
    if cache == "disk":
        if folder is None:
            raise ValueError("case_dataset: cache='disk' needs a cache folder")
        return PersistentDataset(items, transform=transform, cache_dir=folder)
    return MonaiDataset(items, transform=transform)


def cache_folder(cache_dir: Path, inputs: Iterable[Path], options: Mapping[str, Any], pipeline: str) -> Path:
    """``cache_dir/<hash of the preprocessing options>/<pipeline>``, created; refused inside an input folder.

    Args:
        cache_dir: The cache root.
        inputs: Folders the input data lives in.
        options: Everything the cached results depend on (JSON-serialisable, or shown by ``str``).
        pipeline: ``train`` or ``eval`` (their deterministic parts differ).

    Raises:
        ValueError: If ``cache_dir`` lies inside (or is) one of ``inputs``.
    """
    base = cache_dir.resolve()
    for folder in inputs:
        folder = Path(folder).resolve()
        if base == folder or folder in base.parents:
            raise ValueError(
                f"cache_dir {cache_dir} lies inside the input folder {folder}; the input data is "
                "never written to: choose a cache_dir elsewhere (e.g. under runs/)"
            )
    digest = hashlib.sha1(json.dumps(dict(options), sort_keys=True, default=str).encode()).hexdigest()[:12]
    folder = base / digest / pipeline
    folder.mkdir(parents=True, exist_ok=True)
    return folder
