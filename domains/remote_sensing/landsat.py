"""Landsat 8 scenes: band-file discovery and the decoding of the quality band (BQA) into a cloud mask.

Landsat 8 Level-1 scenes ship one GeoTIFF per band, ``<scene id>_B1.TIF`` … ``_B11.TIF`` (band 8, the
panchromatic band, at 15 m; the others at 30 m) and the quality band ``_BQA.TIF``. The BQA bit layout
changed with Collection 1 (USGS, "Landsat Collection 1 Level-1 Quality Assessment Band", and the Landsat 8
Data Users Handbook §5.4 for the earlier products); 2-bit confidences read 00 not determined, 01 low,
10 medium, 11 high:

=========  ==============================  ==============================
bits       pre-Collection (2013–2017)      Collection 1
=========  ==============================  ==============================
0          designated fill                 designated fill
1          dropped frame                   terrain occlusion
2          terrain occlusion               radiometric saturation (2–3)
3          reserved                        radiometric saturation (2–3)
4          water confidence (4–5)          cloud
5          water confidence (4–5)          cloud confidence (5–6)
6          cloud shadow, reserved (6–7)    cloud confidence (5–6)
7          cloud shadow, reserved (6–7)    cloud shadow confidence (7–8)
8          vegetation confidence (8–9)     cloud shadow confidence (7–8)
9          vegetation confidence (8–9)     snow/ice confidence (9–10)
10         snow/ice confidence (10–11)     snow/ice confidence (9–10)
11         snow/ice confidence (10–11)     cirrus confidence (11–12)
12         cirrus confidence (12–13)       cirrus confidence (11–12)
13         cirrus confidence (12–13)       unused
14         cloud confidence (14–15)        unused
15         cloud confidence (14–15)        unused
=========  ==============================  ==============================

Collection 1 never sets bits 13–15, while every non-fill pre-Collection pixel has a determined cloud
confidence in bits 14–15: that tells the two apart (the shared scene here is pre-Collection: its clear
pixels read 20480 = cloud and cirrus confidence "low"). Pre-Collection products leave the cloud-shadow bits
undetermined, so their masks have no shadow class.
"""

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from core.utils import InputError
from domains.remote_sensing.rasters import find_named_band_files, open_raster

__all__ = [
    "CLEAR",
    "CLOUD",
    "CLOUD_SHADOW",
    "IGNORE",
    "LANDSAT8_BANDS",
    "MASK_CLASS_NAMES",
    "Confidence",
    "QAFormat",
    "bqa_field",
    "decode_bqa",
    "detect_bqa_format",
    "find_band_files",
    "find_qa_file",
    "mask_classes",
]

LANDSAT8_BANDS = {
    "B1": "coastal aerosol",
    "B2": "blue",
    "B3": "green",
    "B4": "red",
    "B5": "near infrared",
    "B6": "shortwave infrared 1",
    "B7": "shortwave infrared 2",
    "B8": "panchromatic",
    "B9": "cirrus",
    "B10": "thermal infrared 1",
    "B11": "thermal infrared 2",
}
CLEAR, CLOUD, CLOUD_SHADOW, IGNORE = 0, 1, 2, -1
MASK_CLASS_NAMES = ("clear", "cloud", "cloud_shadow")

QAFormat = Literal["pre_collection", "collection1"]
Confidence = Literal["medium", "high"]
_CONFIDENCE = {"medium": 2, "high": 3}

# (first bit, width) of each field.
_PRE = {"fill": (0, 1), "shadow": (6, 2), "cirrus": (12, 2), "cloud": (14, 2)}
_C1 = {"fill": (0, 1), "cloud_bit": (4, 1), "cloud": (5, 2), "shadow": (7, 2), "cirrus": (11, 2)}
_C1_UNUSED = 0b1110_0000_0000_0000


def bqa_field(qa: np.ndarray, first_bit: int, width: int) -> np.ndarray:
    """The unsigned integer held by bits ``[first_bit, first_bit + width)`` of every QA value."""
    return (np.asarray(qa).astype(np.uint32) >> first_bit) & ((1 << width) - 1)


