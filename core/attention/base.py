"""The token-mixer contract that every attention mechanism in attnlab follows.

A :class:`TokenMixer` maps tokens ``x`` of shape ``(B, N, C)`` to ``(B, N, C)``. Models never build a
mechanism directly: they receive an :data:`AttentionFactory` (``Callable[[int], TokenMixer]``) and call it
as ``attention(dim, layer_idx=i, num_layers=depth)``, so ``--model.attention=<Name>`` swaps the mechanism
in any domain without code changes.

Forward keywords (all optional):

* ``grid``: the spatial shape ``(H, W)`` or ``(T, H, W)`` of the tokens, row-major, for mechanisms with
  ``needs_grid``.
* ``mask``: boolean, **True = may attend** (the polarity of ``F.scaled_dot_product_attention``). Accepted
  shapes are ``(B, M)`` (key padding), ``(B | 1, N, M)`` and ``(B | 1, heads | 1, N, M)``.
  ``nn.MultiheadAttention`` uses the opposite polarity; convert at the edge with :func:`invert_mask`.
* ``is_causal``: query ``i`` may attend key ``j`` only when ``j <= i`` (top-left aligned, as SDPA).
* ``context``: ``(B, M, C_ctx)`` keys/values for cross-attention.

A mixer given something it does not support raises a ``ValueError`` naming the argument and the shape it
expected. A mixer may set ``aux_loss`` during ``forward`` (e.g. a load-balancing loss); tasks add it to the
training loss.

Two smaller protocols cover attention on convolutional feature maps:

* :class:`SpatialMixer` maps ``(B, C, *spatial) -> (B, C, *spatial)`` (DANet's position and channel
  modules, SE / CBAM / ECA, large-kernel attention). Built for ``spatial_dims`` 1, 2 or 3.
* :class:`AttentionGate` re-weights skip features ``x`` with a gating signal ``g``: ``forward(x, g)``
  returns a tensor shaped like ``x`` (AGUNet, Oktay et al.).
"""

import math
from abc import ABCMeta, abstractmethod
from collections.abc import Callable, Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn

__all__ = [
    "AttentionFactory",
    "AttentionGate",
    "AttentionGateFactory",
    "SpatialMixer",
    "SpatialMixerFactory",
    "TokenMixer",
    "check_grid",
    "check_grid_2d",
    "grid_2d",
    "invert_mask",
    "key_padding_mask",
    "normalize_mask",
]


