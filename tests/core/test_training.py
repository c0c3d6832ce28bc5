"""BaseTask hooks, EMA, fine-tuning, pretrained loading and atomic checkpoints on a tiny task."""

import copy
import os
import warnings
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from core.training import (
    EMA,
    AtomicCheckpointIO,
    BaseTask,
    FreezeBackbone,
    TaskCheckpoint,
    atomic_torch_save,
    load_pretrained,
)
from core.training.pretrained import adapt_input_channels


class ToyTask(BaseTask):
    """Two-layer classifier with a BatchNorm in the backbone."""

    monitor = "val_loss"

    def __init__(self, width: int = 8, pretrained: str | None = None) -> None:
        super().__init__(pretrained=pretrained)

    def configure_models(self) -> None:
        w = self.hparams.width
        self.body = nn.Sequential(nn.Linear(4, w), nn.BatchNorm1d(w), nn.ReLU())
        self.neck = nn.Linear(w, w)
        self.head = nn.Linear(w, 3)

    def configure_losses(self) -> None:
        self.criterion = nn.CrossEntropyLoss()

    def configure_metrics(self) -> MetricCollection:
        return MetricCollection({"acc": MulticlassAccuracy(3, average="micro")})

    def forward(self, x):
        return self.head(self.neck(self.body(x)))

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def _step(self, batch, stage):
        x, y = batch
        logits = self(x)
        self.update_metrics(stage, logits.argmax(-1), y)
        return self.log_loss(stage, self.criterion(logits, y), len(x))


def _loader(n: int = 64) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    return DataLoader(TensorDataset(x, (x[:, 0] > 0).long() + (x[:, 1] > 1).long()), batch_size=16)


def _trainer(tmp_path: Path, **kw) -> pl.Trainer:
    defaults = dict(
        default_root_dir=tmp_path,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        max_epochs=2,
        accelerator="cpu",
    )
    return pl.Trainer(**{**defaults, **kw})


def test_base_task_hooks_and_prefixed_metrics(tmp_path: Path) -> None:
    task = ToyTask(width=6)
    assert task.hparams.width == 6
    stages = [task.train_metrics, task.val_metrics, task.test_metrics]
    assert all(isinstance(m, MetricCollection) for m in stages) and len({id(m) for m in stages}) == 3
    assert [type(m) for m in task.backbone_modules()] == [nn.Sequential, nn.Linear]
    trainer = _trainer(tmp_path, max_epochs=1)
    trainer.fit(task, _loader(), _loader(32))
    logged = trainer.callback_metrics
    assert {"train_acc", "val_acc", "train_loss_epoch", "val_loss", "lr"} <= set(logged)
    # The validation accuracy is that of the final weights on the 32 validation rows, computed by hand.
    x, y = _loader(32).dataset.tensors
    task.eval()
    with torch.no_grad():
        expected = (task(x).argmax(-1) == y).float().mean()
    assert float(logged["val_acc"]) == pytest.approx(float(expected))
    assert not task.val_metrics["acc"]._update_count, "metrics were not reset after the epoch"


def test_nan_metrics_are_left_out_of_the_logs(tmp_path: Path) -> None:
    class NaNTask(ToyTask):
        def configure_metrics(self) -> nn.Module:
            class Container(nn.Module):
                def update(self, *args) -> None:
                    pass

                def reset(self) -> None:
                    pass

                def compute(self) -> dict:
                    return {"defined": torch.tensor(0.5), "undefined": torch.tensor(float("nan"))}

            return Container()

    trainer = _trainer(tmp_path, max_epochs=1)
    trainer.fit(NaNTask(), _loader(), _loader(32))
    assert "val_defined" in trainer.callback_metrics and "val_undefined" not in trainer.callback_metrics


def test_required_linked_value_names_itself() -> None:
    class Linked(ToyTask):
        def __init__(self, num_items: int | None = None) -> None:
            super().__init__()

        def configure_models(self) -> None:
            self.require_linked("num_items")

    with pytest.raises(ValueError, match=r"Linked: num_items is unknown\. It is linked from the datamodule"):
        Linked()


