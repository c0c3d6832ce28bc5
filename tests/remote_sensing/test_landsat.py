"""Landsat 8 band discovery and BQA decoding, bit by bit, in both USGS layouts."""

from pathlib import Path

import numpy as np
import pytest
import rasterio

from core.utils import InputError, InputFileNotFoundError
from domains.remote_sensing.landsat import (
    CLEAR,
    CLOUD,
    CLOUD_SHADOW,
    IGNORE,
    bqa_field,
    decode_bqa,
    detect_bqa_format,
    find_band_files,
    find_qa_file,
    mask_classes,
)
from tests.remote_sensing.conftest import write_tif


def test_bqa_field_reads_each_bit() -> None:
    for bit in range(16):
        value = np.array([1 << bit], dtype=np.uint16)
        for first in range(16):
            assert bqa_field(value, first, 1)[0] == (1 if first == bit else 0)
    assert bqa_field(np.array([0b1011_0000_0000_0000]), 14, 2)[0] == 0b10
    assert bqa_field(np.array([0b1011_0000_0000_0000]), 12, 2)[0] == 0b11


def _pre(
    cloud: int = 1, cirrus: int = 1, shadow: int = 0, water: int = 0, snow: int = 0, fill: int = 0
) -> int:
    return (cloud << 14) | (cirrus << 12) | (snow << 10) | (shadow << 6) | (water << 4) | fill


def _c1(
    cloud_bit: int = 0,
    cloud: int = 1,
    shadow: int = 1,
    snow: int = 1,
    cirrus: int = 1,
    fill: int = 0,
    sat: int = 0,
) -> int:
    return (cirrus << 11) | (snow << 9) | (shadow << 7) | (cloud << 5) | (cloud_bit << 4) | (sat << 2) | fill


@pytest.mark.parametrize("confidence", [0, 1, 2, 3])
def test_pre_collection_cloud_confidence_bits_14_15(confidence: int) -> None:
    qa = np.array([_pre(cloud=confidence)], dtype=np.uint16)
    assert decode_bqa(qa, "pre_collection")[0] == (CLOUD if confidence == 3 else CLEAR)
    assert decode_bqa(qa, "pre_collection", cloud_confidence="medium")[0] == (
        CLOUD if confidence >= 2 else CLEAR
    )


def test_pre_collection_other_bits() -> None:
    # Cirrus (12-13) counts only when asked; water (4-5) and snow (10-11) never; shadow (6-7) as shadow.
    assert decode_bqa(np.array([_pre(cirrus=3)]), "pre_collection")[0] == CLEAR
    assert decode_bqa(np.array([_pre(cirrus=3)]), "pre_collection", cirrus_as_cloud=True)[0] == CLOUD
    assert decode_bqa(np.array([_pre(water=3, snow=3)]), "pre_collection")[0] == CLEAR
    assert decode_bqa(np.array([_pre(shadow=3)]), "pre_collection")[0] == CLOUD_SHADOW
    assert decode_bqa(np.array([_pre(shadow=3, cloud=3)]), "pre_collection")[0] == CLOUD
    assert decode_bqa(np.array([_pre(cloud=3, fill=1)]), "pre_collection")[0] == IGNORE
    # The values of the shared scene: 20480 clear, 28672 cirrus yes, 36864 cloud maybe, 53248/61440 cloud yes.
    values = np.array([20480, 20512, 23552, 28672, 36864, 45056, 53248, 61440, 1], dtype=np.uint16)
    assert decode_bqa(values, "pre_collection").tolist() == [0, 0, 0, 0, 0, 0, 1, 1, -1]
    assert decode_bqa(values, "pre_collection", "medium").tolist() == [0, 0, 0, 0, 1, 1, 1, 1, -1]


@pytest.mark.parametrize("confidence", [0, 1, 2, 3])
def test_collection1_cloud_shadow_confidence_bits_7_8(confidence: int) -> None:
    qa = np.array([_c1(shadow=confidence)], dtype=np.uint16)
    assert decode_bqa(qa, "collection1")[0] == (CLOUD_SHADOW if confidence == 3 else CLEAR)
    expected = CLOUD_SHADOW if confidence >= 2 else CLEAR
    assert decode_bqa(qa, "collection1", shadow_confidence="medium")[0] == expected


