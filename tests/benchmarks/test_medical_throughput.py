"""The medical throughput benchmark at a tiny size: the result structure, the ratios and the files written."""

import json
from pathlib import Path

import pytest

pytest.importorskip("monai")

from benchmarks.medical_throughput import LIKE_FOR_LIKE, REFERENCE, REFERENCE_CL, main, peak_rss_mib


def test_main_tiny(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--patch", "16", "--channels", "4,8,16", "--batch", "1", "--steps", "2", "--warmup", "1"]
    argv += ["--volume", "24,20,18", "--threads", "1", "--out", str(tmp_path)]
    result = main(argv)
    rows = {r["name"]: r for r in result["training"]}
    assert set(rows) == {REFERENCE, REFERENCE_CL, LIKE_FOR_LIKE, "agunet"}
    assert rows[REFERENCE]["ratio_vs_monai"] == pytest.approx(1.0)
    for row in rows.values():
        assert row["median_step_s"] > 0 and row["params"] > 0 and row["ratio_vs_monai"] > 0
    assert result["verdict"] in ("PASS", "FAIL")
    sw = result["sliding_window"]
    assert sw["volume"] == [24, 20, 18] and sw["roi"] == [16, 16, 16] and sw["seconds"] > 0
    # 2 classes × 24·20·18 float32 voxels
    assert sw["output_mib"] == pytest.approx(2 * 24 * 20 * 18 * 4 / 2**20)
    assert (tmp_path / "medical_throughput.md").read_text().count("|") > 10
    saved = json.loads((tmp_path / "medical_throughput.json").read_text())
    assert saved["verdict"] == result["verdict"] and len(saved["training"]) == 4
    out = capsys.readouterr().out
    assert result["verdict"] in out and "ours/MONAI" in out


def test_skip_sliding_window_and_bad_options(tmp_path: Path) -> None:
    argv = ["--patch", "12,12", "--volume", "20,20", "--channels", "4,8", "--steps", "1", "--warmup", "0"]
    result = main([*argv, "--skip-sliding-window", "--no-monai-cl", "--out", str(tmp_path)])
    assert result["sliding_window"] is None and len(result["training"]) == 3
    with pytest.raises(SystemExit, match="--volume"):
        main(["--patch", "16", "--volume", "20,20", "--out", str(tmp_path)])


def test_peak_rss_measures_an_allocation() -> None:
    import torch

    out, mib = peak_rss_mib(lambda: torch.ones(64 * 2**20 // 4).sum().item())
    assert out == 64 * 2**20 // 4
    if mib is not None:
        assert mib > 32