@pytest.mark.parametrize("warmup", [False, True])
def test_ema_weights_are_the_exponential_average(tmp_path: Path, warmup: bool) -> None:
    decay = 0.9
    task = ToyTask()
    history: list[dict[str, torch.Tensor]] = []

    class Record(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, *args):
            history.append({k: v.detach().clone() for k, v in pl_module.state_dict().items()})

    ema = EMA(decay=decay, warmup=warmup)
    trainer = _trainer(tmp_path, max_epochs=1, callbacks=[Record(), ema], enable_checkpointing=False)
    trainer.fit(task, _loader())
    name = "neck.weight"
    expected = history[0][name].clone()  # AveragedModel's first update copies the weights
    for n, state in enumerate(history[1:], start=1):
        rate = min(decay, (1 + n) / (10 + n)) if warmup else decay  # n updates before this one
        expected = rate * expected + (1 - rate) * state[name]
    # after fit, Lightning copies the average into the model
    torch.testing.assert_close(task.state_dict()[name], expected)
    assert not torch.allclose(history[-1][name], expected)


def test_ema_checkpoint_holds_average_and_resumes_raw_weights(tmp_path: Path) -> None:
    task = ToyTask()
    ckpt_cb = TaskCheckpoint(dirpath=tmp_path / "ckpt")
    trainer = _trainer(tmp_path, callbacks=[EMA(decay=0.5), ckpt_cb], limit_val_batches=1)
    trainer.fit(task, _loader(), _loader(16))
    ckpt = torch.load(ckpt_cb.last_model_path, weights_only=False)
    assert "current_model_state" in ckpt
    assert not torch.equal(ckpt["state_dict"]["neck.weight"], ckpt["current_model_state"]["neck.weight"])
    assert ckpt_cb.monitor == "val_loss" and ckpt_cb.mode == "min"


def test_ema_rejects_bad_decay() -> None:
    with pytest.raises(ValueError, match="decay"):
        EMA(decay=1.0)


def test_freeze_keeps_backbone_fixed_and_lr_unchanged(tmp_path: Path) -> None:
    task = ToyTask()
    before = copy.deepcopy(task.state_dict())
    trainer = _trainer(tmp_path, callbacks=[FreezeBackbone("freeze")], enable_checkpointing=False)
    trainer.fit(task, _loader())
    after = task.state_dict()
    for key in ("body.0.weight", "neck.weight", "body.1.running_mean"):
        torch.testing.assert_close(after[key], before[key], msg=key)
    assert not torch.equal(after["head.weight"], before["head.weight"])
    assert trainer.optimizers[0].param_groups[0]["lr"] == 1e-3  # AdamW default, untouched


def test_freeze_unfreeze_trains_backbone_after_epoch(tmp_path: Path) -> None:
    task = ToyTask()
    seen: list[bool] = []

    class Probe(pl.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            seen.append(pl_module.neck.weight.requires_grad)

    cb = FreezeBackbone("freeze_unfreeze", unfreeze_at_epoch=1)
    _trainer(tmp_path, callbacks=[cb, Probe()], enable_checkpointing=False).fit(task, _loader())
    assert seen == [False, True]


def test_unfreeze_milestones_goes_from_head_to_input(tmp_path: Path) -> None:
    task = ToyTask()
    seen: list[tuple[bool, bool]] = []

    class Probe(pl.Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            seen.append((pl_module.neck.weight.requires_grad, pl_module.body[0].weight.requires_grad))

    cb = FreezeBackbone("unfreeze_milestones", milestones=[1, 2])
    _trainer(tmp_path, max_epochs=3, callbacks=[cb, Probe()], enable_checkpointing=False).fit(task, _loader())
    assert seen == [(False, False), (True, False), (True, True)]


def test_freezing_nothing_is_an_error(tmp_path: Path) -> None:
    task = ToyTask()
    for p in task.parameters():
        p.requires_grad_(False)
    with pytest.raises(RuntimeError, match="nothing was frozen"):
        _trainer(tmp_path, callbacks=[FreezeBackbone()], enable_checkpointing=False).fit(task, _loader())


def test_pretrained_loads_matching_and_reports_skipped(tmp_path: Path, caplog) -> None:
    source = ToyTask(width=8)
    path = tmp_path / "w.ckpt"
    torch.save({"state_dict": source.state_dict()}, path)
    same = ToyTask(width=8, pretrained=str(path))
    torch.testing.assert_close(same.state_dict()["neck.weight"], source.state_dict()["neck.weight"])
    other = ToyTask(width=8)
    other.head = nn.Linear(8, 5)
    report = load_pretrained(other, path)
    assert "head.weight" in report.skipped and "shape (3, 8) in checkpoint" in report.skipped["head.weight"]
    assert "neck.weight" in report.loaded
    with pytest.raises(ValueError, match="no tensor matches"):
        load_pretrained(nn.Linear(2, 2), path)
    with pytest.raises(FileNotFoundError, match="not found"):
        load_pretrained(other, tmp_path / "missing.ckpt")


def test_pretrained_warns_when_most_of_the_model_stays_at_initialisation(tmp_path: Path) -> None:
    path = tmp_path / "narrow.ckpt"
    torch.save(
        {"state_dict": nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 2)).state_dict()}, path
    )
    wide = nn.Sequential(nn.Linear(4, 16), nn.Linear(16, 16), nn.Linear(16, 2))  # only "2.bias" fits
    with pytest.warns(UserWarning, match=r"only 1 of the model's 6 tensors came from the checkpoint \(5 of"):
        load_pretrained(wide, path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the head alone differing is the normal fine-tuning case: no warning
        load_pretrained(nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 5)), path)


