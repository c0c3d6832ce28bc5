"""Base of the remote-sensing datamodules: band statistics from the training split, applied on the device.

Datasets yield raw band values (NaN at nodata pixels). :meth:`RemoteSensingDataModule.on_after_batch_transfer`
normalises every image-like entry of a batch on the device with per-band statistics of the training split.
The statistics are computed lazily (the first time a batch is normalised, or by :meth:`fit_statistics`)
and saved in the datamodule's ``state_dict``: Lightning restores them from a checkpoint after ``setup``,
so ``test`` and ``predict`` with ``--ckpt_path`` use the training statistics of the run that saved it.
"""

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from core.data import BaseDataModule
from domains.remote_sensing.normalization import BandStatistics

__all__ = ["CLASS_LINKS", "RemoteSensingDataModule"]

# The task arguments a labelled datamodule sets: bands, classes and their names.
CLASS_LINKS: Mapping[str, str] = {
    "in_channels": "in_channels",
    "num_classes": "num_classes",
    "class_names": "class_names",
}


class RemoteSensingDataModule(BaseDataModule):
    """Adds per-band normalisation on the device to :class:`~core.data.BaseDataModule`.

    Class attributes:
        normalized_keys: ``{batch key: statistics key}``: which batch entries are normalised with which
            statistics (a context tile shares the statistics of the image bands).

    Args:
        batch_size: Samples per training batch.
        eval_batch_size: Samples per validation, test and prediction batch; default ``batch_size``.
        num_workers: DataLoader worker processes.
        normalize: Normalise bands with training-split statistics; False feeds raw values (NaN at nodata
            pixels is still replaced by 0).
    """

    normalized_keys: ClassVar[Mapping[str, str]] = {"image": "image"}
    band_names: tuple[str, ...]

    def __init__(
        self,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        normalize: bool = True,
    ) -> None:
        super().__init__(batch_size=batch_size, eval_batch_size=eval_batch_size, num_workers=num_workers)
        self.normalize = bool(normalize)
        self.statistics: dict[str, BandStatistics] = {}

    # ------------------------------------------------------------------ what a subclass implements

    def statistics_band_names(self) -> dict[str, tuple[str, ...]]:
        """``{statistics key: band names}`` of the configured data (known after ``__init__``).

        By default the image bands, ``band_names``; a subclass with more normalised inputs adds theirs.
        """
        return {"image": self.band_names}

    def compute_statistics(self) -> dict[str, BandStatistics]:
        """Per-band statistics of the training split, one entry per key of :meth:`statistics_band_names`."""
        raise NotImplementedError(f"{type(self).__name__} must implement compute_statistics()")

    # ------------------------------------------------------------------ statistics

    def fit_statistics(self) -> dict[str, BandStatistics]:
        """The training statistics: restored from a checkpoint, or computed once from the training split."""
        if self.normalize and not self.statistics:
            self.statistics = self.compute_statistics()
            rank_zero_info(f"{type(self).__name__}: band statistics\n{self.describe_statistics()}")
        return self.statistics

    def normalize_batch(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Normalise the image-like entries of ``batch`` in place (on their device) and return it."""
        statistics = self.fit_statistics() if self.normalize else {}
        for key, stats_key in self.normalized_keys.items():
            value = batch.get(key)
            if value is None:
                continue
            if stats_key in statistics:
                batch[key] = statistics[stats_key].normalize(value)
            else:
                batch[key] = value.nan_to_num(nan=0.0)
        return batch

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Normalise the batch on the device (Lightning calls this after moving it)."""
        if isinstance(batch, dict):
            return self.normalize_batch(batch)
        return batch

    def state_dict(self) -> dict[str, Any]:
        """The training-split band statistics (empty before they are computed)."""
        return {"statistics": {key: stats.state() for key, stats in self.statistics.items()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Use the band statistics of a checkpoint (those of the run that trained the weights).

        Raises:
            InputError: If the checkpoint's statistics are for other bands than the configured data.
        """
        saved = (state_dict or {}).get("statistics") or {}
        if not saved:
            return
        expected = self.statistics_band_names()
        restored = {}
        for key, state in saved.items():
            stats = BandStatistics.from_state(state)
            if key in expected:
                stats.check_names(expected[key], f"checkpoint statistics of {key!r}")
            restored[key] = stats
        for key, stats in self.statistics.items():
            if key in restored and not np.allclose(stats.mean, restored[key].mean, rtol=1e-5):
                rank_zero_warn(
                    f"{type(self).__name__}: the checkpoint's {key!r} band statistics differ from those of "
                    "this training split; the checkpoint's are used"
                )
        self.statistics = restored

    def describe_statistics(self) -> str:
        """One line per statistics key: band means and standard deviations."""
        lines = []
        for key, stats in self.statistics.items():
            pairs = ", ".join(
                f"{n} {m:.4g}±{s:.3g}" for n, m, s in zip(stats.names, stats.mean, stats.std, strict=True)
            )
            lines.append(f"  {key} statistics (training split): {pairs}")
        return "\n".join(lines)
