"""DFYP (Zhang et al., IEEE TGRS 2026; arXiv 2507.05849): crop-yield regression from MODIS histograms.

Official code ``onef1shy/DFYP@21588aa`` (``models/dfyp.py``, MODIS branch). Input: the You et al. (2017)
histogram layout ``(B, bands = 9, bins = 32, time = 32)`` — per county and year, a 32-bin histogram of every
band at each of 32 time steps. The network::

    x = x ⊙ σ(W_2 ReLU(W_1 maxpool(x)))                       "RCA" = squeeze-excitation, max-pooled, r = 16
    CNN branch:  e = Op(x);  x' = w e + (1 − w) x              edge-operator router ("AOL-Net"), w₀ = 0.5
                 6 × [Conv3 (TF "same") → BN → ReLU → Dropout 0.5], channels 128, 256, 256, 512, 512, 512,
                 strides 1, 2, 1, 2, 1, 2 → flatten → Linear 2048 → Linear 1
    ViT branch:  patch 4 → LN → Linear → LN, CLS + learned positions, depth 4, dim 256, MLP 512 → Linear 1
    y = a_1 · cnn + a_2 · vit                                  a_1, a_2 learned, start at 0.5

``Op`` is the gradient magnitude ``√(G_x² + G_y² + ε)`` of a depthwise 3×3 operator: ``sobel``, ``scharr``,
or ``learnable`` (kernels ``σ(α)·Sobel + (1 − σ(α))·Scharr`` normalised by their largest entry, output
scaled by ``σ(s)``). The paper picks the operator per test year by validation RMSE; here it is the
``operator`` option.

Differences from the official code: the ViT's attention is the injected mechanism at the model width
(default multi-head attention with 8 heads of 32 channels), where the official ViT projects to 8 heads of
64 (``dim_head=64``); the official per-year router computes all three operators and keeps one, which is
the same as computing only the chosen one. No real yield data is available here: the model is tested on
fixtures of the exact layout.
"""

from functools import partial
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.attention.base import AttentionFactory
from core.attention.mha import MultiHeadAttention
from core.layers.mlp import Mlp
from domains.remote_sensing.models.base import YieldRegressor
from domains.remote_sensing.models.layers import check_image

__all__ = ["DFYP", "EdgeOperator"]

Operator = Literal["sobel", "scharr", "learnable"]
_SOBEL = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))
_SCHARR = ((-3.0, 0.0, 3.0), (-10.0, 0.0, 10.0), (-3.0, 0.0, 3.0))


class EdgeOperator(nn.Module):
    """Per-band gradient magnitude with a fixed (Sobel, Scharr) or learnable operator.

    Args:
        kind: ``sobel``, ``scharr`` or ``learnable``.
    """

    def __init__(self, kind: Operator = "learnable") -> None:
        super().__init__()
        if kind not in ("sobel", "scharr", "learnable"):
            raise ValueError(f"DFYP: operator must be sobel, scharr or learnable, got {kind!r}")
        self.kind: Operator = kind
        self.register_buffer("sobel", torch.tensor(_SOBEL))
        self.register_buffer("scharr", torch.tensor(_SCHARR))
        if kind == "learnable":
            self.alpha = nn.Parameter(torch.tensor(0.5))
            self.scale = nn.Parameter(torch.tensor(0.1))

    def forward(self, x: Tensor) -> Tensor:
        """``√(G_x² + G_y² + ε)`` per band (times ``σ(scale)`` for the learnable operator)."""
        if self.kind == "sobel":
            kx, eps = self.sobel, 1e-8
        elif self.kind == "scharr":
            kx, eps = self.scharr, 1e-8
        else:
            a = torch.sigmoid(self.alpha)
            kx, eps = a * self.sobel + (1 - a) * self.scharr, 1e-6
            kx = kx / kx.abs().max()
        c = x.shape[1]
        gx = F.conv2d(x, kx.expand(c, 1, 3, 3), padding=1, groups=c)
        gy = F.conv2d(x, kx.t().expand(c, 1, 3, 3), padding=1, groups=c)
        magnitude = torch.sqrt(gx**2 + gy**2 + eps)
        return magnitude * torch.sigmoid(self.scale) if self.kind == "learnable" else magnitude


class _SameConv(nn.Conv2d):
    """Conv2d with TensorFlow's "same" padding (extra pixel at the bottom/right for even totals)."""

    def forward(self, x: Tensor) -> Tensor:
        pads = []
        for size, stride in zip(x.shape[:1:-1], self.stride[::-1], strict=True):
            out = -(-size // stride)
            total = max(0, (out - 1) * stride + 3 - size)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))