class TokenMixer(nn.Module, metaclass=ABCMeta):
    """Base class of every attention mechanism: tokens ``(B, N, C) -> (B, N, C)``.

    Subclasses implement :meth:`mix`; :meth:`forward` validates the inputs against the class's capability
    flags first, so every mechanism rejects unsupported arguments in the same, clear way.

    Args:
        dim: Channel dimension ``C`` of the tokens.
        layer_idx: Index of the layer that owns this mixer (0-based). Some mechanisms depend on depth.
        num_layers: Number of layers in the stack that owns this mixer.
    """

    supports_mask: ClassVar[bool] = True
    supports_causal: ClassVar[bool] = False
    causal_only: ClassVar[bool] = False
    supports_context: ClassVar[bool] = False
    requires_context: ClassVar[bool] = False
    needs_grid: ClassVar[bool] = False
    #: The queries attend their own tokens *and* the context (keys ``N + M``), not the context alone;
    #: FLOP counts of a cross call then pass ``keys = N + M`` to :meth:`attention_flops`.
    context_extends_keys: ClassVar[bool] = False

    def __init__(self, dim: int, *, layer_idx: int = 0, num_layers: int = 1) -> None:
        super().__init__()
        if dim <= 0:
            raise ValueError(f"{type(self).__name__}: dim must be positive, got {dim}")
        if num_layers < 1 or not 0 <= layer_idx < num_layers:
            raise ValueError(
                f"{type(self).__name__}: expected 0 <= layer_idx < num_layers, "
                f"got layer_idx={layer_idx}, num_layers={num_layers}"
            )
        self.dim = dim
        self.layer_idx = layer_idx
        self.num_layers = num_layers
        self.aux_loss: Tensor | None = None

    def __getstate__(self) -> dict:
        """Leave the last forward's ``aux_loss`` out of copies and pickles.

        It is a transient, graph-attached tensor (a load-balancing or budget loss); ``copy.deepcopy`` of a
        non-leaf tensor fails, which would break EMA and other callbacks that copy the model.
        """
        state = super().__getstate__()
        state["aux_loss"] = None
        return state

    def forward(
        self,
        x: Tensor,
        *,
        grid: Sequence[int] | None = None,
        mask: Tensor | None = None,
        is_causal: bool = False,
        context: Tensor | None = None,
    ) -> Tensor:
        """Validate the inputs against the capability flags, then mix the tokens.

        Args:
            x: Tokens of shape ``(B, N, C)``.
            grid: Spatial shape of the tokens, for mechanisms that need it.
            mask: Boolean attention mask, True = may attend.
            is_causal: Whether query ``i`` may only attend keys ``j <= i``.
            context: Keys/values ``(B, M, C_ctx)`` for cross-attention.

        Returns:
            Mixed tokens of shape ``(B, N, C)``.
        """
        self._check_inputs(x, grid=grid, mask=mask, is_causal=is_causal, context=context)
        return self.mix(x, grid=grid, mask=mask, is_causal=is_causal, context=context)

    @abstractmethod
    def mix(
        self,
        x: Tensor,
        *,
        grid: Sequence[int] | None,
        mask: Tensor | None,
        is_causal: bool,
        context: Tensor | None,
    ) -> Tensor:
        """Mix validated tokens. Subclasses implement this instead of ``forward``."""

    def attention_flops(
        self,
        batch: int,
        queries: int,
        keys: int,
        *,
        is_causal: bool = False,
        grid: Sequence[int] | None = None,
    ) -> float | None:
        """Useful forward FLOPs of the attention core (``QKᵀ`` and ``AV`` on the pairs actually attended).

        The benchmark divides these by the time to report useful TFLOP/s, and compares them with dense
        attention's for the FLOP-bound speedup. ``None`` means unknown; sparse mechanisms override this.
        """
        return None

    def extra_repr(self) -> str:
        """Show the dimension and the layer position in ``print(model)``."""
        return f"dim={self.dim}, layer_idx={self.layer_idx}, num_layers={self.num_layers}"

    def _check_inputs(
        self,
        x: Tensor,
        *,
        grid: Sequence[int] | None,
        mask: Tensor | None,
        is_causal: bool,
        context: Tensor | None,
    ) -> None:
        name = type(self).__name__
        if x.ndim != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"{name}: expected x of shape (B, N, {self.dim}), got {tuple(x.shape)}")
        if mask is not None and not self.supports_mask:
            raise ValueError(f"{name} does not support `mask`; got a mask of shape {tuple(mask.shape)}")
        if is_causal and not self.supports_causal:
            raise ValueError(f"{name} is non-causal; `is_causal=True` is not supported")
        if self.causal_only and not is_causal:
            raise ValueError(f"{name} is causal-only; call it with `is_causal=True`")
        if context is not None and not self.supports_context:
            raise ValueError(
                f"{name} is a self-attention mechanism and does not take `context`; "
                f"got context of shape {tuple(context.shape)}"
            )
        if context is None and self.requires_context:
            raise ValueError(f"{name} is a cross-attention mechanism: pass `context` of shape (B, M, C)")
        if context is not None and (context.ndim != 3 or context.shape[0] != x.shape[0]):
            raise ValueError(
                f"{name}: expected context of shape ({x.shape[0]}, M, C_ctx), got {tuple(context.shape)}"
            )
        if self.needs_grid and grid is None:
            raise ValueError(
                f"{name} needs `grid` (the (H, W) or (T, H, W) shape of the {x.shape[1]} tokens)"
            )
        if grid is not None:
            check_grid(grid, x.shape[1], name)


AttentionFactory = Callable[[int], TokenMixer]
"""The type models use for an injected mechanism: ``attention(dim, layer_idx=i, num_layers=L)``."""


def _check_spatial_dims(owner: str, spatial_dims: int, supported: tuple[int, ...]) -> None:
    if spatial_dims not in supported:
        raise ValueError(f"{owner}: spatial_dims must be one of {supported}, got {spatial_dims}")


def _check_feature_map(owner: str, arg: str, t: Tensor, channels: int, spatial_dims: int) -> None:
    if t.ndim != spatial_dims + 2 or t.shape[1] != channels:
        axes = ", ".join(("D", "H", "W")[3 - spatial_dims :]) if spatial_dims <= 3 else "..."
        raise ValueError(
            f"{owner}: expected {arg} of shape (B, {channels}, {axes}) for spatial_dims={spatial_dims}, "
            f"got {tuple(t.shape)}"
        )


