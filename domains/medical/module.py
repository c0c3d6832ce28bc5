"""The medical segmentation task: patch training, sliding-window evaluation, NIfTI predictions.

Training runs on the random patches the datamodule cuts (``RandCropByPosNegLabeld``). Validation, test and
predict run on whole preprocessed volumes with MONAI's ``sliding_window_inference``, whose ``sw_device`` /
``device`` options keep the stitched volume on the CPU when the network runs on a GPU. A 2-D network
(``spatial_dims=2`` in the datamodule) is evaluated slice by slice on the same 3-D volumes, so 2-D and 3-D
models are scored with identical 3-D metrics.

Metrics (:class:`~domains.medical.metrics.SegmentationEvaluation`, sums synchronised across DDP processes):

* mean foreground Dice and HD95 (MONAI's metric functions per case; ``val_dice`` is what checkpoints
  follow);
* the patient-wise detection metrics of Bouget et al. 2021: recall, precision, F1 and Dice over
  detected cases at ``prob_threshold`` / ``overlap_threshold``, and recall split by lesion volume
  (below / above ``small_volume_ml``).

Test and predict can average several networks (``ensemble``: the fold checkpoints) and mirrored copies of
every window (``tta``: all flips of the spatial axes), both inside the sliding window, then post-process the
foreground (:class:`~domains.medical.postprocessing.PostProcessing`: mask, small components, largest
component). ``attnlab test`` also writes ``test_cases.csv`` (per case: Dice, HD95, patient-wise precision,
predicted / true volume, for the raw prediction and each post-processing candidate), the input of
``python -m domains.medical.postprocess``. Validation logs the predicted / true volume per case
(``val_volume_ratio/<case>``) and its mean.

``attnlab predict`` writes one NIfTI label map per case in the *original* image space (MONAI ``Invertd``
undoes orientation, spacing and cropping, then ``SaveImaged``) into ``--prediction_writer.output_dir``,
which may never be an input folder.
"""

import csv
import itertools
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch.utilities import rank_zero_info
from matplotlib.figure import Figure
from torch import Tensor, nn

from core.attention import AttentionFactory
from core.training import BaseTask
from core.training.base_task import Stage
from core.training.plots import segmentation_figure
from core.utils import InputError
from domains.medical.losses import DeepSupervisionLoss, segmentation_loss
from domains.medical.metrics import SegmentationEvaluation
from domains.medical.models import AGUNet, SegmentationNetworkFactory
from domains.medical.postprocessing import CANDIDATES, PostProcessing, case_scores
from domains.medical.transforms import affine_spacing

__all__ = ["SegmentationTask", "voxel_spacing"]