class _ConvBranch(nn.Module):
    def __init__(self, in_channels: int, height: int, width: int, dropout: float, operator: Operator) -> None:
        super().__init__()
        self.operator = EdgeOperator(operator)
        self.operator_weight = nn.Parameter(torch.tensor(0.5))
        channels = [in_channels, 128, 256, 256, 512, 512, 512]
        strides = [1, 2, 1, 2, 1, 2]
        layers = []
        for i, stride in enumerate(strides):
            conv = _SameConv(channels[i], channels[i + 1], 3, stride=stride)
            nn.init.kaiming_uniform_(conv.weight)
            nn.init.zeros_(conv.bias)
            layers += [conv, nn.BatchNorm2d(channels[i + 1]), nn.ReLU(), nn.Dropout(dropout)]
            if stride == 2:
                height, width = -(-height // 2), -(-width // 2)
        self.convs = nn.Sequential(*layers)
        self.dense = nn.Sequential(nn.Linear(channels[-1] * height * width, 2048), nn.Linear(2048, 1))
        for layer in self.dense:
            nn.init.kaiming_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor) -> Tensor:
        w = self.operator_weight
        x = w * self.operator(x) + (1 - w) * x
        return self.dense(self.convs(x).flatten(1)).squeeze(-1)


class _ViTBlock(nn.Module):
    def __init__(
        self, dim: int, mlp_dim: int, attention: AttentionFactory, dropout: float, i: int, n: int
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = attention(dim, layer_idx=i, num_layers=n)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, mlp_dim, drop=dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class _ViTBranch(nn.Module):
    def __init__(
        self,
        in_channels: int,
        height: int,
        width: int,
        patch: int,
        dim: int,
        depth: int,
        mlp_dim: int,
        attention: AttentionFactory,
        dropout: float,
    ) -> None:
        super().__init__()
        self.patch = patch
        patch_dim = in_channels * patch * patch
        self.embed = nn.Sequential(nn.LayerNorm(patch_dim), nn.Linear(patch_dim, dim), nn.LayerNorm(dim))
        num_patches = (height // patch) * (width // patch)
        self.pos = nn.Parameter(torch.randn(1, num_patches + 1, dim))
        self.cls = nn.Parameter(torch.randn(1, 1, dim))
        self.drop = nn.Dropout(0.1)
        self.blocks = nn.ModuleList(
            _ViTBlock(dim, mlp_dim, attention, dropout, i, depth) for i in range(depth)
        )
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        p = self.patch
        patches = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1).reshape(b, -1, p * p * c)
        tokens = torch.cat([self.cls.expand(b, -1, -1), self.embed(patches)], dim=1) + self.pos
        tokens = self.drop(tokens)
        for block in self.blocks:
            tokens = block(tokens)
        return self.head(self.norm(tokens)[:, 0]).squeeze(-1)


class DFYP(YieldRegressor):
    """DFYP's MODIS model: squeeze-excitation, then a CNN (with an edge operator) and a ViT, mixed.

    Args:
        in_channels: Bands (linked from the data; MODIS: 9).
        bins: Histogram bins (32).
        time_steps: Time steps (32).
        operator: Edge operator of the CNN branch: ``sobel``, ``scharr`` or ``learnable``.
        se_reduction: Squeeze-excitation reduction (16).
        cnn_dropout: Dropout in the CNN blocks (0.5).
        patch_size: ViT patch side (4).
        dim: ViT width (256).
        depth: ViT layers (4).
        num_heads: Heads of the default ViT attention (8).
        mlp_dim: ViT MLP width (512).
        vit_dropout: Dropout in the ViT MLPs.
        attention: Factory for the ViT's attention (default: multi-head self-attention).
    """

    def __init__(
        self,
        in_channels: int,
        bins: int = 32,
        time_steps: int = 32,
        operator: Operator = "learnable",
        se_reduction: int = 16,
        cnn_dropout: float = 0.5,
        patch_size: int = 4,
        dim: int = 256,
        depth: int = 4,
        num_heads: int = 8,
        mlp_dim: int = 512,
        vit_dropout: float = 0.1,
        attention: AttentionFactory | None = None,
    ) -> None:
        super().__init__()
        if bins % patch_size or time_steps % patch_size:
            raise ValueError(
                f"DFYP: bins {bins} and time_steps {time_steps} must be multiples of patch_size {patch_size}"
            )
        self.in_channels, self.bins, self.time_steps = in_channels, bins, time_steps
        hidden = max(in_channels // se_reduction, 1)
        self.se = nn.Sequential(
            nn.Linear(in_channels, hidden, bias=False), nn.ReLU(), nn.Linear(hidden, in_channels, bias=False)
        )
        self.cnn = _ConvBranch(in_channels, bins, time_steps, cnn_dropout, operator)
        attention = attention or partial(MultiHeadAttention, num_heads=num_heads)
        self.vit = _ViTBranch(
            in_channels, bins, time_steps, patch_size, dim, depth, mlp_dim, attention, vit_dropout
        )
        self.a1 = nn.Parameter(torch.tensor(0.5))
        self.a2 = nn.Parameter(torch.tensor(0.5))

    def forward(self, x: Tensor) -> Tensor:
        """Predicted yield ``(B,)`` for histograms ``(B, bands, bins, time_steps)``."""
        check_image(type(self).__name__, x, self.in_channels, name="histogram")
        if tuple(x.shape[-2:]) != (self.bins, self.time_steps):
            raise ValueError(
                f"DFYP: expected histograms of {self.bins} bins × {self.time_steps} time steps, "
                f"got {tuple(x.shape[-2:])}"
            )
        x = x * torch.sigmoid(self.se(x.amax(dim=(2, 3))))[..., None, None]
        return self.a1 * self.cnn(x) + self.a2 * self.vit(x)
