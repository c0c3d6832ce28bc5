"""Hybrid stacks that interleave linear (recurrent) and full-attention layers at a fixed ratio.

Paper: "A Systematic Analysis of Hybrid Linear Attention" (2025; 36 models at 340M and 36 at 1.3B
parameters, six linear-attention variants, five linear:full ratios). Its findings: language modelling
is stable across ratios, recall improves with more full-attention layers (most sharply below 3:1), and
HGRN2 or Gated DeltaNet with a linear:full ratio between 3:1 and 6:1 reach Transformer-level recall.

**Layout** (:func:`hybrid_layout`). ``ratio = r`` means ``r`` linear layers per full-attention layer.
Layers are grouped in blocks of ``r + 1`` and the full-attention layer is the *last* of each group, so
every full layer reads features already mixed by ``r`` linear layers and the stack ends with full
attention when ``num_layers`` is a multiple of ``r + 1``. A trailing incomplete group (``num_layers`` not
a multiple of ``r + 1``) is all linear. ``ratio=0`` is an all-full Transformer, ``ratio=None`` a purely
linear model. Example, 8 layers at 3:1: ``L L L F L L L F``.

**Block** (:class:`HybridStack`). Pre-norm residual blocks, as in the paper's (fla-based) models::

    x = x + Mixer_i(Norm(x))        Mixer_i = linear(dim, layer_idx=i, num_layers=L) or full(...)
    x = x + MLP(Norm(x))            core.layers.mlp.Mlp, hidden width mlp_ratio · dim

followed by a final norm. The factories receive the *global* layer index, so depth-dependent mixers
(HGRN2's forget-gate lower bound) see their place in the whole stack. The paper's models use SwiGLU
MLPs and RMSNorm; this stack uses the library's GELU :class:`~core.layers.mlp.Mlp` and RMSNorm by
default (``norm="layer"`` for LayerNorm). No official code is used; built from the paper's description.
"""

from collections.abc import Sequence
from typing import Literal

from torch import Tensor, nn

from core.attention.base import AttentionFactory, TokenMixer
from core.layers.mlp import Mlp

__all__ = ["HybridBlock", "HybridStack", "LayerKind", "hybrid_layout"]

LayerKind = Literal["linear", "full"]
Norm = Literal["rms", "layer"]


def hybrid_layout(num_layers: int, ratio: int | None) -> list[LayerKind]:
    """Which layers are linear and which are full attention, for a ``ratio : 1`` linear:full stack.

    Args:
        num_layers: Depth ``L`` of the stack.
        ratio: Linear layers per full-attention layer (the paper studies 3 to 6 … and more); the full
            layer closes each group of ``ratio + 1``. ``0`` gives all full, ``None`` all linear.

    Returns:
        ``L`` entries, each ``"linear"`` or ``"full"``.

    Raises:
        ValueError: If ``num_layers < 1`` or ``ratio < 0``.
    """
    if num_layers < 1:
        raise ValueError(f"hybrid_layout: num_layers must be positive, got {num_layers}")
    if ratio is None:
        return ["linear"] * num_layers
    if isinstance(ratio, bool) or not isinstance(ratio, int) or ratio < 0:
        raise ValueError(f"hybrid_layout: ratio must be a non-negative int or None, got {ratio!r}")
    return ["full" if i % (ratio + 1) == ratio else "linear" for i in range(num_layers)]


def _norm(kind: Norm, dim: int, eps: float) -> nn.Module:
    return nn.RMSNorm(dim, eps=eps) if kind == "rms" else nn.LayerNorm(dim, eps=eps)


