"""Remote-sensing tasks and metrics on in-memory batches: losses, metrics, predictions, pre-training."""

import csv
from functools import partial

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from core.training import PredictionWriter
from core.utils import InputError
from domains.remote_sensing.figures import segmentation_overlay
from domains.remote_sensing.metrics import ClassMetrics, iou_from_confusion
from domains.remote_sensing.models import BCAF, DFYP, CASWiT, LWGANetSeg, SpectralSpatialTransformer
from domains.remote_sensing.tasks import (
    MaskedPretrainingTask,
    SceneClassificationTask,
    SemanticSegmentationTask,
    YieldRegressionTask,
)
from domains.remote_sensing.tasks.pretraining import random_cell_mask
from domains.remote_sensing.tasks.segmentation import dice_loss

SMALL_LWGA = {"stem_dim": 16, "depths": (1, 1, 1, 1), "decoder_dim": 16}
SMALL_DAVIT = {
    "dims": (16, 32, 64, 128),
    "depths": (1, 1, 1, 1),
    "num_heads": (1, 2, 4, 8),
    "decoder_dim": 16,
}


class _Dicts(Dataset):
    def __init__(self, items: list[dict]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


def _trainer(tmp_path, **kw) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        default_root_dir=tmp_path,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kw,
    )


# ---------------------------------------------------------------- metrics


