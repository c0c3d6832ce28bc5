"""The small-data recipe: honest splits, TTA and fold ensembles, post-processing, augmentation presets.

Values are checked against hand-computed references: component volumes of a synthetic volume, the mean of
flipped passes, the fold assignment of k-fold cross-validation.
"""

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from core.cli import main
from core.utils import InputError
from domains.medical import CaseFolderDataModule, SegmentationTask
from domains.medical.postprocess import choose, choose_excluding
from domains.medical.postprocess import main as choose_main
from domains.medical.postprocessing import PostProcessing, case_scores
from domains.medical.splits import split_cases
from domains.medical.transforms import PipelineConfig, augmentations
from tests.medical.conftest import write_nifti

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "configs" / "medical").glob("*.yaml"))


# ------------------------------------------------------------------------------------------------ splits


@pytest.mark.parametrize("n, folds", [(4, 4), (7, 3), (10, 5)])
def test_kfold_tests_every_case_once_and_never_validates_on_it(n: int, folds: int) -> None:
    ids = [f"case{i}" for i in range(n)]
    tested, validated = [], []
    for fold in range(folds):
        parts = split_cases(ids, "kfold", num_folds=folds, fold=fold, seed=3)
        train, val, test = set(parts["train"]), set(parts["val"]), set(parts["test"])
        assert not (train & val) and not (train & test) and not (val & test)
        assert train | val | test == set(ids) and val and test
        tested += parts["test"]
        validated += parts["val"]
    assert sorted(tested) == ids and sorted(validated) == ids  # each case tested once, validated once


def test_kfold_on_four_patients_is_the_documented_assignment() -> None:
    ids = ["p3", "p4", "p5", "p6"]
    folds = [split_cases(ids, "kfold", num_folds=4, fold=k, seed=0) for k in range(4)]
    # The seed-0 permutation of the sorted ids is p5, p3, p4, p6; fold k tests the k-th, validates the next.
    assert [(f["test"], f["val"]) for f in folds] == [
        (["p5"], ["p3"]),
        (["p3"], ["p4"]),
        (["p4"], ["p6"]),
        (["p6"], ["p5"]),
    ]
    with pytest.raises(InputError, match="num_folds >= 3"):
        split_cases(ids, "kfold", num_folds=2, fold=0)


def test_kfold_val_offsets_of_one_test_fold_never_see_it(make_folders) -> None:
    """Nested cross-validation: with offsets 1..k-1 each other case validates once, the test case never."""
    ids = [f"case{i:02d}" for i in range(8)]
    base = split_cases(ids, "kfold", num_folds=4, fold=2, seed=0)
    inner = [split_cases(ids, "kfold", num_folds=4, fold=2, val_offset=o, seed=0) for o in (1, 2, 3)]
    assert inner[0] == base  # offset 1 is the default
    assert all(parts["test"] == base["test"] for parts in inner)
    assert all(not set(parts["test"]) & set(parts["train"] + parts["val"]) for parts in inner)
    assert sorted(c for parts in inner for c in parts["val"]) == sorted(set(ids) - set(base["test"]))
    for offset in (0, 4):
        with pytest.raises(InputError, match="val_offset"):
            split_cases(ids, "kfold", num_folds=4, fold=0, val_offset=offset)
    root = make_folders(num_cases=4)
    common = {"root": str(root), "case_glob": "*", "modalities": ["Flair*"], "label": "seg.nii.gz"}
    dm = CaseFolderDataModule(**common, label_map="binary", split="kfold", num_folds=4, fold=1, val_offset=2)
    names = {split: [c["case"] for c in dm.split_of(split)] for split in ("train", "val", "test")}
    expected = split_cases([f"pat{i:02d}" for i in range(4)], "kfold", num_folds=4, fold=1, val_offset=2)
    assert names == expected
    with pytest.raises(InputError, match="val_offset"):
        CaseFolderDataModule(**common, label_map="binary", split="kfold", num_folds=4, val_offset=4)


