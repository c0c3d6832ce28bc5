"""Tiles of a scene read window by window: the image bands, a class mask, the pan parent and a context tile.

A :class:`SceneTiles` reader turns a tile position into the tensors of one sample; the
:class:`SceneTileDataset` applies it to the positions of a sampler. Nothing holds a whole scene in memory.
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from core.utils import InputError
from domains.remote_sensing.landsat import IGNORE, Confidence, QAFormat, decode_bqa
from domains.remote_sensing.normalization import BandStatistics, RunningBandStatistics
from domains.remote_sensing.rasters import BandStack
from domains.remote_sensing.samplers import Tile
from domains.remote_sensing.splits import Block

__all__ = [
    "BQAMask",
    "MaskSource",
    "RasterMask",
    "SceneTileDataset",
    "SceneTiles",
    "block_statistics",
    "check_has_tiles",
    "downsample_mean",
]


class MaskSource(Protocol):
    """A class mask read window by window (-1 = ignore)."""

    paths: list[Path]

    def read(self, row: int, col: int, height: int, width: int) -> np.ndarray:
        """int64 (height, width); -1 outside the raster and at fill pixels."""
        ...


class BQAMask:
    """The clear / cloud / cloud-shadow mask decoded from a Landsat 8 BQA file, window by window.

    Args:
        path: The ``*_BQA.tif`` file.
        fmt: Its bit layout (see :mod:`domains.remote_sensing.landsat`).
        cloud_confidence: Lowest cloud confidence counted as cloud.
        shadow_confidence: Lowest cloud-shadow confidence counted as shadow.
        cirrus_as_cloud: Count cirrus as cloud.
        require_crs: Raise when the file has no CRS.
    """

    def __init__(
        self,
        path: str | Path,
        fmt: QAFormat,
        cloud_confidence: Confidence = "high",
        shadow_confidence: Confidence = "high",
        cirrus_as_cloud: bool = False,
        require_crs: bool = False,
    ) -> None:
        self.stack = BandStack.from_files({"BQA": path}, require_crs=require_crs)
        self.paths = self.stack.paths
        self.fmt = fmt
        self.options = {
            "cloud_confidence": cloud_confidence,
            "shadow_confidence": shadow_confidence,
            "cirrus_as_cloud": cirrus_as_cloud,
        }

    def read(self, row: int, col: int, height: int, width: int) -> np.ndarray:
        """Decoded classes of the window (-1 at fill and outside the raster)."""
        raw = self.stack.read(row, col, height, width)[0]
        outside = np.isnan(raw)
        mask = decode_bqa(np.where(outside, 1, raw).astype(np.uint16), self.fmt, **self.options)  # type: ignore[arg-type]
        mask[outside] = IGNORE
        return mask


class RasterMask:
    """A class-label raster read window by window: raster codes → class indices, nodata → -1.

    Args:
        path: Single-band label GeoTIFF.
        class_values: The raster code of each class, in class order (e.g. ``[0, 1, 2]``).
        nodata: Raster code of unlabelled pixels; default the file's nodata value.
        require_crs: Raise when the file has no CRS.

    Raises:
        InputError: Naming the file and the codes, when it holds codes outside ``class_values`` and
            ``nodata`` (checked strip by strip on construction).
    """

    def __init__(
        self,
        path: str | Path,
        class_values: Sequence[int],
        nodata: float | None = None,
        require_crs: bool = False,
        rows_per_read: int = 256,
    ) -> None:
        self.stack = BandStack.from_files({"mask": path}, nodata=nodata, require_crs=require_crs)
        self.paths = self.stack.paths
        self.lookup = {float(v): i for i, v in enumerate(class_values)}
        allowed = np.array(sorted(self.lookup), dtype=np.float64)
        for row in range(0, self.stack.height, rows_per_read):
            values = self.stack.read(row, 0, min(rows_per_read, self.stack.height - row), self.stack.width)
            found = np.unique(values[~np.isnan(values)])
            outside = found[~np.isin(found, allowed)]
            if outside.size:
                raise InputError(
                    f"{self.paths[0]}: label codes {outside[:10].tolist()} (from row {row}) are not among "
                    f"the classes' codes {allowed.tolist()} or the nodata value"
                )

    def read(self, row: int, col: int, height: int, width: int) -> np.ndarray:
        """Class indices of the window (-1 at nodata and outside the raster)."""
        values = self.stack.read(row, col, height, width)[0]
        mask = np.full(values.shape, IGNORE, dtype=np.int64)
        for code, index in self.lookup.items():
            mask[values == code] = index
        return mask


def downsample_mean(values: np.ndarray, factor: int) -> np.ndarray:
    """Average ``factor × factor`` cells of (C, H, W), ignoring NaN; all-NaN cells stay NaN."""
    c, h, w = values.shape
    cells = values.reshape(c, h // factor, factor, w // factor, factor)
    valid = ~np.isnan(cells)
    total = np.where(valid, cells, 0.0).sum(axis=(2, 4))
    count = valid.sum(axis=(2, 4))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan).astype(np.float32)


class SceneTiles:
    """Reads the tensors of one tile: image bands, and optionally mask, pan parent and context tile.

    Args:
        image: The image bands (one grid).
        mask: The class mask on the image grid, or None (unlabelled).
        pan: A higher-resolution band (Landsat band 8) read over the tile's map bounds at ``pan_scale``
            times the tile size, or None.
        pan_scale: Resolution ratio of ``pan`` to ``image``.
        context_scale: Side of the context window in tiles (a ``context_scale × size`` window centred on the
            tile, averaged down to the tile size), or None for no context.
    """

    def __init__(
        self,
        image: BandStack,
        mask: MaskSource | None = None,
        pan: BandStack | None = None,
        pan_scale: int = 2,
        context_scale: int | None = None,
    ) -> None:
        if context_scale is not None and context_scale < 2:
            raise ValueError(
                f"context_scale must be >= 2 (a wider window than the tile), got {context_scale}"
            )
        self.image = image
        self.mask = mask
        self.pan = pan
        self.pan_scale = int(pan_scale)
        self.context_scale = context_scale

    def read_arrays(self, row: int, col: int, size: int, clip: Block | None = None) -> dict[str, np.ndarray]:
        """Numpy arrays of the tile at ``(row, col)``; the context never reads outside ``clip``."""
        image = self.image.read(row, col, size, size)
        out = {"image": image}
        if self.mask is not None:
            mask = self.mask.read(row, col, size, size)
            mask[np.isnan(image).all(axis=0)] = IGNORE
            out["mask"] = mask
        if self.pan is not None:
            bounds = self.image.window_bounds(row, col, size, size)
            out["pan"] = self.pan.read_bounds(bounds, (size * self.pan_scale, size * self.pan_scale))
        if self.context_scale is not None:
            side = size * self.context_scale
            r0, c0 = row - (side - size) // 2, col - (side - size) // 2
            context = self.image.read(r0, c0, side, side)
            if clip is not None:
                # Pixels of other blocks (possibly of another split) are blanked like nodata.
                rows = np.arange(r0, r0 + side)
                cols = np.arange(c0, c0 + side)
                outside_r = (rows < clip.row) | (rows >= clip.row + clip.height)
                outside_c = (cols < clip.col) | (cols >= clip.col + clip.width)
                context[:, outside_r, :] = np.nan
                context[:, :, outside_c] = np.nan
            out["context"] = downsample_mean(context, self.context_scale)
        return out

    def read_window(self, row: int, col: int, height: int, width: int) -> dict[str, np.ndarray]:
        """Image (and pan) arrays of any rectangular window, without mask or context (for statistics)."""
        out = {"image": self.image.read(row, col, height, width)}
        if self.pan is not None:
            bounds = self.image.window_bounds(row, col, height, width)
            out["pan"] = self.pan.read_bounds(bounds, (height * self.pan_scale, width * self.pan_scale))
        return out

    def read(self, row: int, col: int, size: int, clip: Block | None = None) -> dict[str, Tensor]:
        """The tile as tensors: image/context/pan float32, mask int64."""
        return {key: torch.from_numpy(value) for key, value in self.read_arrays(row, col, size, clip).items()}

    def has_data(self, tile: Tile) -> bool:
        """Whether the tile has a labelled pixel (with a mask) or a non-nodata pixel (without)."""
        if self.mask is not None:
            return bool((self.mask.read(tile.row, tile.col, tile.size, tile.size) != IGNORE).any())
        return bool((~np.isnan(self.image.read(tile.row, tile.col, tile.size, tile.size))).any())

    @property
    def paths(self) -> list[Path]:
        """Every file read."""
        paths = list(self.image.paths)
        if self.mask is not None:
            paths += self.mask.paths
        if self.pan is not None:
            paths += self.pan.paths
        return paths


class SceneTileDataset(Dataset):
    """The tiles of a sampler read through a :class:`SceneTiles` reader.

    Mask pixels that an earlier tile of a grid already covers are set to -1, so evaluation scores every
    pixel of a block exactly once.

    Args:
        reader: Reads one tile.
        tiles: Tile positions (a grid or random sampler).
    """

    def __init__(self, reader: SceneTiles, tiles: Sequence[Tile]) -> None:
        self.reader = reader
        self.tiles = tiles

    def __len__(self) -> int:
        return len(self.tiles)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        tile = self.tiles[index]
        item = self.reader.read(tile.row, tile.col, tile.size, tile.block)
        if "mask" in item and (tile.skip_rows or tile.skip_cols):
            # Pixels an earlier grid tile already covers are scored there only.
            item["mask"][: tile.skip_rows] = IGNORE
            item["mask"][:, : tile.skip_cols] = IGNORE
        return item


def check_has_tiles(tiles: Sequence[Tile], dropped: int, split: str, where: Sequence[Path]) -> None:
    """Raise, naming the files, when every tile of a split was nodata."""
    if len(tiles) == 0:
        names = ", ".join(str(p) for p in where)
        raise InputError(
            f"{names}: every tile of the {split} split is nodata ({dropped} tiles dropped); choose other "
            "blocks or a scene with data there"
        )


def block_statistics(
    reader: SceneTiles, blocks: Sequence[Block], names: dict[str, tuple[str, ...]], step: int, where: str
) -> dict[str, BandStatistics]:
    """Band statistics over every pixel of ``blocks``, each counted once, read in windows of ``step``.

    Args:
        reader: Reads the arrays (``image``, and ``pan`` when configured) of a window.
        blocks: The training blocks.
        names: ``{statistics key: band names}``; each key must be an array the reader returns.
        step: Window side.
        where: What the statistics are computed on, for error messages.
    """
    running = {key: RunningBandStatistics(band_names) for key, band_names in names.items()}
    for block in blocks:
        for row in range(block.row, block.row + block.height, step):
            for col in range(block.col, block.col + block.width, step):
                h = min(step, block.row + block.height - row)
                w = min(step, block.col + block.width - col)
                arrays = reader.read_window(row, col, h, w)
                for key, stats in running.items():
                    stats.update(arrays[key])
    return {key: stats.result(where) for key, stats in running.items()}
