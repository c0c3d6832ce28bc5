"""Video tasks: clip classification (``VideoClassifier``) and flow-matching generation (``VideoGenerator``).

Classification trains with cross-entropy on single clips. Validation and test accept several views per
video (``(B, V, C, T, H, W)``, V = clips × crops): the softmax scores of the views are averaged, as the
TimeSformer evaluation (1 clip × 3 crops on Kinetics). Metrics: top-1/top-5 accuracy, macro- and per-class
F1, confusion matrix (:class:`~domains.video.metrics.ClassificationMetrics`). ``attnlab predict`` writes a
CSV of the class scores per video path.

Generation trains a :class:`~domains.video.models.base.VideoGenerationNetwork` by rectified flow
(:mod:`domains.video.models.flow`). With ``segment_conditional_prob > 0`` a multi-scene sample is, with
that probability, trained as Mask²DiT's auto-regressive scene extension: the frames of its earlier scenes
stay clean with timestep 0 and the loss covers only its last scene. Validation and test report the flow
matching loss (noise and timesteps drawn from a generator seeded by the batch index, so epochs compare),
and the offline proxies of :class:`~domains.video.metrics.GenerationMetrics` (one-step reconstruction
PSNR/SSIM, frame-difference statistics of samples against the real clips; samples are ``sample_frames``
long, with FreeLong++ if ``freelong``). ``attnlab predict`` samples one clip per input item (its scene layout
stretched to ``sample_frames``) and writes mp4 files. The sampling options are hyper-parameters: a checkpoint
given with ``--ckpt_path`` restores those it was trained with, so sample differently (longer, FreeLong++)
from weights loaded with ``--model.pretrained``.
"""

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from matplotlib.figure import Figure
from torch import Tensor, nn

from core.attention import AttentionFactory
from core.training import BaseTask
from core.training.base_task import Stage
from core.training.plots import confusion_matrix_figure
from domains.video.decoding import write_video
from domains.video.metrics import ClassificationMetrics, GenerationMetrics
from domains.video.models import TimeSformerMicro, VideoDiT
from domains.video.models.base import VideoClassificationNetworkFactory, VideoGenerationNetworkFactory
from domains.video.models.flow import TimestepSampling, noised, sample_timesteps, velocity_target
from domains.video.visual import frame_grid_figure, to_uint8_frames

__all__ = ["VideoClassifier", "VideoGenerator"]


