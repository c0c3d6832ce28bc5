"""Sliding-window inference over a whole scene, read and written window by window.

Tiles overlap by ``overlap`` pixels; the class probabilities of overlapping tiles are averaged with weights
that fall off linearly over the overlap towards each tile's edge (so a pixel is decided mostly by tiles
that see it with context), then the arg-max class is written. Only a strip of ``tile_size`` rows is held
at a time: the rows above the next strip of tiles are final and written out before it is predicted. The
output GeoTIFF has the CRS and transform of the input bands; it is written atomically and never among the
inputs.
"""

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from core.training.prediction import check_output_dir
from core.utils import InputError
from domains.remote_sensing.rasters import GeoTiffWriter
from domains.remote_sensing.samplers import grid_positions
from domains.remote_sensing.scenes import SceneTiles

__all__ = ["MASK_NODATA", "blend_weights", "predict_scene", "tile_offsets"]

MASK_NODATA = 255


def blend_weights(size: int, overlap: int) -> np.ndarray:
    """Weights (size, size) of one tile: 1 inside, falling linearly to ``1 / (overlap + 1)`` at the edges."""
    if overlap <= 0:
        return np.ones((size, size), dtype=np.float32)
    i = np.arange(size, dtype=np.float32)
    ramp = np.minimum(1.0, np.minimum(i + 1, size - i) / (overlap + 1))
    return np.outer(ramp, ramp).astype(np.float32)


def tile_offsets(length: int, size: int, stride: int) -> list[int]:
    """Tile offsets covering ``[0, length)``; a single (padded) tile when the scene is smaller than one."""
    return grid_positions(0, length, size, stride) or [0]


def predict_scene(
    reader: SceneTiles,
    predict_fn: Callable[[dict[str, Tensor]], Tensor],
    output_path: str | Path,
    tile_size: int,
    overlap: int,
    num_classes: int,
    normalize: Callable[[dict[str, Tensor]], dict[str, Tensor]] | None = None,
    input_paths: Sequence[Path] = (),
    device: Any = "cpu",
    batch_size: int = 8,
) -> Path:
    """Predict every pixel of a scene and write the class mask as a georeferenced GeoTIFF.

    Args:
        reader: Reads the tiles of the scene (image, and pan/context when the model takes them).
        predict_fn: Maps a batch dict on ``device`` to logits (B, num_classes, tile, tile).
        output_path: The mask file (uint8, nodata 255 where every input band is nodata).
        tile_size: Tile side in pixels.
        overlap: Pixels shared by neighbouring tiles (0 <= overlap < tile_size).
        num_classes: Number of classes of the logits.
        normalize: Applied to each batch after moving it to ``device`` (the datamodule's normalisation).
        input_paths: Files and folders the output must not be written among; the reader's files are added.
        device: Device the batches are moved to.
        batch_size: Tiles per call of ``predict_fn``.

    Returns:
        ``output_path``.

    Raises:
        InputError: If the input bands have no CRS, or the output would be written among the inputs.
        ValueError: If ``overlap`` is not in ``[0, tile_size)`` or the logits have the wrong shape.
    """
    if not 0 <= overlap < tile_size:
        raise ValueError(f"overlap must be in [0, tile_size={tile_size}), got {overlap}")
    output_path = Path(output_path)
    grid = reader.image.grid
    if grid.crs is None:
        raise InputError(
            f"{', '.join(str(p) for p in reader.image.paths)}: the raster has no CRS; a georeferenced mask "
            "cannot be written"
        )
    try:
        check_output_dir(output_path.parent, [*input_paths, *reader.paths])
    except ValueError as err:
        raise InputError(str(err)) from None
    height, width = grid.height, grid.width
    stride = tile_size - overlap
    rows, cols = tile_offsets(height, tile_size, stride), tile_offsets(width, tile_size, stride)
    weights = blend_weights(tile_size, overlap)
    padded_width = max(width, tile_size)
    with GeoTiffWriter(
        output_path,
        height,
        width,
        1,
        "uint8",
        grid.crs,
        grid.transform,
        nodata=MASK_NODATA,
        band_names=["class"],
    ) as out:
        # Probability sums and weight sums of rows [strip_top, strip_top + tile_size + stride).
        strip_top = 0
        strip_rows = tile_size + stride
        probs = np.zeros((num_classes, strip_rows, padded_width), dtype=np.float32)
        weight = np.zeros((strip_rows, padded_width), dtype=np.float32)
        valid = np.zeros((strip_rows, padded_width), dtype=bool)
        for k, row in enumerate(rows):
            if row > strip_top:
                # Rows above this tile row are final: write them, shift the strip.
                done = row - strip_top
                _write_rows(out, probs, weight, valid, strip_top, done, height, width)
                probs = np.roll(probs, -done, axis=1)
                weight = np.roll(weight, -done, axis=0)
                valid = np.roll(valid, -done, axis=0)
                probs[:, -done:] = 0
                weight[-done:] = 0
                valid[-done:] = False
                strip_top = row
            for start in range(0, len(cols), batch_size):
                chunk = cols[start : start + batch_size]
                tiles = [reader.read(row, col, tile_size) for col in chunk]
                batch = {key: torch.stack([t[key] for t in tiles]).to(device) for key in tiles[0]}
                has_data = (~torch.isnan(batch["image"])).any(dim=1).cpu().numpy()
                if normalize is not None:
                    batch = normalize(batch)
                logits = predict_fn(batch)
                if tuple(logits.shape) != (len(chunk), num_classes, tile_size, tile_size):
                    raise ValueError(
                        f"predict_fn returned logits of shape {tuple(logits.shape)}, expected "
                        f"{(len(chunk), num_classes, tile_size, tile_size)}"
                    )
                p = torch.softmax(logits.float(), dim=1).cpu().numpy()
                offset = row - strip_top
                for j, col in enumerate(chunk):
                    probs[:, offset : offset + tile_size, col : col + tile_size] += p[j] * weights
                    weight[offset : offset + tile_size, col : col + tile_size] += weights
                    valid[offset : offset + tile_size, col : col + tile_size] |= has_data[j]
            if k == len(rows) - 1:
                _write_rows(out, probs, weight, valid, strip_top, height - strip_top, height, width)
    return output_path


def _write_rows(
    out: GeoTiffWriter,
    probs: np.ndarray,
    weight: np.ndarray,
    valid: np.ndarray,
    top: int,
    count: int,
    height: int,
    width: int,
) -> None:
    """Write ``count`` finished rows of the strip starting at scene row ``top``."""
    count = min(count, height - top)
    if count <= 0:
        return
    classes = (probs[:, :count, :width] / np.maximum(weight[:count, :width], 1e-12)).argmax(axis=0)
    mask = np.where(valid[:count, :width], classes, MASK_NODATA).astype(np.uint8)
    out.write(mask, top, 0)