class SpatialMixer(nn.Module, metaclass=ABCMeta):
    """Attention on a convolutional feature map: ``(B, C, *spatial) -> (B, C, *spatial)``.

    Subclasses implement :meth:`mix`; :meth:`forward` checks the shape first. Blocks receive a
    :data:`SpatialMixerFactory` and call it as ``mixer(channels, spatial_dims=d)``.

    Args:
        channels: Channel dimension ``C``.
        spatial_dims: Number of spatial axes (1, 2 or 3); fixes the conv layers built inside.
    """

    supported_dims: ClassVar[tuple[int, ...]] = (1, 2, 3)

    def __init__(self, channels: int, *, spatial_dims: int = 2) -> None:
        super().__init__()
        name = type(self).__name__
        if channels <= 0:
            raise ValueError(f"{name}: channels must be positive, got {channels}")
        _check_spatial_dims(name, spatial_dims, self.supported_dims)
        self.channels = channels
        self.spatial_dims = spatial_dims

    def forward(self, x: Tensor) -> Tensor:
        """Check ``x`` is ``(B, C, *spatial)`` with ``spatial_dims`` axes, then mix it."""
        _check_feature_map(type(self).__name__, "x", x, self.channels, self.spatial_dims)
        return self.mix(x)

    @abstractmethod
    def mix(self, x: Tensor) -> Tensor:
        """Mix a validated feature map. Subclasses implement this instead of ``forward``."""

    def extra_repr(self) -> str:
        """Show channels and spatial dimensionality in ``print(model)``."""
        return f"channels={self.channels}, spatial_dims={self.spatial_dims}"


class AttentionGate(nn.Module, metaclass=ABCMeta):
    """Gate skip features ``x (B, C_x, *S)`` with a gating signal ``g (B, C_g, *S_g)``; returns ``x``'s shape.

    ``g`` usually comes from a coarser decoder level, so ``S_g`` may differ from ``S``; subclasses
    resample as their paper does. Blocks receive an :data:`AttentionGateFactory` and call it as
    ``gate(channels, gating_channels, spatial_dims=d)``.

    Args:
        channels: Channels ``C_x`` of the gated features.
        gating_channels: Channels ``C_g`` of the gating signal.
        spatial_dims: Number of spatial axes (1, 2 or 3).
    """

    supported_dims: ClassVar[tuple[int, ...]] = (1, 2, 3)

    def __init__(self, channels: int, gating_channels: int, *, spatial_dims: int = 2) -> None:
        super().__init__()
        name = type(self).__name__
        if channels <= 0 or gating_channels <= 0:
            raise ValueError(
                f"{name}: channels and gating_channels must be positive, got {channels}, {gating_channels}"
            )
        _check_spatial_dims(name, spatial_dims, self.supported_dims)
        self.channels = channels
        self.gating_channels = gating_channels
        self.spatial_dims = spatial_dims

    def forward(self, x: Tensor, g: Tensor) -> Tensor:
        """Check both inputs' shapes, then gate ``x`` with ``g``."""
        name = type(self).__name__
        _check_feature_map(name, "x", x, self.channels, self.spatial_dims)
        _check_feature_map(name, "g", g, self.gating_channels, self.spatial_dims)
        if g.shape[0] != x.shape[0]:
            raise ValueError(f"{name}: x and g must share the batch size, got {x.shape[0]} and {g.shape[0]}")
        return self.gate(x, g)

    @abstractmethod
    def gate(self, x: Tensor, g: Tensor) -> Tensor:
        """Gate validated inputs. Subclasses implement this instead of ``forward``."""

    def extra_repr(self) -> str:
        """Show the channel counts and spatial dimensionality in ``print(model)``."""
        return (
            f"channels={self.channels}, gating_channels={self.gating_channels}, "
            f"spatial_dims={self.spatial_dims}"
        )


SpatialMixerFactory = Callable[[int], SpatialMixer]
"""The type blocks use for an injected feature-map mixer: ``mixer(channels, spatial_dims=d)``."""

AttentionGateFactory = Callable[[int, int], AttentionGate]
"""The type blocks use for an injected gate: ``gate(channels, gating_channels, spatial_dims=d)``."""


def check_grid(grid: Sequence[int], num_tokens: int, owner: str = "attention") -> tuple[int, ...]:
    """Check that a spatial grid matches the number of tokens.

    Args:
        grid: ``(H, W)`` or ``(T, H, W)``.
        num_tokens: ``N`` of the token tensor.
        owner: Name used in the error message.

    Returns:
        The grid as a tuple of ints.

    Raises:
        ValueError: If the grid is not 1- to 3-D, has a non-positive side, or does not hold N tokens.
    """
    grid = tuple(int(g) for g in grid)
    if not 1 <= len(grid) <= 3 or min(grid) <= 0:
        raise ValueError(f"{owner}: grid must be 1 to 3 positive sizes, got {grid}")
    if math.prod(grid) != num_tokens:
        raise ValueError(
            f"{owner}: grid {grid} holds {math.prod(grid)} tokens but x has N={num_tokens} tokens"
        )
    return grid


def check_grid_2d(grid: Sequence[int], num_tokens: int, owner: str = "attention") -> tuple[int, int]:
    """:func:`check_grid` for mechanisms and blocks that only accept a 2-D ``(H, W)`` grid.

    Raises:
        ValueError: If the grid is not ``(H, W)`` or does not hold ``num_tokens`` tokens.
    """
    sizes = check_grid(grid, num_tokens, owner)
    if len(sizes) != 2:
        raise ValueError(f"{owner}: grid must be (H, W), got {sizes}")
    return sizes[0], sizes[1]


