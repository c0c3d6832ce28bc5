"""Class-folder image collections: EuroSAT (multi-band GeoTIFF or RGB JPEG), NWPU-RESISC45, AID, UC Merced.

The layout is one folder per class, each holding that class's images::

    root/AnnualCrop/AnnualCrop_1.tif      (EuroSAT MS: 13-band GeoTIFF, 64 × 64)
    root/airplane/airplane_001.jpg        (NWPU-RESISC45: RGB JPEG, 256 × 256)

Images are read through rasterio (GDAL reads GeoTIFF, PNG and JPEG alike) as (bands, rows, columns). All
images must have the same band count, and the same size unless a resize is configured (UC Merced has a few
images of 247 × 256 among its 256 × 256 ones). Input files are only read.
"""

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from core.utils import InputError, InputFileNotFoundError
from domains.remote_sensing.rasters import open_raster

__all__ = ["IMAGE_EXTENSIONS", "ClassFolderDataset", "list_class_folders", "read_image"]

IMAGE_EXTENSIONS = (".tif", ".tiff", ".png", ".jpg", ".jpeg")


def list_class_folders(
    root: str | Path, classes: Sequence[str] | None = None
) -> tuple[list[str], list[Path], np.ndarray]:
    """Class names, image files and class indices of a class-folder collection.

    Args:
        root: The folder of class folders.
        classes: Class folder names in output order; default: every sub-folder, sorted.

    Raises:
        InputFileNotFoundError: If ``root`` or a configured class folder is missing.
        InputError: If a class folder has no image, or ``root`` has no class folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputFileNotFoundError(f"{root}: image folder not found")
    names = list(classes) if classes is not None else sorted(p.name for p in root.iterdir() if p.is_dir())
    if not names:
        raise InputError(f"{root}: no class folders (expected root/<class>/<image>)")
    files: list[Path] = []
    labels: list[int] = []
    for index, name in enumerate(names):
        folder = root / name
        if not folder.is_dir():
            raise InputFileNotFoundError(f"{folder}: class folder not found")
        images = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not images:
            raise InputError(f"{folder}: no images ({', '.join(IMAGE_EXTENSIONS)}) in class folder {name!r}")
        files += images
        labels += [index] * len(images)
    return names, files, np.asarray(labels, dtype=np.int64)


def read_image(path: Path, bands: Sequence[int] | None = None) -> np.ndarray:
    """An image as float32 (bands, rows, columns); ``bands`` are 1-based indices to keep.

    Raises:
        InputError: Naming the file, if it cannot be read or lacks a requested band.
    """
    import rasterio

    with warnings.catch_warnings():
        # PNG and JPEG scenes carry no georeferencing, and class labels need none.
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        ds = open_raster(path)
    with ds:
        if bands is not None and max(bands) > ds.count:
            raise InputError(f"{path}: has {ds.count} bands, the configuration reads bands {list(bands)}")
        try:
            return ds.read(list(bands) if bands is not None else None).astype(np.float32)
        except rasterio.errors.RasterioIOError as err:
            raise InputError(f"{path}: cannot read the image (truncated or corrupt?): {err}") from None


class ClassFolderDataset(Dataset):
    """Images read file by file: ``{"image", "label", "id"}`` (``id`` the path relative to the root).

    Args:
        root: The collection's root (for ids).
        files: Image files.
        labels: Class index per file.
        channels: Expected band count (after ``bands``).
        bands: 1-based band indices to keep; default all.
        image_size: Resize every image to this square size (bilinear); None requires all images to share
            the size of the first.
        size: Expected (rows, columns) when ``image_size`` is None.
    """

    def __init__(
        self,
        root: Path,
        files: Sequence[Path],
        labels: np.ndarray,
        channels: int,
        bands: Sequence[int] | None,
        image_size: int | None,
        size: tuple[int, int],
    ) -> None:
        self.root = root
        self.files = list(files)
        self.labels = torch.as_tensor(labels, dtype=torch.int64)
        self.channels = channels
        self.bands = list(bands) if bands is not None else None
        self.image_size = image_size
        self.size = size

    def __len__(self) -> int:
        return len(self.files)

    def load(self, index: int) -> Tensor:
        """The checked, resized image ``index`` as float32 (C, H, W)."""
        path = self.files[index]
        image = torch.from_numpy(read_image(path, self.bands))
        if image.shape[0] != self.channels:
            raise InputError(
                f"{path}: has {image.shape[0]} bands, the collection (and the configuration) {self.channels}"
            )
        if self.image_size is not None:
            if tuple(image.shape[1:]) != (self.image_size, self.image_size):
                size = (self.image_size, self.image_size)
                image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
        elif tuple(image.shape[1:]) != self.size:
            raise InputError(
                f"{path}: is {image.shape[1]}×{image.shape[2]} pixels, the first image {self.size[0]}×"
                f"{self.size[1]}; set image_size to resize"
            )
        return image

    def __getitem__(self, index: int) -> dict[str, Tensor | str]:
        return {
            "image": self.load(index),
            "label": self.labels[index],
            "id": str(self.files[index].relative_to(self.root)),
        }