class SegmentationTask(BaseTask):
    """Semantic segmentation of 3-D (or 2-D) medical images.

    ``in_channels``, ``num_classes``, ``spatial_dims``, ``patch_size`` and ``class_names`` come from the
    datamodule through the CLI; set them by hand only when using the task without one.

    Args:
        network: The network class (or a factory of one), called with ``in_channels``, ``num_classes``,
            ``spatial_dims`` and ``attention``: ``UNet`` (3-D/2-D U-Net baseline), ``AGUNet``
            (attention-gated U-Net, Bouget et al. 2021), ``DAUNet`` (DANet dual attention at the
            bottleneck), ``DAGUNet`` (gates + dual attention + attention guiding), or ``QTSeg`` (2-D
            dual-mix attention decoder, Tran et al. 2024; 2-D data only). Its own options (channels, gate,
            bottleneck mechanism, input pyramid, deep supervision) are ``--model.network.*``. Default
            (None): ``AGUNet`` with its defaults.
        attention: A token mixer (any registered sequence mechanism, e.g.
            ``--model.attention=NeighborhoodAttention``) given to the network: U-Nets run it on the
            bottleneck's flattened positions (pre-norm residual) in place of ``spatial_attention``; QTSeg uses
            it for its token/feature cross-attention. Default (None): the network's own.
        loss: ``dicece`` (MONAI DiceCELoss: soft Dice over the foreground classes + cross-entropy), ``dice``
            or ``ce``.
        deep_supervision_weights: Weights of the supervision levels of a deeply supervised network:
            ``halving`` (1, 1/2, 1/4, ..., normalised; nnU-Net) or ``equal``.
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
        log_images: Log the slice with the largest lesion area of the first validation case (image, truth,
            prediction) to TensorBoard every validation epoch.
        tta: Mirroring test-time augmentation at test and predict: every window is also run flipped along
            each subset of the spatial axes (8 passes in 3-D, 4 in 2-D) and the softmax probabilities are
            averaged before the windows are stitched. Costs that many network passes; memory grows by one
            window batch of probabilities.
        ensemble: Checkpoints (e.g. the folds of a cross-validation) whose networks replace this task's at
            test and predict; their softmax probabilities are averaged inside the sliding window (with
            ``tta``, over every flip of every network). Each must hold the same network configuration.
        restrict_to_mask: At test and predict, drop the foreground outside the case's mask (the datamodule's
            ``mask`` file, e.g. BraTS ``brainmask.nii.gz``).
        min_component_ml: At test and predict, remove predicted foreground components smaller than this (ml);
            0 keeps all.
        keep_largest: At test and predict, keep only the largest predicted foreground component.
        case_table: At test, write ``test_cases.csv`` under the run's ``default_root_dir``: per case and
            post-processing candidate (raw prediction, before the options above), Dice, HD95, precision
            and volumes, for :mod:`domains.medical.postprocess` to choose from across folds.
        in_channels: Image channels (modalities; linked from the data).
        num_classes: Classes including background (linked from the data).
        spatial_dims: 3 for volumes, 2 for slices (linked from the data).
        patch_size: Training patch size (linked from the data).
        class_names: Class names, background first, for the per-class metric names (linked from the data;
            default ``background``, ``class1``, ...).
        pretrained: Checkpoint to initialise the weights from (fine-tuning).
    """

    monitor = "val_dice"
    mode = "max"
    metric_stages = ("val", "test")

    def __init__(
        self,
        network: SegmentationNetworkFactory | None = None,
        attention: AttentionFactory | None = None,
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
        tta: bool = False,
        ensemble: list[str] | None = None,
        restrict_to_mask: bool = False,
        min_component_ml: float = 0.0,
        keep_largest: bool = False,
        case_table: bool = True,
        in_channels: int | None = None,
        num_classes: int | None = None,
        spatial_dims: Literal[2, 3] | None = None,
        patch_size: list[int] | None = None,
        class_names: list[str] | None = None,
        pretrained: str | None = None,
    ) -> None:
        self.network_factory: SegmentationNetworkFactory = network or AGUNet
        self.attention = attention
        self.postprocessing = PostProcessing(restrict_to_mask, min_component_ml, keep_largest)
        self._ensemble: list[nn.Module] | None = None  # a plain list: not part of this task's state_dict
        self._case_rows: list[dict[str, Any]] = []
        self._volume_ratios: dict[str, float] = {}
        super().__init__(pretrained=pretrained)

    def configure_models(self) -> None:
        """Build the network from the (linked) data sizes."""
        hp = self.hparams
        self.require_linked("in_channels", "num_classes", "spatial_dims", "patch_size")
        if len(hp.patch_size) != hp.spatial_dims:
            raise InputError(
                f"SegmentationTask: patch_size {hp.patch_size} has {len(hp.patch_size)} axes, expected "
                f"spatial_dims={hp.spatial_dims}"
            )
        if not 0.0 <= hp.overlap < 1.0:
            raise InputError(f"SegmentationTask: overlap must be in [0, 1), got {hp.overlap}")
        self.network: nn.Module = self.build_network(
            self.network_factory,
            in_channels=hp.in_channels,
            num_classes=hp.num_classes,
            spatial_dims=hp.spatial_dims,
        )

    def configure_losses(self) -> None:
        """MONAI's loss on every supervision level (one level without deep supervision)."""
        base = segmentation_loss(self.hparams.loss)
        self.criterion = DeepSupervisionLoss(base, weights=self.hparams.deep_supervision_weights)
        self.eval_criterion = base

    def configure_metrics(self) -> SegmentationEvaluation:
        """Dice/HD95 and the patient-wise detection metrics (validation and test)."""
        hp = self.hparams
        return SegmentationEvaluation(
            hp.num_classes,
            class_names=self.class_names,
            prob_threshold=hp.prob_threshold,
            overlap_threshold=hp.overlap_threshold,
            small_volume_ml=hp.small_volume_ml,
        )

    def forward(self, x: Tensor) -> Tensor | list[Tensor]:
        """Logits ``(B, num_classes, *S)``; with deep supervision in training, a list (full size first)."""
        return self.network(x)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        """One optimisation step on a batch of patches."""
        image, label = batch["image"], batch["label"]
        return self.log_loss("train", self.criterion(self(image), label), len(image))

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Sliding-window inference on a whole volume, then the loss and metrics."""
        logits = self._evaluate(batch, "val")
        if batch_idx == 0 and self.hparams.log_images:
            self.log_figure("val_segmentation", lambda: _segmentation_figure(batch, logits))

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Sliding-window inference on a whole volume, then the loss and metrics."""
        self._evaluate(batch, "test")

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        """The label map of each volume, still in the preprocessed space (the writer inverts it)."""
        logits = self.sliding_window(batch["image"], augment=True)
        probs = self._postprocess(torch.softmax(logits.float(), dim=1), batch)
        return {
            "pred": probs.argmax(dim=1, keepdim=True).to(torch.uint8),
            "image": batch["image"],
            "case": batch["case"],
        }

    def on_fit_start(self) -> None:
        """Say how evaluation works, once."""
        self._log_protocol()

    def on_validation_epoch_start(self) -> None:
        """Forget the previous epoch's per-case volume ratios."""
        self._volume_ratios = {}

    def on_validation_epoch_end(self) -> None:
        """Log the epoch's metrics and ``val_volume_ratio/<case>`` of every case, gathered from all processes.

        Under DDP each case is scored by one process; the ratios are gathered so that every process logs the
        same keys with the same values (synchronised logging needs identical keys everywhere).
        """
        super().on_validation_epoch_end()
        ratios = dict(self._volume_ratios)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered: list[dict[str, float] | None] = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(gathered, ratios)
            ratios = {case: value for part in gathered if part for case, value in part.items()}
        if ratios:
            values = {f"val_volume_ratio/{case}": float(v) for case, v in sorted(ratios.items())}
            self.log_dict(values, sync_dist=True)

    def on_test_start(self) -> None:
        """Say how evaluation works, once."""
        self._log_protocol()
        self._case_rows = []

    def on_test_epoch_end(self) -> None:
        """Log the test metrics; write this process's per-case table."""
        super().on_test_epoch_end()
        if not self.hparams.case_table or not self._case_rows:
            return
        folder = Path(self.trainer.default_root_dir)
        folder.mkdir(parents=True, exist_ok=True)
        path = self.prediction_path(folder, "test_cases", ".csv")
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(self._case_rows[0]))
            writer.writeheader()
            writer.writerows(self._case_rows)
        rank_zero_info(f"per-case test scores: {path}")

    def write_prediction_batch(self, prediction: dict[str, Any], output_dir: Path) -> list[Path]:
        """Map each label map back to its original image space and save it as ``<case>_seg.nii.gz``.

        Args:
            prediction: What :meth:`predict_step` returned for one batch.
            output_dir: Destination folder (checked by :class:`~core.training.PredictionWriter`).

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

    @property
    def class_names(self) -> list[str]:
        """The linked class names, else ``background``, ``class1``, ``class2``, ..."""
        names, num_classes = self.hparams.class_names, self.hparams.num_classes
        if names is not None and len(names) != num_classes:
            raise InputError(
                f"SegmentationTask: {len(names)} class_names {names} for num_classes={num_classes}"
            )
        return list(names) if names else ["background"] + [f"class{i}" for i in range(1, num_classes)]

    def sliding_window(self, image: Tensor, augment: bool = False) -> Tensor:
        """Logits of a whole volume ``(B, C, H, W, D)`` from overlapping ROI windows.

        A 2-D network sees ``(H, W, 1)`` windows with the last axis squeezed, i.e. one slice at a time.

        Args:
            image: The preprocessed volume.
            augment: Use ``tta`` and ``ensemble`` (test and predict). The windows then hold the log of the
                averaged softmax probabilities, so a softmax of the result gives those probabilities.
        """
        from monai.inferers import sliding_window_inference

        hp = self.hparams
        roi = list(hp.roi_size or hp.patch_size)
        if hp.spatial_dims == 2 and len(roi) == 2:
            roi = [*roi, 1]
        networks = self.ensemble_networks(image.device) if augment and hp.ensemble else [self.network]
        flips: list[tuple[int, ...]] = [()]
        if augment and hp.tta:
            axes = range(2, 2 + hp.spatial_dims)  # the window's spatial axes (a 2-D window's third is 1)
            flips = [c for r in range(hp.spatial_dims + 1) for c in itertools.combinations(axes, r)]

        def run(network: nn.Module, x: Tensor) -> Tensor:
            if hp.spatial_dims == 2:
                return network(x.squeeze(-1)).unsqueeze(-1)
            return network(x)

        predictor: Callable[[Tensor], Tensor]
        if len(networks) == 1 and flips == [()]:

            def predictor(x: Tensor) -> Tensor:
                return run(self.network, x)

        else:

            def predictor(x: Tensor) -> Tensor:
                total = None
                for network, axes in itertools.product(networks, flips):
                    logits = run(network, x.flip(axes) if axes else x)
                    probs = torch.softmax(logits.float(), dim=1)
                    probs = probs.flip(axes) if axes else probs
                    total = probs if total is None else total + probs
                assert total is not None
                return torch.log((total / (len(networks) * len(flips))).clamp_min(1e-12))

        if len(roi) != image.ndim - 2:
            raise InputError(
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

    def ensemble_networks(self, device: torch.device) -> list[nn.Module]:
        """The networks of the ``ensemble`` checkpoints (built once, in eval mode, on ``device``).

        Raises:
            InputError: Naming a checkpoint that is missing or whose weights do not fit this network.
        """
        if self._ensemble is None:
            hp, networks = self.hparams, []
            for path in hp.ensemble:
                if not Path(path).is_file():
                    raise InputError(f"SegmentationTask: ensemble checkpoint {path} does not exist")
                checkpoint = torch.load(path, map_location="cpu", weights_only=False)
                state = checkpoint.get("state_dict", checkpoint)
                weights = {k[len("network.") :]: v for k, v in state.items() if k.startswith("network.")}
                network = self.build_network(
                    self.network_factory,
                    in_channels=hp.in_channels,
                    num_classes=hp.num_classes,
                    spatial_dims=hp.spatial_dims,
                )
                try:
                    network.load_state_dict(weights)
                except RuntimeError as err:
                    raise InputError(
                        f"SegmentationTask: ensemble checkpoint {path} does not fit the configured network "
                        f"{type(network).__name__}: {str(err).splitlines()[0]}"
                    ) from err
                networks.append(network.eval())
            self._ensemble = networks
        device = torch.device(self.hparams.sw_device) if self.hparams.sw_device else device
        return [network.to(device) for network in self._ensemble]

    def _postprocess(self, probs: Tensor, batch: dict[str, Any]) -> Tensor:
        """Apply the configured post-processing to each case of ``probs`` ``(B, C, *S)``."""
        if not self.postprocessing.active:
            return probs
        spacing = voxel_spacing(batch["image"])
        masks = batch.get("mask")
        out = [
            self.postprocessing.apply_probs(
                probs[b],
                None if spacing is None else spacing[b].tolist(),
                None if masks is None else masks[b, 0].to(probs.device),
            )
            for b in range(len(probs))
        ]
        return torch.stack(out)

    def _evaluate(self, batch: dict[str, Any], stage: Stage) -> Tensor:
        image, label = batch["image"], batch["label"]
        logits = self.sliding_window(image, augment=stage == "test")
        label = label.to(logits.device)
        self.log_loss(stage, self.eval_criterion(logits, label), len(image))
        raw = torch.softmax(logits.float(), dim=1)
        probs = self._postprocess(raw, batch) if stage == "test" else raw
        voxel_ml = torch.as_tensor(batch["voxel_ml"], dtype=torch.float64, device=probs.device)
        spacing = voxel_spacing(batch["label"])
        self.update_metrics(stage, probs, label[:, 0].long(), spacing, voxel_ml)
        if stage == "val":
            self._log_volume_ratio(probs, label, batch["case"])
        elif stage == "test" and self.hparams.case_table:
            self._score_cases(raw, label, spacing, voxel_ml, batch)
        return logits

    def _log_volume_ratio(self, probs: Tensor, label: Tensor, cases: list[str]) -> None:
        """Keep predicted / true foreground volume per case (>1: over-segmentation), logged at epoch end.

        The prediction is binarised as in the detection metrics (``1 - p(background) >= prob_threshold``),
        whose ``val_volume_ratio`` is the mean over cases.
        """
        predicted = ((1.0 - probs[:, 0]) >= self.hparams.prob_threshold).flatten(1).sum(dim=1).double()
        true = (label[:, 0] > 0).flatten(1).sum(dim=1).double()
        for b, case in enumerate(cases):
            if true[b] > 0:
                self._volume_ratios[str(case)] = float(predicted[b] / true[b])

    def _score_cases(
        self, probs: Tensor, label: Tensor, spacing: Tensor | None, voxel_ml: Tensor, batch: dict[str, Any]
    ) -> None:
        """Per-case rows of ``test_cases.csv``: every candidate post-processing of the raw prediction."""
        masks = batch.get("mask")
        candidates = [c for c in CANDIDATES if masks is not None or not c.restrict_to_mask]
        if self.postprocessing not in candidates:
            candidates.append(self.postprocessing)
        for b, case in enumerate(batch["case"]):
            fg = probs[b].argmax(dim=0) > 0
            truth = label[b, 0] > 0
            space = None if spacing is None else spacing[b].tolist()
            mask = None if masks is None else masks[b, 0]
            for candidate in candidates:
                kept = candidate.keep(fg, space, mask) if candidate.active else fg
                scores = case_scores(kept, truth, space, float(voxel_ml[b]))
                self._case_rows.append(
                    {"case": case, "postprocessing": candidate.name}
                    | {k: (f"{v:.6g}" if not math.isnan(v) else "nan") for k, v in scores.items()}
                )

    def _log_protocol(self) -> None:
        hp = self.hparams
        roi = hp.roi_size or hp.patch_size
        rank_zero_info(
            f"evaluation protocol: whole volumes, sliding window roi={list(roi)} overlap={hp.overlap} "
            f"mode={hp.sw_mode}; test/predict: tta={hp.tta}, ensemble of {len(hp.ensemble or [])} "
            f"checkpoints, post-processing {self.postprocessing.name}; Dice/HD95 over foreground classes; "
            f"detection: p > {hp.prob_threshold}, "
            f"detected if Dice > {hp.overlap_threshold}, small lesions < {hp.small_volume_ml} ml"
        )


def _segmentation_figure(batch: dict[str, Any], logits: Tensor) -> Figure:
    """Image, truth and prediction of the first case's slice with the largest lesion (else the middle one)."""
    label = batch["label"][0, 0]
    area = (label > 0).flatten(0, 1).sum(dim=0)
    z = int(area.argmax()) if area.any() else label.shape[-1] // 2
    return segmentation_figure(
        batch["image"][0, 0, ..., z].float().cpu(),
        label[..., z].long().cpu(),
        logits[0].argmax(dim=0)[..., z].long().cpu(),
        title=f"{batch['case'][0]}, slice {z}",
    )


def voxel_spacing(volume: Tensor) -> Tensor | None:
    """Voxel sizes ``(B, D)`` in mm from a MetaTensor's affine (None for a plain tensor).

    The spacing is the norm of each column of the affine's linear part, which holds for any rotation.
    """
    affine = getattr(volume, "affine", None)
    if affine is None:
        return None
    spacing = affine_spacing(affine, volume.ndim - 2)
    return spacing.expand(volume.shape[0], -1) if spacing.ndim == 1 else spacing