def grid_2d(grid: Sequence[int] | None, num_tokens: int, owner: str = "attention") -> tuple[int, int]:
    """``(H, W)`` for a 2-D grid and ``(1, N)`` for no grid or a 1-D grid ``(N,)``.

    For 2-D mechanisms (convolutions, windows, regions) that also run on plain sequences, which they
    treat as a one-row image.

    Raises:
        ValueError: For a 3-D grid, or a grid that does not hold ``num_tokens`` tokens.
    """
    if grid is None:
        return 1, num_tokens
    sizes = check_grid(grid, num_tokens, owner)
    if len(sizes) == 1:
        return 1, sizes[0]
    if len(sizes) != 2:
        raise ValueError(f"{owner}: grid must be (H, W), (N,) or None for a sequence, got {sizes}")
    return sizes[0], sizes[1]


def normalize_mask(mask: Tensor, batch: int, q_len: int, kv_len: int, owner: str = "attention") -> Tensor:
    """Bring a boolean mask to the 4-D shape ``(B | 1, heads | 1, N | 1, M)`` that SDPA broadcasts.

    Args:
        mask: Boolean mask, True = may attend. A 2-D mask is always key padding ``(B, M)``; a 3-D mask
            is ``(B | 1, N | 1, M)``; a 4-D mask is ``(B | 1, heads | 1, N | 1, M)``. Pass an ``(N, M)``
            pattern as ``mask[None]``.
        batch: Batch size ``B``.
        q_len: Number of queries ``N``.
        kv_len: Number of keys ``M``.
        owner: Name used in the error message.

    Returns:
        A 4-D boolean view of the mask.

    Raises:
        ValueError: If the mask is not boolean or does not broadcast to ``(B, heads, N, M)``.
    """
    if mask.dtype != torch.bool:
        raise ValueError(
            f"{owner}: mask must be boolean with True = may attend, got dtype {mask.dtype}. "
            "For an nn.MultiheadAttention-style mask (True = blocked) use core.attention.invert_mask."
        )
    expected = (
        f"key padding (B={batch}, M={kv_len}), (B|1, N={q_len}|1, M={kv_len}) "
        f"or (B|1, heads|1, N={q_len}|1, M={kv_len})"
    )
    if mask.ndim == 2:
        out = mask[:, None, None, :]
    elif mask.ndim == 3:
        out = mask[:, None]
    elif mask.ndim == 4:
        out = mask
    else:
        raise ValueError(f"{owner}: mask of shape {tuple(mask.shape)} is not {expected}")
    b, _, n, m = out.shape
    if b not in (1, batch) or n not in (1, q_len) or m != kv_len:
        raise ValueError(f"{owner}: mask of shape {tuple(mask.shape)} is not {expected}")
    return out


def key_padding_mask(mask: Tensor | None, batch: int, length: int, owner: str = "attention") -> Tensor | None:
    """Reduce a contract mask to key padding ``(B, N)`` (True = real token), or refuse it.

    Mechanisms that mix tokens through a running state or a sequence summary (linear attention,
    recurrences, scans, memories) can only drop padded tokens; a mask that varies over queries or heads
    has no meaning for them.

    Args:
        mask: ``None``, key padding ``(B, N)``, or a 3-/4-D mask broadcasting over queries and heads
            (``(B | 1, 1, N)``, ``(B | 1, 1, 1, N)``).
        batch: Batch size ``B``.
        length: Sequence length ``N``.
        owner: Name used in error messages.

    Returns:
        ``None`` when no mask was given, else a boolean ``(B, N)`` tensor.

    Raises:
        ValueError: For a non-boolean or misshapen mask, or one that varies per query or head.
    """
    if mask is None:
        return None
    full = normalize_mask(mask, batch, length, length, owner)
    if full.shape[1] != 1 or full.shape[2] != 1:
        raise ValueError(
            f"{owner} only takes key-padding masks, (B, N) or (B | 1, 1, 1, N): it mixes tokens through a "
            "running state or summary, so key padding is the only mask it can honour (key-padding masks "
            f"only, not masks that vary over heads or queries); got a mask of shape {tuple(mask.shape)}"
        )
    return full[:, 0, 0].expand(batch, length)


def invert_mask(blocked: Tensor) -> Tensor:
    """Convert an ``nn.MultiheadAttention``-style mask (True = blocked) to ours (True = may attend)."""
    if blocked.dtype != torch.bool:
        raise ValueError(f"invert_mask expects a boolean mask, got dtype {blocked.dtype}")
    return ~blocked
