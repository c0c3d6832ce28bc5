"""Base of the scene segmentation datamodules: tiles of spatially disjoint blocks, read window by window."""

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch.utils.data import Dataset

from core.data import Split
from domains.remote_sensing.datamodules.base import CLASS_LINKS, RemoteSensingDataModule
from domains.remote_sensing.normalization import BandStatistics
from domains.remote_sensing.rasters import BandStack
from domains.remote_sensing.samplers import GridTileSampler, RandomTileSampler
from domains.remote_sensing.scenes import (
    MaskSource,
    SceneTileDataset,
    SceneTiles,
    block_statistics,
    check_has_tiles,
)
from domains.remote_sensing.splits import Block, assign_blocks, block_split

__all__ = ["BlockTilesDataModule", "SceneListDataset", "TiledSegmentationDataModule"]


class SceneListDataset(Dataset):
    """Prediction items ``{"scene": path}``: the task runs sliding-window inference on each scene."""

    def __init__(self, scenes: list[str]) -> None:
        self.scenes = scenes

    def __len__(self) -> int:
        return len(self.scenes)

    def __getitem__(self, index: int) -> dict[str, str]:
        return {"scene": self.scenes[index]}


def _collate_scenes(items: list[dict[str, str]]) -> dict[str, list[str]]:
    return {"scene": [item["scene"] for item in items]}


class BlockTilesDataModule(RemoteSensingDataModule):
    """Tiles of one scene's spatially disjoint blocks: the block split, the tile samplers, the statistics.

    A subclass reads its scene in ``__init__`` and then calls :meth:`init_blocks`. Training draws seeded
    random tiles of its blocks; validation and test cover theirs with a grid. Tiles without data are
    skipped, counted in :attr:`dropped` and warned about; a split with none left is an error naming the
    files.
    """

    sample_name = "tiles"

    def init_blocks(
        self,
        where: Path,
        height: int,
        width: int,
        tile_size: int,
        block_grid: tuple[int, int],
        val_blocks: list[int] | None,
        test_blocks: list[int] | None,
        val_fraction: float,
        test_fraction: float,
        buffer: int,
        train_tiles: int,
        eval_stride: int | None,
        seed: int,
    ) -> None:
        """Keep the tiling options and assign the blocks of a ``height × width`` scene read from ``where``."""
        self.where = where
        self.tile_size = int(tile_size)
        self.eval_stride = eval_stride
        self.train_tiles = int(train_tiles)
        self.seed = int(seed)
        grid = (int(block_grid[0]), int(block_grid[1]))
        self.block_numbers = assign_blocks(
            grid, val_blocks, test_blocks, val_fraction, test_fraction, self.seed, str(where)
        )
        self.blocks: dict[str, list[Block]] = block_split(
            height, width, grid, self.block_numbers, buffer, self.tile_size, str(where)
        )
        self.dropped: dict[str, int] = {}

    def sample_tiles(self, split: str, reader: SceneTiles) -> GridTileSampler | RandomTileSampler:
        """The tiles of ``split``'s blocks that hold data for ``reader``."""
        blocks = self.blocks[split]
        tiles: GridTileSampler | RandomTileSampler
        if split == "train":
            tiles = RandomTileSampler(
                blocks, self.tile_size, self.train_tiles, self.seed, keep=reader.has_data
            )
        else:
            tiles = GridTileSampler(blocks, self.tile_size, self.eval_stride, keep=reader.has_data)
        self.dropped[split] = tiles.dropped
        check_has_tiles(tiles, tiles.dropped, split, reader.paths)
        if tiles.dropped:
            rank_zero_warn(
                f"{type(self).__name__}: skipped {tiles.dropped} nodata-only {split} tiles of {self.where}"
            )
        return tiles

    def describe_blocks(self) -> str:
        """The block numbers of each split, for the setup log."""
        return ", ".join(f"{s} {n}" for s, n in self.block_numbers.items())

    def training_block_statistics(self, reader: SceneTiles) -> dict[str, BandStatistics]:
        """Band statistics of ``reader`` over every pixel of the training blocks, each counted once."""
        where = f"{self.where} (training blocks {self.block_numbers['train']})"
        return block_statistics(
            reader, self.blocks["train"], self.statistics_band_names(), self.tile_size, where
        )


