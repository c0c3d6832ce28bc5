"""Segmentation and patient-wise detection metrics, DDP-correct (sum states, no per-rank ``aggregate()``).

Two :class:`torchmetrics.Metric` subclasses, both keeping only sums and counts with
``dist_reduce_fx="sum"``: under DDP ``compute()`` gives the exact global result over every case of every
process, and merging two metric objects (``merge_state``) equals one object fed all the cases.

* :class:`SegmentationMetrics`: Dice and HD95 per foreground class and case, from MONAI's metric
  functions (:func:`monai.metrics.compute_dice`, :func:`monai.metrics.compute_hausdorff_distance`).
* :class:`PatientDetection`: the patient-wise detection protocol of Bouget et al. 2021 (recall, precision,
  F1, Dice over detected cases, recall split by lesion volume).
* :class:`SegmentationEvaluation`: both, fed with one stage's softmax probabilities; the metrics container
  the segmentation task evaluates with.

Undefined values (a mean over zero cases) are returned as NaN **and** announced with a
:class:`UndefinedMetricWarning` naming the key and the reason; the count keys returned beside them say how
many cases each mean is over. Keys are always the same set, so loggers and ``ModelCheckpoint`` see a stable
dictionary (Lightning's checkpointing never treats a NaN as an improvement).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor, nn
from torchmetrics import Metric

from core.utils import require

__all__ = ["PatientDetection", "SegmentationEvaluation", "SegmentationMetrics", "UndefinedMetricWarning"]


class UndefinedMetricWarning(RuntimeWarning):
    """A metric is a mean over zero cases and is returned as NaN."""


def _warn_undefined(owner: str, key: str, reason: str) -> None:
    # A constant message per (owner, key) so that Python's default filter shows it once per process.
    warnings.warn(f"{owner}: {key!r} is NaN because {reason}", UndefinedMetricWarning, stacklevel=3)


def _ratio(num: Tensor, den: Tensor) -> Tensor:
    """``num / den`` in float64 (NaN when ``den`` is 0), without a host sync."""
    return num.to(torch.float64) / den.to(torch.float64)


def _check_int_map(x: Tensor, name: str, owner: str) -> None:
    if x.is_floating_point() or x.is_complex():
        raise TypeError(
            f"{owner}.update: {name} must hold integer class indices (int or bool tensor), got dtype "
            f"{x.dtype}; take the argmax of the logits / probabilities first"
        )


class SegmentationMetrics(Metric):
    """Mean Dice and HD95 over foreground classes and cases, from MONAI's metric functions.

    Per case and evaluated class ``c`` (``pred == c`` against ``target == c``):

    * **Dice**: :func:`monai.metrics.compute_dice` with ``ignore_empty=False``. Edge cases:

      - class absent from both prediction and ground truth: **excluded** from the Dice and HD95 means
        (nnU-Net's convention) and counted in ``both_empty``. MONAI's ``ignore_empty=False`` would score it
        1 (inflating the mean with trivially empty classes); ``ignore_empty=True`` would also drop the
        case below;
      - class absent from the ground truth but predicted: Dice **0** (a false positive is penalised; MONAI's
        default ``ignore_empty=True`` would drop it);
      - class present in the ground truth but not predicted: Dice **0**.

    * **HD95**: :func:`monai.metrics.compute_hausdorff_distance` with ``percentile`` (95) and the case's
      voxel spacing, i.e. the 95th percentile of the symmetric surface distances in mm (in voxels when
      ``spacing`` is None). It is only defined when both masks are non-empty: when exactly one is empty
      (MONAI would return inf or NaN) the pair is **excluded** from the HD95 mean and counted in
      ``hd95_undefined``. Substituting a fixed penalty such as the volume diagonal would make the mean
      depend on the image size; excluding keeps HD95 a pure boundary-accuracy measure, and the count (beside
      Dice 0 for those pairs) keeps the misses visible.

    Means: per class, the mean over the cases where the value is defined; ``dice`` / ``hd95`` are the means
    of the per-class values over the classes with at least one defined value (nnU-Net's foreground mean).
    With no exclusions this equals the mean over all (case, class) pairs.

    Example:
        >>> metric = SegmentationMetrics(3, class_names=["background", "anterior", "posterior"])
        >>> metric.update(torch.tensor([[[0, 1, 2, 2]]]), torch.tensor([[[0, 1, 2, 0]]]), None)
        >>> {k: round(float(v), 3) for k, v in metric.compute().items()}["dice_posterior"]
        0.667

    Args:
        num_classes: Number of classes including the background (class 0).
        include_background: Also evaluate class 0 (off by default: the background Dice is ≈ 1 and says
            nothing).
        class_names: Names used in the per-class keys ``dice_<name>`` / ``hd95_<name>``: either one name per
            class (``num_classes`` names, background first; the background name is dropped when it is not
            evaluated) or one per evaluated class. Default ``class1``, ``class2``, ... (``class0`` for the
            background when included).
        percentile: Percentile of the surface distances (95 gives HD95; 100 the plain Hausdorff distance).
        **kwargs: Passed to :class:`torchmetrics.Metric` (``process_group``, ``dist_sync_on_step``, ...).

    ``compute()`` returns float32 scalars: ``dice``, ``hd95``, then ``dice_<name>`` and ``hd95_<name>`` per
    class, then the counts ``cases``, ``both_empty`` (excluded (case, class) pairs) and ``hd95_undefined``.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    dice_sum: Tensor
    dice_count: Tensor
    hd_sum: Tensor
    hd_count: Tensor
    hd_undefined: Tensor
    both_empty: Tensor
    cases: Tensor

    def __init__(
        self,
        num_classes: int,
        include_background: bool = False,
        class_names: Sequence[str] | None = None,
        percentile: float = 95.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        require("monai", "medical")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an int >= 2 (background included), got {num_classes!r}")
        if not 0.0 < float(percentile) <= 100.0:
            raise ValueError(f"percentile must be in (0, 100], got {percentile}")
        self.num_classes = num_classes
        self.include_background = include_background
        self.percentile = float(percentile)
        self.classes: tuple[int, ...] = tuple(range(0 if include_background else 1, num_classes))
        self.class_names = self._resolve_names(class_names)
        n = len(self.classes)
        for name, dtype in (("dice_sum", torch.float64), ("hd_sum", torch.float64)):
            self.add_state(name, torch.zeros(n, dtype=dtype), dist_reduce_fx="sum")
        for name in ("dice_count", "hd_count", "hd_undefined", "both_empty"):
            self.add_state(name, torch.zeros(n, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("cases", torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")

    def _resolve_names(self, class_names: Sequence[str] | None) -> tuple[str, ...]:
        if class_names is None:
            return tuple(f"class{c}" for c in self.classes)
        names = [str(n) for n in class_names]
        if len(names) == self.num_classes:
            names = [names[c] for c in self.classes]
        elif len(names) != len(self.classes):
            raise ValueError(
                f"class_names must have {self.num_classes} names (all classes, background first) or "
                f"{len(self.classes)} (the evaluated classes), got {len(names)}: {names}"
            )
        keys = [f"{m}_{n}" for n in names for m in ("dice", "hd95")]
        reserved = {"dice", "hd95", "cases", "both_empty", "hd95_undefined"}
        if len(set(keys)) != len(keys) or reserved & set(keys) or any(not n for n in names):
            raise ValueError(f"class_names must be distinct, non-empty and not 'undefined', got {names}")
        return tuple(names)

    def update(self, pred: Tensor, target: Tensor, spacing: Tensor | Sequence[float] | None = None) -> None:
        """Add a batch of cases.

        Args:
            pred: ``(B, *S)`` predicted class indices (int or bool), ``S`` 2-D or 3-D.
            target: ``(B, *S)`` ground-truth class indices, same shape.
            spacing: Voxel size in mm: ``(B, D)`` per case, ``(D,)`` for every case, or None (unit spacing:
                HD95 is then in voxels). ``D = len(S)``.

        Raises:
            ValueError: On mismatched shapes, indices outside ``[0, num_classes)`` or a bad spacing.
            TypeError: If ``pred`` or ``target`` is a floating-point tensor.
        """
        from monai.metrics import compute_dice, compute_hausdorff_distance

        owner = type(self).__name__
        if pred.shape != target.shape:
            raise ValueError(
                f"{owner}.update: pred and target must have the same shape (B, *S), got "
                f"{tuple(pred.shape)} and {tuple(target.shape)}"
            )
        if pred.ndim not in (3, 4):
            raise ValueError(
                f"{owner}.update: expected (B, H, W) or (B, H, W, D) maps, got {tuple(pred.shape)}"
            )
        _check_int_map(pred, "pred", owner)
        _check_int_map(target, "target", owner)
        for name, x in (("pred", pred), ("target", target)):
            if x.numel() and (int(x.min()) < 0 or int(x.max()) >= self.num_classes):
                raise ValueError(
                    f"{owner}.update: {name} holds class indices in [{int(x.min())}, {int(x.max())}], "
                    f"expected [0, {self.num_classes - 1}]"
                )
        batch, dims = pred.shape[0], pred.ndim - 1
        spacings = self._spacings(spacing, batch, dims)
        dev = self.dice_sum.device
        n = len(self.classes)
        dice_sum = torch.zeros(n, dtype=torch.float64)
        hd_sum = torch.zeros(n, dtype=torch.float64)
        counts = {k: torch.zeros(n, dtype=torch.int64) for k in ("dice", "hd", "undef", "empty")}
        for b in range(batch):
            for i, c in enumerate(self.classes):
                p = (pred[b] == c)[None, None].float()
                t = (target[b] == c)[None, None].float()
                p_any, t_any = bool(p.any()), bool(t.any())
                if not p_any and not t_any:
                    counts["empty"][i] += 1
                    continue
                dice = compute_dice(p, t, include_background=True, ignore_empty=False)
                dice_sum[i] += float(dice.reshape(()))
                counts["dice"][i] += 1
                if not (p_any and t_any):
                    counts["undef"][i] += 1
                    continue
                with warnings.catch_warnings():
                    # MONAI >= 1.5 calls its own deprecated get_mask_edges argument; nothing to act on.
                    warnings.filterwarnings("ignore", "monai.metrics.utils get_mask_edges", FutureWarning)
                    hd = compute_hausdorff_distance(
                        p,
                        t,
                        include_background=True,
                        percentile=self.percentile,
                        spacing=None if spacings is None else [spacings[b]],
                    )
                hd_sum[i] += float(hd.reshape(()))
                counts["hd"][i] += 1
        self.dice_sum += dice_sum.to(dev)
        self.hd_sum += hd_sum.to(dev)
        self.dice_count += counts["dice"].to(dev)
        self.hd_count += counts["hd"].to(dev)
        self.hd_undefined += counts["undef"].to(dev)
        self.both_empty += counts["empty"].to(dev)
        self.cases += batch

    @staticmethod
    def _spacings(
        spacing: Tensor | Sequence[float] | None, batch: int, dims: int
    ) -> list[list[float]] | None:
        if spacing is None:
            return None
        s = torch.as_tensor(spacing, dtype=torch.float64).detach().cpu()
        if s.ndim == 1:
            s = s.expand(batch, -1)
        if s.shape != (batch, dims) or not bool(torch.isfinite(s).all()) or bool((s <= 0).any()):
            raise ValueError(
                f"SegmentationMetrics.update: spacing must be ({batch}, {dims}) or ({dims},) positive finite "
                f"voxel sizes in mm, got {tuple(s.shape)}: {s.tolist()}"
            )
        return s.tolist()

    def compute(self) -> dict[str, Tensor]:
        """Means over every case seen (on every process once synced).

        Returns:
            ``dice``, ``hd95``, ``dice_<name>`` / ``hd95_<name>`` per class, ``cases``, ``both_empty``,
            ``hd95_undefined``: float32 scalars. A mean over zero values is NaN with an
            :class:`UndefinedMetricWarning`.
        """
        owner = type(self).__name__
        dice_c = _ratio(self.dice_sum, self.dice_count)
        hd_c = _ratio(self.hd_sum, self.hd_count)
        out: dict[str, Tensor] = {}
        for key, per_class, count in (("dice", dice_c, self.dice_count), ("hd95", hd_c, self.hd_count)):
            valid = count > 0
            out[key] = _ratio(per_class.nan_to_num(0.0).sum(), valid.sum()).float()
            if not bool(valid.any()):
                _warn_undefined(owner, key, "no (case, class) pair had a defined value (see counts)")
        for i, name in enumerate(self.class_names):
            out[f"dice_{name}"] = dice_c[i].float()
            out[f"hd95_{name}"] = hd_c[i].float()
            if int(self.dice_count[i]) == 0:
                _warn_undefined(
                    owner, f"dice_{name}", "the class was absent from every case (or no case seen)"
                )
            if int(self.hd_count[i]) == 0:
                _warn_undefined(
                    owner, f"hd95_{name}", "no case had the class in both prediction and ground truth"
                )
        out["cases"] = self.cases.float()
        out["both_empty"] = self.both_empty.sum().float()
        out["hd95_undefined"] = self.hd_undefined.sum().float()
        return out


class PatientDetection(Metric):
    """Patient-wise detection metrics of Bouget et al. 2021 (``dbouget/validation_metrics_computation``).

    Per case, the foreground probability is binarised as ``fg_prob >= prob_threshold`` (``>=`` as in the
    official code) and its voxel Dice with the foreground ground truth is computed. A case *with a tumour*
    (non-empty ground truth) is **detected** when that Dice is ``> overlap_threshold``.

    * ``recall`` = detected / cases with a tumour (the official ``1 - missed / with-tumour``).
    * ``precision``: the mean **instance precision** over the cases with a non-empty prediction (the
      official fold average, over patients with ``#Det > 0``). A case's instance precision is the fraction of
      the prediction's connected components (:func:`scipy.ndimage.label`; ``connectivity="face"`` = 6-
      connectivity in 3-D, scipy's default, which the official code uses; ``"full"`` = 26) that overlap the
      ground truth by at least one voxel. A tumour-free case with a prediction therefore counts 0 (in the
      official code such a case falls into an exception path and gets -1; its dataset has no tumour-free
      patient). Unlike the official code, no minimum component size is applied. This is a per-patient
      notion of precision that, unlike a patient-level TP/(TP+FP), penalises spurious extra blobs.
    * ``f1`` = 2 · precision · recall / (precision + recall) (0 when both are 0).
    * ``dice_tp``: mean Dice over the detected cases; ``dice_patient``: mean Dice over all cases with a
      tumour (the paper's patient-wise mean Dice, misses included).
    * ``volume_ratio``: mean over the cases with a tumour of predicted / true foreground volume (the
      binarised prediction's voxels over the ground truth's): above 1 the model over-segments, below 1 it
      under-segments.
    * ``recall_small`` / ``recall_large``: recall among the cases whose ground-truth volume
      (foreground voxels × ``voxel_ml``) is ``< small_volume_ml`` / ``>= small_volume_ml``.
    * counts: ``cases``, ``cases_positive`` (with a tumour), ``detected``, ``cases_predicted`` (non-empty
      prediction), ``false_positive_cases`` (tumour-free cases with a prediction), ``cases_small``,
      ``detected_small``, ``cases_large``, ``detected_large``.

    Thresholds: the defaults 0.5 / 0.1 are fixed starting points. The paper selects both per model on the
    validation folds, as the pair maximising ``(mean Dice + F1) / 2`` (probability thresholds on a grid,
    overlap thresholds in [0, 1]; an optimal overlap of 0 is replaced by 0.01 so that a 0-Dice case is never
    a detection); the runtime default of their inference code is 0.4. Run this metric at several thresholds
    on the validation set to do the same.

    Undefined values (e.g. ``recall_small`` with no small lesion seen, ``precision`` with no prediction) are
    NaN with an :class:`UndefinedMetricWarning`; the matching count is 0.

    Args:
        prob_threshold: Probability at or above which a voxel is foreground, in (0, 1].
        overlap_threshold: Dice above which a case with a tumour counts as detected, in [0, 1).
        small_volume_ml: Ground-truth volume (ml) separating small from large lesions (3 ml in the paper,
            where misses are mostly below it).
        connectivity: ``face`` (6-connectivity in 3-D, 4 in 2-D) or ``full`` (26 / 8) for the components.
        **kwargs: Passed to :class:`torchmetrics.Metric`.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    _COUNTS = (
        "cases",
        "cases_positive",
        "detected",
        "cases_predicted",
        "false_positive_cases",
        "cases_small",
        "detected_small",
        "cases_large",
        "detected_large",
    )
    _SUMS = ("dice_sum_positive", "dice_sum_detected", "precision_sum", "volume_ratio_sum")

    def __init__(
        self,
        prob_threshold: float = 0.5,
        overlap_threshold: float = 0.1,
        small_volume_ml: float = 3.0,
        connectivity: Literal["face", "full"] = "face",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not 0.0 < prob_threshold <= 1.0:
            raise ValueError(f"prob_threshold must be in (0, 1], got {prob_threshold}")
        if not 0.0 <= overlap_threshold < 1.0:
            raise ValueError(f"overlap_threshold must be in [0, 1), got {overlap_threshold}")
        if not small_volume_ml > 0.0:
            raise ValueError(f"small_volume_ml must be > 0, got {small_volume_ml}")
        if connectivity not in ("face", "full"):
            raise ValueError(f"connectivity must be 'face' or 'full', got {connectivity!r}")
        self.prob_threshold = float(prob_threshold)
        self.overlap_threshold = float(overlap_threshold)
        self.small_volume_ml = float(small_volume_ml)
        self.connectivity = connectivity
        for name in self._COUNTS:
            self.add_state(name, torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")
        for name in self._SUMS:
            self.add_state(name, torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, fg_prob: Tensor, target: Tensor, voxel_ml: Tensor | Sequence[float] | float) -> None:
        """Add a batch of cases.

        Args:
            fg_prob: ``(B, *S)`` foreground probability in [0, 1] (e.g. ``1 - softmax[:, 0]``), 2-D or 3-D.
            target: ``(B, *S)`` ground truth, bool or int; any non-zero label is foreground.
            voxel_ml: ``(B,)`` voxel volume in millilitres per case (a scalar applies to every case).

        Raises:
            ValueError: On mismatched shapes, probabilities outside [0, 1] (or NaN) or bad voxel volumes.
            TypeError: If ``target`` is floating point.
        """
        owner = type(self).__name__
        if fg_prob.shape != target.shape or fg_prob.ndim not in (3, 4):
            raise ValueError(
                f"{owner}.update: fg_prob and target must both be (B, H, W) or (B, H, W, D), got "
                f"{tuple(fg_prob.shape)} and {tuple(target.shape)}"
            )
        _check_int_map(target, "target", owner)
        prob = fg_prob.detach()
        if prob.numel() and not (bool((prob >= 0).all()) and bool((prob <= 1).all())):
            raise ValueError(
                f"{owner}.update: fg_prob must be probabilities in [0, 1], got values in "
                f"[{float(prob.min())}, {float(prob.max())}] (or NaN); pass softmax / sigmoid outputs"
            )
        batch = prob.shape[0]
        ml = torch.as_tensor(voxel_ml, dtype=torch.float64).detach().cpu().reshape(-1)
        if ml.numel() == 1:
            ml = ml.expand(batch)
        if ml.shape != (batch,) or not bool(torch.isfinite(ml).all()) or bool((ml <= 0).any()):
            raise ValueError(
                f"{owner}.update: voxel_ml must be ({batch},) positive finite volumes in ml, got "
                f"{tuple(ml.shape)}: {ml.tolist()}"
            )
        pred = prob >= self.prob_threshold
        gt = target != 0
        dims = pred.ndim - 1
        structure = ndimage.generate_binary_structure(dims, 1 if self.connectivity == "face" else dims)
        acc = dict.fromkeys(self._COUNTS, 0) | dict.fromkeys(self._SUMS, 0.0)
        acc["cases"] = batch
        for b in range(batch):
            n_gt, n_pred = int(gt[b].sum()), int(pred[b].sum())
            n_inter = int((gt[b] & pred[b]).sum())
            if n_pred:
                acc["cases_predicted"] += 1
                acc["precision_sum"] += self._instance_precision(pred[b], gt[b], structure)
                acc["false_positive_cases"] += int(n_gt == 0)
            if n_gt == 0:
                continue
            dice = 2.0 * n_inter / (n_gt + n_pred)
            hit = dice > self.overlap_threshold
            size = "small" if n_gt * float(ml[b]) < self.small_volume_ml else "large"
            acc["cases_positive"] += 1
            acc["dice_sum_positive"] += dice
            acc["volume_ratio_sum"] += n_pred / n_gt
            acc[f"cases_{size}"] += 1
            if hit:
                acc["detected"] += 1
                acc[f"detected_{size}"] += 1
                acc["dice_sum_detected"] += dice
        for name, value in acc.items():
            state = getattr(self, name)
            state += torch.as_tensor(value, dtype=state.dtype, device=state.device)

    @staticmethod
    def _instance_precision(pred: Tensor, gt: Tensor, structure: np.ndarray) -> float:
        """Fraction of the prediction's connected components that touch the ground truth."""
        labels, n_components = ndimage.label(pred.cpu().numpy(), structure=structure)
        touched = np.unique(labels[gt.cpu().numpy() & (labels > 0)])
        return len(touched) / n_components

    def compute(self) -> dict[str, Tensor]:
        """Patient-wise metrics over every case seen (on every process once synced).

        Returns:
            ``recall``, ``precision``, ``f1``, ``dice_tp``, ``dice_patient``, ``recall_small``,
            ``recall_large``, ``volume_ratio``, then the counts (see the class docstring); float32 scalars.
            Undefined means are NaN with an :class:`UndefinedMetricWarning`.
        """
        owner = type(self).__name__
        recall = _ratio(self.detected, self.cases_positive)
        precision = _ratio(self.precision_sum, self.cases_predicted)
        denom = precision + recall
        f1 = torch.where(denom > 0, 2 * precision * recall / denom.clamp_min(1e-300), torch.zeros_like(denom))
        f1 = torch.where(torch.isnan(denom), denom, f1)
        out = {
            "recall": recall,
            "precision": precision,
            "f1": f1,
            "dice_tp": _ratio(self.dice_sum_detected, self.detected),
            "dice_patient": _ratio(self.dice_sum_positive, self.cases_positive),
            "recall_small": _ratio(self.detected_small, self.cases_small),
            "recall_large": _ratio(self.detected_large, self.cases_large),
            "volume_ratio": _ratio(self.volume_ratio_sum, self.cases_positive),
        }
        reasons = {
            "recall": "no case with a tumour was seen (cases_positive = 0)",
            "precision": "no case had a non-empty prediction (cases_predicted = 0)",
            "f1": "recall or precision is undefined",
            "dice_tp": "no case was detected (detected = 0)",
            "dice_patient": "no case with a tumour was seen (cases_positive = 0)",
            "recall_small": f"no tumour smaller than {self.small_volume_ml} ml was seen (cases_small = 0)",
            "recall_large": f"no tumour of {self.small_volume_ml} ml or more was seen (cases_large = 0)",
            "volume_ratio": "no case with a tumour was seen (cases_positive = 0)",
        }
        for key, value in out.items():
            if bool(torch.isnan(value)):
                _warn_undefined(owner, key, reasons[key])
        result = {k: v.float() for k, v in out.items()}
        result.update({name: getattr(self, name).float() for name in self._COUNTS})
        return result


class SegmentationEvaluation(nn.Module):
    """One stage's metrics: Dice/HD95 and patient-wise detection, from the softmax probabilities.

    :class:`SegmentationMetrics` gets the argmax, :class:`PatientDetection` the foreground probability
    ``1 - p(background)``.

    Args:
        num_classes: Classes including background.
        class_names: Names of the classes, background first (see :class:`SegmentationMetrics`).
        prob_threshold: Foreground probability threshold of the detection metrics.
        overlap_threshold: Dice above which a case counts as detected.
        small_volume_ml: Lesion volume (ml) separating small from large lesions.

    ``compute()`` returns the keys of both metrics; ``cases`` (in both) is the number of cases seen.
    """

    def __init__(
        self,
        num_classes: int,
        class_names: Sequence[str] | None = None,
        prob_threshold: float = 0.5,
        overlap_threshold: float = 0.1,
        small_volume_ml: float = 3.0,
    ) -> None:
        super().__init__()
        self.segmentation = SegmentationMetrics(num_classes, class_names=class_names)
        self.detection = PatientDetection(
            prob_threshold=prob_threshold,
            overlap_threshold=overlap_threshold,
            small_volume_ml=small_volume_ml,
        )

    def update(
        self,
        probs: Tensor,
        target: Tensor,
        spacing: Tensor | Sequence[float] | None,
        voxel_ml: Tensor | Sequence[float] | float,
    ) -> None:
        """Add a batch of cases.

        Args:
            probs: ``(B, num_classes, *S)`` softmax probabilities.
            target: ``(B, *S)`` ground-truth class indices.
            spacing: Voxel sizes in mm, ``(B, D)`` or ``(D,)``, or None (see :class:`SegmentationMetrics`).
            voxel_ml: ``(B,)`` voxel volumes in ml (see :class:`PatientDetection`).
        """
        self.segmentation.update(probs.argmax(dim=1), target, spacing)
        self.detection.update(1.0 - probs[:, 0], target > 0, voxel_ml)

    def compute(self) -> dict[str, Tensor]:
        """Every value of both metrics over every case seen (on every process once synced)."""
        return {**self.segmentation.compute(), **self.detection.compute()}

    def reset(self) -> None:
        """Forget every case."""
        self.segmentation.reset()
        self.detection.reset()
