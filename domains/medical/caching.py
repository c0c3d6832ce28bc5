"""MONAI datasets of case items, with optional caching in memory or on disk (never among the input data)."""

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from monai.data import CacheDataset
from torch.utils.data import Dataset

from core.utils import InputError

if TYPE_CHECKING:
    from monai.transforms import Compose

__all__ = ["CacheMode", "JoinedCacheDataset", "cache_folder", "case_dataset", "reseed_transforms"]

CacheMode = Literal["none", "memory", "disk"]


class JoinedCacheDataset(CacheDataset):
    """MONAI's ``CacheDataset`` whose cache-filling threads have all stopped before an error propagates.

    MONAI fills the cache in a ``multiprocessing.pool.ThreadPool``; when one case fails (a corrupt file, an
    unexpected label value), the pool is terminated but its daemon threads are not joined and go on with the
    next cases. If the process then exits on the error, Python ends those threads inside PyTorch's C++ code,
    which aborts the process (``terminate called without an active exception``, exit status 134) and hides
    the error message. Here the pending cases are cancelled and the running ones awaited before the first
    error (in case order) is raised. The cached items are the same.
    """

    def _fill_cache(self, indices: list[int] | None = None) -> list:
        if self.cache_num <= 0:
            return []
        if indices is None:
            indices = list(range(self.cache_num))
        with ThreadPoolExecutor(self.num_workers or os.cpu_count()) as pool:
            futures = [pool.submit(self._load_cache_item, index) for index in indices]
            try:
                return [future.result() for future in futures]
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise


def case_dataset(
    items: list[dict[str, Any]], transform: "Compose", cache: CacheMode, folder: Path | None = None
) -> Dataset:
    """A MONAI dataset of ``items`` through ``transform``.

    Args:
        items: One dict per case (``case``, ``image``, ``label``).
        transform: The split's pipeline.
        cache: ``none`` (every step on every read), ``memory`` (:class:`JoinedCacheDataset`: the
            deterministic steps, loading included, done once when the dataset is built) or ``disk``
            (``PersistentDataset`` files in ``folder``).
        folder: The disk cache's folder (see :func:`cache_folder`); required for ``disk``.

    Returns:
        The dataset.
    """
    from monai.data import Dataset as MonaiDataset
    from monai.data import PersistentDataset

    if cache == "memory":
        return JoinedCacheDataset(
            items, transform=transform, cache_rate=1.0, num_workers=None, progress=False
        )
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
            raise InputError(
                f"cache_dir {cache_dir} lies inside the input folder {folder}; the input data is "
                "never written to: choose a cache_dir elsewhere (e.g. under runs/)"
            )
    digest = hashlib.sha1(json.dumps(dict(options), sort_keys=True, default=str).encode()).hexdigest()[:12]
    folder = base / digest / pipeline
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def reseed_transforms(dataset: Dataset, seed: int) -> None:
    """Reseed the random transforms of a MONAI dataset: one seed per training sample, for exact resumes.

    :attr:`core.data.BaseDataModule.sample_reseed` calls it before each training sample is drawn.
    """
    dataset.transform.set_random_state(seed=seed)  # type: ignore[attr-defined]