class VideoClassifier(BaseTask):
    """Clip classification (e.g. the self-supervised arrow-of-time and playback-speed tasks).

    ``num_classes``, ``class_names``, ``num_frames`` and ``image_size`` come from the datamodule.

    Args:
        network: The network class or factory, called with ``num_classes``, ``num_frames``,
            ``image_size`` and ``attention``. Default: ``TimeSformerMicro`` (divided space-time).
        attention: Spatial (or joint) mixer of the network (``--model.attention``).
        label_smoothing: Cross-entropy label smoothing.
        num_classes: Classes (linked).
        class_names: Class names in id order (linked).
        num_frames: Frames per clip (linked).
        image_size: Crop side (linked).
        pretrained: Checkpoint to initialise the weights from.
    """

    monitor = "val_top1"
    mode = "max"

    def __init__(
        self,
        network: VideoClassificationNetworkFactory | None = None,
        attention: AttentionFactory | None = None,
        label_smoothing: float = 0.0,
        num_classes: int | None = None,
        class_names: list[str] | None = None,
        num_frames: int | None = None,
        image_size: int | None = None,
        pretrained: str | None = None,
    ) -> None:
        self.network_factory: VideoClassificationNetworkFactory = network or TimeSformerMicro
        self.attention = attention
        super().__init__(pretrained=pretrained)

    def configure_models(self) -> None:
        """Build the network from the linked sizes."""
        self.require_linked("num_classes", "num_frames", "image_size")
        hp = self.hparams
        if hp.class_names is not None and len(hp.class_names) != hp.num_classes:
            raise ValueError(
                f"VideoClassifier: {len(hp.class_names)} class_names for num_classes={hp.num_classes}"
            )
        self.network: nn.Module = self.build_network(
            self.network_factory,
            num_classes=hp.num_classes,
            num_frames=hp.num_frames,
            image_size=hp.image_size,
        )

    def configure_losses(self) -> None:
        """Cross-entropy (with optional label smoothing)."""
        self.criterion = nn.CrossEntropyLoss(label_smoothing=self.hparams.label_smoothing)

    def configure_metrics(self) -> ClassificationMetrics:
        """Top-1/top-5 accuracy, macro-F1, per-class F1 and the confusion matrix."""
        return ClassificationMetrics(self.class_names)

    @property
    def class_names(self) -> list[str]:
        """The linked class names, or ``"0"``, ``"1"``, ...."""
        names = self.hparams.class_names
        return list(names) if names else [str(i) for i in range(self.hparams.num_classes)]

    def forward(self, video: Tensor) -> Tensor:
        """Logits ``(B, C)`` of clips ``(B, C, T, H, W)``."""
        return self.network(video)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        """Cross-entropy on a batch of single clips."""
        logits = self(batch["video"])
        loss = self.log_loss("train", self.criterion(logits, batch["label"]), len(logits))
        self.update_metrics("train", logits.detach().softmax(-1), batch["label"])
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        """Loss and metrics on view-averaged scores."""
        self._evaluate(batch, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        """Loss and metrics on view-averaged scores."""
        self._evaluate(batch, "test")

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        """View-averaged class scores and the path of each video."""
        out = {"scores": self.scores(batch["video"]).cpu(), "path": list(batch.get("path", []))}
        if "label" in batch:
            out["label"] = batch["label"].cpu()
        return out

    def metric_figure(self, tag: str, value: Tensor) -> Figure | None:
        """The confusion matrix as an annotated heat map."""
        return confusion_matrix_figure(value, self.class_names, tag) if tag.endswith("confusion") else None

    def write_predictions(self, predictions: Sequence[dict[str, Any]], output_dir: Path) -> Path:
        """Write one CSV row per clip: path, true class (if known), predicted class, the score of each class.

        Args:
            predictions: What :meth:`predict_step` returned for each batch of this rank.
            output_dir: Destination folder (checked by :class:`~core.training.PredictionWriter`).

        Returns:
            The path written.
        """
        path = self.prediction_path(output_dir, "predictions", ".csv")
        names = self.class_names
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", "label", "prediction", *(f"score_{n}" for n in names)])
            for batch in predictions:
                scores = batch["scores"]
                paths = batch["path"] or [""] * len(scores)
                labels = (
                    [names[i] for i in batch["label"].tolist()] if "label" in batch else [""] * len(scores)
                )
                for p, label, row in zip(paths, labels, scores.tolist(), strict=True):
                    best = names[max(range(len(row)), key=row.__getitem__)]
                    writer.writerow([p, label, best, *(f"{s:.6f}" for s in row)])
        return path

    def scores(self, video: Tensor) -> Tensor:
        """Class probabilities ``(B, C)``; for views ``(B, V, C, T, H, W)`` the mean over the V views."""
        if video.ndim == 6:
            b, v = video.shape[:2]
            probs = self(video.flatten(0, 1)).float().softmax(-1)
            return probs.view(b, v, -1).mean(dim=1)
        if video.ndim == 5:
            return self(video).float().softmax(-1)
        raise ValueError(
            "VideoClassifier: expected video (B, C, T, H, W) or views (B, V, C, T, H, W), "
            f"got {tuple(video.shape)}"
        )

    def _evaluate(self, batch: dict[str, Tensor], stage: Stage) -> None:
        probs = self.scores(batch["video"])
        loss = F.nll_loss(probs.clamp_min(1e-12).log(), batch["label"])
        self.log_loss(stage, loss, len(probs))
        self.update_metrics(stage, probs, batch["label"])


class VideoGenerator(BaseTask):
    """Video generation by rectified flow (see the module docstring).

    ``num_frames``, ``image_size`` and ``num_scenes`` come from the datamodule.

    Args:
        network: The generator class or factory, called with ``num_frames``, ``image_size``,
            ``num_scenes`` and ``attention``. Default: ``VideoDiT``.
        attention: Mixer of the middle blocks (``--model.attention``); default UltraGen's.
        timestep_sampling: Training timesteps: ``logit_normal`` (SD3) or ``uniform``.
        segment_conditional_prob: Probability that a multi-scene sample is trained with Mask²DiT's
            segment-conditional mask (clean earlier scenes, loss on the last); 0 disables it (official SFT:
            0.5).
        sample_steps: Euler steps when sampling (validation proxies, logged samples, predict).
        sample_batches: Validation/test batches per epoch (per process) that are also sampled for the
            frame-difference statistics.
        proxy_timestep: Noise level of the one-step reconstruction proxy.
        sample_frames: Frames of the sampled clips (predict, and the frame-difference statistics of
            validation and test); default: the training length.
        freelong: Sample with FreeLong++ (for ``sample_frames`` beyond the training length).
        fps: Frame rate of the written mp4 files.
        log_samples: Show the first validation batch's samples in TensorBoard (video with moviepy, else
            a frame grid).
        seed: Seed of the noise of predict (sample ``i`` of the run uses ``seed + i``).
        num_frames: Frames per clip (linked).
        image_size: Frame side (linked).
        num_scenes: Scenes per clip (linked).
        pretrained: Checkpoint to initialise the weights from.
    """

    monitor = "val_loss"
    mode = "min"
    metric_stages = ("val", "test")

    def __init__(
        self,
        network: VideoGenerationNetworkFactory | None = None,
        attention: AttentionFactory | None = None,
        timestep_sampling: TimestepSampling = "logit_normal",
        segment_conditional_prob: float = 0.0,
        sample_steps: int = 20,
        sample_batches: int = 1,
        proxy_timestep: float = 0.5,
        sample_frames: int | None = None,
        freelong: bool = False,
        fps: float = 8.0,
        log_samples: bool = True,
        seed: int = 0,
        num_frames: int | None = None,
        image_size: int | None = None,
        num_scenes: int | None = None,
        pretrained: str | None = None,
    ) -> None:
        self.network_factory: VideoGenerationNetworkFactory = network or VideoDiT
        self.attention = attention
        super().__init__(pretrained=pretrained)
        self._predicted = 0

    def configure_models(self) -> None:
        """Build the generator from the linked sizes and check the options."""
        self.require_linked("num_frames", "image_size", "num_scenes")
        hp = self.hparams
        if not 0.0 <= hp.segment_conditional_prob <= 1.0:
            raise ValueError(
                "VideoGenerator: segment_conditional_prob must be in [0, 1], "
                f"got {hp.segment_conditional_prob}"
            )
        if not 0.0 < hp.proxy_timestep <= 1.0:
            raise ValueError(f"VideoGenerator: proxy_timestep must be in (0, 1], got {hp.proxy_timestep}")
        if hp.sample_steps < 1 or hp.sample_batches < 0:
            raise ValueError("VideoGenerator: sample_steps must be >= 1 and sample_batches >= 0")
        self.network: nn.Module = self.build_network(
            self.network_factory, num_frames=hp.num_frames, image_size=hp.image_size, num_scenes=hp.num_scenes
        )

    def configure_losses(self) -> None:
        """Mean squared error on the velocity (masked to the generated frames)."""

    def configure_metrics(self) -> GenerationMetrics:
        """Reconstruction PSNR/SSIM and frame-difference statistics (validation and test)."""
        return GenerationMetrics(self.hparams.image_size)

    def forward(self, x: Tensor, timestep: Tensor, scene_index: Tensor | None = None) -> Tensor:
        """Velocity ``(B, C, T, H, W)`` at ``x_t``."""
        return self.network(x, timestep, scene_index)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        """Flow-matching loss, segment-conditional for a random subset of multi-scene samples."""
        x0, scenes = batch["video"], self._scenes(batch)
        noise = torch.randn_like(x0)
        t = sample_timesteps(len(x0), self.hparams.timestep_sampling, device=x0.device)
        t_frames, weight = self._segment_conditional(t, scenes)
        loss = self._flow_loss(x0, noise, t_frames, scenes, weight)
        return self.log_loss("train", loss, len(x0))

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        """Seeded flow-matching loss, reconstruction proxy, and samples for the first batches."""
        generated = self._evaluate(batch, batch_idx, "val")
        if batch_idx == 0 and generated is not None and self.hparams.log_samples:
            self._log_samples(generated, batch["video"])

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        """Seeded flow-matching loss, reconstruction proxy, and samples for the first batches."""
        self._evaluate(batch, batch_idx, "test")

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        """Sample one clip per item, with the item's scene layout stretched to ``sample_frames``."""
        hp = self.hparams
        x0 = batch["video"]
        b, c, frames, h, w = x0.shape
        out_frames = hp.sample_frames or frames
        scenes = self._stretch(self._scenes(batch), out_frames)
        gen = torch.Generator(device="cpu")
        noise = []
        for i in range(b):
            gen.manual_seed(hp.seed + self._predicted + i + 100003 * self.global_rank)
            noise.append(torch.randn(c, out_frames, h, w, generator=gen))
        self._predicted += b
        generated = self.network.sample(
            torch.stack(noise).to(x0), scenes, steps=hp.sample_steps, freelong=hp.freelong
        )
        return {"video": generated.cpu(), "path": list(batch.get("path", [""] * b)), "batch": batch_idx}

    def on_predict_start(self) -> None:
        """Restart the sample counter (names and seeds of the written clips)."""
        self._predicted = 0

    def write_prediction_batch(self, prediction: dict[str, Any], output_dir: Path) -> list[Path]:
        """Write each generated clip as ``sample_<batch>_<i>.mp4`` (one name set per process).

        Args:
            prediction: What :meth:`predict_step` returned for one batch.
            output_dir: Destination folder (checked by :class:`~core.training.PredictionWriter`).

        Returns:
            The files written.
        """
        written = []
        for i, clip in enumerate(prediction["video"]):
            path = self.prediction_path(output_dir, f"sample_{prediction['batch']:04d}_{i:02d}", ".mp4")
            written.append(write_video(path, to_uint8_frames(clip), self.hparams.fps))
        return written

    def _evaluate(self, batch: dict[str, Tensor], batch_idx: int, stage: Stage) -> Tensor | None:
        hp = self.hparams
        x0, scenes = batch["video"], self._scenes(batch)
        gen = torch.Generator(device="cpu").manual_seed(hp.seed + batch_idx)
        noise = torch.randn(x0.shape, generator=gen).to(x0)
        t = sample_timesteps(len(x0), hp.timestep_sampling, generator=gen).to(x0.device)
        t_frames = t[:, None].expand(-1, x0.shape[2])
        self.log_loss(stage, self._flow_loss(x0, noise, t_frames, scenes, None), len(x0))
        metrics = self.stage_metrics(stage)
        assert isinstance(metrics, GenerationMetrics)
        t_proxy = torch.full((len(x0),), hp.proxy_timestep, device=x0.device)
        x_t = noised(x0, noise, t_proxy)
        metrics.update_reconstruction(x_t - hp.proxy_timestep * self(x_t, t_proxy, scenes), x0)
        if batch_idx >= hp.sample_batches:
            return None
        frames = hp.sample_frames or x0.shape[2]
        noise = torch.randn((*x0.shape[:2], frames, *x0.shape[3:]), generator=gen).to(x0)
        generated = self.network.sample(
            noise, self._stretch(scenes, frames), steps=hp.sample_steps, freelong=hp.freelong
        )
        metrics.update_samples(generated, x0)
        return generated

    def _flow_loss(
        self, x0: Tensor, noise: Tensor, t_frames: Tensor, scenes: Tensor, weight: Tensor | None
    ) -> Tensor:
        x_t = noised(x0, noise, t_frames)
        error = (self(x_t, t_frames, scenes) - velocity_target(x0, noise)) ** 2
        if weight is None:
            return error.mean()
        w = weight[:, None, :, None, None].to(error.dtype)
        return (error * w).sum() / (w.sum() * error.shape[1] * error.shape[3] * error.shape[4]).clamp_min(1)

    def _segment_conditional(self, t: Tensor, scenes: Tensor) -> tuple[Tensor, Tensor | None]:
        """Per-frame timesteps and loss weights: Mask²DiT's segment-conditional mask for a random subset."""
        frames = scenes.shape[1]
        t_frames = t[:, None].expand(-1, frames)
        p = self.hparams.segment_conditional_prob
        if p == 0:
            return t_frames, None
        last = scenes.max(dim=1, keepdim=True).values
        target = scenes == last  # frames of the last scene of each sample
        chosen = (torch.rand(len(t), device=t.device) < p) & (last[:, 0] > 0)
        generate = torch.where(chosen[:, None], target, torch.ones_like(target))
        return torch.where(generate, t_frames, torch.zeros_like(t_frames)), generate

    @staticmethod
    def _stretch(scenes: Tensor, frames: int) -> Tensor:
        """The per-frame scene layout ``(B, T)`` stretched (nearest) to ``frames`` frames."""
        if scenes.shape[1] == frames:
            return scenes
        pick = torch.div(
            torch.arange(frames, device=scenes.device) * scenes.shape[1], frames, rounding_mode="floor"
        )
        return scenes[:, pick]

    def _scenes(self, batch: dict[str, Tensor]) -> Tensor:
        video = batch["video"]
        scenes = batch.get("scene_index")
        if scenes is None:
            return torch.zeros(video.shape[0], video.shape[2], dtype=torch.long, device=video.device)
        return scenes

    def _log_samples(self, generated: Tensor, real: Tensor) -> None:
        """Samples (and the real clips) to TensorBoard: ``add_video`` with moviepy, else a frame grid."""
        if self.trainer.sanity_checking or not self.trainer.is_global_zero:
            return
        try:
            import moviepy  # noqa: F401
        except ImportError:
            self.log_figure("val_samples", lambda: frame_grid_figure(generated[:4], real[:4]))
            return
        for logger in self.loggers:
            if isinstance(logger, TensorBoardLogger):
                video = torch.stack([to_uint8_frames(v) for v in generated[:4]]).permute(0, 1, 4, 2, 3)
                logger.experiment.add_video("val_samples", video, self.global_step, fps=self.hparams.fps)