def test_fixed_split_refuses_testing_on_validation_cases() -> None:
    with pytest.raises(InputError, match="share \\['b'\\]"):
        split_cases(["a", "b", "c"], "fixed", val_cases=["b"], test_cases=["b", "c"])


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_no_config_tests_on_its_validation_cases(config: Path) -> None:
    data = yaml.safe_load(config.read_text())["data"]["init_args"]
    options = {k: data[k] for k in ("val_fraction", "test_fraction", "num_folds", "seed") if k in data}
    split = data.get("split", "ratio")
    fixed = (data.get("val_cases") or []) + (data.get("test_cases") or [])
    ids = sorted(set(fixed)) + [f"dummy{i:02d}" for i in range(12)]
    folds = range(data.get("num_folds", 5)) if split == "kfold" else [data.get("fold", 0)]
    for fold in folds:
        parts = split_cases(
            ids,
            split,
            fold=fold,
            val_cases=data.get("val_cases"),
            test_cases=data.get("test_cases"),
            **options,
        )
        assert parts["test"] and not set(parts["val"]) & set(parts["test"]), (config.name, fold)
    if "brats" in config.stem:
        assert split == "kfold" and data["num_folds"] == 4, "BraTS configs cross-validate the 4 patients"


# ------------------------------------------------------------------------------------ TTA and ensembles


