"""Segmentation losses on logits and class-index targets, and a deep-supervision wrapper.

:func:`segmentation_loss` builds MONAI's losses (``DiceCELoss`` by default); :class:`DeepSupervisionLoss`
applies one loss to every output of a deep-supervised network, against the ground truth resized to each
output with nearest-neighbour interpolation, and sums them with nnU-Net's halving weights.
"""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

from core.utils import require

__all__ = ["DeepSupervisionLoss", "segmentation_loss"]

LossName = Literal["dicece", "dice", "ce"]


def _plain(x: Tensor) -> Tensor:
    """A plain tensor view of a MONAI MetaTensor (no metadata tracking through interpolation)."""
    return x.as_tensor() if hasattr(x, "as_tensor") else x


class _ClassIndexCrossEntropy(nn.Module):
    """Cross-entropy on logits ``(B, C, *S)`` and a ``(B, 1, *S)`` class-index target (float or int)."""

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        if target.ndim != logits.ndim or target.shape[1] != 1:
            raise ValueError(
                f"cross-entropy: target must be (B, 1, *S) class indices for logits {tuple(logits.shape)}, "
                f"got {tuple(target.shape)}"
            )
        return F.cross_entropy(logits, _plain(target)[:, 0].long())


def segmentation_loss(
    name: LossName = "dicece",
    *,
    include_background: bool = False,
    lambda_dice: float = 1.0,
    lambda_ce: float = 1.0,
) -> nn.Module:
    """A segmentation loss on logits ``(B, C, *S)`` and class-index targets ``(B, 1, *S)``.

    * ``dicece``: MONAI ``DiceCELoss(to_onehot_y=True, softmax=True)``: ``lambda_dice`` × soft Dice loss
      (softmax probabilities, per sample and class, averaged; over the foreground classes unless
      ``include_background``) + ``lambda_ce`` × cross-entropy over all classes.
    * ``dice``: MONAI ``DiceLoss(to_onehot_y=True, softmax=True)`` alone.
    * ``ce``: cross-entropy alone (``torch.nn.functional.cross_entropy``).

    Why not the official AGUNet/DAUNet Dice loss (``dbouget/mri_brain_tumor_segmentation``,
    ``get_dice_loss``): it sums a squared-denominator soft Dice over **all** classes, background included,
    divides by ``nb_classes - 1`` and clips ``1 - dice`` to ``[0, 1)``. With the paper's 2 classes that is
    ``1 - (dice_bg + dice_fg)``; the background Dice of a small lesion is ≈ 1, so the sum exceeds 1 almost
    from the start, the clip returns 0 and the gradient is exactly zero (``tests/medical/test_losses.py``
    shows it). The paper's "class-averaged Dice" is read here as the mean soft Dice over the foreground
    classes (plus cross-entropy, the usual and more stable choice).

    Args:
        name: ``dicece``, ``dice`` or ``ce``.
        include_background: Include class 0 in the Dice term (not in the cross-entropy, which always
            covers every class).
        lambda_dice: Weight of the Dice term (``dicece`` only).
        lambda_ce: Weight of the cross-entropy term (``dicece`` only).

    Returns:
        An ``nn.Module`` called as ``loss(logits, target)`` returning a scalar.

    Raises:
        ValueError: For an unknown ``name`` or negative weights.
    """
    require("monai", "medical")
    from monai.losses import DiceCELoss, DiceLoss

    if lambda_dice < 0 or lambda_ce < 0:
        raise ValueError(f"lambda_dice and lambda_ce must be >= 0, got {lambda_dice} and {lambda_ce}")
    if name == "dicece":
        return DiceCELoss(
            include_background=include_background,
            to_onehot_y=True,
            softmax=True,
            lambda_dice=lambda_dice,
            lambda_ce=lambda_ce,
        )
    if name == "dice":
        return DiceLoss(include_background=include_background, to_onehot_y=True, softmax=True)
    if name == "ce":
        return _ClassIndexCrossEntropy()
    raise ValueError(f"segmentation_loss: name must be 'dicece', 'dice' or 'ce', got {name!r}")


class DeepSupervisionLoss(nn.Module):
    """Weighted sum of one loss over the outputs of a deep-supervised network.

    ``outputs[0]`` is the full-resolution output, then one per coarser decoder level (the
    :class:`~domains.medical.models` convention). For each level the ``(B, 1, *S)`` class-index target is
    resized to that output's spatial size with **nearest-neighbour** interpolation (PyTorch
    ``mode="nearest-exact"``, which samples voxel centres and works for any, also odd, size ratio); labels
    are never averaged, as in nnU-Net, which also downsamples the segmentation with order-0 interpolation.

    Weights: ``halving`` gives 1, 1/2, 1/4, ... normalised to sum 1 (nnU-Net's convention, except that
    nnU-Net also zeroes its lowest level); ``equal`` gives 1/L each. A single tensor (no deep supervision,
    or eval mode) gets the plain loss.

    Args:
        loss: Loss called as ``loss(logits, target)``, e.g. :func:`segmentation_loss`.
        weights: ``halving`` or ``equal``.
    """

    def __init__(self, loss: nn.Module, weights: Literal["halving", "equal"] = "halving") -> None:
        super().__init__()
        if weights not in ("halving", "equal"):
            raise ValueError(f"DeepSupervisionLoss: weights must be 'halving' or 'equal', got {weights!r}")
        self.loss = loss
        self.weights = weights

    def level_weights(self, levels: int) -> list[float]:
        """The normalised weight of each of ``levels`` outputs, full resolution first."""
        raw = [0.5**i if self.weights == "halving" else 1.0 for i in range(levels)]
        total = sum(raw)
        return [w / total for w in raw]

    def forward(self, outputs: Tensor | list[Tensor] | tuple[Tensor, ...], target: Tensor) -> Tensor:
        """Weighted loss over the outputs.

        Args:
            outputs: Logits ``(B, C, *S_l)`` or a list of them, full resolution first.
            target: ``(B, 1, *S)`` class indices at the full resolution.

        Returns:
            Scalar loss.

        Raises:
            ValueError: On an empty list or outputs whose batch size / dimensionality differ from the target.
        """
        if isinstance(outputs, Tensor):
            return self.loss(outputs, target)
        if len(outputs) == 0:
            raise ValueError("DeepSupervisionLoss: got an empty list of outputs")
        total: Tensor | None = None
        for level, (out, weight) in enumerate(zip(outputs, self.level_weights(len(outputs)), strict=True)):
            if out.ndim != target.ndim or out.shape[0] != target.shape[0] or target.shape[1] != 1:
                raise ValueError(
                    f"DeepSupervisionLoss: output {level} has shape {tuple(out.shape)}, target "
                    f"{tuple(target.shape)}; expected (B, C, *S_l) outputs and a (B, 1, *S) target"
                )
            level_target = target
            if out.shape[2:] != target.shape[2:]:
                level_target = F.interpolate(_plain(target).float(), size=out.shape[2:], mode="nearest-exact")
            term = weight * self.loss(out, level_target)
            total = term if total is None else total + term
        assert total is not None
        return total
