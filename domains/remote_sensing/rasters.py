"""GeoTIFF rasters through rasterio: named bands from one stacked file or one file per band, windowed reads.

A :class:`BandStack` is the set of bands of one scene, named and ordered as the configuration says, read
window by window (never whole files): large scenes do not have to fit in memory. It checks, and names the
file in every error, that all bands share one grid (size, transform, CRS), that a stacked file's band
descriptions match the configured names and order, and that every file can be read to its end (a
truncated TIFF opens but fails on its last strips). Nodata pixels come back as NaN.

:class:`GeoTiffWriter` writes a georeferenced GeoTIFF window by window to a temporary file beside the
target and renames it at the end, so a failed run never leaves a half-written output. Inputs are only
opened for reading.
"""

import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from core.utils import InputError, InputFileNotFoundError, require

__all__ = [
    "BAND_FILE_EXTENSIONS",
    "BandStack",
    "GeoTiffWriter",
    "RasterGrid",
    "ResampledBands",
    "check_readable",
    "find_named_band_files",
    "open_raster",
    "raster_grid",
    "write_geotiff",
]


BAND_FILE_EXTENSIONS = (".tif", ".tiff", ".jp2")


def find_named_band_files(folder: str | Path, bands: Sequence[str]) -> dict[str, Path]:
    """``{band: file}`` for files named ``*_<band>.tif`` (or ``.tiff``, ``.jp2``; any case) in ``folder``.

    Raises:
        InputFileNotFoundError: If the folder or a band's file is missing.
        InputError: If several files match one band.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputFileNotFoundError(f"{folder}: scene folder not found")
    found = {}
    for band in bands:
        endings = tuple(f"_{band}{ext}".lower() for ext in BAND_FILE_EXTENSIONS)
        matches = sorted(p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(endings))
        if not matches:
            raise InputFileNotFoundError(
                f"{folder}: no band file matching *_{band}.tif (or .tiff, .jp2, any case)"
            )
        if len(matches) > 1:
            raise InputError(
                f"{folder}: several files match *_{band}.tif ({', '.join(p.name for p in matches)}); keep "
                "one scene per folder"
            )
        found[band] = matches[0]
    return found


def _rasterio() -> Any:
    return require("rasterio", "remote-sensing")


def open_raster(path: str | Path) -> Any:
    """Open a raster for reading (a ``rasterio`` dataset).

    Raises:
        InputFileNotFoundError: If ``path`` does not exist.
        InputError: If it is not a raster rasterio can open (naming the file and GDAL's reason).
    """
    rasterio = _rasterio()
    path = Path(path)
    if not path.is_file():
        raise InputFileNotFoundError(f"{path}: raster file not found")
    try:
        return rasterio.open(path)
    except rasterio.errors.RasterioIOError as err:
        raise InputError(f"{path}: not a readable raster (truncated or corrupt?): {err}") from None


@dataclass(frozen=True)
class RasterGrid:
    """The pixel grid of a raster: size, georeferencing and nodata.

    Attributes:
        height: Rows.
        width: Columns.
        transform: Affine transform from pixel to map coordinates.
        crs: Coordinate reference system (None when the file has none).
        res: Pixel size (x, y) in map units.
    """

    height: int
    width: int
    transform: Any
    crs: Any
    res: tuple[float, float]

    def same_grid(self, other: "RasterGrid") -> bool:
        """Whether both have the same size, transform and CRS."""
        return (
            (self.height, self.width) == (other.height, other.width)
            and self.transform.almost_equals(other.transform)
            and self.crs == other.crs
        )

    def describe(self) -> str:
        """``HxW, transform, CRS`` in one line for error messages."""
        t = self.transform
        return (
            f"{self.height}×{self.width} pixels, origin ({t.c:g}, {t.f:g}), pixel ({t.a:g}, {t.e:g}), "
            f"CRS {self.crs}"
        )


def raster_grid(dataset: Any) -> RasterGrid:
    """The grid of an open rasterio dataset."""
    return RasterGrid(
        dataset.height,
        dataset.width,
        dataset.transform,
        dataset.crs,
        (abs(dataset.res[0]), abs(dataset.res[1])),
    )


def check_readable(dataset: Any, path: Path) -> None:
    """Read the last block of every band: a truncated TIFF opens but fails there.

    Raises:
        InputError: Naming the file, if a block cannot be read.
    """
    rasterio = _rasterio()
    from rasterio.windows import Window

    rows = min(dataset.block_shapes[0][0], dataset.height) if dataset.block_shapes else 1
    window = Window(0, dataset.height - rows, dataset.width, rows)
    try:
        dataset.read(window=window)
    except (rasterio.errors.RasterioIOError, rasterio.errors.RasterioError) as err:
        raise InputError(
            f"{path}: cannot read its last rows; the file is truncated or corrupt ({err})"
        ) from None


@dataclass(frozen=True)
class _Band:
    name: str
    path: Path
    index: int
    nodata: float | None


class BandStack:
    """Named bands of one scene on one pixel grid, from one stacked file or one file per band.

    Build it with :meth:`from_files` (one single-band file per name, e.g. Landsat ``*_B4.tif``) or
    :meth:`from_stack` (one multi-band file). Reads return float32 (C, h, w) with NaN at nodata pixels and
    outside the raster. Open file handles are kept per process, so a stack can be shared with DataLoader
    workers (they reopen the files).

    Args:
        bands: The bands in channel order.
        grid: Their common grid.
    """

    def __init__(self, bands: Sequence[_Band], grid: RasterGrid) -> None:
        self._bands = tuple(bands)
        self.grid = grid
        self._handles: dict[Path, Any] = {}
        self._pid = os.getpid()

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_files(
        cls, files: Mapping[str, str | Path], nodata: float | None = None, require_crs: bool = False
    ) -> "BandStack":
        """One single-band file per band name, in the mapping's order.

        Args:
            files: ``{band name: path}``.
            nodata: Nodata value for every band; default: each file's own (none when unset).
            require_crs: Raise when a file has no CRS (georeferenced outputs need one).

        Raises:
            InputError: If a file has more than one band, cannot be read to its end, lacks a CRS when one
                is required, or differs in size, transform or CRS from the first file (naming both).
        """
        bands, first_grid, first_path = [], None, None
        for name, path in files.items():
            path = Path(path)
            with open_raster(path) as ds:
                if ds.count != 1:
                    raise InputError(
                        f"{path}: expected a single-band file for band {name!r}, found {ds.count}"
                    )
                check_readable(ds, path)
                grid = raster_grid(ds)
                value = ds.nodata if nodata is None else nodata
            if require_crs and grid.crs is None:
                raise InputError(
                    f"{path}: the raster has no CRS; a georeferenced (CRS) raster is needed here"
                )
            if first_grid is None:
                first_grid, first_path = grid, path
            elif not grid.same_grid(first_grid):
                raise InputError(
                    f"band files differ in size or georeferencing: {path} is {grid.describe()}, but "
                    f"{first_path} is {first_grid.describe()}"
                )
            bands.append(_Band(str(name), path, 1, value))
        if first_grid is None:
            raise InputError("no band files given")
        return cls(bands, first_grid)

    @classmethod
    def from_stack(
        cls,
        path: str | Path,
        bands: Sequence[str] | None = None,
        band_names: Sequence[str] | None = None,
        nodata: float | None = None,
        require_crs: bool = False,
    ) -> "BandStack":
        """Bands of one multi-band file, selected and ordered by name.

        The file's band names are its band descriptions, or ``band_names`` when given (which must then have
        one name per band, and agree with the descriptions where the file has them). ``bands`` selects and
        orders them by name; default: all, in file order.

        Raises:
            InputError: Naming the file, if the band count differs from ``band_names``, the descriptions
                differ from ``band_names``, a selected band is not in the file, the file has no names to
                select by, it lacks a required CRS, or it cannot be read to its end.
        """
        path = Path(path)
        with open_raster(path) as ds:
            check_readable(ds, path)
            grid = raster_grid(ds)
            count = ds.count
            descriptions = [d for d in ds.descriptions]
            nodatas = list(ds.nodatavals)
        if require_crs and grid.crs is None:
            raise InputError(f"{path}: the raster has no CRS; a georeferenced (CRS) raster is needed here")
        names: list[str] | None = None
        if band_names is not None:
            if len(band_names) != count:
                raise InputError(
                    f"{path}: the configuration names {len(band_names)} bands {list(band_names)}, the file "
                    f"has {count}"
                )
            named = [(i, d) for i, d in enumerate(descriptions) if d]
            wrong = [(i + 1, d, band_names[i]) for i, d in named if d != band_names[i]]
            if wrong:
                detail = ", ".join(f"band {i} is {d!r}, configured {c!r}" for i, d, c in wrong)
                raise InputError(f"{path}: band order differs from the configuration: {detail}")
            names = list(band_names)
        elif all(descriptions):
            names = list(descriptions)
        selected = list(bands) if bands is not None else names
        if selected is None:
            selected_idx = list(range(count))
            names = [f"band{i + 1}" for i in range(count)]
        else:
            if names is None:
                raise InputError(
                    f"{path}: its bands have no descriptions to select {list(selected)} by; give band_names "
                    "(one per band, in file order)"
                )
            missing = [b for b in selected if b not in names]
            if missing:
                raise InputError(f"{path}: bands {missing} are not among its bands {names}")
            selected_idx = [names.index(b) for b in selected]
        assert names is not None
        out = [_Band(names[i], path, i + 1, nodatas[i] if nodata is None else nodata) for i in selected_idx]
        return cls(out, grid)

    # ------------------------------------------------------------------ properties

    @property
    def names(self) -> tuple[str, ...]:
        """Band names in channel order."""
        return tuple(b.name for b in self._bands)

    @property
    def paths(self) -> list[Path]:
        """The files read, without repeats."""
        return list(dict.fromkeys(b.path for b in self._bands))

    @property
    def height(self) -> int:
        """Rows of the grid."""
        return self.grid.height

    @property
    def width(self) -> int:
        """Columns of the grid."""
        return self.grid.width

    def check_names(self, expected: Sequence[str]) -> None:
        """Raise when the bands are not ``expected`` in that order (naming the files)."""
        if list(self.names) != list(expected):
            raise InputError(
                f"{', '.join(str(p) for p in self.paths)}: bands are {list(self.names)}, the configuration "
                f"expects {list(expected)} (count and order must match)"
            )

    # ------------------------------------------------------------------ reading

    def _dataset(self, path: Path) -> Any:
        if os.getpid() != self._pid:
            self._handles, self._pid = {}, os.getpid()
        if path not in self._handles:
            self._handles[path] = open_raster(path)
        return self._handles[path]

    def close(self) -> None:
        """Close the open files of this process."""
        for ds in self._handles.values():
            ds.close()
        self._handles = {}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_handles"] = {}
        return state

    def read(self, row: int, col: int, height: int, width: int) -> np.ndarray:
        """Pixels ``[row, row + height) × [col, col + width)`` of every band, float32 (C, height, width).

        The window may reach outside the raster; those pixels, and nodata pixels, are NaN.

        Raises:
            InputError: Naming the file, if GDAL cannot read the window (a truncated or corrupt file).
        """
        rasterio = _rasterio()
        from rasterio.windows import Window

        out = np.full((len(self._bands), height, width), np.nan, dtype=np.float32)
        r0, c0 = max(row, 0), max(col, 0)
        r1, c1 = min(row + height, self.height), min(col + width, self.width)
        if r1 <= r0 or c1 <= c0:
            return out
        window = Window(c0, r0, c1 - c0, r1 - r0)
        for k, band in enumerate(self._bands):
            try:
                values = self._dataset(band.path).read(band.index, window=window)
            except (rasterio.errors.RasterioIOError, rasterio.errors.RasterioError) as err:
                raise InputError(
                    f"{band.path}: cannot read rows {r0}-{r1}, columns {c0}-{c1} "
                    f"(truncated or corrupt file): {err}"
                ) from None
            values = values.astype(np.float32)
            if band.nodata is not None and not np.isnan(band.nodata):
                values[values == np.float32(band.nodata)] = np.nan
            out[k, r0 - row : r1 - row, c0 - col : c1 - col] = values
        return out

    def read_bounds(
        self, bounds: tuple[float, float, float, float], out_shape: tuple[int, int]
    ) -> np.ndarray:
        """The map rectangle ``(left, bottom, right, top)`` resampled to ``out_shape``.

        Bilinear when the output is as fine as the band or finer; the average of the covered pixels when it is
        coarser.

        Used for a band on another grid than the tile, e.g. Landsat's 15 m panchromatic band under a 30 m
        tile, whose pixel edges are half a pan pixel off the tile's. Nodata pixels, and pixels whose
        bilinear footprint reaches outside the raster, are NaN.
        """
        rasterio = _rasterio()
        from rasterio.enums import Resampling
        from rasterio.windows import from_bounds

        window = from_bounds(*bounds, transform=self.grid.transform)
        reducing = window.height > out_shape[0] * 1.01 or window.width > out_shape[1] * 1.01
        resampling = Resampling.average if reducing else Resampling.bilinear
        inside = (
            window.col_off >= 0
            and window.row_off >= 0
            and window.col_off + window.width <= self.width
            and window.row_off + window.height <= self.height
        )
        out = np.full((len(self._bands), *out_shape), np.nan, dtype=np.float32)
        for k, band in enumerate(self._bands):
            ds = self._dataset(band.path)
            try:
                values = ds.read(
                    band.index,
                    window=window,
                    out_shape=out_shape,
                    resampling=resampling,
                    boundless=not inside,
                    masked=True,
                )
            except (rasterio.errors.RasterioIOError, rasterio.errors.RasterioError) as err:
                raise InputError(
                    f"{band.path}: cannot read {bounds} (truncated or corrupt file): {err}"
                ) from None
            values = np.ma.asarray(values).astype(np.float32)
            if band.nodata is not None and not np.isnan(band.nodata):
                values = np.ma.masked_equal(values, np.float32(band.nodata))
            out[k] = values.filled(np.nan)
        return out

    def window_bounds(self, row: int, col: int, height: int, width: int) -> tuple[float, float, float, float]:
        """Map bounds ``(left, bottom, right, top)`` of a pixel window."""
        from rasterio.windows import Window, bounds

        return bounds(Window(col, row, width, height), self.grid.transform)


class ResampledBands:
    """Bands on different grids (Sentinel-2's 10, 20 and 60 m bands) read over one common grid.

    The common grid covers the intersection of the bands' extents at ``resolution``; every read resamples
    each band over the window's map bounds (bilinear, a scaled kernel when reducing resolution). It reads
    like a :class:`BandStack` (``read``, ``window_bounds``, ``names``, ``grid``, ``paths``).

    Args:
        stacks: One single-band stack per band, in channel order.
        grid: The common grid.
    """

    def __init__(self, stacks: Sequence[BandStack], grid: RasterGrid) -> None:
        self.stacks = list(stacks)
        self.grid = grid

    @classmethod
    def from_files(
        cls, files: Mapping[str, str | Path], resolution: float | None = None, require_crs: bool = False
    ) -> "ResampledBands":
        """One file per band; ``resolution`` in map units (default: the finest band's).

        Raises:
            InputError: If the files' CRSs differ (naming two of them) or their extents do not overlap.
        """
        from rasterio.transform import Affine

        stacks = [BandStack.from_files({name: path}, require_crs=require_crs) for name, path in files.items()]
        if not stacks:
            raise InputError("no band files given")
        first = stacks[0]
        for stack in stacks[1:]:
            if stack.grid.crs != first.grid.crs:
                raise InputError(
                    f"{stack.paths[0]} has CRS {stack.grid.crs}, but {first.paths[0]} has {first.grid.crs}; "
                    "bands must share one CRS"
                )
        extents = [s.window_bounds(0, 0, s.height, s.width) for s in stacks]
        left, bottom = max(e[0] for e in extents), max(e[1] for e in extents)
        right, top = min(e[2] for e in extents), min(e[3] for e in extents)
        res = float(resolution) if resolution is not None else min(min(s.grid.res) for s in stacks)
        width, height = int((right - left) // res), int((top - bottom) // res)
        if width < 1 or height < 1:
            names = ", ".join(str(s.paths[0]) for s in stacks)
            raise InputError(f"{names}: the band files do not overlap on the map")
        grid = RasterGrid(height, width, Affine(res, 0.0, left, 0.0, -res, top), first.grid.crs, (res, res))
        return cls(stacks, grid)

    @property
    def names(self) -> tuple[str, ...]:
        """Band names in channel order."""
        return tuple(s.names[0] for s in self.stacks)

    @property
    def paths(self) -> list[Path]:
        """The files read."""
        return [p for s in self.stacks for p in s.paths]

    @property
    def height(self) -> int:
        """Rows of the common grid."""
        return self.grid.height

    @property
    def width(self) -> int:
        """Columns of the common grid."""
        return self.grid.width

    def window_bounds(self, row: int, col: int, height: int, width: int) -> tuple[float, float, float, float]:
        """Map bounds ``(left, bottom, right, top)`` of a window of the common grid."""
        from rasterio.windows import Window, bounds

        return bounds(Window(col, row, width, height), self.grid.transform)

    def read(self, row: int, col: int, height: int, width: int) -> np.ndarray:
        """Every band resampled over the window, float32 (C, height, width); NaN at nodata and outside."""
        bounds = self.window_bounds(row, col, height, width)
        return np.concatenate([s.read_bounds(bounds, (height, width)) for s in self.stacks])


class GeoTiffWriter:
    """Write a GeoTIFF window by window, atomically: a temporary file renamed on success.

    Args:
        path: The output file; its folder is created if needed.
        height: Rows.
        width: Columns.
        count: Bands.
        dtype: Numpy dtype name, e.g. ``uint8`` or ``float32``.
        crs: CRS of the output (copied from the input raster).
        transform: Affine transform of the output (copied from the input raster).
        nodata: Nodata value written into the file's metadata.
        band_names: Band descriptions.
    """

    def __init__(
        self,
        path: str | Path,
        height: int,
        width: int,
        count: int,
        dtype: str,
        crs: Any,
        transform: Any,
        nodata: float | None = None,
        band_names: Sequence[str] | None = None,
    ) -> None:
        self.path = Path(path)
        self.profile = {
            "driver": "GTiff",
            "height": height,
            "width": width,
            "count": count,
            "dtype": dtype,
            "crs": crs,
            "transform": transform,
            "nodata": nodata,
            "tiled": True,
            "blockxsize": 256,
            "blockysize": 256,
            "compress": "deflate",
        }
        if height < 256 or width < 256:
            self.profile.update(tiled=False, blockxsize=None, blockysize=None)
            self.profile = {k: v for k, v in self.profile.items() if v is not None}
        self.band_names = list(band_names) if band_names is not None else None
        self._dataset: Any = None
        self._tmp: Path | None = None

    def __enter__(self) -> "GeoTiffWriter":
        rasterio = _rasterio()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{self.path.stem}.", suffix=".tif.part", dir=self.path.parent)
        os.close(fd)
        self._tmp = Path(name)
        self._dataset = rasterio.open(self._tmp, "w", **self.profile)
        if self.band_names is not None:
            for i, name in enumerate(self.band_names, start=1):
                self._dataset.set_band_description(i, name)
        return self

    def write(self, data: np.ndarray, row: int, col: int) -> None:
        """Write ``data`` (count, h, w) at pixel ``(row, col)``."""
        from rasterio.windows import Window

        data = np.asarray(data)
        if data.ndim == 2:
            data = data[None]
        self._dataset.write(
            data.astype(self.profile["dtype"]), window=Window(col, row, data.shape[-1], data.shape[-2])
        )

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        assert self._tmp is not None
        self._dataset.close()
        if kind is None:
            # mkstemp creates the file readable by its owner only; give it the usual permissions.
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(self._tmp, 0o666 & ~umask)
            os.replace(self._tmp, self.path)
        else:
            self._tmp.unlink(missing_ok=True)


def write_geotiff(
    path: str | Path,
    data: np.ndarray,
    crs: Any,
    transform: Any,
    nodata: float | None = None,
    band_names: Sequence[str] | None = None,
) -> Path:
    """Write ``data`` (C, H, W) or (H, W) as a georeferenced GeoTIFF, atomically.

    Returns:
        ``path``.
    """
    data = np.asarray(data)
    if data.ndim == 2:
        data = data[None]
    count, height, width = data.shape
    with GeoTiffWriter(
        path, height, width, count, str(data.dtype), crs, transform, nodata, band_names
    ) as out:
        out.write(data, 0, 0)
    return Path(path)
