"""Apply any token mixer along one axis of a ``(B, T, F)`` or ``(B, T, F, C)`` tensor.

TLOB's dual attention (Berti & Kasneci 2025, "TLOB: A Novel Transformer Model with Dual Attention for
Stock Price Trend Prediction with Limit Order Book Data", §3) is two of these: attention over time
(tokens = time steps, channels = features) followed by attention over features (tokens = features,
channels = time steps). Axial attention (Ho et al. 2019) uses the 4-D form.
"""

from typing import Literal

from torch import Tensor, nn

from core.attention.base import TokenMixer

__all__ = ["AxisAttention"]

Axis = Literal["time", "feature"]


class AxisAttention(nn.Module):
    """Run a :class:`TokenMixer` along the time or the feature axis.

    For a 3-D input ``(B, T, F)``, ``axis="time"`` mixes the T tokens with F channels, and
    ``axis="feature"`` mixes the F tokens with T channels. For a 4-D input ``(B, T, F, C)`` the other
    axis is folded into the batch and the mixer sees C channels.

    Args:
        mixer: The mechanism to apply; its ``dim`` must equal the channel size seen along ``axis``.
        axis: Which axis holds the tokens.
    """

    def __init__(self, mixer: TokenMixer, axis: Axis) -> None:
        super().__init__()
        if axis not in ("time", "feature"):
            raise ValueError(f"AxisAttention: axis must be 'time' or 'feature', got {axis!r}")
        self.mixer = mixer
        self.axis: Axis = axis

    def forward(self, x: Tensor, *, mask: Tensor | None = None, is_causal: bool = False) -> Tensor:
        """Mix along ``axis``; ``mask`` and ``is_causal`` refer to the tokens of that axis.

        Args:
            x: ``(B, T, F)`` or ``(B, T, F, C)``.
            mask: Optional boolean mask over the tokens of ``axis`` (True = may attend).
            is_causal: Causal mixing along ``axis`` (e.g. over time).

        Returns:
            A tensor of the same shape as ``x``.
        """
        if x.ndim == 3:
            tokens = x if self.axis == "time" else x.transpose(1, 2)
            self._check_channels(tokens.shape[-1], x.shape)
            out = self.mixer(tokens, mask=mask, is_causal=is_causal)
            return out if self.axis == "time" else out.transpose(1, 2)
        if x.ndim == 4:
            b, t, f, c = x.shape
            self._check_channels(c, x.shape)
            if self.axis == "time":
                tokens = x.transpose(1, 2).reshape(b * f, t, c)
                out = self.mixer(tokens, mask=mask, is_causal=is_causal)
                return out.view(b, f, t, c).transpose(1, 2)
            out = self.mixer(x.reshape(b * t, f, c), mask=mask, is_causal=is_causal)
            return out.view(b, t, f, c)
        raise ValueError(f"AxisAttention: expected (B, T, F) or (B, T, F, C), got {tuple(x.shape)}")

    def _check_channels(self, channels: int, shape: tuple[int, ...]) -> None:
        if channels != self.mixer.dim:
            raise ValueError(
                f"AxisAttention(axis={self.axis!r}): the mixer has dim={self.mixer.dim} but input "
                f"{tuple(shape)} gives {channels} channels along that axis"
            )
