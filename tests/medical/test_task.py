"""The segmentation task through ``attnlab``: fit, resume, test and predict on real NIfTI files.

Everything runs on the embedded hippocampus subset with tiny networks; the BraTS path reads
``../shared/data`` and is skipped with a reason when it is absent.
"""

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from core.cli import main
from domains.medical import DecathlonDataModule, QTSeg, SegmentationTask, UNet
from domains.medical.module import voxel_spacing
from tests.medical.conftest import BRATS_LABEL, BRATS_MODALITIES, tree_state

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "configs" / "medical").glob("*.yaml"))
TINY = [
    "--model.network.channels=[4, 8, 16]",
    "--data.patch_size=[16, 16, 16]",
    "--model.roi_size=[24, 24, 24]",
    "--data.samples_per_volume=2",
    "--data.batch_size=1",
    "--data.cache=none",
    "--trainer.enable_progress_bar=false",
    "--trainer.accelerator=cpu",
    "--trainer.devices=1",
]


def _run(command: str, config: Path, root: Path, *extra: str):
    return main([command, f"--config={config}", f"--trainer.default_root_dir={root}", *TINY, *extra])


def test_every_model_has_configs() -> None:
    names = {p.stem for p in CONFIGS}
    for model in ("unet3d", "agunet", "daunet", "dagunet"):
        assert {f"{model}_hippocampus", f"{model}_brats"} <= names
    assert {"qtseg_hippocampus", "smoke"} <= names


def test_fit_resume_test_predict_in_original_space(tmp_path: Path, hippocampus: Path) -> None:
    before = tree_state(hippocampus)
    config = REPO / "configs" / "medical" / "agunet_hippocampus.yaml"
    short = [
        "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=2",
        "--trainer.check_val_every_n_epoch=1",
    ]
    cli = _run("fit", config, tmp_path, *short)
    assert cli.trainer.state.finished
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert float(cli.trainer.callback_metrics["val_cases"]) == 2  # the 2 validation volumes, each once
    # The data-derived sizes reached the task, and the datamodule keeps only what it was given.
    assert cli.model.hparams.class_names == ["background", "Anterior", "Posterior"]
    assert "num_classes" not in cli.datamodule.hparams and "class_names" not in cli.datamodule.hparams

    # An interrupted run resumes from last.ckpt: the epoch counter goes on from where it stopped.
    resumed = _run(
        "fit",
        config,
        tmp_path,
        "--trainer.max_epochs=2",
        "--trainer.limit_train_batches=2",
        "--ckpt_path=last",
    )
    assert resumed.trainer.current_epoch == 2
    final = {k: float(v) for k, v in resumed.trainer.callback_metrics.items() if k.startswith("val_")}

    # last.ckpt holds the weights of the last validation: validating it again gives the same numbers.
    validated = _run("validate", config, tmp_path, "--ckpt_path=last")
    again = validated.trainer.callback_metrics
    for key in ("val_dice", "val_loss", "val_recall", "val_dice_patient"):
        assert float(again[key]) == pytest.approx(final[key], abs=1e-6), key
    tested = _run("test", config, tmp_path, "--ckpt_path=best")
    metrics = tested.trainer.callback_metrics
    for key in ("test_dice", "test_dice_Anterior", "test_recall", "test_precision", "test_f1", "test_loss"):
        assert key in metrics, key
    assert float(metrics["test_cases"]) == 2

    out = tmp_path / "predictions"
    _run("predict", config, tmp_path, "--ckpt_path=best", f"--prediction_writer.output_dir={out}")
    dm = DecathlonDataModule(root=str(hippocampus), split="ratio", seed=0)
    dm.setup("test")
    test_cases = dm.splits["test"]
    written = sorted(out.glob("*_seg.nii.gz"))
    assert [p.name for p in written] == sorted(f"{c['case']}_seg.nii.gz" for c in test_cases)
    for case in test_cases:
        original = nib.load(case["image"][0])
        pred = nib.load(out / f"{case['case']}_seg.nii.gz")
        # Invertd undid orientation and cropping: same grid as the input image, labels only.
        assert pred.shape == original.shape
        np.testing.assert_allclose(pred.affine, original.affine, atol=1e-4)
        assert set(np.unique(np.asarray(pred.dataobj))) <= {0, 1, 2}
    assert tree_state(hippocampus) == before, "the input folder was modified"


def test_predict_refuses_the_input_folder(tmp_path: Path, hippocampus: Path) -> None:
    config = REPO / "configs" / "medical" / "unet3d_hippocampus.yaml"
    with pytest.raises(ValueError, match="among the input data"):
        _run("predict", config, tmp_path, f"--prediction_writer.output_dir={hippocampus / 'imagesTr'}")


@pytest.mark.parametrize(
    "swap",
    [
        ["--model.attention=MultiHeadAttention", "--model.attention.num_heads=2"],
        ["--model.attention=NeighborhoodAttention", "--model.attention.kernel_size=3"],
        ["--model.network.spatial_attention=CBAM"],
        [
            "--model.network.spatial_attention=DualAttention",
            "--model.network.spatial_attention.cam_variant=danet",
        ],
        ["--model.network.gate=AdditiveAttentionGate"],
    ],
    ids=["mha", "neighborhood", "cbam", "danet-cam", "oktay-gate"],
)
def test_mechanisms_swap_through_the_cli(swap: list[str], tmp_path: Path) -> None:
    config = REPO / "configs" / "medical" / "dagunet_hippocampus.yaml"
    cli = _run("fit", config, tmp_path, "--trainer.fast_dev_run=true", *swap)
    assert cli.trainer.state.finished
    name = swap[0].split("=")[1]
    assert any(type(m).__name__ == name for m in cli.model.modules()), f"{name} not in the network"


