"""Pieces shared by the LOB classifiers: the input check and the TLOB / MLPLOB classification head."""

from torch import Tensor, nn

__all__ = ["build_head", "check_window"]


def check_window(x: Tensor, seq_len: int, num_features: int, owner: str) -> None:
    """Raise a ``ValueError`` naming ``owner`` unless ``x`` is a batch of ``(T, F)`` windows."""
    if x.ndim != 3 or x.shape[1:] != (seq_len, num_features):
        raise ValueError(f"{owner}: expected x of shape (B, {seq_len}, {num_features}), got {tuple(x.shape)}")


def build_head(in_features: int, num_outputs: int) -> nn.Sequential:
    """The TLOB / MLPLOB classifier head: shrink by 4 with GELU while wider than 128, then classify.

    For FI-2010 (``in_features = 32 · 36 = 1152``): 1152 → 288 → 72 → ``num_outputs``.

    Args:
        in_features: Width of the flattened representation.
        num_outputs: Number of logits (``num_horizons · num_classes``).

    Returns:
        The head as an ``nn.Sequential``.
    """
    layers: list[nn.Module] = []
    dim = in_features
    while dim > 128:
        layers += [nn.Linear(dim, dim // 4), nn.GELU()]
        dim //= 4
    layers.append(nn.Linear(dim, num_outputs))
    return nn.Sequential(*layers)
