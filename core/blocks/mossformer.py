"""The MossFormer block: token shift, convolution-augmented projections, joint attention, gating, residual.

Paper: Zhao & Ma, "MossFormer: Pushing the Performance Limit of Monaural Speech Separation using Gated
Single-Head Transformer with Convolution-Augmented Joint Self-Attentions", ICASSP 2023 (arXiv 2302.11824).
Official code: ModelScope ``modelscope/models/audio/separation/mossformer_block.py``
(``FLASH_ShareA_FFConvM``, ``MossFormerBlock``) and ``mossformer_conv_module.py`` (``ConvModule``).

One :class:`MossFormerBlock` (the official ``FLASH_ShareA_FFConvM`` layer) on ``x (B, N, C)``::

    x̃      = TokenShift(x)                           # channels [0, ⌈C/2⌉) shifted one frame forward in time
    v, u   = split(FFConvM_{C → eC}(x̃))              # each e·C/2 channels (official e = 4: 2C each)
    z      = FFConvM_{C → d}(x̃)                      # shared query/key projection, d = query_key_dim
    att_v, att_u = JointAttention(z, v, u)           # OffsetScale, RoPE, relu² chunks + linear (attention/)
    out    = x + FFConvM_{eC/2 → C}((att_u ⊙ v) ⊙ σ(att_v ⊙ u))

    FFConvM(h) = Dropout(ConvModule(SiLU(Linear(Norm(h)))))
    ConvModule(h) = h + DepthwiseConv1d_k(h)         # k = 17, no bias; no GLU / BatchNorm (despite docstring)

Norm is ScaleNorm ``g · h / max(‖h‖ / √C, ε)`` (one scalar ``g``, ``ε = 1e-5``; the official stack's
``norm_type="scalenorm"``) or LayerNorm. :class:`MossFormerStack` is the official ``MossFormerM``: ``depth``
blocks followed by ``LayerNorm(C, eps=1e-6)``.

Naming: the official ``MossFormerBlock`` is the *stack* of ``FLASH_ShareA_FFConvM`` layers; here
:class:`MossFormerBlock` is one layer and :class:`MossFormerStack` the stack plus its final norm.

Differences from the official code (known bugs and what we do instead):

* **Causal variant is not causal officially.** ``causal=True`` only changes the attention; the depthwise
  convolutions keep symmetric padding and see ``(k − 1) / 2 = 8`` future frames. Here a causal block pads
  the convolutions on the left only (``k − 1`` past frames), so the whole block is causal (tested).
* **Masks are ignored officially** (``mask`` is never passed to ``cal_attention``; the convolutions and the
  token shift also mix padded frames in). Here a key-padding mask removes padded frames from the attention,
  and padded frames are zeroed before every convolution and the token shift, so a padded batch gives the
  same outputs on its valid frames as the unpadded sequences (tested).
* ``to_out`` is hard-coded to ``2·dim`` inputs officially, which breaks for ``expansion_factor ≠ 4``; here it
  takes ``expansion_factor · dim / 2``. ``ConvModule``'s ``expansion_factor`` and ``dropout_p`` arguments are
  unused officially and do not exist here.
* The official ``FLASH_ShareA_FFConvM`` defaults (``expansion_factor=1``, LayerNorm) differ from what the
  official stack passes (``4``, ScaleNorm); our defaults are the stack's, i.e. the trained model's.
* Inherited from :mod:`core.attention.mossformer`: the non-causal linear attention averages over valid
  frames (official ``1/n``, identical without a mask), the causal one is scaled by ``1/g`` (as official).
"""

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.attention.base import key_padding_mask
from core.attention.mossformer import MossFormerJointAttention, mossformer_gate

__all__ = ["ConvModule", "FFConvM", "MossFormerBlock", "MossFormerStack", "ScaleNorm", "token_shift"]

Norm = Literal["scale", "layer"]


def _zero_padded(x: Tensor, key_mask: Tensor | None) -> Tensor:
    return x if key_mask is None else x * key_mask[..., None].to(x.dtype)