class Pointwise(nn.Module):
    """A 1×1×1 convolution: every flip commutes with it (a flip-equivariant network)."""

    def __init__(self, in_channels: int, num_classes: int, spatial_dims: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv3d(in_channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Corner(nn.Module):
    """A 3×3×3 convolution with random weights: not flip-equivariant."""

    def __init__(self, in_channels: int, num_classes: int, spatial_dims: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv3d(in_channels, num_classes, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def _task(network: type[nn.Module], **kwargs) -> SegmentationTask:
    torch.manual_seed(0)
    sizes = {"in_channels": 2, "num_classes": 3, "spatial_dims": 3, "patch_size": [8, 8, 8]}
    return SegmentationTask(network=network, log_images=False, **sizes, **kwargs).eval()


def test_tta_of_a_flip_equivariant_network_equals_no_tta() -> None:
    task = _task(Pointwise, tta=True, overlap=0.5)
    image = torch.randn(1, 2, 13, 11, 9)
    with torch.no_grad():
        plain = torch.softmax(task.sliding_window(image), dim=1)
        mirrored = torch.softmax(task.sliding_window(image, augment=True), dim=1)
    torch.testing.assert_close(mirrored, plain, atol=1e-5, rtol=1e-5)


def test_tta_averages_the_probabilities_of_all_eight_flips() -> None:
    # One window covers the volume (roi = its size), so TTA is the mean over the 8 flips of the whole volume.
    task = _task(Corner, tta=True, roi_size=[6, 5, 4], sw_mode="constant")
    image = torch.randn(1, 2, 6, 5, 4)
    with torch.no_grad():
        mirrored = torch.softmax(task.sliding_window(image, augment=True), dim=1)
        plain = torch.softmax(task.sliding_window(image), dim=1)
        flips = [(), (2,), (3,), (4,), (2, 3), (2, 4), (3, 4), (2, 3, 4)]
        expected = (
            sum(
                torch.softmax(task.network(image.flip(a) if a else image), dim=1).flip(a)
                if a
                else torch.softmax(task.network(image), dim=1)
                for a in flips
            )
            / 8
        )
    torch.testing.assert_close(mirrored, expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(mirrored, plain, atol=1e-3)  # the network is not equivariant: TTA matters


def test_ensemble_averages_the_checkpoints_probabilities(tmp_path: Path) -> None:
    paths, nets = [], []
    for seed in (1, 2):
        torch.manual_seed(seed)
        net = Pointwise(2, 3)
        path = tmp_path / f"fold{seed}.ckpt"
        torch.save({"state_dict": {f"network.{k}": v for k, v in net.state_dict().items()}}, path)
        paths.append(str(path))
        nets.append(net)
    task = _task(Pointwise, ensemble=paths)
    image = torch.randn(1, 2, 10, 9, 8)
    with torch.no_grad():
        averaged = torch.softmax(task.sliding_window(image, augment=True), dim=1)
        expected = (torch.softmax(nets[0](image), dim=1) + torch.softmax(nets[1](image), dim=1)) / 2
    torch.testing.assert_close(averaged, expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(InputError, match=r"missing\.ckpt does not exist"):
        _task(Pointwise, ensemble=[str(tmp_path / "missing.ckpt")]).sliding_window(image, augment=True)
    torch.save({"state_dict": {"network.conv.weight": torch.zeros(1)}}, tmp_path / "bad.ckpt")
    with pytest.raises(InputError, match=r"bad\.ckpt does not fit the configured network Pointwise"):
        _task(Pointwise, ensemble=[str(tmp_path / "bad.ckpt")]).sliding_window(image, augment=True)


# ---------------------------------------------------------------------------------------- post-processing


def _components() -> torch.Tensor:
    """A 20³ foreground with three components: A 5³ = 125, B 3³ = 27 and C 1 voxel."""
    fg = torch.zeros(20, 20, 20, dtype=torch.bool)
    fg[2:7, 2:7, 2:7] = True  # A
    fg[12:15, 12:15, 12:15] = True  # B
    fg[18, 2, 5] = True  # C
    return fg


def test_postprocessing_on_known_components() -> None:
    fg = _components()
    # 1 mm voxels: A 0.125 ml, B 0.027 ml, C 0.001 ml.
    kept = PostProcessing(min_component_ml=0.02).keep(fg, [1.0, 1.0, 1.0])
    assert int(kept.sum()) == 125 + 27 and not kept[18, 2, 5]
    assert int(PostProcessing(min_component_ml=0.2).keep(fg, [1.0, 1.0, 1.0]).sum()) == 0
    # 2 mm voxels (8 µl each): B is 0.216 ml and survives 0.2 ml, C (0.008 ml) does not.
    assert int(PostProcessing(min_component_ml=0.2).keep(fg, [2.0, 2.0, 2.0]).sum()) == 125 + 27
    largest = PostProcessing(keep_largest=True).keep(fg, None)
    assert int(largest.sum()) == 125 and bool(largest[2:7, 2:7, 2:7].all())
    mask = torch.zeros(20, 20, 20)
    mask[:, :, :10] = 1  # keeps A and C, drops B
    masked = PostProcessing(restrict_to_mask=True).keep(fg, None, mask)
    assert int(masked.sum()) == 126
    # Order: mask first, then the largest of what is left (A).
    assert int(PostProcessing(restrict_to_mask=True, keep_largest=True).keep(fg, None, mask).sum()) == 125
    with pytest.raises(InputError, match="needs the case's mask"):
        PostProcessing(restrict_to_mask=True).keep(fg, None)
    assert PostProcessing(True, 0.5, True).name == "mask+min0.5ml+largest" and PostProcessing().name == "none"


def test_postprocessing_of_probabilities_makes_removed_voxels_background() -> None:
    fg = _components()
    probs = torch.zeros(2, 20, 20, 20)
    probs[1][fg] = 0.9
    probs[0] = 1 - probs[1]
    out = PostProcessing(keep_largest=True).apply_probs(probs, None)
    assert int((out.argmax(dim=0) > 0).sum()) == 125
    assert float(out[0, 12, 12, 12]) == 1.0 and float(out[1, 12, 12, 12]) == 0.0
    torch.testing.assert_close(out[:, 3, 3, 3], probs[:, 3, 3, 3])


def test_case_scores_hand_computed() -> None:
    pred = _components()
    truth = torch.zeros(20, 20, 20, dtype=torch.bool)
    truth[2:7, 2:7, 2:8] = True  # A plus one more slice: 150 voxels
    scores = case_scores(pred, truth, [1.0, 1.0, 1.0], 0.001)
    assert scores["dice"] == pytest.approx(2 * 125 / (153 + 150))
    assert scores["precision"] == pytest.approx(1 / 3)  # of A, B, C only A touches the truth
    assert scores["components"] == 3
    assert scores["volume_ratio"] == pytest.approx(153 / 150)
    assert scores["pred_ml"] == pytest.approx(0.153) and scores["true_ml"] == pytest.approx(0.150)
    assert scores["hd95"] > 0
    empty = case_scores(
        torch.zeros(4, 4, 4, dtype=torch.bool), torch.zeros(4, 4, 4, dtype=torch.bool), None, 1.0
    )
    assert empty["dice"] == 1.0 and math.isnan(empty["hd95"]) and math.isnan(empty["volume_ratio"])


def _rows(table: dict[str, dict[str, float]]) -> list[dict[str, str]]:
    return [
        {"case": case, "postprocessing": name, "dice": str(dice)}
        for case, scores in table.items()
        for name, dice in scores.items()
    ]


def test_choose_applies_a_candidate_only_if_it_raises_the_mean_dice() -> None:
    rows = _rows(
        {
            "a": {"none": 0.6, "largest": 0.8, "min0.5ml": 0.65},
            "b": {"none": 0.7, "largest": 0.6, "min0.5ml": 0.72},
            "c": {"none": 0.5, "largest": 0.7, "min0.5ml": 0.55},
        }
    )
    chosen, means = choose(rows)
    assert chosen == "largest" and means["largest"] == pytest.approx(0.7)
    assert means["none"] == pytest.approx(0.6) and means["min0.5ml"] == pytest.approx(0.64)
    assert choose(rows, min_gain=0.2)[0] == "none"  # 0.1 gain is not enough
    # Without case a, largest gains (0.6 + 0.7) / 2 - 0.6 = 0.05 and min0.5ml 0.035: largest again; without
    # c, largest gives 0.7 vs none 0.65 and min0.5ml 0.685.
    assert choose_excluding(rows) == {"a": "largest", "b": "largest", "c": "largest"}
    worse = _rows({"a": {"none": 0.8, "largest": 0.7}, "b": {"none": 0.6, "largest": 0.6}})
    assert choose(worse)[0] == "none"


def test_choose_cli_reads_the_fold_tables(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tables = []
    for fold, (case, none, largest) in enumerate([("p1", 0.5, 0.7), ("p2", 0.6, 0.65)]):
        path = tmp_path / f"fold{fold}.csv"
        with path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["case", "postprocessing", "dice", "hd95", "precision", "volume_ratio"])
            writer.writerow([case, "none", none, 10, 0.5, 1.5])
            writer.writerow([case, "largest", largest, 5, 1.0, 1.1])
        tables.append(str(path))
    result = choose_main(tables)
    assert result["chosen"] == "largest" and result["per_case"] == {"p1": "largest", "p2": "largest"}
    assert result["honest"]["dice"] == pytest.approx(0.675) and result["none"]["dice"] == pytest.approx(0.55)
    assert "chosen on all folds (nnU-Net's rule): largest" in capsys.readouterr().out
    with pytest.raises(InputError, match="does not exist"):
        choose_main([str(tmp_path / "nope.csv")])


# ------------------------------------------------------------------------------------------- augmentation


def test_augmentation_presets() -> None:
    names = {
        preset: [type(t).__name__ for t in augmentations(PipelineConfig(num_classes=2, augmentation=preset))]
        for preset in ("none", "light", "nnunet")
    }
    assert names["none"] == []
    assert names["light"] == ["RandFlipd"] * 3 + ["RandScaleIntensityd", "RandShiftIntensityd"]
    expected = {
        "RandAffined",
        "Rand3DElasticd",
        "RandGaussianNoised",
        "RandGaussianSmoothd",
        "RandScaleIntensityd",
        "RandScaleIntensityFixedMeand",
        "RandSimulateLowResolutiond",
        "RandAdjustContrastd",
        "RandFlipd",
    }
    assert set(names["nnunet"]) == expected
    two_d = augmentations(
        PipelineConfig(num_classes=2, spatial_dims=2, patch_size=(16, 16), augmentation="nnunet")
    )
    patch = {"image": torch.randn(1, 16, 16), "label": torch.zeros(1, 16, 16)}
    from monai.transforms import Compose

    out = Compose(two_d).set_random_state(0)(patch)
    assert out["image"].shape == (1, 16, 16) and "Rand2DElasticd" in [type(t).__name__ for t in two_d]


def test_foreground_oversampling_sets_the_patch_weights(make_folders) -> None:
    root = make_folders()
    common = {"root": str(root), "case_glob": "*", "modalities": ["Flair*"], "label": "seg.nii.gz"}
    dm = CaseFolderDataModule(**common, label_map="binary", foreground_oversampling=0.33)
    assert dm.pipeline_config.pos == pytest.approx(0.33) and dm.pipeline_config.neg == pytest.approx(0.67)
    with pytest.raises(InputError, match=r"foreground_oversampling must be a share in \[0, 1\], got 1\.5"):
        CaseFolderDataModule(**common, label_map="binary", foreground_oversampling=1.5)


# ------------------------------------------------------------------------------------------ through the CLI


def test_kfold_tta_postprocessing_ensemble_through_the_cli(make_folders, tmp_path: Path) -> None:
    root = make_folders(num_cases=4)
    for case in sorted(root.iterdir()):
        mask = np.zeros((20, 20, 12), np.uint8)
        mask[2:-2, 2:-2, 2:-2] = 1
        write_nifti(case / "brainmask.nii.gz", mask)
    common = [
        "--model=SegmentationTask",
        "--model.network=UNet",
        "--model.network.channels=[4, 8]",
        "--model.roi_size=[16, 16, 12]",
        "--data=CaseFolderDataModule",
        f"--data.root={root}",
        "--data.case_glob=*",
        "--data.modalities=[Flair*, T1c*]",
        "--data.label=seg.nii.gz",
        "--data.mask=brainmask.nii.gz",
        "--data.label_map=binary",
        "--data.patch_size=[16, 16, 12]",
        "--data.split=kfold",
        "--data.num_folds=4",
        "--data.augmentation=nnunet",
        "--data.foreground_oversampling=0.33",
        "--trainer.max_epochs=1",
        "--trainer.enable_progress_bar=false",
        "--trainer.accelerator=cpu",
        "--trainer.devices=1",
    ]
    checkpoints = []
    for fold in (0, 1):
        run = tmp_path / f"fold{fold}"
        cli = main(["fit", *common, f"--data.fold={fold}", f"--trainer.default_root_dir={run}"])
        val_case = cli.datamodule.splits["val"][0]["case"]
        assert f"val_volume_ratio/{val_case}" in cli.trainer.callback_metrics
        assert "val_volume_ratio" in cli.trainer.callback_metrics
        post = ["--model.tta=true", "--model.restrict_to_mask=true", "--model.min_component_ml=0.001"]
        tested = main(
            [
                "test",
                *common,
                *post,
                f"--data.fold={fold}",
                f"--trainer.default_root_dir={run}",
                "--ckpt_path=last",
            ]
        )
        assert float(tested.trainer.callback_metrics["test_cases"]) == 1
        with (run / "test_cases.csv").open() as f:
            rows = list(csv.DictReader(f))
        test_case = tested.datamodule.splits["test"][0]["case"]
        assert {r["case"] for r in rows} == {test_case} != {val_case}
        assert {r["postprocessing"] for r in rows} >= {
            "none",
            "largest",
            "mask",
            "mask+largest",
            "mask+min0.001ml",
        }
        checkpoints.append(str(run / "checkpoints" / "last.ckpt"))
    out = tmp_path / "predictions"
    main(
        [
            "predict",
            *common,
            "--data.fold=0",
            f"--trainer.default_root_dir={tmp_path / 'ensemble'}",
            f"--model.ensemble=[{', '.join(checkpoints)}]",
            "--model.tta=true",
            "--model.restrict_to_mask=true",
            f"--prediction_writer.output_dir={out}",
        ]
    )
    written = sorted(out.glob("*_seg.nii.gz"))
    assert len(written) == 1
    import nibabel as nib

    pred = np.asarray(nib.load(written[0]).dataobj)
    assert pred.shape == (20, 20, 12) and not pred[:2].any()  # nothing outside the mask


def test_monai_attention_unet_adapter_takes_the_task_sizes() -> None:
    from monai.networks.nets import AttentionUnet

    from domains.medical.models import MonaiAttentionUnet

    task = SegmentationTask(
        network=MonaiAttentionUnet, in_channels=2, num_classes=3, spatial_dims=3, patch_size=[16, 16, 16]
    )
    assert isinstance(task.network.net, AttentionUnet) and task.network.channels == (16, 32, 64, 128)
    assert task(torch.randn(1, 2, 16, 16, 16)).shape == (1, 3, 16, 16, 16)
