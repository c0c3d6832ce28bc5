"""Scene classification from class folders (EuroSAT, NWPU-RESISC45, AID, UC Merced)."""

from pathlib import Path

import numpy as np

from core.data import Split
from core.utils import InputError
from domains.remote_sensing.datamodules.base import CLASS_LINKS, RemoteSensingDataModule
from domains.remote_sensing.folders import ClassFolderDataset, list_class_folders, read_image
from domains.remote_sensing.normalization import BandStatistics, RunningBandStatistics
from domains.remote_sensing.splits import stratified_split

__all__ = ["ClassFolderDataModule"]


class ClassFolderDataModule(RemoteSensingDataModule):
    """``root/<class>/<image>`` → ``{"image": (B, C, H, W), "label", "id"}`` with seeded stratified splits.

    Images are read file by file (a collection need not fit in memory). ``band_names`` names the bands
    that are read, in order, and must match the band count of the images (after ``bands``). Band statistics
    come from up to ``statistics_images`` training images (a seeded draw) and are applied on the device.
    Prediction runs on the test split.

    Args:
        root: The folder of class folders.
        classes: Class folder names in output order; default: every sub-folder, sorted.
        band_names: Names of the bands read, e.g. ``[red, green, blue]``; default ``band1`` ….
        bands: 1-based band indices to read (e.g. EuroSAT's B04 B03 B02 = ``[4, 3, 2]``); default all.
        image_size: Resize every image to this square size; default: all images must share one size.
        val_fraction: Stratified share for validation.
        test_fraction: Stratified share for test.
        seed: Seed of the splits and of the statistics draw.
        statistics_images: Training images the band statistics are computed on (None: all).
        batch_size: Images per training batch.
        eval_batch_size: Images per evaluation batch; default ``batch_size``.
        num_workers: DataLoader worker processes.
        normalize: Normalise bands with training statistics.
    """

    links = CLASS_LINKS
    sample_name = "images"

    def __init__(
        self,
        root: str,
        classes: list[str] | None = None,
        band_names: list[str] | None = None,
        bands: list[int] | None = None,
        image_size: int | None = None,
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
        seed: int = 0,
        statistics_images: int | None = 2000,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        normalize: bool = True,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, num_workers, normalize)
        self.root = Path(root)
        self.class_names, self.files, self.labels = list_class_folders(self.root, classes)
        self.num_classes = len(self.class_names)
        self.bands = bands
        first = read_image(self.files[0], bands)
        self.in_channels = int(first.shape[0])
        if band_names is not None and len(band_names) != self.in_channels:
            raise InputError(
                f"{self.files[0]}: has {self.in_channels} bands (after bands={bands}), the configuration "
                f"names {len(band_names)}: {band_names}"
            )
        self.band_names = tuple(band_names or [f"band{i + 1}" for i in range(self.in_channels)])
        self.image_size = image_size
        self.size = (int(first.shape[1]), int(first.shape[2]))
        self.seed = int(seed)
        self.statistics_images = statistics_images
        train, val, test = stratified_split(self.labels, (val_fraction, test_fraction), self.seed)
        self.rows = {"train": train, "val": val, "test": test, "predict": test}

    def build_dataset(self, split: Split) -> ClassFolderDataset | None:
        """The images of ``split`` (None when its share is empty)."""
        rows = self.rows[split]
        if len(rows) == 0:
            return None
        files = [self.files[i] for i in rows]
        return ClassFolderDataset(
            self.root, files, self.labels[rows], self.in_channels, self.bands, self.image_size, self.size
        )

    def compute_statistics(self) -> dict[str, BandStatistics]:
        """Band statistics over (a seeded draw of) the training images."""
        dataset = self.build_dataset("train")
        if dataset is None:
            raise InputError(f"{self.root}: the training split is empty")
        order = np.random.default_rng(self.seed).permutation(len(dataset))
        if self.statistics_images is not None:
            order = order[: self.statistics_images]
        running = RunningBandStatistics(self.band_names)
        for index in sorted(order.tolist()):
            running.update(dataset.load(index).numpy())
        return {"image": running.result(f"{self.root} ({len(order)} training images)")}

    def input_paths(self) -> list[Path]:
        """The collection's root."""
        return [self.root]