def token_shift(x: Tensor, key_mask: Tensor | None = None) -> Tensor:
    """Shift the first ``⌈C/2⌉`` channels of ``x (B, N, C)`` one frame forward in time (zeros at ``t = 0``).

    Frame ``t`` then sees half of frame ``t − 1``'s channels (causal). Padded frames (``key_mask`` False)
    contribute zeros.
    """
    shift, keep = x.chunk(2, dim=-1)
    shift = F.pad(_zero_padded(shift, key_mask), (0, 0, 1, -1))
    return torch.cat((shift, keep), dim=-1)


class ScaleNorm(nn.Module):
    """``g · x / max(‖x‖₂ / √C, ε)`` over the last axis, with a single learnable scalar ``g`` (init 1).

    Args:
        dim: Channels ``C``.
        eps: Lower bound of the RMS (official: 1e-5).
    """

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.scale = dim**-0.5
        self.eps = eps
        self.g = nn.Parameter(torch.ones(1))

    def forward(self, x: Tensor) -> Tensor:
        """Normalise the last axis."""
        return (
            x / (torch.linalg.vector_norm(x, dim=-1, keepdim=True) * self.scale).clamp_min(self.eps) * self.g
        )


class ConvModule(nn.Module):
    """``h + DepthwiseConv1d_k(h)`` along time on ``(B, N, C)`` tensors, without bias.

    Args:
        channels: Channels ``C``.
        kernel_size: Odd kernel size ``k`` (official: 17).
    """

    def __init__(self, channels: int, kernel_size: int = 17) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"ConvModule: kernel_size must be odd and positive, got {kernel_size}")
        self.kernel_size = kernel_size
        self.conv = nn.Conv1d(channels, channels, kernel_size, groups=channels, bias=False)

    def forward(self, h: Tensor, *, is_causal: bool = False, key_mask: Tensor | None = None) -> Tensor:
        """Centred ('same') convolution, or left-padded when ``is_causal``; padded frames read as zeros."""
        k = self.kernel_size
        padding = (k - 1, 0) if is_causal else (k // 2, k // 2)
        y = self.conv(F.pad(_zero_padded(h, key_mask).transpose(1, 2), padding))
        return h + y.transpose(1, 2)


class FFConvM(nn.Module):
    """``Dropout(ConvModule(SiLU(Linear(Norm(h)))))``: MossFormer's convolution-augmented projection.

    Args:
        dim_in: Input channels.
        dim_out: Output channels.
        norm: ``scale`` (ScaleNorm, the official stack's) or ``layer`` (LayerNorm).
        kernel_size: Depthwise kernel size (official: 17).
        dropout: Dropout on the output (official: 0.1).
    """

    def __init__(
        self, dim_in: int, dim_out: int, *, norm: Norm = "scale", kernel_size: int = 17, dropout: float = 0.1
    ) -> None:
        super().__init__()
        if norm not in ("scale", "layer"):
            raise ValueError(f"FFConvM: norm must be 'scale' or 'layer', got {norm!r}")
        self.norm = ScaleNorm(dim_in) if norm == "scale" else nn.LayerNorm(dim_in)
        self.linear = nn.Linear(dim_in, dim_out)
        self.conv = ConvModule(dim_out, kernel_size)
        self.drop = nn.Dropout(dropout)

    def forward(self, h: Tensor, *, is_causal: bool = False, key_mask: Tensor | None = None) -> Tensor:
        """Project ``(B, N, dim_in) -> (B, N, dim_out)``."""
        return self.drop(self.conv(F.silu(self.linear(self.norm(h))), is_causal=is_causal, key_mask=key_mask))


class MossFormerBlock(nn.Module):
    """One MossFormer layer (official ``FLASH_ShareA_FFConvM``) with its residual: ``(B, N, C) -> (B, N, C)``.

    Args:
        dim: Channels ``C`` (official: 512).
        group_size: Chunk size ``g`` of the relu² attention (official: 256).
        query_key_dim: Width ``d`` of the shared query/key projection (official: 128).
        expansion_factor: ``v`` and ``u`` together have ``expansion_factor · C`` channels (official: 4).
        causal: Causal attention *and* left-padded convolutions, so the whole block is causal.
        dropout: Dropout in the three FFConvMs and on the relu² weights (official: 0.1).
        rotary_dim: Rotated query/key channels; ``None`` = ``min(32, d)`` (official), 0 disables RoPE.
        norm: ``scale`` (official stack) or ``layer``.
        kernel_size: Depthwise kernel size of the FFConvMs (official: 17).
        shift_tokens: Token shift of half the channels (official: on).
    """

    def __init__(
        self,
        dim: int,
        *,
        group_size: int = 256,
        query_key_dim: int = 128,
        expansion_factor: float = 4.0,
        causal: bool = False,
        dropout: float = 0.1,
        rotary_dim: int | None = None,
        norm: Norm = "scale",
        kernel_size: int = 17,
        shift_tokens: bool = True,
    ) -> None:
        super().__init__()
        hidden = int(dim * expansion_factor)
        if dim < 1 or hidden < 2 or hidden % 2:
            raise ValueError(
                "MossFormerBlock: need dim >= 1 and an even expansion_factor * dim >= 2 (v and u split it), "
                f"got dim={dim}, expansion_factor={expansion_factor}"
            )
        self.dim = dim
        self.hidden = hidden
        self.causal = causal
        self.shift_tokens = shift_tokens
        ff = {"norm": norm, "kernel_size": kernel_size, "dropout": dropout}
        self.to_hidden = FFConvM(dim, hidden, **ff)
        self.to_qk = FFConvM(dim, query_key_dim, **ff)
        self.attention = MossFormerJointAttention(
            query_key_dim, group_size=group_size, rotary_dim=rotary_dim, attn_drop=dropout
        )
        self.to_out = FFConvM(hidden // 2, dim, **ff)

    def forward(self, x: Tensor, *, mask: Tensor | None = None) -> Tensor:
        """Apply the layer.

        Args:
            x: Frames ``(B, N, C)``.
            mask: Optional key padding ``(B, N)``, True = valid frame (or any mask that
                :func:`~core.attention.mossformer.key_padding_mask` reduces to one).

        Returns:
            ``(B, N, C)``; outputs at padded frames are meaningless.
        """
        if x.ndim != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"MossFormerBlock: expected x of shape (B, N, {self.dim}), got {tuple(x.shape)}")
        key_mask = key_padding_mask(mask, x.shape[0], x.shape[1], "MossFormerBlock")
        causal = {"is_causal": self.causal, "key_mask": key_mask}
        h = token_shift(x, key_mask) if self.shift_tokens else x
        v, u = self.to_hidden(h, **causal).chunk(2, dim=-1)
        z = self.to_qk(h, **causal)
        att_v, att_u = self.attention(z, v, u, **causal)
        return x + self.to_out(mossformer_gate(v, u, att_v, att_u), **causal)

    def extra_repr(self) -> str:
        """Show the width, hidden width and causality."""
        return f"dim={self.dim}, hidden={self.hidden}, causal={self.causal}, shift_tokens={self.shift_tokens}"


class MossFormerStack(nn.Module):
    """``depth`` :class:`MossFormerBlock` s and a final ``LayerNorm(eps=1e-6)`` (official ``MossFormerM``).

    Args:
        dim: Channels ``C``.
        depth: Number of blocks (MossFormer(L): 24).
        **block_kwargs: Passed to every :class:`MossFormerBlock` (group_size, query_key_dim, causal, ...).
    """

    def __init__(self, dim: int, depth: int, **block_kwargs: object) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"MossFormerStack: depth must be positive, got {depth}")
        self.blocks = nn.ModuleList(MossFormerBlock(dim, **block_kwargs) for _ in range(depth))  # type: ignore[arg-type]
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: Tensor, *, mask: Tensor | None = None) -> Tensor:
        """``(B, N, C) -> (B, N, C)``; ``mask`` as in :meth:`MossFormerBlock.forward`."""
        for block in self.blocks:
            x = block(x, mask=mask)
        return self.norm(x)
