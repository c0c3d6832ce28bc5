"""Video metrics torchmetrics lacks: clip-classification bundle and honest offline generation proxies.

Classification (:class:`ClassificationMetrics`): top-1 and top-5 accuracy (top-k capped at the number of
classes), macro-F1, per-class F1 and a confusion matrix, all torchmetrics states summed across processes.

Generation (:class:`GenerationMetrics`) without downloaded networks:

* **reconstruction** PSNR and SSIM per frame (pixel range ``[−1, 1]``), of the one-step estimate
  ``x̂_0 = x_t − t·v̂`` from clips noised to a fixed ``t``: how well the model denoises real clips;
* **temporal consistency**: the mean absolute frame-to-frame difference ``mean |x_{t+1} − x_t|`` of
  generated clips and of the real clips of the same batches, and their ratio (1 = as much frame-to-frame
  change as real video; ≫ 1 flicker; ≪ 1 frozen video). :class:`FrameDifference` also keeps the standard
  deviation over clips.

FVD needs the weights of an I3D network trained on Kinetics, which cannot be downloaded here, so it is not
computed.
"""

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torchmetrics import ClasswiseWrapper, Metric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix, MulticlassF1Score
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

__all__ = ["ClassificationMetrics", "FrameDifference", "GenerationMetrics", "frames_of"]


def frames_of(video: Tensor) -> Tensor:
    """``(B, C, T, H, W) -> (B·T, C, H, W)``: the frames of clips, for image metrics."""
    b, c, t, h, w = video.shape
    return video.transpose(1, 2).reshape(b * t, c, h, w)


class ClassificationMetrics(MetricCollection):
    """Top-1/top-5 accuracy, macro-F1, per-class F1 and the confusion matrix of clip scores ``(B, C)``.

    Args:
        class_names: Names of the classes, in class-id order (name the per-class F1 values).
    """

    def __init__(self, class_names: Sequence[str]) -> None:
        c = len(class_names)
        super().__init__(
            {
                "top1": MulticlassAccuracy(c, top_k=1, average="micro"),
                f"top{min(5, c)}": MulticlassAccuracy(c, top_k=min(5, c), average="micro"),
                "macro_f1": MulticlassF1Score(c, average="macro"),
                "f1": ClasswiseWrapper(
                    MulticlassF1Score(c, average=None), labels=list(class_names), prefix="f1_"
                ),
                "confusion": MulticlassConfusionMatrix(c),
            },
            compute_groups=False,
        )


class FrameDifference(Metric):
    """Mean and standard deviation over clips of ``mean |x_{t+1} − x_t|`` (clips ``(B, C, T, H, W)``)."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total_sq", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, video: Tensor) -> None:
        """Add clips ``(B, C, T, H, W)`` with ``T >= 2``."""
        if video.ndim != 5 or video.shape[2] < 2:
            raise ValueError(f"FrameDifference: expected clips (B, C, T>=2, H, W), got {tuple(video.shape)}")
        per_clip = (video[:, :, 1:] - video[:, :, :-1]).abs().mean(dim=(1, 2, 3, 4)).double()
        self.total += per_clip.sum()
        self.total_sq += (per_clip**2).sum()
        self.count += per_clip.numel()

    def compute(self) -> dict[str, Tensor]:
        """``{"mean": ..., "std": ...}`` (NaN before any update)."""
        mean = self.total / self.count
        var = (self.total_sq / self.count - mean**2).clamp(min=0)
        return {"mean": mean.float(), "std": var.sqrt().float()}


class GenerationMetrics(nn.Module):
    """The offline quality proxies of a generator (see the module docstring).

    Args:
        image_size: Frame side, to fit the SSIM window (11, or the largest odd size that fits).
    """

    def __init__(self, image_size: int) -> None:
        super().__init__()
        kernel = min(11, image_size if image_size % 2 else image_size - 1)
        if kernel < 3:
            raise ValueError(f"GenerationMetrics: frames of {image_size} pixels are too small for SSIM")
        self.psnr = PeakSignalNoiseRatio(data_range=2.0, dim=(1, 2, 3))
        self.ssim = StructuralSimilarityIndexMeasure(data_range=2.0, kernel_size=kernel)
        self.real_difference = FrameDifference()
        self.generated_difference = FrameDifference()

    def update_reconstruction(self, estimate: Tensor, clean: Tensor) -> None:
        """Add one-step reconstructions and their clean clips ``(B, C, T, H, W)`` in ``[−1, 1]``."""
        estimate = estimate.clamp(-1, 1).float()
        self.psnr.update(frames_of(estimate), frames_of(clean.float()))
        self.ssim.update(frames_of(estimate), frames_of(clean.float()))

    def update_samples(self, generated: Tensor, real: Tensor) -> None:
        """Add generated clips and the real clips of the same batch, for the temporal statistics."""
        self.generated_difference.update(generated.float())
        self.real_difference.update(real.float())

    def update(self, estimate: Tensor, clean: Tensor) -> None:
        """Alias of :meth:`update_reconstruction` (the task's generic metric hook)."""
        self.update_reconstruction(estimate, clean)

    def compute(self) -> dict[str, Tensor]:
        """PSNR, SSIM and the frame-difference statistics (NaN when no samples were added; not logged)."""
        real = self.real_difference.compute()
        generated = self.generated_difference.compute()
        return {
            "psnr": self.psnr.compute(),
            "ssim": self.ssim.compute(),
            "frame_diff_real": real["mean"],
            "frame_diff_generated": generated["mean"],
            "frame_diff_generated_std": generated["std"],
            "frame_diff_ratio": generated["mean"] / real["mean"],
        }

    def reset(self) -> None:
        """Reset every metric."""
        for metric in (self.psnr, self.ssim, self.real_difference, self.generated_difference):
            metric.reset()
