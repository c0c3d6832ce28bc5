"""The medical segmentation task: patch training, sliding-window evaluation, NIfTI predictions.

Training runs on the random patches the datamodule cuts (``RandCropByPosNegLabeld``). Validation, test and
predict run on whole preprocessed volumes with MONAI's ``sliding_window_inference``, whose ``sw_device`` /
``device`` options keep the stitched volume on the CPU when the network runs on a GPU. A 2-D network
(``spatial_dims=2`` in the datamodule) is evaluated slice by slice on the same 3-D volumes, so 2-D and 3-D
models are scored with identical 3-D metrics.

Metrics (all synchronised across DDP ranks as sums, never per-rank ``aggregate()``):

* mean foreground Dice and HD95 (MONAI's metric functions per case; ``val_dice`` is what checkpoints
  follow);
* the patient-wise detection metrics of Bouget et al. 2021: recall, precision, F1 and Dice over
  detected cases at ``prob_threshold`` / ``overlap_threshold``, and recall split by lesion volume
  (below / above ``small_volume_ml``).

``attnlab predict`` writes one NIfTI label map per case in the *original* image space (MONAI ``Invertd``
undoes orientation, spacing and cropping, then ``SaveImaged``) into ``--prediction_writer.output_dir``,
which may never be an input folder.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn

from core.attention import AttentionFactory, AttentionGateFactory, SpatialMixerFactory
from core.training import BaseTask
from core.training.plots import close, segmentation_figure
from core.utils import require
from domains.medical.losses import DeepSupervisionLoss, segmentation_loss
from domains.medical.metrics import PatientDetection, SegmentationMetrics
from domains.medical.models import build_network
from domains.medical.transforms import affine_spacing

__all__ = ["SegmentationTask", "voxel_spacing"]

ModelName = Literal["unet", "agunet", "daunet", "dagunet", "qtseg"]


class SegmentationTask(BaseTask):
    """Semantic segmentation of 3-D (or 2-D) medical images.

    ``in_channels``, ``num_classes``, ``spatial_dims`` and ``patch_size`` come from the datamodule through
    the CLI; set them by hand only when using the task without one.

    Args:
        model: ``unet`` (3-D U-Net baseline), ``agunet`` (attention-gated U-Net, Bouget et al. 2021),
            ``daunet`` (DANet dual attention at the bottleneck), ``dagunet`` (gates + dual attention +
            attention guiding of every decoder level), or ``qtseg`` (QTSeg's 2-D dual-mix attention
            decoder, Tran et al. 2024; 2-D data only).
        attention: A token mixer (any registered sequence mechanism, e.g.
            ``--model.attention=NeighborhoodAttention``). U-Nets run it on the bottleneck's flattened
            positions (pre-norm residual) instead of the default bottleneck mechanism; QTSeg uses it for its
            token/feature cross-attention. Default (None): the architecture's own.
        spatial_attention: A feature-map mechanism at the U-Net bottleneck (e.g. ``DualAttention``,
            ``CBAM``, ``PositionAttention``). Default (None): ``DualAttention`` (DAUNet style) for
            daunet/dagunet, none for unet/agunet.
        gate: The attention gate on the skip connections (``ConcatAttentionGate``, AGUNet's official gate,
            or ``AdditiveAttentionGate``, Oktay et al.). Default (None): the concatenation gate for
            agunet/dagunet, none for unet/daunet.
        channels: Feature widths of the encoder levels, shallow to deep (the last is the bottleneck).
        multiscale_input: Feed an average-pooled input pyramid to every encoder level (AGUNet's ablation
            switch). Default (None): the architecture's default.
        deep_supervision: Train a 1×1 head on every decoder level against the ground truth downsampled to
            its size (the paper's ablation switch). Default (None): the architecture's default.
        loss: ``dicece`` (MONAI DiceCELoss: soft Dice over the foreground classes + cross-entropy), ``dice``
            or ``ce``.
        deep_supervision_weights: Weights of the supervision levels: ``halving`` (1, 1/2, 1/4, ...,
            normalised; nnU-Net) or ``equal``.
        roi_size: Sliding-window ROI for validation, test and predict. Default (None): the training
            ``patch_size``.
        sw_batch_size: Windows per network call.
        overlap: Overlap of neighbouring windows (fraction of the ROI).
        sw_mode: Blending of overlapping windows: ``gaussian`` (down-weights window borders) or
            ``constant``.
        sw_device: Device the network runs the windows on (default: the task's device).
        stitch_device: Device the full-volume output is stitched on; ``cpu`` keeps large volumes off the
            GPU (MONAI's ``device`` argument). Default: the input's device.
        prob_threshold: Foreground probability above which a voxel counts as lesion, for the detection
            metrics (the paper tunes it per model; its runtime default is 0.4).
        overlap_threshold: A case is *detected* when the Dice of its binarised prediction exceeds this.
        small_volume_ml: Lesions below this volume (ml) count as small for the split recall (the paper
            reports that misses are mostly below 3 ml).
        log_images: Log the middle slice of the first validation case (image, truth, prediction) to
            TensorBoard every validation epoch.
        in_channels: Image channels (modalities; linked from the data).
        num_classes: Classes including background (linked from the data).
        spatial_dims: 3 for volumes, 2 for slices (linked from the data).
        patch_size: Training patch size (linked from the data).
        label_names: Class names, background first, for the per-class metric names (linked from the data's
            ``label_names``, i.e. its ``class_names``; the distinct name keeps the link away from other
            domains' datamodules that also have ``class_names``;
            default ``background``, ``class1``, ...).
        pretrained: Checkpoint to initialise the weights from (fine-tuning).
    """

    monitor = "val_dice"
    mode = "max"

    def __init__(
        self,
        model: ModelName = "agunet",
        attention: AttentionFactory | None = None,
        spatial_attention: SpatialMixerFactory | None = None,
        gate: AttentionGateFactory | None = None,
        channels: list[int] | None = None,
        multiscale_input: bool | None = None,
        deep_supervision: bool | None = None,
        loss: Literal["dicece", "dice", "ce"] = "dicece",
        deep_supervision_weights: Literal["halving", "equal"] = "halving",
        roi_size: list[int] | None = None,
        sw_batch_size: int = 4,
        overlap: float = 0.5,
        sw_mode: Literal["gaussian", "constant"] = "gaussian",
        sw_device: str | None = None,
        stitch_device: str | None = None,
        prob_threshold: float = 0.5,
        overlap_threshold: float = 0.1,
        small_volume_ml: float = 3.0,
        log_images: bool = True,
        in_channels: int | None = None,
        num_classes: int | None = None,
        spatial_dims: Literal[2, 3] | None = None,
        patch_size: list[int] | None = None,
        label_names: list[str] | None = None,
        pretrained: str | None = None,
    ) -> None:
        require("monai", "medical")
        self.attention = attention
        self.spatial_attention = spatial_attention
        self.gate = gate
        super().__init__(pretrained=pretrained)

    def configure_models(self) -> None:
        """Build the chosen network from the (linked) data sizes."""
        hp = self.hparams
        for name in ("in_channels", "num_classes", "spatial_dims", "patch_size"):
            if hp[name] is None:
                raise ValueError(
                    f"SegmentationTask: {name} is unknown. It is linked from the datamodule by `attnlab`; "
                    f"when building the task by hand pass {name}=..."
                )
        if len(hp.patch_size) != hp.spatial_dims:
            raise ValueError(
                f"SegmentationTask: patch_size {hp.patch_size} has {len(hp.patch_size)} axes, expected "
                f"spatial_dims={hp.spatial_dims}"
            )
        if hp.model == "qtseg" and hp.spatial_dims != 2:
            raise ValueError(
                "SegmentationTask: model=qtseg is a 2-D network; use a datamodule with spatial_dims=2 "
                "(slices) or a U-Net model for volumes"
            )
        if self.attention is not None and self.spatial_attention is not None:
            raise ValueError(
                "SegmentationTask: give either `attention` (a token mixer) or `spatial_attention` (a "
                "feature-map mechanism) for the bottleneck, not both"
            )
        if not 0.0 <= hp.overlap < 1.0:
            raise ValueError(f"SegmentationTask: overlap must be in [0, 1), got {hp.overlap}")
        self.network: nn.Module = build_network(
            hp.model,
            in_channels=hp.in_channels,
            num_classes=hp.num_classes,
            spatial_dims=hp.spatial_dims,
            channels=hp.channels,
            attention=self.attention,
            spatial_attention=self.spatial_attention,
            gate=self.gate,
            multiscale_input=hp.multiscale_input,
            deep_supervision=hp.deep_supervision,
        )

    def configure_losses(self) -> None:
        """MONAI's loss on every supervision level (one level without deep supervision)."""
        base = segmentation_loss(self.hparams.loss)
        self.criterion = DeepSupervisionLoss(base, weights=self.hparams.deep_supervision_weights)
        self.eval_criterion = base

    def configure_metrics(self) -> None:
        """Dice/HD95 and patient-wise detection metrics for validation and test."""
        hp = self.hparams
        for stage in ("val", "test"):
            setattr(
                self, f"{stage}_metrics", SegmentationMetrics(hp.num_classes, class_names=self.class_names)
            )
            detection = PatientDetection(
                prob_threshold=hp.prob_threshold,
                overlap_threshold=hp.overlap_threshold,
                small_volume_ml=hp.small_volume_ml,
            )
            setattr(self, f"{stage}_detection", detection)

    @property
    def class_names(self) -> list[str]:
        """The linked class names, else ``background``, ``class1``, ``class2``, ..."""
        names, num_classes = self.hparams.label_names, self.hparams.num_classes
        if names is not None and len(names) != num_classes:
            raise ValueError(
                f"SegmentationTask: {len(names)} label_names {names} for num_classes={num_classes}"
            )
        return list(names) if names else ["background"] + [f"class{i}" for i in range(1, num_classes)]

    def forward(self, x: Tensor) -> Tensor | list[Tensor]:
        """Logits ``(B, num_classes, *S)``; with deep supervision in training, a list (full size first)."""
        return self.network(x)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        """One optimisation step on a batch of patches."""
        image, label = batch["image"], batch["label"]
        loss = self.criterion(self(image), label)
        aux = self.aux_loss()
        if aux is not None:
            loss = loss + aux
        self.log("train_loss", loss, on_step=True, on_epoch=True, sync_dist=True, batch_size=len(image))
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Sliding-window inference on a whole volume, then the loss and metrics."""
        logits = self._evaluate(batch, "val")
        if batch_idx == 0:
            self._log_image(batch, logits)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Sliding-window inference on a whole volume, then the loss and metrics."""
        self._evaluate(batch, "test")

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        """The label map of each volume, still in the preprocessed space (the writer inverts it)."""
        logits = self.sliding_window(batch["image"])
        return {
            "pred": logits.argmax(dim=1, keepdim=True).to(torch.uint8),
            "image": batch["image"],
            "case": batch["case"],
        }

    def on_validation_epoch_end(self) -> None:
        """Log the epoch's validation metrics."""
        self._log_epoch_metrics("val")

    def on_test_epoch_end(self) -> None:
        """Log the test metrics."""
        self._log_epoch_metrics("test")

    def on_fit_start(self) -> None:
        """Say how evaluation works, once."""
        self._log_protocol()

    def on_test_start(self) -> None:
        """Say how evaluation works, once."""
        self._log_protocol()

    def write_prediction_batch(
        self, prediction: dict[str, Any], output_dir: Path, rank: int, world: int
    ) -> list[Path]:
        """Map each label map back to its original image space and save it as ``<case>_seg.nii.gz``.

        Args:
            prediction: What :meth:`predict_step` returned for one batch.
            output_dir: Destination folder (checked by :class:`~core.training.PredictionWriter`).
            rank: Global rank (unused: file names are per case, so ranks never collide).
            world: Number of processes (unused).

        Returns:
            The files written.
        """
        from monai.data import decollate_batch
        from monai.transforms import Invertd, SaveImaged

        transform = getattr(self.trainer.datamodule, "predict_transform", None)
        if transform is None:
            raise TypeError(
                f"{type(self.trainer.datamodule).__name__} has no predict_transform: the medical task needs "
                "the preprocessing pipeline to map predictions back to the original image space"
            )
        written = []
        invert = Invertd(keys="pred", transform=transform, orig_keys="image", nearest_interp=True)
        items = decollate_batch({"pred": prediction["pred"], "image": prediction["image"]})
        for case, item in zip(prediction["case"], items, strict=True):
            inverted = invert(item)
            saver = SaveImaged(
                keys="pred",
                output_dir=str(output_dir),
                output_postfix="seg",
                output_dtype="uint8",
                separate_folder=False,
                print_log=False,
                output_name_formatter=lambda meta, saver, case=case: {"subject": str(case), "idx": None},
            )
            saver(inverted)
            written.append(output_dir / f"{case}_seg.nii.gz")
        return written

    def sliding_window(self, image: Tensor) -> Tensor:
        """Logits of a whole volume ``(B, C, H, W, D)`` from overlapping ROI windows.

        A 2-D network sees ``(H, W, 1)`` windows with the last axis squeezed, i.e. one slice at a time.
        """
        from monai.inferers import sliding_window_inference

        hp = self.hparams
        roi = list(hp.roi_size or hp.patch_size)
        predictor: Callable[[Tensor], Tensor] = self.network
        if hp.spatial_dims == 2:
            if len(roi) == 2:
                roi = [*roi, 1]

            def predictor(x: Tensor) -> Tensor:
                return self.network(x.squeeze(-1)).unsqueeze(-1)

        if len(roi) != image.ndim - 2:
            raise ValueError(
                f"SegmentationTask: roi_size {roi} does not fit volumes of shape {tuple(image.shape)}"
            )
        return sliding_window_inference(
            image,
            roi_size=roi,
            sw_batch_size=hp.sw_batch_size,
            predictor=predictor,
            overlap=hp.overlap,
            mode=hp.sw_mode,
            sw_device=hp.sw_device,
            device=hp.stitch_device,
        )

    def _evaluate(self, batch: dict[str, Any], stage: str) -> Tensor:
        image, label = batch["image"], batch["label"]
        logits = self.sliding_window(image)
        label = label.to(logits.device)
        loss = self.eval_criterion(logits, label)
        self.log(f"{stage}_loss", loss, on_epoch=True, sync_dist=True, batch_size=len(image))
        probs = torch.softmax(logits.float(), dim=1)
        pred = probs.argmax(dim=1)
        target = label[:, 0].long()
        spacing = voxel_spacing(batch["label"])
        getattr(self, f"{stage}_metrics").update(pred, target, spacing)
        voxel_ml = torch.as_tensor(batch["voxel_ml"], dtype=torch.float64, device=probs.device)
        getattr(self, f"{stage}_detection").update(1.0 - probs[:, 0], target > 0, voxel_ml)
        return logits

    def _log_epoch_metrics(self, stage: str) -> None:
        values: dict[str, Tensor] = {}
        for kind in ("metrics", "detection"):
            metric = getattr(self, f"{stage}_{kind}")
            values.update({f"{stage}_{k}": v for k, v in metric.compute().items()})
            metric.reset()
        # Undefined means (e.g. recall_small with no small lesion) are NaN with a warning from the metric;
        # they are left out of the logs rather than drawn as gaps.
        scalars = {k: torch.as_tensor(v, dtype=torch.float32) for k, v in values.items()}
        self.log_dict({k: v for k, v in scalars.items() if not v.isnan()}, sync_dist=False)

    def _log_protocol(self) -> None:
        hp = self.hparams
        roi = hp.roi_size or hp.patch_size
        rank_zero_info(
            f"evaluation protocol: whole volumes, sliding window roi={list(roi)} overlap={hp.overlap} "
            f"mode={hp.sw_mode}; Dice/HD95 over foreground classes; detection: p > {hp.prob_threshold}, "
            f"detected if Dice > {hp.overlap_threshold}, small lesions < {hp.small_volume_ml} ml"
        )

    def _log_image(self, batch: dict[str, Any], logits: Tensor) -> None:
        if not self.hparams.log_images or self.trainer.sanity_checking or not self.trainer.is_global_zero:
            return
        loggers = [lg for lg in self.loggers if isinstance(lg, TensorBoardLogger)]
        if not loggers:
            return
        label = batch["label"][0, 0]
        area = (label > 0).flatten(0, 1).sum(dim=0)
        z = int(area.argmax()) if area.any() else label.shape[-1] // 2
        image = batch["image"][0, 0, ..., z].float().cpu()
        fig = segmentation_figure(
            image,
            label[..., z].long().cpu(),
            logits[0].argmax(dim=0)[..., z].long().cpu(),
            title=f"{batch['case'][0]}, slice {z}",
        )
        for logger in loggers:
            logger.experiment.add_figure("val_segmentation", fig, global_step=self.global_step)
        close(fig)


def voxel_spacing(volume: Tensor) -> Tensor | None:
    """Voxel sizes ``(B, D)`` in mm from a MetaTensor's affine (None for a plain tensor).

    The spacing is the norm of each column of the affine's linear part, which holds for any rotation.
    """
    affine = getattr(volume, "affine", None)
    if affine is None:
        return None
    spacing = affine_spacing(affine, volume.ndim - 2)
    return spacing.expand(volume.shape[0], -1) if spacing.ndim == 1 else spacing
