"""Run a token mixer on a convolutional feature map, so any sequence mechanism fits a CNN slot.

A U-Net's bottleneck (or any layer that takes a :class:`~core.attention.SpatialMixer`) can then take a
:class:`~core.attention.TokenMixer` by name, e.g. ``--model.attention=NeighborhoodAttention`` in the
medical domain: the map ``(B, C, *S)`` is flattened to ``N = prod(S)`` tokens, normalised, mixed with the
grid ``S`` passed on (grid-aware mechanisms such as neighbourhood attention use it) and added back, a
pre-norm residual step as in ViT/TransUNet bottlenecks.
"""

from torch import Tensor, nn

from core.attention.base import AttentionFactory, SpatialMixer, SpatialMixerFactory

__all__ = ["TokenMixerMap", "token_mixer_map"]


class TokenMixerMap(SpatialMixer):
    """``x + reshape(mixer(LN(tokens(x)), grid=S))`` for ``x`` of shape ``(B, C, *S)``.

    Args:
        channels: Channel dimension ``C`` (the tokens' width).
        attention: Token-mixer factory, called as ``attention(C, layer_idx=0, num_layers=1)``.
        spatial_dims: Number of spatial axes (1, 2 or 3).
    """

    def __init__(self, channels: int, *, attention: AttentionFactory, spatial_dims: int = 2) -> None:
        super().__init__(channels, spatial_dims=spatial_dims)
        self.norm = nn.LayerNorm(channels)
        self.mixer = attention(channels, layer_idx=0, num_layers=1)

    def mix(self, x: Tensor) -> Tensor:
        """Mix the flattened positions of ``x`` and add the result back."""
        grid = tuple(x.shape[2:])
        tokens = x.flatten(2).transpose(1, 2)
        mixed = self.mixer(self.norm(tokens), grid=grid)
        return x + mixed.transpose(1, 2).reshape(x.shape)


def token_mixer_map(attention: AttentionFactory) -> SpatialMixerFactory:
    """Turn a token-mixer factory into a spatial-mixer factory (``factory(channels, spatial_dims=d)``)."""

    def factory(channels: int, *, spatial_dims: int = 2) -> SpatialMixer:
        return TokenMixerMap(channels, attention=attention, spatial_dims=spatial_dims)

    return factory
