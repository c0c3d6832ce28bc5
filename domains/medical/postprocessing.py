"""Connected-component post-processing and the per-case scores ``attnlab test`` writes for each candidate.

* :class:`PostProcessing`: restrict the foreground to a mask (e.g. BraTS ``brainmask.nii.gz``), remove
  connected components below a volume (ml, from the voxel spacing), keep the largest component; components are
  6-connected (:func:`scipy.ndimage.label`, as in the detection metrics; MONAI's ``RemoveSmallObjects`` and
  ``KeepLargestConnectedComponent`` need scikit-image, which the medical extra does not install). It works
  on the foreground as a whole (all classes > 0 together, nnU-Net's first post-processing step): removed
  voxels become background.
* :func:`case_scores`: one case's foreground Dice, HD95, patient-wise precision (fraction of predicted
  components touching the truth) and predicted / true volume, for the per-case tables of ``attnlab test``.

:mod:`domains.medical.postprocess` chooses among the candidates on cross-validation.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

from core.utils import InputError

__all__ = ["CANDIDATES", "PostProcessing", "case_scores"]


@dataclass(frozen=True)
class PostProcessing:
    """Which foreground components survive, applied in this order: mask, small components, largest only.

    Attributes:
        restrict_to_mask: Set the foreground outside the case's mask to background (needs a mask).
        min_component_ml: Remove connected components smaller than this volume (ml); 0 keeps all.
        keep_largest: Keep only the largest connected component.
    """

    restrict_to_mask: bool = False
    min_component_ml: float = 0.0
    keep_largest: bool = False

    def __post_init__(self) -> None:
        if not self.min_component_ml >= 0:
            raise InputError(f"min_component_ml must be >= 0 ml, got {self.min_component_ml}")

    @property
    def name(self) -> str:
        """A short label: ``none``, or the steps joined by ``+`` (``mask+min0.5ml+largest``)."""
        steps = ["mask"] * self.restrict_to_mask
        steps += [f"min{self.min_component_ml:g}ml"] * (self.min_component_ml > 0)
        steps += ["largest"] * self.keep_largest
        return "+".join(steps) or "none"

    @property
    def active(self) -> bool:
        """Whether anything is changed."""
        return self.name != "none"

    def keep(self, foreground: Tensor, spacing: Sequence[float] | None, mask: Tensor | None = None) -> Tensor:
        """The surviving foreground of one case.

        Args:
            foreground: ``(*S)`` bool foreground of the prediction (2-D or 3-D).
            spacing: Voxel size in mm per axis (None: 1 mm), for ``min_component_ml``.
            mask: ``(*S)`` mask (non-zero inside), required when ``restrict_to_mask``.

        Returns:
            ``(*S)`` bool, a subset of ``foreground``.

        Raises:
            InputError: If ``restrict_to_mask`` is set and no mask (or one of another shape) is given.
        """
        fg = foreground.bool()
        if self.restrict_to_mask:
            if mask is None or tuple(mask.shape) != tuple(fg.shape):
                got = "no mask" if mask is None else f"a mask of shape {tuple(mask.shape)}"
                raise InputError(
                    f"post-processing restrict_to_mask needs the case's mask of shape {tuple(fg.shape)}, "
                    f"got {got}: give the datamodule a mask (e.g. --data.mask brainmask.nii.gz)"
                )
            fg = fg & (mask.to(fg.device) != 0)
        if (self.min_component_ml > 0 or self.keep_largest) and bool(fg.any()):
            labels, count = ndimage.label(
                fg.cpu().numpy(), structure=ndimage.generate_binary_structure(fg.ndim, 1)
            )
            sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]  # voxels per component 1..count
            keep = np.ones(count, dtype=bool)
            if self.min_component_ml > 0:
                voxel_ml = float(np.prod([1.0] * fg.ndim if spacing is None else list(spacing))) / 1000.0
                keep &= sizes * voxel_ml >= self.min_component_ml
            if self.keep_largest:
                keep &= np.arange(count) == int(np.argmax(sizes))
            fg = torch.from_numpy(np.concatenate([[False], keep])[labels]).to(fg.device)
        return fg

    def apply_probs(
        self, probs: Tensor, spacing: Sequence[float] | None, mask: Tensor | None = None
    ) -> Tensor:
        """Softmax probabilities ``(C, *S)`` whose removed foreground voxels become certain background.

        Components are those of the argmax label map; the detection metrics (thresholded foreground
        probability) and the Dice (argmax) then see the same removal.
        """
        if not self.active:
            return probs
        fg = probs.argmax(dim=0) > 0
        removed = fg & ~self.keep(fg, spacing, mask)
        if not bool(removed.any()):
            return probs
        out = probs.clone()
        out[:, removed] = 0
        out[0, removed] = 1
        return out


CANDIDATES: tuple[PostProcessing, ...] = (
    PostProcessing(),
    PostProcessing(keep_largest=True),
    PostProcessing(min_component_ml=0.1),
    PostProcessing(min_component_ml=0.5),
    PostProcessing(min_component_ml=2.0),
    PostProcessing(restrict_to_mask=True),
    PostProcessing(restrict_to_mask=True, keep_largest=True),
    PostProcessing(restrict_to_mask=True, min_component_ml=0.5),
)
"""What ``attnlab test`` scores per case (the mask rows only with a mask): no post-processing, the largest
component, small components removed at 0.1 / 0.5 / 2 ml, and with the mask."""


def case_scores(
    pred: Tensor, target: Tensor, spacing: Sequence[float] | None, voxel_ml: float
) -> dict[str, float]:
    """One case's foreground scores (all classes > 0 together).

    Args:
        pred: ``(*S)`` bool predicted foreground.
        target: ``(*S)`` bool true foreground.
        spacing: Voxel size in mm per axis (None: voxels).
        voxel_ml: Volume of one voxel in ml.

    Returns:
        ``dice`` (1 when both are empty), ``hd95`` (mm; NaN unless both are non-empty), ``precision``
        (fraction of the predicted 6-connected components that touch the truth; NaN without a prediction),
        ``components``, ``pred_ml``, ``true_ml``, ``volume_ratio`` (pred / true; NaN without a true lesion).
    """
    from monai.metrics import compute_hausdorff_distance

    pred, target = pred.bool().cpu(), target.bool().cpu()
    n_pred, n_true = int(pred.sum()), int(target.sum())
    inter = int((pred & target).sum())
    dice = 1.0 if n_pred + n_true == 0 else 2.0 * inter / (n_pred + n_true)
    hd95 = math.nan
    if n_pred and n_true:
        hd95 = float(
            compute_hausdorff_distance(
                pred[None, None].float(),
                target[None, None].float(),
                percentile=95,
                spacing=None if spacing is None else [float(s) for s in spacing],
            ).item()
        )
    structure = ndimage.generate_binary_structure(pred.ndim, 1)
    labels, n_components = ndimage.label(pred.numpy(), structure=structure)
    precision = math.nan
    if n_components:
        precision = len(np.unique(labels[target.numpy() & (labels > 0)])) / n_components
    return {
        "dice": dice,
        "hd95": hd95,
        "precision": precision,
        "components": float(n_components),
        "pred_ml": n_pred * voxel_ml,
        "true_ml": n_true * voxel_ml,
        "volume_ratio": n_pred / n_true if n_true else math.nan,
    }


# ------------------------------------------------------------------------------------------- choosing
