"""LWGANet's lightweight group attention (LWGA): point, local, medium-range and global attention on C/4 each.

Paper: Lu, Yang, Chen, "LWGANet: A Lightweight Group Attention Backbone for Remote Sensing Visual
Tasks", AAAI 2026 (arXiv 2501.10040); official code ``AeroVILab-AHU/LWGANet@d46a47d``,
``classification/models/LWGANet.py``.

The channels are split into four groups ``x = [x_1; x_2; x_3; x_4]`` of ``C / 4`` each; every group gets
an attention of a different range and the four outputs are concatenated:

.. code-block:: text

    PA  (point):   y_1 = x_1 + x_1 ⊙ σ(W_b act(BN(W_a x_1)))          # 1×1 convs, hidden 4·C/4
    LA  (local):   y_2 = act(BN(Conv_{3×3}(x_2)))
    MRA (medium):  t   = BlurPool_{s=3}(MaxPool_{3×3, s=1}(x_3))
                   a   = DW_{K×3}(t) + DW_{3×K}(t) + S_h⁻¹ DW'_{K×3} S_h(t) + S_v⁻¹ DW'_{3×K} S_v(t)
                   y_3 = x_3 ⊙ Up_nearest(σ(BN(a)))
    GA  (global), by stage:
       "ga12" (stages 1-2): y_4 = BN(x_4 + Unpool(W_2 (v ⊙ W_c LSK(v))))  with (v, idx) = pooled x_4:
                            v = act(W_1 MaxPool_2(x_4)); LSK = selective fusion of DW_5(v) and
                            DW_{7, dil 3}(DW_5(v)) with avg/max spatial gates (LSKNet)
       "dga"  (stage 3):    y_4 = x_4 + Unpool(BN(MHSA(MaxPool_2(x_4))))
       "ga"   (stage 4):    y_4 = BN(x_4 + MHSA(x_4))
    out = [y_1; y_2; y_3; y_4]

``S_h`` shears the map so that row ``i`` moves right by ``i`` (``S_v`` does the same to columns), so the
``K × 3`` strip conv applied between ``S_h`` and ``S_h⁻¹`` is a diagonal strip:
``(S_h⁻¹ w ∗ S_h t)[i, j] = Σ_{a, b} w[a, b] · t[i + a, j + b − a]`` (and for ``S_v``:
``Σ w[a, b] · t[i + a − b, j + b]``). The max-pool/unpool pair of the global branch keeps the maximum of
every 2×2 cell and scatters the result back to it (the paper's "top-K salient positions", our reading).
MHSA uses ``head_dim = 4`` and ``num_heads = max(1, (C/4) // 4)`` with no biases, as in the official code.

The LWGA block around it (not in this file) is ``x + BN(DropPath(MLP(LWGA(x))))`` with a 1×1-BN-act-1×1 MLP.

Differences from the official code:

* The official shear (``h_transform``/``inv_h_transform``) pads by the width and un-pads by the height,
  so it only runs on **square** maps after the stride-3 BlurPool; ours pads by the height, which is the
  same on square maps and also correct on rectangular ones.
* ``MaxUnpool2d`` is called without ``output_size`` in the official code, which breaks odd sizes; we
  pass the input size (the last row/column of an odd map receives zeros from the unpool, as the max-pool
  never selected it).
* BlurPool is antialiased-cnns' default (4-tap binomial ``[1, 3, 3, 1]``, reflect padding ``(1, 2)``,
  stride 3), written out here instead of importing ``antialiased_cnns``; it needs ``H, W >= 3``.
"""

from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.attention.base import SpatialMixer
from core.attention.functional import sdpa
from core.attention.registry import register_mechanism

__all__ = ["LWGA", "blur_pool", "shear", "unshear"]

GlobalKind = Literal["ga12", "dga", "ga"]
_ACT = {"gelu": nn.GELU, "relu": nn.ReLU}


def shear(x: Tensor) -> Tensor:
    """``(B, C, H, W) -> (B, C, H, W + H − 1)``: row ``i`` moves right by ``i`` (zeros elsewhere)."""
    b, c, h, w = x.shape
    flat = F.pad(x, (0, h)).reshape(b, c, h * (w + h))[..., : h * (w + h - 1)]
    return flat.reshape(b, c, h, w + h - 1)