def test_pretrained_resizes_declared_keys(tmp_path: Path) -> None:
    path = tmp_path / "pos.pt"
    torch.save({"pos.table": torch.linspace(0, 1, 5)[:, None].repeat(1, 2)}, path)
    model = nn.Module()
    model.register_buffer("table", torch.zeros(9, 2))
    holder = nn.Module()
    holder.pos = model
    report = load_pretrained(holder, path, resizable_keys=("pos.",))
    assert report.resized and torch.allclose(holder.pos.table[:, 0], torch.linspace(0, 1, 9))


@pytest.mark.parametrize("channels", [1, 2, 4, 7])
def test_input_convolution_adapted_as_timm_does(channels: int) -> None:
    timm_layers = pytest.importorskip("timm.models._manipulate")
    weight = torch.randn(6, 3, 3, 3)
    expected = timm_layers.adapt_input_conv(channels, weight.clone())
    torch.testing.assert_close(adapt_input_channels(weight, channels), expected)


def test_pretrained_adapts_only_the_input_convolution(tmp_path: Path) -> None:
    """A 1-channel 3-D net starts a 4-channel one: stem adapted, head skipped, and the log says so."""

    def net(channels: int, classes: int) -> nn.Module:
        return nn.Sequential(
            nn.Conv3d(channels, 4, 3), nn.ReLU(), nn.Conv3d(4, 4, 3), nn.Conv3d(4, classes, 1)
        )

    source, target = net(1, 3), net(4, 2)
    path = tmp_path / "hippocampus.pt"
    torch.save(source.state_dict(), path)
    report = load_pretrained(target, path)
    assert report.adapted == ["0.weight input channels 1 -> 4 (timm's rule)"]
    torch.testing.assert_close(target[0].weight, source[0].weight.repeat(1, 4, 1, 1, 1) / 4)
    assert sorted(report.loaded) == ["0.bias", "2.bias", "2.weight"]
    assert set(report.skipped) == {"3.weight", "3.bias"}
    # A constant input gives the pre-trained stem's response, whatever the number of channels.
    x = torch.randn(1, 1, 5, 5, 5)
    torch.testing.assert_close(target[0](x.repeat(1, 4, 1, 1, 1)), source[0](x))
    assert "adapted: 0.weight input channels 1 -> 4" in report.summary()  # the line that is logged


def test_atomic_save_keeps_previous_file_on_failure(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "last.ckpt"
    atomic_torch_save({"v": 1}, target)

    def boom(obj, handle):
        handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        AtomicCheckpointIO().save_checkpoint({"v": 2}, target)
    monkeypatch.undo()
    assert torch.load(target)["v"] == 1
    assert os.listdir(tmp_path) == ["last.ckpt"]
