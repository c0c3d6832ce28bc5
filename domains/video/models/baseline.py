"""A motion-statistics baseline for clip classification: hand-made temporal features, then a linear layer.

Self-supervised video tasks are easy to solve by low-level cues (Wei et al., "Learning and Using the Arrow
of Time", CVPR 2018, remove black framing and artificial cues for this reason); a classifier must beat
what simple motion statistics give. Per clip ``(B, C, T, H, W)`` the features are, for each of the
``T − 1`` consecutive frame pairs, the mean absolute difference (motion energy), the mean signed difference
(brightness drift) and the mean absolute difference of horizontal and vertical image gradients (edge
change); plus the mean and standard deviation of every frame. They are normalised (LayerNorm) and fed to
a linear classifier (logistic regression).
"""

import torch
from torch import Tensor, nn

from domains.video.models.base import VideoClassificationNetwork

__all__ = ["MotionBaseline", "motion_features"]


def motion_features(video: Tensor) -> Tensor:
    """Motion statistics ``(B, 4 (T − 1) + 2 T)`` of clips ``(B, C, T, H, W)`` (see the module docstring)."""
    if video.ndim != 5 or video.shape[2] < 2:
        raise ValueError(f"motion_features: expected clips (B, C, T>=2, H, W), got {tuple(video.shape)}")
    gray = video.mean(dim=1)  # (B, T, H, W)
    diff = gray[:, 1:] - gray[:, :-1]
    grad_x = (gray[..., :, 1:] - gray[..., :, :-1]).abs()
    grad_y = (gray[..., 1:, :] - gray[..., :-1, :]).abs()
    parts = [
        diff.abs().mean(dim=(2, 3)),
        diff.mean(dim=(2, 3)),
        (grad_x[:, 1:] - grad_x[:, :-1]).abs().mean(dim=(2, 3)),
        (grad_y[:, 1:] - grad_y[:, :-1]).abs().mean(dim=(2, 3)),
        gray.mean(dim=(2, 3)),
        gray.std(dim=(2, 3)),
    ]
    return torch.cat(parts, dim=1)


class MotionBaseline(VideoClassificationNetwork):
    """Logistic regression on :func:`motion_features` (a baseline; no attention).

    Args:
        num_classes: Output classes (linked).
        num_frames: Frames per clip (linked); fixes the feature width.
    """

    def __init__(self, num_classes: int, num_frames: int) -> None:
        super().__init__()
        if num_frames < 2:
            raise ValueError(f"MotionBaseline: needs num_frames >= 2, got {num_frames}")
        width = 4 * (num_frames - 1) + 2 * num_frames
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, num_classes)

    def forward(self, video: Tensor) -> Tensor:
        """Logits ``(B, num_classes)``."""
        return self.head(self.norm(motion_features(video)))
