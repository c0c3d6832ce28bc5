"""Segmentation losses: MONAI DiceCE, the official Dice loss's dead gradient, deep supervision."""

import pytest
import torch
import torch.nn.functional as F

from domains.medical.losses import DeepSupervisionLoss, segmentation_loss


def _official_dice_loss(probs: torch.Tensor, onehot: torch.Tensor, epsilon: float = 1e-10) -> torch.Tensor:
    """Reference only: the AGUNet/DAUNet repo's ``get_dice_loss`` (channels-first here).

    Squared-denominator soft Dice (smooth 1, summed over the whole batch) added over every class, background
    included, divided by ``nb_classes - 1`` and clipped to ``[0, 1 - epsilon]``.
    """
    nb_classes = probs.shape[1]
    dice = probs.new_zeros(())
    for c in range(nb_classes):
        p, t = probs[:, c], onehot[:, c]
        dice = dice + (2.0 * (p * t).sum() + 1.0) / ((p * p).sum() + (t * t).sum() + 1.0)
    dice = dice / (nb_classes - 1)
    return torch.clamp(1.0 - dice, 0.0, 1.0 - epsilon)


def _small_lesion() -> tuple[torch.Tensor, torch.Tensor]:
    """An 8³ volume with a 2³ lesion, and logits predicting background everywhere (p ≈ 0.88).

    This is a network early in training on small lesions: wrong, so it needs a gradient.
    """
    target = torch.zeros(1, 1, 8, 8, 8)
    target[..., 3:5, 3:5, 3:5] = 1.0
    logits = torch.zeros(1, 2, 8, 8, 8)
    logits[:, 0] = 2.0
    logits = logits + 0.1 * torch.randn_like(logits)
    return logits.requires_grad_(True), target


def test_official_dice_loss_has_zero_gradient_ours_does_not() -> None:
    logits, target = _small_lesion()
    onehot = torch.cat([1 - target, target], dim=1)
    official = _official_dice_loss(torch.softmax(logits, dim=1), onehot)
    (grad_official,) = torch.autograd.grad(official, logits)
    # background Dice ≈ 0.99 plus foreground Dice ≈ 0.18 exceed 1: the clip returns 0, the gradient vanishes
    assert float(official.detach()) == 0.0
    assert float(grad_official.abs().max()) == 0.0

    ours = segmentation_loss("dicece")(logits, target)
    (grad_ours,) = torch.autograd.grad(ours, logits)
    assert float(ours.detach()) > 0.5
    lesion = target[:, 0].bool()
    # descending the gradient raises the foreground logit inside the lesion
    assert float(grad_ours[:, 1][lesion].max()) < 0.0
    assert float(grad_ours.abs().max()) > 1e-4


def test_dicece_matches_manual_foreground_dice_plus_ce() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 4, 5, 3, generator=gen)
    target = torch.randint(0, 3, (2, 1, 4, 5, 3), generator=gen).float()
    probs = torch.softmax(logits, dim=1)
    onehot = F.one_hot(target[:, 0].long(), 3).movedim(-1, 1).float()
    dims = (2, 3, 4)
    inter = (probs * onehot).sum(dims)[:, 1:]  # foreground classes only, per sample
    denom = (probs.sum(dims) + onehot.sum(dims))[:, 1:]
    dice = (1.0 - (2.0 * inter + 1e-5) / (denom + 1e-5)).mean()  # MONAI's smooth_nr = smooth_dr = 1e-5
    ce = F.cross_entropy(logits, target[:, 0].long())
    assert float(segmentation_loss("dicece")(logits, target)) == pytest.approx(float(dice + ce), rel=1e-5)
    weighted = segmentation_loss("dicece", lambda_dice=0.5, lambda_ce=2.0)(logits, target)
    assert float(weighted) == pytest.approx(float(0.5 * dice + 2.0 * ce), rel=1e-5)
    assert float(segmentation_loss("dice")(logits, target)) == pytest.approx(float(dice), rel=1e-5)
    assert float(segmentation_loss("ce")(logits, target.long())) == pytest.approx(float(ce), rel=1e-6)


def test_segmentation_loss_errors() -> None:
    with pytest.raises(ValueError, match="name"):
        segmentation_loss("focal")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lambda"):
        segmentation_loss(lambda_ce=-1.0)


def test_deep_supervision_matches_manual() -> None:
    """Full 8³ target; levels at 4³ and 2³.

    ``nearest-exact`` picks voxel centres: index 2i+1 at stride 2 and 4i+2 at stride 4.
    """
    gen = torch.Generator().manual_seed(0)
    target = torch.randint(0, 3, (2, 1, 8, 8, 8), generator=gen).float()
    outputs = [torch.randn(2, 3, s, s, s, generator=gen) for s in (8, 4, 2)]
    base = segmentation_loss("dicece")
    targets = [target, target[..., 1::2, 1::2, 1::2], target[..., 2::4, 2::4, 2::4]]
    terms = [base(o, t) for o, t in zip(outputs, targets, strict=True)]
    halving = DeepSupervisionLoss(base)
    assert halving.level_weights(3) == pytest.approx([4 / 7, 2 / 7, 1 / 7])
    expected = (4 * terms[0] + 2 * terms[1] + terms[2]) / 7
    assert float(halving(outputs, target)) == pytest.approx(float(expected), rel=1e-6)
    equal = DeepSupervisionLoss(base, weights="equal")
    assert float(equal(outputs, target)) == pytest.approx(float(sum(terms) / 3), rel=1e-6)
    # a single tensor (no deep supervision / eval) is the plain loss
    assert float(halving(outputs[0], target)) == pytest.approx(float(terms[0]), rel=1e-6)


def test_deep_supervision_odd_sizes_and_gradients() -> None:
    target = torch.randint(0, 2, (1, 1, 9, 13, 7)).float()
    outputs = [torch.randn(1, 2, *s, requires_grad=True) for s in ((9, 13, 7), (5, 7, 4), (3, 4, 2))]
    loss = DeepSupervisionLoss(segmentation_loss())(outputs, target)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(o.grad is not None and float(o.grad.abs().sum()) > 0 for o in outputs)


def test_deep_supervision_errors() -> None:
    loss = DeepSupervisionLoss(segmentation_loss())
    with pytest.raises(ValueError, match="empty"):
        loss([], torch.zeros(1, 1, 4, 4, 4))
    with pytest.raises(ValueError, match="output 1"):
        loss([torch.zeros(1, 2, 4, 4, 4), torch.zeros(1, 2, 2, 2)], torch.zeros(1, 1, 4, 4, 4))
    with pytest.raises(ValueError, match="weights"):
        DeepSupervisionLoss(segmentation_loss(), weights="linear")  # type: ignore[arg-type]