@pytest.mark.slow
@pytest.mark.parametrize(
    "config",
    [p for p in CONFIGS if p.stem.endswith("_hippocampus") and "qtseg" not in p.stem],
    ids=lambda p: p.stem,
)
def test_every_hippocampus_config_trains_through_the_cli(config: Path, tmp_path: Path) -> None:
    cli = _run("fit", config, tmp_path, "--trainer.fast_dev_run=true")
    assert cli.trainer.state.finished and cli.trainer.global_step == 1
    assert type(cli.model.network).__name__ == _network_class(config)


def _network_class(config: Path) -> str:
    import yaml

    return yaml.safe_load(config.read_text())["model"]["init_args"]["network"]["class_path"]


def test_network_short_names_are_the_domains(tmp_path: Path) -> None:
    """``UNet`` is ours, not MONAI's class of that name (loaded here); QTSeg refuses 3-D data clearly."""
    from monai.networks.nets import UNet as MonaiUNet

    config = REPO / "configs" / "medical" / "unet3d_hippocampus.yaml"
    args = ["--trainer.fast_dev_run=true", "--model.network=UNet", "--model.network.channels=[4, 8]"]
    cli = _run("fit", config, tmp_path, *args)
    assert type(cli.model.network) is UNet and cli.model.network.channels == (4, 8)
    assert MonaiUNet.__name__ == "UNet" and not isinstance(cli.model.network, MonaiUNet)
    with pytest.raises(ValueError, match="QTSeg is a 2-D network, got spatial_dims=3"):
        _run("fit", config, tmp_path, "--model.network=QTSeg")


def test_qtseg_trains_on_slices_and_predicts_volumes(tmp_path: Path) -> None:
    config = REPO / "configs" / "medical" / "qtseg_hippocampus.yaml"
    common = [
        f"--config={config}",
        f"--trainer.default_root_dir={tmp_path}",
        "--trainer.enable_progress_bar=false",
        "--data.cache=none",
        "--model.network.base_channels=8",
    ]
    cli = main(
        [
            "fit",
            *common,
            "--trainer.max_epochs=1",
            "--trainer.limit_train_batches=1",
            "--trainer.check_val_every_n_epoch=1",
        ]
    )
    assert cli.trainer.state.finished
    assert cli.model.hparams.spatial_dims == 2 and isinstance(cli.model.network, QTSeg)
    assert float(cli.trainer.callback_metrics["val_cases"]) == 2  # 2-D network, 3-D volumes validated
    out = tmp_path / "predictions"
    main(["predict", *common, "--ckpt_path=best", f"--prediction_writer.output_dir={out}"])
    written = sorted(out.glob("*_seg.nii.gz"))
    assert len(written) == 2
    assert len(nib.load(written[0]).shape) == 3


@pytest.mark.slow
@pytest.mark.parametrize("config", [p for p in CONFIGS if "brats" in p.stem], ids=lambda p: p.stem)
def test_brats_configs_run(config: Path, brats: Path, tmp_path: Path) -> None:
    cli = main(
        [
            "fit",
            f"--config={config}",
            f"--data.root={brats}",
            f"--trainer.default_root_dir={tmp_path}",
            *TINY,
            "--trainer.fast_dev_run=true",
            "--trainer.precision=32-true",
            "--data.num_workers=0",
            "--model.roi_size=[48, 48, 48]",
        ]
    )
    assert cli.trainer.state.finished
    assert cli.datamodule.in_channels == len(BRATS_MODALITIES)
    assert cli.datamodule.label == BRATS_LABEL
    assert cli.model.hparams.num_classes == 2


def test_task_needs_the_data_sizes() -> None:
    with pytest.raises(ValueError, match="in_channels is unknown"):
        SegmentationTask()
    with pytest.raises(ValueError, match="patch_size"):
        SegmentationTask(in_channels=1, num_classes=2, spatial_dims=3, patch_size=[16, 16])
    with pytest.raises(ValueError, match="QTSeg is a 2-D network"):
        SegmentationTask(network=QTSeg, in_channels=1, num_classes=2, spatial_dims=3, patch_size=[8, 8, 8])
    with pytest.raises(ValueError, match="2 class_names"):
        SegmentationTask(
            in_channels=1, num_classes=3, spatial_dims=3, patch_size=[8] * 3, class_names=["a", "b"]
        )


def test_voxel_spacing_reads_rotated_affines() -> None:
    from monai.data import MetaTensor

    rotation = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    affine = torch.eye(4, dtype=torch.float64)
    affine[:3, :3] = rotation @ torch.diag(torch.tensor([0.5, 2.0, 3.0], dtype=torch.float64))
    volume = MetaTensor(torch.zeros(1, 1, 4, 4, 4), affine=affine)
    torch.testing.assert_close(voxel_spacing(volume), torch.tensor([[0.5, 2.0, 3.0]], dtype=torch.float64))
    assert voxel_spacing(torch.zeros(1, 1, 4, 4, 4)) is None