@pytest.mark.parametrize("confidence", [0, 1, 2, 3])
def test_collection1_cloud_confidence_bits_5_6(confidence: int) -> None:
    qa = np.array([_c1(cloud=confidence)], dtype=np.uint16)
    assert decode_bqa(qa, "collection1")[0] == (CLOUD if confidence == 3 else CLEAR)
    assert decode_bqa(qa, "collection1", cloud_confidence="medium")[0] == (
        CLOUD if confidence >= 2 else CLEAR
    )


def test_collection1_single_bits_and_usgs_values() -> None:
    assert decode_bqa(np.array([_c1(cloud_bit=1)]), "collection1")[0] == CLOUD  # bit 4
    assert decode_bqa(np.array([_c1(fill=1, cloud_bit=1)]), "collection1")[0] == IGNORE  # bit 0
    assert decode_bqa(np.array([_c1(sat=3)]), "collection1")[0] == CLEAR  # bits 2-3
    assert decode_bqa(np.array([_c1(snow=3)]), "collection1")[0] == CLEAR  # bits 9-10
    assert decode_bqa(np.array([_c1(cirrus=3)]), "collection1")[0] == CLEAR  # bits 11-12
    assert decode_bqa(np.array([_c1(cirrus=3)]), "collection1", cirrus_as_cloud=True)[0] == CLOUD
    assert decode_bqa(np.array([_c1(cloud_bit=1, cloud=3, shadow=3)]), "collection1")[0] == CLOUD
    # USGS Collection 1 OLI values: 2720 clear, 2752 cloud medium, 2800 cloud high, 2976 shadow high,
    # 3744 snow high, 6816 cirrus high, 1 fill.
    values = np.array([2720, 2752, 2800, 2976, 3744, 6816, 1], dtype=np.uint16)
    assert [_c1(), _c1(cloud=2), _c1(cloud_bit=1, cloud=3), _c1(shadow=3)] == values[:4].tolist()
    assert decode_bqa(values, "collection1").tolist() == [0, 0, 1, 2, 0, 0, -1]
    assert mask_classes("collection1") == ("clear", "cloud", "cloud_shadow")
    assert mask_classes("pre_collection") == ("clear", "cloud")


def test_detect_format(tmp_path: Path) -> None:
    pre = write_tif(tmp_path / "pre_BQA.TIF", np.array([[20480, 53248], [1, 1]], dtype=np.uint16))
    c1 = write_tif(tmp_path / "c1_BQA.TIF", np.array([[2720, 2800], [2976, 1]], dtype=np.uint16))
    assert detect_bqa_format(pre) == "pre_collection"
    assert detect_bqa_format(c1) == "collection1"
    # Fill pixels carry no layout information (pre-Collection fill is 1, but fill may set other bits).
    fill = write_tif(tmp_path / "fill_BQA.TIF", np.full((2, 2), 1 | (1 << 15), dtype=np.uint16))
    with pytest.raises(InputError, match=r"fill_BQA\.TIF: every BQA pixel is designated fill"):
        detect_bqa_format(fill)


def test_detect_format_of_shared_scene(shared_scene: Path) -> None:
    qa_path = find_qa_file(shared_scene)
    assert detect_bqa_format(qa_path) == "pre_collection"
    with rasterio.open(qa_path) as ds:
        mask = decode_bqa(ds.read(1), "pre_collection")
    assert set(np.unique(mask).tolist()) == {CLEAR, CLOUD}
    assert 0.03 < (mask == CLOUD).mean() < 0.1


def test_find_band_files(tmp_path: Path) -> None:
    for band in ("B1", "B10", "B11", "BQA"):
        write_tif(tmp_path / f"LC08_X_{band}.TIF", np.zeros((2, 2), dtype=np.uint16))
    files = find_band_files(tmp_path, ["B1", "B10"])
    assert files == {"B1": tmp_path / "LC08_X_B1.TIF", "B10": tmp_path / "LC08_X_B10.TIF"}
    assert find_qa_file(tmp_path).name == "LC08_X_BQA.TIF"
    with pytest.raises(InputFileNotFoundError, match=r"no band file matching \*_B2\.tif"):
        find_band_files(tmp_path, ["B2"])
    with pytest.raises(InputError, match=r"unknown Landsat 8 bands \['B12'\]"):
        find_band_files(tmp_path, ["B12"])
    write_tif(tmp_path / "other_B1.tif", np.zeros((2, 2), dtype=np.uint16))
    with pytest.raises(InputError, match=r"several files match \*_B1\.tif"):
        find_band_files(tmp_path, ["B1"])
    with pytest.raises(InputFileNotFoundError, match="scene folder not found"):
        find_band_files(tmp_path / "missing", ["B1"])