def unshear(x: Tensor, width: int) -> Tensor:
    """Inverse of :func:`shear`: ``(B, C, H, W + H − 1) -> (B, C, H, W)`` (row i read from column i)."""
    b, c, h, _ = x.shape
    flat = F.pad(x.reshape(b, c, -1), (0, h)).reshape(b, c, h, width + h)
    return flat[..., :width]


def blur_pool(x: Tensor, stride: int = 3) -> Tensor:
    """antialiased-cnns' default BlurPool: reflect pad (1, 2), 4-tap binomial blur, then ``stride``."""
    taps = x.new_tensor([1.0, 3.0, 3.0, 1.0])
    kernel = (taps[:, None] * taps[None, :]) / 64.0
    c = x.shape[1]
    padded = F.pad(x, (1, 2, 1, 2), mode="reflect")
    return F.conv2d(padded, kernel.expand(c, 1, 4, 4), stride=stride, groups=c)


class _PointAttention(nn.Module):
    def __init__(self, dim: int, act: type[nn.Module]) -> None:
        super().__init__()
        self.p_conv = nn.Sequential(
            nn.Conv2d(dim, 4 * dim, 1, bias=False),
            nn.BatchNorm2d(4 * dim),
            act(),
            nn.Conv2d(4 * dim, dim, 1, bias=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + x * torch.sigmoid(self.p_conv(x))


class _MediumRangeAttention(nn.Module):
    def __init__(self, dim: int, kernel: int) -> None:
        super().__init__()
        p = kernel // 2
        self.h1 = nn.Conv2d(dim, dim, (kernel, 3), padding=(p, 1), groups=dim, bias=False)
        self.v1 = nn.Conv2d(dim, dim, (3, kernel), padding=(1, p), groups=dim, bias=False)
        self.h2 = nn.Conv2d(dim, dim, (kernel, 3), padding=(p, 1), groups=dim, bias=False)
        self.v2 = nn.Conv2d(dim, dim, (3, kernel), padding=(1, p), groups=dim, bias=False)
        self.norm = nn.BatchNorm2d(dim)

    def forward(self, x: Tensor) -> Tensor:
        t = blur_pool(F.max_pool2d(x, 3, stride=1, padding=1))
        h, w = t.shape[-2:]
        diag_h = unshear(self.h2(shear(t)), w)
        diag_v = unshear(self.v2(shear(t.mT).mT).mT, h).mT
        attn = self.norm(self.h1(t) + self.v1(t) + diag_h + diag_v)
        return x * F.interpolate(torch.sigmoid(attn), size=x.shape[-2:], mode="nearest")


class _PooledLSK(nn.Module):
    """GA12 without the residual: max-pool, LSK-style selective large-kernel gating, unpool."""

    def __init__(self, dim: int, act: type[nn.Module]) -> None:
        super().__init__()
        half = max(dim // 2, 1)
        self.proj_1 = nn.Conv2d(dim, dim, 1)
        self.act = act()
        self.conv0 = nn.Conv2d(dim, dim, 5, padding=2, groups=dim)
        self.conv_spatial = nn.Conv2d(dim, dim, 7, padding=9, groups=dim, dilation=3)
        self.conv1 = nn.Conv2d(dim, half, 1)
        self.conv2 = nn.Conv2d(dim, half, 1)
        self.conv_squeeze = nn.Conv2d(2, 2, 7, padding=3)
        self.conv = nn.Conv2d(half, dim, 1)
        self.proj_2 = nn.Conv2d(dim, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        pooled, idx = F.max_pool2d(x, 2, stride=2, return_indices=True)
        v = self.act(self.proj_1(pooled))
        a1 = self.conv0(v)
        a2 = self.conv_spatial(a1)
        a1, a2 = self.conv1(a1), self.conv2(a2)
        both = torch.cat([a1, a2], dim=1)
        agg = torch.cat([both.mean(1, keepdim=True), both.amax(1, keepdim=True)], dim=1)
        sig = torch.sigmoid(self.conv_squeeze(agg))
        attn = self.conv(a1 * sig[:, :1] + a2 * sig[:, 1:])
        out = self.proj_2(v * attn)
        return F.max_unpool2d(out, idx, 2, stride=2, output_size=x.shape[-2:])


class _MapSelfAttention(nn.Module):
    """LWGANet's GA: bias-free MHSA over all pixels of a map with ``head_dim = 4``."""

    def __init__(self, dim: int, head_dim: int = 4) -> None:
        super().__init__()
        self.head_dim = head_dim
        self.num_heads = max(dim // head_dim, 1)
        inner = self.num_heads * head_dim
        self.qkv = nn.Linear(dim, 3 * inner, bias=False)
        self.proj = nn.Linear(inner, dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        tokens = x.flatten(2).transpose(1, 2)
        q, k, v = self.qkv(tokens).view(b, h * w, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        out = sdpa(q, k, v).transpose(1, 2).reshape(b, h * w, -1)
        return self.proj(out).transpose(1, 2).reshape(b, c, h, w)


@register_mechanism(
    paper="Lu, Yang, Chen 2026, LWGANet: A Lightweight Group Attention Backbone for Remote Sensing "
    "Visual Tasks",
    complexity="O(N d (d + K)) for ga12; O(N^2 d) for ga/dga",
    example_kwargs={"att_kernel": 5},
)
class LWGA(SpatialMixer):
    """LWGANet's four-group attention: PA, LA, MRA and a stage-dependent global attention on ``C/4`` each.

    Args:
        channels: Channel dimension ``C``; divisible by 4.
        spatial_dims: Must be 2.
        att_kernel: Strip length ``K`` of MRA (LWGANet: 11 in every stage); odd.
        global_attention: ``ga12`` (stages 1-2: pooled LSK gating), ``dga`` (stage 3: MHSA on the 2×2
            max-pooled map) or ``ga`` (stage 4: full MHSA).
        act: ``gelu`` (LWGANet-L0/L1) or ``relu`` (L2).
    """

    supported_dims: ClassVar[tuple[int, ...]] = (2,)

    def __init__(
        self,
        channels: int,
        *,
        spatial_dims: int = 2,
        att_kernel: int = 11,
        global_attention: GlobalKind = "ga12",
        act: Literal["gelu", "relu"] = "gelu",
    ) -> None:
        super().__init__(channels, spatial_dims=spatial_dims)
        if channels % 4:
            raise ValueError(f"LWGA: channels must be divisible by 4 (four groups), got {channels}")
        if att_kernel < 1 or att_kernel % 2 == 0:
            raise ValueError(f"LWGA: att_kernel must be a positive odd number, got {att_kernel}")
        if global_attention not in ("ga12", "dga", "ga"):
            raise ValueError(
                f"LWGA: global_attention must be 'ga12', 'dga' or 'ga', got {global_attention!r}"
            )
        if act not in _ACT:
            raise ValueError(f"LWGA: act must be 'gelu' or 'relu', got {act!r}")
        d, act_layer = channels // 4, _ACT[act]
        self.split = d
        self.att_kernel = att_kernel
        self.global_attention: GlobalKind = global_attention
        self.pa = _PointAttention(d, act_layer)
        self.la = nn.Sequential(nn.Conv2d(d, d, 3, padding=1, bias=False), nn.BatchNorm2d(d), act_layer())
        self.mra = _MediumRangeAttention(d, att_kernel)
        self.ga = _PooledLSK(d, act_layer) if global_attention == "ga12" else _MapSelfAttention(d)
        self.ga_norm = nn.BatchNorm2d(d)

    def mix(self, x: Tensor) -> Tensor:
        """Split into four channel groups, attend each at its own range, concatenate."""
        if min(x.shape[-2:]) < 3:
            raise ValueError(
                f"LWGA: expected x of shape (B, {self.channels}, H, W) with H, W >= 3 "
                f"(the MRA BlurPool reflects 2 pixels), got {tuple(x.shape)}"
            )
        x1, x2, x3, x4 = x.split(self.split, dim=1)
        return torch.cat([self.pa(x1), self.la(x2), self.mra(x3), self._global(x4)], dim=1)

    def _global(self, x: Tensor) -> Tensor:
        if self.global_attention in ("ga12", "ga"):
            return self.ga_norm(x + self.ga(x))
        pooled, idx = F.max_pool2d(x, 2, stride=2, return_indices=True)
        out = self.ga_norm(self.ga(pooled))
        return x + F.max_unpool2d(out, idx, 2, stride=2, output_size=x.shape[-2:])

    def extra_repr(self) -> str:
        """Add the MRA kernel and the global branch to the default representation."""
        return (
            f"{super().extra_repr()}, att_kernel={self.att_kernel}, global_attention={self.global_attention}"
        )
