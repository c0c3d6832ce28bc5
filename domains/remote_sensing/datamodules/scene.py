"""Cloud-mask segmentation of a Landsat 8 scene: the BQA cloud mask as the target of tiles."""

from pathlib import Path
from typing import Any, Literal

from core.utils import InputError
from domains.remote_sensing.datamodules.tiled import SceneListDataset, TiledSegmentationDataModule
from domains.remote_sensing.landsat import (
    Confidence,
    detect_bqa_format,
    find_band_files,
    find_qa_file,
    mask_classes,
)
from domains.remote_sensing.rasters import BandStack
from domains.remote_sensing.scenes import BQAMask, SceneTiles

__all__ = ["LANDSAT8_DEFAULT_BANDS", "SceneListDataset", "SceneSegmentationDataModule"]

LANDSAT8_DEFAULT_BANDS = ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B9", "B10", "B11")


class SceneSegmentationDataModule(TiledSegmentationDataModule):
    """Landsat 8 scene → tiles ``{"image", "mask"[, "pan"][, "context"]}`` with the BQA cloud mask as target.

    The mask classes are clear (0), cloud (1) and, where the BQA layout has it (Collection 1), cloud shadow
    (2); -1 (BQA fill) is ignored. Blocks, tiles, normalisation and prediction are those of
    :class:`~domains.remote_sensing.datamodules.tiled.TiledSegmentationDataModule`.

    Args:
        scene: Folder of one Landsat 8 scene (``*_B1.tif`` … ``*_B11.tif``, ``*_BQA.tif``).
        bands: Band names in channel order (all at 30 m; band 8 is the ``pan`` option).
        qa_format: BQA bit layout; ``auto`` tells pre-Collection from Collection 1 by bits 13–15.
        cloud_confidence: Lowest cloud confidence counted as cloud.
        shadow_confidence: Lowest cloud-shadow confidence counted as shadow (Collection 1).
        cirrus_as_cloud: Count cirrus of at least ``cloud_confidence`` as cloud.
        tile_size: Tile side in pixels.
        block_grid: Blocks per column and per row, numbered row by row from 0.
        val_blocks: Block numbers of the validation split; default: a seeded draw of ``val_fraction``.
        test_blocks: Block numbers of the test split; default: a seeded draw of ``test_fraction``. The
            other blocks are the training split.
        val_fraction: Share of blocks drawn for validation when ``val_blocks`` is not given.
        test_fraction: Share of blocks drawn for test when ``test_blocks`` is not given.
        buffer: Pixels removed at each inner block edge (two splits are at least ``2 * buffer`` apart).
        train_tiles: Random training tiles (drawn once from ``seed``).
        eval_stride: Grid step of validation/test tiles; default ``tile_size``.
        pan: Add ``"pan"``: band ``pan_band`` over the tile at ``pan_scale`` times its size (BCAF's parent).
        pan_band: The panchromatic band.
        pan_scale: Resolution ratio of the pan band to the tile (Landsat 8: 15 m against 30 m, 2).
        context_scale: Add ``"context"``: a ``context_scale × tile_size`` window centred on the tile,
            averaged down to the tile size (CASWiT's context); None for none.
        predict_scenes: Scene folders to predict; default: ``scene``.
        seed: Seed of the block draw and the random tiles.
        batch_size: Tiles per training batch.
        eval_batch_size: Tiles per validation/test batch; default ``batch_size``.
        num_workers: DataLoader worker processes.
        normalize: Normalise bands with training statistics.
    """

    def __init__(
        self,
        scene: str,
        bands: list[str] | None = None,
        qa_format: Literal["auto", "pre_collection", "collection1"] = "auto",
        cloud_confidence: Confidence = "high",
        shadow_confidence: Confidence = "high",
        cirrus_as_cloud: bool = False,
        tile_size: int = 64,
        block_grid: tuple[int, int] = (4, 4),
        val_blocks: list[int] | None = None,
        test_blocks: list[int] | None = None,
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
        buffer: int = 4,
        train_tiles: int = 256,
        eval_stride: int | None = None,
        pan: bool = False,
        pan_band: str = "B8",
        pan_scale: int = 2,
        context_scale: int | None = None,
        predict_scenes: list[str] | None = None,
        seed: int = 0,
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        normalize: bool = True,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, num_workers, normalize)
        self.scene = Path(scene)
        self.band_names = tuple(bands if bands is not None else LANDSAT8_DEFAULT_BANDS)
        self.image = BandStack.from_files(find_band_files(self.scene, self.band_names), require_crs=True)
        self.qa_path = find_qa_file(self.scene)
        self.qa_format = detect_bqa_format(self.qa_path) if qa_format == "auto" else qa_format
        self.mask_options: dict[str, Any] = {
            "cloud_confidence": cloud_confidence,
            "shadow_confidence": shadow_confidence,
            "cirrus_as_cloud": cirrus_as_cloud,
        }
        self.mask = BQAMask(self.qa_path, self.qa_format, **self.mask_options, require_crs=True)
        if not self.mask.stack.grid.same_grid(self.image.grid):
            raise InputError(
                f"{self.qa_path} is {self.mask.stack.grid.describe()}, but the bands are "
                f"{self.image.grid.describe()}"
            )
        self.pan_band = pan_band
        self.pan = (
            BandStack.from_files(find_band_files(self.scene, [pan_band]), require_crs=True) if pan else None
        )
        self.class_names = list(mask_classes(self.qa_format))
        self.predict_scenes = [
            str(p) for p in (predict_scenes if predict_scenes is not None else [self.scene])
        ]
        self.init_tiles(
            self.scene, tile_size, block_grid, val_blocks, test_blocks, val_fraction, test_fraction, buffer,
            train_tiles, eval_stride, pan_scale, context_scale, seed,
        )  # fmt: skip

    def describe_scene(self) -> str:
        """The scene, its BQA layout and classes."""
        return f"{self.scene}: BQA {self.qa_format}, classes {self.class_names}"

    def open_scene(self, scene: str) -> SceneTiles:
        """The configured bands (and pan) of another Landsat scene folder."""
        folder = Path(scene)
        image = BandStack.from_files(find_band_files(folder, self.band_names), require_crs=True)
        pan = None
        if self.pan is not None:
            pan = BandStack.from_files(find_band_files(folder, [self.pan_band]), require_crs=True)
        return SceneTiles(image, None, pan, self.pan_scale, self.context_scale)

    def input_paths(self) -> list[Path]:
        """The scene folder and the folders of the scenes to predict."""
        return [self.scene] + [Path(p) for p in self.predict_scenes]
