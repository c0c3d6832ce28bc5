"""Hyperspectral patch classification (Indian Pines / Pavia) with spatially disjoint splits."""

from pathlib import Path

import numpy as np
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from core.data import Split
from core.utils import InputError
from domains.remote_sensing.datamodules.base import CLASS_LINKS, RemoteSensingDataModule
from domains.remote_sensing.hyperspectral import HyperspectralPatches, read_hyperspectral
from domains.remote_sensing.normalization import BandStatistics, band_statistics
from domains.remote_sensing.splits import assign_blocks, block_split

__all__ = ["HyperspectralDataModule"]


class HyperspectralDataModule(RemoteSensingDataModule):
    """Patches around labelled pixels of a cube → ``{"image": (B, bands, p, p), "label", "id"}``.

    The cube is cut into a ``block_grid`` of blocks assigned to splits. A pixel is a sample of its block's
    split only when its whole patch lies inside the block (its centre is at least ``patch // 2`` pixels from
    every inner block edge), so patches of two splits never share a pixel. Class codes 1..K of the ground
    truth become 0..K-1; 0 (unlabelled) is skipped. Bands are normalised on the device with statistics of
    the training blocks. Prediction runs on the test split; ``id`` is ``row_col``.

    Args:
        cube_path: ``.mat`` file of the cube (rows, columns, bands).
        gt_path: ``.mat`` file of the ground truth; default: the cube's file.
        cube_key: Variable name of the cube; default: detected.
        gt_key: Variable name of the ground truth; default: detected.
        class_names: Names of classes 1..K; default ``class1`` … up to the largest code.
        patch_size: Odd patch side.
        block_grid: Blocks per column and per row, numbered row by row from 0.
        val_blocks: Validation block numbers; default: a seeded draw of ``val_fraction``.
        test_blocks: Test block numbers; default: a seeded draw of ``test_fraction``.
        val_fraction: Share of blocks drawn for validation.
        test_fraction: Share of blocks drawn for test.
        seed: Seed of the block draw.
        batch_size: Patches per training batch.
        eval_batch_size: Patches per evaluation batch; default ``batch_size``.
        num_workers: DataLoader worker processes.
        normalize: Normalise bands with training statistics.
    """

    links = CLASS_LINKS
    sample_name = "patches"

    def __init__(
        self,
        cube_path: str,
        gt_path: str | None = None,
        cube_key: str | None = None,
        gt_key: str | None = None,
        class_names: list[str] | None = None,
        patch_size: int = 9,
        block_grid: tuple[int, int] = (4, 4),
        val_blocks: list[int] | None = None,
        test_blocks: list[int] | None = None,
        val_fraction: float = 0.15,
        test_fraction: float = 0.25,
        seed: int = 0,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        normalize: bool = True,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, num_workers, normalize)
        if patch_size < 1 or patch_size % 2 == 0:
            raise ValueError(f"patch_size must be odd and >= 1, got {patch_size}")
        self.scene = read_hyperspectral(cube_path, gt_path, cube_key, gt_key)
        self.patch_size = int(patch_size)
        largest = int(self.scene.gt.max())
        if class_names is not None:
            if largest > len(class_names):
                raise InputError(
                    f"{self.scene.gt_path}: class code {largest} is outside the {len(class_names)} "
                    "configured classes (1..K; 0 unlabelled)"
                )
            self.class_names = list(class_names)
        else:
            if largest == 0:
                raise InputError(f"{self.scene.gt_path}: the ground truth has no labelled pixel")
            self.class_names = [f"class{k}" for k in range(1, largest + 1)]
        self.num_classes = len(self.class_names)
        self.in_channels = int(self.scene.cube.shape[0])
        self.band_names = tuple(f"band{i + 1}" for i in range(self.in_channels))
        grid = (int(block_grid[0]), int(block_grid[1]))
        where = str(self.scene.cube_path)
        self.block_numbers = assign_blocks(
            grid, val_blocks, test_blocks, val_fraction, test_fraction, seed, where
        )
        _, height, width = self.scene.cube.shape
        # Each block shrunk by the patch radius holds the centres whose patch stays inside the block.
        self.blocks = block_split(height, width, grid, self.block_numbers, self.patch_size // 2, 1, where)

    def _centres(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        rows, cols = [], []
        for block in self.blocks[split]:
            window = self.scene.gt[block.row : block.row + block.height, block.col : block.col + block.width]
            r, c = np.nonzero(window)
            rows.append(r + block.row)
            cols.append(c + block.col)
        if not rows:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        return np.concatenate(rows), np.concatenate(cols)

    def build_dataset(self, split: Split) -> HyperspectralPatches | None:
        """The labelled patches of the split's blocks (predict: the test split's)."""
        rows, cols = self._centres("test" if split == "predict" else split)
        if len(rows) == 0:
            return None
        labels = self.scene.gt[rows, cols] - 1
        if split == "train":
            missing = sorted(set(range(self.num_classes)) - set(labels.tolist()))
            if missing:
                rank_zero_warn(
                    f"{self.scene.gt_path}: classes {[self.class_names[k] for k in missing]} have no "
                    "training pixel in the training blocks"
                )
        return HyperspectralPatches(self.scene.cube, rows, cols, labels, self.patch_size)

    def setup(self, stage: str | None = None) -> None:
        """Build the stage's splits and log the blocks and per-class counts."""
        super().setup(stage)
        for split, dataset in self.datasets.items():
            if isinstance(dataset, HyperspectralPatches) and split != "predict":
                counts = np.bincount(dataset.labels.numpy(), minlength=self.num_classes)
                rank_zero_info(
                    f"  {split} blocks {self.block_numbers[split]}: per-class patches {counts.tolist()}"
                )

    def compute_statistics(self) -> dict[str, BandStatistics]:
        """Band statistics over every pixel the training patches can see (their blocks)."""
        r = self.patch_size // 2
        _, height, width = self.scene.cube.shape
        parts = []
        for block in self.blocks["train"]:
            top, left = max(block.row - r, 0), max(block.col - r, 0)
            bottom = min(block.row + block.height + r, height)
            right = min(block.col + block.width + r, width)
            parts.append(self.scene.cube[:, top:bottom, left:right].reshape(self.in_channels, -1))
        where = f"{self.scene.cube_path} (training blocks {self.block_numbers['train']})"
        return {"image": band_statistics(parts, self.band_names, where)}

    def input_paths(self) -> list[Path]:
        """The cube and ground-truth files."""
        return list(dict.fromkeys([self.scene.cube_path, self.scene.gt_path]))
