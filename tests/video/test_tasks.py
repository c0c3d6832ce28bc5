"""The video tasks on tensors.

View averaging, prediction files, Mask²DiT's segment-conditional training, flow-matching validation with
the offline proxies, and generated mp4 files.
"""

import csv
import functools
import math
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from domains.video.decoding import probe_video
from domains.video.metrics import FrameDifference, GenerationMetrics
from domains.video.models import TimeSformerMicro, VideoDiT
from domains.video.tasks import VideoClassifier, VideoGenerator

MICRO = functools.partial(TimeSformerMicro, dim=16, depth=1, num_heads=2)
DIT = functools.partial(VideoDiT, dim=24, depth=2, num_heads=2, full_attention_blocks=1, patch_size=(1, 4, 4))


class _Clips(Dataset):
    """Items of the interface's layout: classification or generation, optionally multi-view and with paths."""

    def __init__(
        self, n: int, *, views: int = 0, generation: bool = False, frames: int = 4, size: int = 16
    ) -> None:
        gen = torch.Generator().manual_seed(n + views)
        shape = (3, frames, size, size) if not views else (views, 3, frames, size, size)
        self.videos = torch.rand((n, *shape), generator=gen) * 2 - 1
        self.labels = torch.arange(n) % 2
        self.generation = generation
        self.frames = frames

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, i: int) -> dict:
        item: dict = {"video": self.videos[i], "path": f"clip{i}.mp4"}
        if self.generation:
            item["scene_index"] = (torch.arange(self.frames) >= self.frames // 2).long()
        else:
            item["label"] = self.labels[i]
        return item


def _trainer(tmp_path: Path, **kw: object) -> pl.Trainer:
    opts = {
        "default_root_dir": tmp_path,
        "max_epochs": 1,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
    }
    return pl.Trainer(**(opts | kw))  # type: ignore[arg-type]


def _classifier() -> VideoClassifier:
    torch.manual_seed(0)
    return VideoClassifier(MICRO, num_classes=2, class_names=["a", "b"], num_frames=4, image_size=16)


def test_view_scores_are_mean_of_view_softmax() -> None:
    task = _classifier().eval()
    views = torch.randn(2, 3, 3, 4, 16, 16)
    expected = torch.stack([task(views[:, v]).softmax(-1) for v in range(3)], 1).mean(1)
    torch.testing.assert_close(task.scores(views), expected)
    with pytest.raises(ValueError, match=r"\(B, V, C, T, H, W\)"):
        task.scores(torch.randn(3, 4, 16, 16))


def test_classifier_fit_test_and_predict_csv(tmp_path: Path) -> None:
    task = _classifier()
    trainer = _trainer(tmp_path, max_epochs=2)
    trainer.fit(task, DataLoader(_Clips(8), batch_size=4), DataLoader(_Clips(4), batch_size=4))
    assert {"val_top1", "val_top2", "val_macro_f1", "val_f1_a", "val_f1_b", "train_top1"} <= set(
        trainer.logged_metrics
    )
    metrics = trainer.test(task, DataLoader(_Clips(4, views=3), batch_size=2), verbose=False)[0]
    assert 0 <= metrics["test_top1"] <= 1 and metrics["test_top2"] == 1.0
    predictions = trainer.predict(task, DataLoader(_Clips(4, views=2), batch_size=2))
    path = task.write_predictions(predictions, tmp_path)  # type: ignore[arg-type]
    rows = list(csv.DictReader(path.open()))
    assert [r["path"] for r in rows] == [f"clip{i}.mp4" for i in range(4)]
    assert [r["label"] for r in rows] == ["a", "b", "a", "b"]
    for row in rows:
        scores = {n: float(row[f"score_{n}"]) for n in ("a", "b")}
        assert math.isclose(sum(scores.values()), 1.0, abs_tol=1e-5)
        assert row["prediction"] == max(scores, key=scores.__getitem__)


def test_classifier_needs_linked_sizes() -> None:
    with pytest.raises(ValueError, match="num_classes is unknown"):
        VideoClassifier(MICRO, num_frames=4, image_size=16)


def _generator(**kw: object) -> VideoGenerator:
    torch.manual_seed(0)
    opts = {"num_frames": 4, "image_size": 16, "num_scenes": 2, "sample_steps": 2, "log_samples": False}
    return VideoGenerator(DIT, **(opts | kw))  # type: ignore[arg-type]


def test_segment_conditional_mask_keeps_earlier_scenes_clean() -> None:
    task = _generator(segment_conditional_prob=1.0)
    scenes = torch.tensor([[0, 0, 1, 1], [0, 0, 0, 0]])
    t_frames, weight = task._segment_conditional(torch.tensor([0.7, 0.4]), scenes)
    torch.testing.assert_close(t_frames, torch.tensor([[0.0, 0.0, 0.7, 0.7], [0.4, 0.4, 0.4, 0.4]]))
    assert weight is not None and weight.tolist() == [[False, False, True, True], [True] * 4]
    # the loss covers exactly the generated frames
    x0 = torch.rand(2, 3, 4, 16, 16) * 2 - 1
    noise = torch.randn_like(x0)
    for module in task.network.modules():  # leave AdaLN-Zero's zero output
        if isinstance(module, torch.nn.Linear) and module.weight.abs().sum() == 0:
            torch.nn.init.normal_(module.weight, std=0.05)
    loss = task._flow_loss(x0, noise, t_frames, scenes, weight)
    x_t = (1 - t_frames[:, None, :, None, None]) * x0 + t_frames[:, None, :, None, None] * noise
    error = (task(x_t, t_frames, scenes) - (noise - x0)) ** 2
    expected = torch.cat([error[0, :, 2:].flatten(), error[1].flatten()]).mean()
    torch.testing.assert_close(loss, expected)
    assert (x_t[0, :, :2] == x0[0, :, :2]).all()  # timestep 0: the earlier scene is clean
    no_cond = _generator(segment_conditional_prob=0.0)
    t_plain, w_plain = no_cond._segment_conditional(torch.tensor([0.7, 0.4]), scenes)
    assert w_plain is None and (t_plain[0] == 0.7).all()


def test_generator_validation_proxies_and_mp4_predictions(tmp_path: Path) -> None:
    task = _generator()
    trainer = _trainer(tmp_path)
    data = DataLoader(_Clips(4, generation=True), batch_size=2)
    trainer.fit(task, data, data)
    logged = trainer.logged_metrics
    for key in (
        "val_loss",
        "val_psnr",
        "val_ssim",
        "val_frame_diff_real",
        "val_frame_diff_generated",
        "val_frame_diff_ratio",
    ):
        assert key in logged and torch.isfinite(logged[key]), key
    out = tmp_path / "out"
    out.mkdir()
    task.hparams.sample_frames = 8
    task.hparams.freelong = True
    predictions = trainer.predict(task, data)
    assert predictions is not None
    written = [p for batch in predictions for p in task.write_prediction_batch(batch, out)]  # type: ignore[arg-type]
    assert len(written) == 4 and {p.name for p in written} == {
        f"sample_{b:04d}_{i:02d}.mp4" for b in (0, 1) for i in (0, 1)
    }
    index = probe_video(written[0])
    assert index.num_frames == 8 and (index.height, index.width) == (16, 16)


def test_generator_validation_loss_is_seeded(tmp_path: Path) -> None:
    task = _generator(sample_batches=0)
    data = DataLoader(_Clips(4, generation=True), batch_size=2)
    first = _trainer(tmp_path).validate(task, data, verbose=False)[0]["val_loss"]
    second = _trainer(tmp_path).validate(task, data, verbose=False)[0]["val_loss"]
    assert first == second


def test_frame_difference_and_psnr_values() -> None:
    clips = torch.zeros(2, 1, 3, 4, 4)
    clips[0, :, 1] = 0.5  # frame steps 0.5 then 0.5
    clips[1, :, 2] = 1.0  # steps 0 then 1
    metric = FrameDifference()
    metric.update(clips)
    values = metric.compute()
    torch.testing.assert_close(values["mean"], torch.tensor(0.5))
    torch.testing.assert_close(values["std"], torch.tensor(0.0))
    metrics = GenerationMetrics(image_size=16)
    clean = torch.zeros(1, 3, 2, 16, 16)
    metrics.update_reconstruction(clean + 0.1, clean)
    metrics.update_samples(clean, clean + torch.arange(2.0).view(1, 1, 2, 1, 1))
    out = metrics.compute()
    torch.testing.assert_close(out["psnr"], torch.tensor(10 * math.log10(4 / 0.01)))
    torch.testing.assert_close(out["frame_diff_real"], torch.tensor(1.0))
    torch.testing.assert_close(out["frame_diff_ratio"], torch.tensor(0.0))


def test_sample_pictures() -> None:
    from domains.video.visual import frame_grid_figure, to_uint8_frames

    clip = torch.linspace(-1, 1, 3 * 4 * 2 * 2).view(3, 4, 2, 2)
    frames = to_uint8_frames(clip)
    assert frames.shape == (4, 2, 2, 3) and frames.dtype == torch.uint8
    assert frames.min() == 0 and frames.max() == 255
    assert to_uint8_frames(clip[:1]).shape == (4, 2, 2, 3)
    fig = frame_grid_figure(clip[None].repeat(2, 1, 1, 1, 1), clip[None], max_frames=3)
    assert len(fig.axes) == 3 * 3