def test_class_metrics_match_hand_computed_values():
    metric = ClassMetrics(3, ["clear", "thick cloud", "shadow"], ignore_index=-1, iou=True)
    target = torch.tensor([0, 0, 0, 1, 1, 2, -1])
    preds = torch.tensor([0, 0, 1, 1, 1, 0, 2])
    metric.update(preds, target)
    out = metric.compute()
    assert out["oa"] == pytest.approx(4 / 6)
    assert out["aa"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    p_o, p_e = 4 / 6, (3 * 3 + 2 * 3 + 1 * 0) / 36
    assert out["kappa"] == pytest.approx((p_o - p_e) / (1 - p_e), abs=1e-6)
    assert out["f1_thick_cloud"] == pytest.approx(2 * 2 / (2 * 2 + 1))
    assert out["iou_clear"] == pytest.approx(2 / 4)
    assert out["miou"] == pytest.approx((2 / 4 + 2 / 3 + 0) / 3)
    assert out["confusion"].sum() == 6  # the ignored pixel is not counted


def test_miou_leaves_out_classes_absent_from_truth_and_prediction():
    confusion = torch.tensor([[5, 0, 0], [0, 3, 0], [0, 0, 0]])
    iou = iou_from_confusion(confusion)
    assert torch.isnan(iou[2]) and iou.nanmean() == 1.0


# ---------------------------------------------------------------- classification


def test_scene_classification_fits_validates_and_writes_a_class_csv(tmp_path):
    torch.manual_seed(0)
    items = [
        {"image": torch.randn(4, 3, 3) + (i % 3), "label": torch.tensor(i % 3), "id": f"sat.trn:{i}"}
        for i in range(24)
    ]
    loader = DataLoader(_Dicts(items), batch_size=8)
    task = SceneClassificationTask(
        network=partial(SpectralSpatialTransformer, dim=16, depth=1),
        in_channels=4,
        num_classes=3,
        class_names=["red soil", "cotton", "grey soil"],
    )
    trainer = _trainer(tmp_path, max_epochs=3, callbacks=[PredictionWriter(str(tmp_path / "out"))])
    trainer.fit(task, loader, loader)
    logged = trainer.callback_metrics
    for key in ("val_oa", "val_aa", "val_kappa", "val_macro_f1", "val_f1_red_soil", "train_oa"):
        assert key in logged, key
    trainer.predict(task, loader, return_predictions=False)
    rows = list(csv.reader((tmp_path / "out" / "classes.csv").open()))
    assert rows[0] == ["id", "p_red soil", "p_cotton", "p_grey soil", "class"]
    assert (
        len(rows) == 25 and rows[1][0] == "sat.trn:0" and rows[1][-1] in ("red soil", "cotton", "grey soil")
    )
    assert sum(float(v) for v in rows[1][1:4]) == pytest.approx(1.0, abs=1e-4)
    figure = task.metric_figure("val_confusion", torch.eye(3, dtype=torch.long))
    assert figure is not None and task.metric_figure("val_oa", torch.tensor(1.0)) is None


def test_class_weights_are_checked():
    with pytest.raises(ValueError, match="expected 3"):
        SceneClassificationTask(in_channels=4, num_classes=3, class_weights=[1.0, 2.0])


# ---------------------------------------------------------------- segmentation


def _tiles(n: int, size: int, context: bool = False) -> list[dict]:
    torch.manual_seed(0)
    items = []
    for i in range(n):
        mask = torch.zeros(size, size, dtype=torch.long)
        mask[: size // 2] = 1
        mask[-2:] = -1
        image = 0.3 * torch.randn(3, size, size)
        image[0] += 2.0 * mask.clamp(min=0) - 1.0
        item = {"image": image, "mask": mask, "id": f"tile{i}"}
        if context:
            item["context"] = torch.randn(3, size, size)
        items.append(item)
    return items


def test_segmentation_task_trains_caswit_with_its_auxiliary_loss(tmp_path):
    loader = DataLoader(_Dicts(_tiles(4, 64, context=True)), batch_size=2)
    task = SemanticSegmentationTask(
        network=partial(CASWiT, **SMALL_DAVIT), in_channels=3, num_classes=2, class_names=["clear", "cloud"]
    )
    batch = next(iter(loader))
    out = task.network.forward_train(batch["image"], context=batch["context"])
    assert set(out) == {"logits", "aux_logits", "aux_weight"}
    assert task.segmentation_loss(out["aux_logits"], batch["mask"]) > 0
    trainer = _trainer(tmp_path, max_epochs=1, limit_train_batches=2)
    trainer.fit(task, loader, loader)
    for key in ("val_miou", "val_iou_cloud", "val_oa", "val_f1_clear", "val_loss"):
        assert key in trainer.callback_metrics, key


def test_segmentation_task_names_a_missing_input():
    task = SemanticSegmentationTask(network=partial(CASWiT, **SMALL_DAVIT), in_channels=3, num_classes=2)
    batch = next(iter(DataLoader(_Dicts(_tiles(2, 64)), batch_size=2)))
    with pytest.raises(InputError, match="'context'"):
        task.validation_step(batch, 1)


def test_segmentation_task_writes_tile_masks_and_a_figure(tmp_path):
    loader = DataLoader(_Dicts(_tiles(2, 96)), batch_size=2)
    task = SemanticSegmentationTask(
        network=partial(LWGANetSeg, **SMALL_LWGA), in_channels=3, num_classes=2, band_names=["B4", "B3", "B2"]
    )
    assert task.rgb_indices() == [0, 1, 2]
    trainer = _trainer(tmp_path, callbacks=[PredictionWriter(str(tmp_path / "out"))])
    trainer.predict(task, loader, return_predictions=False)
    saved = np.load(tmp_path / "out" / "masks_00000.npz")
    assert saved["masks"].shape == (2, 96, 96) and list(saved["ids"]) == ["tile0", "tile1"]
    batch = next(iter(loader))
    fig = segmentation_overlay(
        batch["image"][0], batch["mask"][0], batch["mask"][0].clamp(min=0), [0, 1, 2], ["a", "b"], "t"
    )
    assert len(fig.axes) == 3


def test_dice_loss_is_zero_for_a_perfect_prediction_and_ignores_nodata():
    mask = torch.tensor([[[0, 1], [1, -1]]])
    logits = torch.full((1, 2, 2, 2), -20.0)
    logits[0, 0, 0, 0] = logits[0, 1, 0, 1] = logits[0, 1, 1, 0] = 20.0
    assert dice_loss(logits, mask, -1) == pytest.approx(0.0, abs=1e-4)
    logits[0, :, 1, 1] = torch.tensor([50.0, -50.0])  # the ignored pixel may be anything
    assert dice_loss(logits, mask, -1) == pytest.approx(0.0, abs=1e-4)


# ---------------------------------------------------------------- pre-training


def test_random_cell_masks_hide_exactly_the_ratio():
    mask = random_cell_mask(3, 128, 96, 32, 0.75)
    assert mask.shape == (3, 4, 3) and (mask.flatten(1).sum(1) == 9).all()


def test_masked_l1_counts_only_masked_pixels():
    task = MaskedPretrainingTask(network=partial(LWGANetSeg, **SMALL_LWGA), in_channels=3)
    image = torch.randn(1, 3, 96, 96)
    mask = torch.zeros(1, 24, 24, dtype=torch.bool)
    mask[:, :6] = True  # rows 0..23 of pixels
    guess = image.clone()
    guess[..., 24:, :] += 10.0  # wrong only where nothing is masked
    assert task.masked_l1(image, guess, mask) == 0.0
    guess[..., :24, :] += 1.0
    assert task.masked_l1(image, guess, mask) == pytest.approx(1.0)


def test_pretrained_encoder_fine_tunes_a_segmentation_task(tmp_path):
    loader = DataLoader(_Dicts([{"image": t["image"]} for t in _tiles(4, 96)]), batch_size=2)
    pre = MaskedPretrainingTask(network=partial(LWGANetSeg, **SMALL_LWGA), in_channels=3, mask_patch_size=32)
    trainer = _trainer(tmp_path, max_epochs=1, limit_train_batches=2)
    trainer.fit(pre, loader, loader)
    assert "val_loss" in trainer.callback_metrics
    path = tmp_path / "pre.ckpt"
    torch.save({"state_dict": pre.state_dict()}, path)
    seg = SemanticSegmentationTask(
        network=partial(LWGANetSeg, **SMALL_LWGA), in_channels=3, num_classes=2, pretrained=str(path)
    )
    for name, value in pre.network.encoder.state_dict().items():
        assert torch.equal(seg.network.encoder.state_dict()[name], value), name


def test_pretraining_reconstructs_bcaf_and_caswit_tiles_from_their_extra_inputs():
    image = torch.randn(2, 3, 64, 64)
    extras = {BCAF: {"pan": torch.randn(2, 1, 128, 128)}, CASWiT: {"context": torch.randn(2, 3, 64, 64)}}
    for network, inputs in extras.items():
        task = MaskedPretrainingTask(
            network=partial(network, **SMALL_DAVIT), in_channels=3, mask_patch_size=16
        )
        mask = torch.zeros(2, 16, 16, dtype=torch.bool)
        assert task(image, mask, **inputs).shape == image.shape
        loss = task.training_step({"image": image, **inputs}, 0)
        loss.backward()
        assert torch.isfinite(loss) and task.network.mask_token.grad is not None


def test_pretraining_refuses_a_network_without_masked_encoding():
    with pytest.raises(ValueError, match="encode_masked"):
        MaskedPretrainingTask(network=partial(SpectralSpatialTransformer), in_channels=3)


# ---------------------------------------------------------------- regression


def test_yield_regression_logs_rmse_mae_r2(tmp_path):
    torch.manual_seed(0)
    items = [{"image": torch.rand(9, 16, 16), "target": torch.tensor(float(i))} for i in range(8)]
    loader = DataLoader(_Dicts(items), batch_size=4)
    task = YieldRegressionTask(
        network=partial(DFYP, bins=16, time_steps=16, depth=1, dim=32, mlp_dim=64), in_channels=9
    )
    trainer = _trainer(tmp_path, max_epochs=1, limit_train_batches=1)
    trainer.fit(task, loader, loader)
    for key in ("val_rmse", "val_mae", "val_r2"):
        assert key in trainer.callback_metrics, key