class HybridBlock(nn.Module):
    """``x + Mixer(Norm(x))`` then ``x + MLP(Norm(x))``.

    Args:
        dim: Channels ``C``.
        mixer: The token mixer of this layer.
        mlp_ratio: MLP hidden width as a multiple of ``dim``.
        drop: Dropout inside the MLP.
        norm: ``rms`` or ``layer``.
        norm_eps: Epsilon of both norms.
    """

    def __init__(
        self, dim: int, mixer: TokenMixer, *, mlp_ratio: float, drop: float, norm: Norm, norm_eps: float
    ) -> None:
        super().__init__()
        self.norm1 = _norm(norm, dim, norm_eps)
        self.mixer = mixer
        self.norm2 = _norm(norm, dim, norm_eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)

    def forward(
        self, x: Tensor, *, mask: Tensor | None, is_causal: bool, grid: Sequence[int] | None
    ) -> Tensor:
        """Mix tokens, then channels, both residual and pre-normalised."""
        x = x + self.mixer(self.norm1(x), mask=mask, is_causal=is_causal, grid=grid)
        return x + self.mlp(self.norm2(x))


class HybridStack(nn.Module):
    """A stack of pre-norm residual blocks whose token mixers follow :func:`hybrid_layout`.

    Args:
        dim: Channels ``C``.
        num_layers: Depth ``L``.
        ratio: Linear layers per full-attention layer (see :func:`hybrid_layout`).
        linear: Factory of the linear layers' mixer, e.g. ``GatedDeltaNet`` or ``HGRN2`` (a class or a
            ``functools.partial``), called as ``linear(dim, layer_idx=i, num_layers=L)``.
        full: Factory of the full-attention layers' mixer, e.g. ``MultiHeadAttention``.
        mlp_ratio: MLP hidden width as a multiple of ``dim``.
        drop: Dropout inside the MLPs.
        norm: ``rms`` (default, as the paper's models) or ``layer``.
        norm_eps: Epsilon of the norms.
        final_norm: Normalise the output of the last block.

    Raises:
        ValueError: For an invalid layout or norm, or a factory that does not return a TokenMixer.
    """

    def __init__(
        self,
        dim: int,
        num_layers: int,
        ratio: int | None,
        linear: AttentionFactory,
        full: AttentionFactory,
        *,
        mlp_ratio: float = 4.0,
        drop: float = 0.0,
        norm: Norm = "rms",
        norm_eps: float = 1e-5,
        final_norm: bool = True,
    ) -> None:
        super().__init__()
        if norm not in ("rms", "layer"):
            raise ValueError(f"HybridStack: norm must be 'rms' or 'layer', got {norm!r}")
        self.layout = hybrid_layout(num_layers, ratio)
        self.ratio = ratio
        blocks = []
        for i, kind in enumerate(self.layout):
            mixer = (linear if kind == "linear" else full)(dim, layer_idx=i, num_layers=num_layers)
            if not isinstance(mixer, TokenMixer):
                raise ValueError(
                    f"HybridStack: the {kind} factory must return a TokenMixer, got {type(mixer).__name__}"
                )
            blocks.append(
                HybridBlock(dim, mixer, mlp_ratio=mlp_ratio, drop=drop, norm=norm, norm_eps=norm_eps)
            )
        self.blocks = nn.ModuleList(blocks)
        self.norm = _norm(norm, dim, norm_eps) if final_norm else nn.Identity()

    def forward(
        self,
        x: Tensor,
        *,
        mask: Tensor | None = None,
        is_causal: bool = False,
        grid: Sequence[int] | None = None,
    ) -> Tensor:
        """Run ``(B, N, C)`` tokens through every block; ``mask``/``is_causal``/``grid`` go to every mixer.

        Recurrent mixers are causal-only, so stacks containing them need ``is_causal=True``, and they
        accept key-padding masks ``(B, N)`` only.
        """
        for block in self.blocks:
            x = block(x, mask=mask, is_causal=is_causal, grid=grid)
        return self.norm(x)

    def extra_repr(self) -> str:
        """Show the ratio and the layout as a string of L (linear) and F (full)."""
        return f"ratio={self.ratio}, layout={''.join('L' if k == 'linear' else 'F' for k in self.layout)}"
