"""Segmentation of any georeferenced image with a label raster (e.g. a land-cover map over a scene)."""

from pathlib import Path

from core.utils import InputError
from domains.remote_sensing.datamodules.tiled import TiledSegmentationDataModule
from domains.remote_sensing.rasters import BandStack, find_named_band_files
from domains.remote_sensing.scenes import RasterMask, SceneTiles

__all__ = ["RasterSegmentationDataModule"]


class RasterSegmentationDataModule(TiledSegmentationDataModule):
    """A multi-band image and a label GeoTIFF on its grid → tiles ``{"image", "mask"[, "context"]}``.

    The image is a stacked GeoTIFF (bands named by their descriptions or ``band_names``, selected and
    ordered by ``bands``) or a folder of one file per band (``*_<band>.tif``). The label raster holds one
    code per class (``class_values``) and a nodata code (ignored, -1); any other code is an error naming the
    file. Blocks, tiles, normalisation and prediction are those of
    :class:`~domains.remote_sensing.datamodules.tiled.TiledSegmentationDataModule`.

    Args:
        image: Stacked GeoTIFF or folder of band files.
        mask: Single-band label GeoTIFF on the image's grid.
        class_names: Class names in output order.
        class_values: Raster code of each class; default ``0 … K-1``.
        bands: Bands to read, by name, in channel order; default all (stacked file).
        band_names: Names of the stacked file's bands in file order (when it has no descriptions).
        mask_nodata: Code of unlabelled pixels; default the label file's nodata value.
        tile_size: Tile side in pixels.
        block_grid: Blocks per column and per row, numbered row by row from 0.
        val_blocks: Validation block numbers; default: a seeded draw of ``val_fraction``.
        test_blocks: Test block numbers; default: a seeded draw of ``test_fraction``.
        val_fraction: Share of blocks drawn for validation.
        test_fraction: Share of blocks drawn for test.
        buffer: Pixels removed at each inner block edge.
        train_tiles: Random training tiles.
        eval_stride: Grid step of validation/test tiles; default ``tile_size``.
        context_scale: Add a ``context_scale × tile_size`` context tile (CASWiT); None for none.
        predict_images: Images to predict (same layout as ``image``); default ``image``.
        seed: Seed of the block draw and the random tiles.
        batch_size: Tiles per training batch.
        eval_batch_size: Tiles per evaluation batch; default ``batch_size``.
        num_workers: DataLoader worker processes.
        normalize: Normalise bands with training statistics.
    """

    def __init__(
        self,
        image: str,
        mask: str,
        class_names: list[str],
        class_values: list[int] | None = None,
        bands: list[str] | None = None,
        band_names: list[str] | None = None,
        mask_nodata: float | None = None,
        tile_size: int = 64,
        block_grid: tuple[int, int] = (4, 4),
        val_blocks: list[int] | None = None,
        test_blocks: list[int] | None = None,
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
        buffer: int = 4,
        train_tiles: int = 256,
        eval_stride: int | None = None,
        context_scale: int | None = None,
        predict_images: list[str] | None = None,
        seed: int = 0,
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        normalize: bool = True,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, num_workers, normalize)
        values = class_values if class_values is not None else list(range(len(class_names)))
        if len(values) != len(class_names) or len(set(values)) != len(values):
            raise InputError(
                f"class_values {values} must give one distinct raster code per class of {class_names}"
            )
        self.image_path, self.mask_path = Path(image), Path(mask)
        self.bands, self.file_band_names = bands, band_names
        self.image = self._open_image(self.image_path)
        self.band_names = self.image.names
        self.mask = RasterMask(self.mask_path, values, mask_nodata, require_crs=True)
        if not self.mask.stack.grid.same_grid(self.image.grid):
            raise InputError(
                f"{self.mask_path} is {self.mask.stack.grid.describe()}, but the image {self.image_path} is "
                f"{self.image.grid.describe()}"
            )
        self.pan, self.pan_band = None, ""
        self.class_names = list(class_names)
        self.predict_scenes = [str(p) for p in (predict_images if predict_images is not None else [image])]
        self.init_tiles(
            self.image_path, tile_size, block_grid, val_blocks, test_blocks, val_fraction, test_fraction,
            buffer, train_tiles, eval_stride, 1, context_scale, seed,
        )  # fmt: skip

    def _open_image(self, path: Path) -> BandStack:
        if path.is_dir():
            if self.bands is None:
                raise InputError(f"{path}: a folder of band files needs the band names (bands=[...])")
            return BandStack.from_files(find_named_band_files(path, self.bands), require_crs=True)
        return BandStack.from_stack(path, self.bands, self.file_band_names, require_crs=True)

    def open_scene(self, scene: str) -> SceneTiles:
        """The configured bands of another image of the same layout."""
        image = self._open_image(Path(scene))
        image.check_names(self.band_names)
        return SceneTiles(image, None, None, 1, self.context_scale)

    def input_paths(self) -> list[Path]:
        """The image, the label raster and the images to predict."""
        return [self.image_path, self.mask_path] + [Path(p) for p in self.predict_scenes]