def mask_classes(fmt: QAFormat) -> tuple[str, ...]:
    """Class names of the masks decoded from ``fmt`` (pre-Collection has no cloud-shadow bits)."""
    return MASK_CLASS_NAMES[:2] if fmt == "pre_collection" else MASK_CLASS_NAMES


def decode_bqa(
    qa: np.ndarray,
    fmt: QAFormat,
    cloud_confidence: Confidence = "high",
    shadow_confidence: Confidence = "high",
    cirrus_as_cloud: bool = False,
) -> np.ndarray:
    """Cloud mask of BQA values: 0 clear, 1 cloud, 2 cloud shadow, -1 fill (ignored).

    Cloud wins over cloud shadow where both are flagged.

    Args:
        qa: BQA values (any shape).
        fmt: ``pre_collection`` or ``collection1`` bit layout.
        cloud_confidence: Lowest cloud confidence counted as cloud (USGS advises ``high``). In Collection 1
            the cloud bit (4) counts as cloud too.
        shadow_confidence: Lowest cloud-shadow confidence counted as shadow.
        cirrus_as_cloud: Count cirrus of at least ``cloud_confidence`` as cloud.

    Returns:
        int64 mask of ``qa``'s shape.
    """
    fields = _PRE if fmt == "pre_collection" else _C1
    cloud = bqa_field(qa, *fields["cloud"]) >= _CONFIDENCE[cloud_confidence]
    if fmt == "collection1":
        cloud |= bqa_field(qa, *fields["cloud_bit"]) == 1
    if cirrus_as_cloud:
        cloud |= bqa_field(qa, *fields["cirrus"]) >= _CONFIDENCE[cloud_confidence]
    shadow = bqa_field(qa, *fields["shadow"]) >= _CONFIDENCE[shadow_confidence]
    mask = np.full(np.shape(qa), CLEAR, dtype=np.int64)
    mask[shadow] = CLOUD_SHADOW
    mask[cloud] = CLOUD
    mask[bqa_field(qa, *fields["fill"]) == 1] = IGNORE
    return mask


def detect_bqa_format(path: str | Path, rows_per_read: int = 256) -> QAFormat:
    """Whether a BQA file has the pre-Collection or the Collection 1 bit layout.

    Reads the band in strips of rows. Collection 1 never sets bits 13–15; pre-Collection sets the cloud
    confidence (bits 14–15) of every non-fill pixel.

    Raises:
        InputError: If the file has no non-fill pixel (no way to tell, and nothing to learn from).
    """
    from rasterio.windows import Window

    path = Path(path)
    seen_data, high_bits = False, 0
    with open_raster(path) as ds:
        if ds.count != 1:
            raise InputError(f"{path}: expected a single-band BQA file, found {ds.count} bands")
        for row in range(0, ds.height, rows_per_read):
            qa = ds.read(1, window=Window(0, row, ds.width, min(rows_per_read, ds.height - row)))
            data = qa[(qa & 1) == 0]
            if data.size:
                seen_data = True
                high_bits |= int(np.bitwise_or.reduce(data.astype(np.uint32)))
    if not seen_data:
        raise InputError(f"{path}: every BQA pixel is designated fill; the scene has no data")
    return "pre_collection" if high_bits & _C1_UNUSED else "collection1"


def find_band_files(folder: str | Path, bands: Sequence[str]) -> dict[str, Path]:
    """``{band: file}`` for Landsat band names such as ``B4`` (files ``*_B4.tif``/``*_B4.TIF``).

    Raises:
        InputFileNotFoundError: If the folder or a band's file is missing.
        InputError: If a band name is not a Landsat 8 band or several files match one band.
    """
    unknown = [b for b in bands if b not in LANDSAT8_BANDS]
    if unknown:
        raise InputError(f"unknown Landsat 8 bands {unknown}; expected names among {list(LANDSAT8_BANDS)}")
    return find_named_band_files(folder, bands)


def find_qa_file(folder: str | Path) -> Path:
    """The quality band ``*_BQA.tif`` of a Landsat scene folder."""
    return find_named_band_files(folder, ["BQA"])["BQA"]