class TiledSegmentationDataModule(BlockTilesDataModule):
    """Tiles ``{"image", "mask"[, "pan"][, "context"]}`` of one scene's spatially disjoint blocks.

    A subclass reads its scene in ``__init__`` (setting :attr:`image`, :attr:`mask`, :attr:`pan`,
    :attr:`band_names`, :attr:`class_names`), then calls :meth:`init_tiles`. The scene is cut into a grid of
    blocks; each block goes to one split and loses ``buffer`` pixels at its inner edges, so tiles (and
    context windows, blanked outside their own block) of two splits never share pixels. Training draws
    seeded random tiles; validation and test cover their blocks with a grid. Tiles without a labelled pixel
    are skipped and counted; a split with none left is an error naming the files. Prediction yields
    ``{"scene": path}`` items; the task calls :meth:`predict_scene` on each.
    """

    links = CLASS_LINKS
    normalized_keys: ClassVar[dict[str, str]] = {"image": "image", "context": "image", "pan": "pan"}

    image: BandStack
    mask: MaskSource
    pan: BandStack | None
    pan_band: str
    class_names: list[str]
    predict_scenes: list[str]

    def init_tiles(
        self,
        where: Path,
        tile_size: int,
        block_grid: tuple[int, int],
        val_blocks: list[int] | None,
        test_blocks: list[int] | None,
        val_fraction: float,
        test_fraction: float,
        buffer: int,
        train_tiles: int,
        eval_stride: int | None,
        pan_scale: int,
        context_scale: int | None,
        seed: int,
    ) -> None:
        """Check the tiling options and assign the blocks (after the scene is read)."""
        if tile_size < 1 or buffer < 0 or pan_scale < 1:
            raise ValueError(
                f"need tile_size >= 1, buffer >= 0, pan_scale >= 1; got {tile_size}, {buffer}, {pan_scale}"
            )
        self.pan_scale = int(pan_scale)
        self.context_scale = context_scale
        self.in_channels = len(self.band_names)
        self.num_classes = len(self.class_names)
        self.init_blocks(
            where, self.image.height, self.image.width, tile_size, block_grid, val_blocks, test_blocks,
            val_fraction, test_fraction, buffer, train_tiles, eval_stride, seed,
        )  # fmt: skip
        self.class_pixels: dict[str, list[int]] = {}

    def open_scene(self, scene: str) -> SceneTiles:
        """A tile reader (without mask) of a scene to predict, with the configured bands, pan and context."""
        raise NotImplementedError(f"{type(self).__name__} must implement open_scene(scene)")

    def describe_scene(self) -> str:
        """One line about the scene for the setup log."""
        return f"{self.where}: classes {self.class_names}"

    # ------------------------------------------------------------------ datasets

    def reader(self, with_mask: bool = True) -> SceneTiles:
        """The tile reader of the configured scene (image, mask, pan and context as configured)."""
        return SceneTiles(
            self.image, self.mask if with_mask else None, self.pan, self.pan_scale, self.context_scale
        )

    def _tiles(self, split: str) -> GridTileSampler | RandomTileSampler:
        tiles = self.sample_tiles(split, self.reader())
        self.class_pixels[split] = self._count_classes(tiles)
        absent = [name for name, n in zip(self.class_names, self.class_pixels[split], strict=True) if n == 0]
        if absent:
            rank_zero_warn(
                f"{type(self).__name__}: the {split} tiles of {self.where} have no pixel of classes "
                f"{absent}; choose other blocks (val_blocks, test_blocks) if that split should measure them"
            )
        return tiles

    def _count_classes(self, tiles: GridTileSampler | RandomTileSampler) -> list[int]:
        """Labelled pixels per class over the tiles (grid tiles count each pixel once)."""
        counts = np.zeros(len(self.class_names), dtype=np.int64)
        for tile in tiles:
            mask = self.mask.read(tile.row, tile.col, tile.size, tile.size)[
                tile.skip_rows :, tile.skip_cols :
            ]
            counts += np.bincount(mask[mask >= 0], minlength=len(counts))[: len(counts)]
        return counts.tolist()

    def build_dataset(self, split: Split) -> Dataset | None:
        """Random training tiles, grid validation/test tiles, or the scenes to predict."""
        if split == "predict":
            return SceneListDataset(self.predict_scenes)
        if not self.blocks[split]:
            return None
        return SceneTileDataset(self.reader(), self._tiles(split))

    def setup(self, stage: str | None = None) -> None:
        """Build the stage's splits and log the blocks of each."""
        super().setup(stage)
        rank_zero_info(f"  {self.describe_scene()}; blocks {self.describe_blocks()}")
        for split, counts in self.class_pixels.items():
            total = max(sum(counts), 1)
            shares = ", ".join(
                f"{name} {n / total:.1%}" for name, n in zip(self.class_names, counts, strict=True)
            )
            rank_zero_info(f"  {split} tiles: {total:,} labelled pixels ({shares})")

    def loader_options(self, split: Split) -> dict[str, Any]:
        """Scene paths are strings: keep them as a list."""
        return {"collate_fn": _collate_scenes} if split == "predict" else {}

    # ------------------------------------------------------------------ statistics

    def statistics_band_names(self) -> dict[str, tuple[str, ...]]:
        """Image bands, and the pan band when configured."""
        names = {"image": self.band_names}
        if self.pan is not None:
            names["pan"] = (self.pan_band,)
        return names

    def compute_statistics(self) -> dict[str, BandStatistics]:
        """Band statistics over every pixel of the training blocks, each counted once."""
        return self.training_block_statistics(SceneTiles(self.image, None, self.pan, self.pan_scale, None))

    # ------------------------------------------------------------------ prediction

    def predict_scene(
        self,
        predict_fn: Any,
        scene: str,
        output_dir: str | Path,
        overlap: int | None = None,
        device: Any = "cpu",
        batch_size: int | None = None,
    ) -> Path:
        """Sliding-window prediction of one scene, written as ``<output_dir>/<scene name>_mask.tif``.

        Args:
            predict_fn: Maps a normalised batch dict (on the model's device) to logits (B, K, H, W).
            scene: A scene with the configured bands (the layout of the training scene).
            output_dir: Folder of the mask GeoTIFF (never an input folder).
            overlap: Pixels shared by neighbouring tiles, blended; default a quarter of the tile.
            device: Device of the model; tiles are moved there and normalised there.
            batch_size: Tiles per forward pass; default ``eval_batch_size``.

        Returns:
            The written file.
        """
        from domains.remote_sensing.inference import predict_scene

        path = Path(scene)
        return predict_scene(
            self.open_scene(scene),
            predict_fn,
            Path(output_dir) / f"{path.stem if path.is_file() else path.name}_mask.tif",
            tile_size=self.tile_size,
            overlap=self.tile_size // 4 if overlap is None else overlap,
            num_classes=self.num_classes,
            normalize=self.normalize_batch,
            input_paths=[*self.input_paths(), path],
            device=device,
            batch_size=self.eval_batch_size if batch_size is None else batch_size,
        )
