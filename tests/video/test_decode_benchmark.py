"""The decoding benchmark runs end to end on the embedded clips and prints one row per video."""

from pathlib import Path

import pytest

from benchmarks.video_decode import EMBEDDED, main
from domains.video.decoding import torchcodec_available


def test_one_row_per_video(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--folder", str(EMBEDDED), "--clips", "1", "--rounds", "1", "--short-side", "48"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("# Video decoding, frames/s: PyAV") and "short side 48" in lines[0]
    rows = [line.strip("| ").split(" | ") for line in lines[3:]]
    assert sorted(row[0] for row in rows) == sorted(p.name for p in Path(EMBEDDED).iterdir())
    for row in rows:
        assert row[1] == "h264" and float(row[4]) > 0 and float(row[5]) > 0
        if torchcodec_available():
            assert float(row[6]) > 0 and row[7].endswith("x")
        else:
            assert row[6:] == ["n/a", "n/a"]
