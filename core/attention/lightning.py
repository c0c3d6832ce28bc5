"""Lightning Attention: tiled causal linear attention with a per-head exponential decay (TransNormerLLM).

Paper: Qin, Sun, Li, Shen, Sun, Zhong, "Various Lengths, Constant Speed: Efficient Language Modeling with
Lightning Attention", ICML 2024 (arXiv 2405.17381); the architecture is TransNormerLLM (TNL, Qin et al.,
arXiv 2307.14995). Official code: ``OpenNLPLab/lightning-attention`` (Triton kernels) and
``OpenNLPLab/TransnormerLLM``; not read in this session; built from the papers' equations and the
research notes (``fla/ops/lightning_attn``: ``chunk_simple_gla`` with a per-head constant log decay).

**Attention.** Softmax-free and without a feature-map denominator. Per head, with decay
``λ_h = exp(-a_h) ∈ (0, 1]`` and a matrix state::

    kv_t = λ kv_{t-1} + k_t v_tᵀ,       o_t = q_tᵀ kv_t = Σ_{s<=t} λ^{t-s} (q_t · k_s) v_s

i.e. ``O = (Q Kᵀ ⊙ D) V`` with ``D_ts = λ^{t-s}`` for ``s <= t`` (the quadratic reference).

**Tiling** (the paper's intra/inter-block split; :func:`~core.attention.linear.linear_attention_chunked`
with ``log_decay``). For a block of ``c`` tokens and the state ``KV`` after the previous block::

    O_intra = (Q_b K_bᵀ ⊙ D_c) V_b,      O_inter = (Λ Q_b) KV,   Λ = diag(λ^{1}, …, λ^{c})
    KV ← λ^c KV + (diag(λ^{c-1}, …, λ^0) K_b)ᵀ V_b

so no cumulative sum runs over the sequence, memory per token is constant (``O(c)`` scores plus the
``d × d`` state per block) and every decay factor is ``<= 1``. ``mode="recurrent"`` runs the token loop.

**Decay slopes** (``slopes``), with ``h = 0 … H-1`` the head, ``l`` = ``layer_idx`` and ``L`` =
``num_layers``:

* ``"paper"`` (default): ``a_h = (8 h / H) · (1 - l / L)`` — TransNormerLLM's
  ``λ = exp(-(8h/H)(1 - l/L))``, as fla's ``chunk_lightning_attn`` computes it. Head 0 does not decay;
  deeper layers decay less.
* ``"alibi"``: ``a_h = 2^{-8 (h + 1) / H} · (1 - l / (L - 1) + 1e-5)`` (``l / (L - 1) := 0`` for
  ``L = 1``): ALiBi's geometric slopes scaled by depth, the form we recall from the official
  TransnormerLLM repo's ``_build_slope_tensor`` (not re-read here).

**Layer** (TNL's gated linear attention): ``q = φ(W_q x)``, ``k = φ(W_k x)`` with ``φ = SiLU``,
``v = W_v x``, ``u = W_u x``; ``O = W_o (Norm(LA(q, k, v)) ⊙ u)``, with ``Norm`` the parameter-free
SRMSNorm (``x / rms(x)``) over the concatenated heads (``norm="srms"``; ``"rms"`` adds a weight,
``"layer"`` is LayerNorm). The output norm replaces the softmax / denominator normaliser.

**Bidirectional use.** Lightning Attention is causal; this mixer also accepts ``is_causal=False`` with the
symmetric decay ``D_ts = λ^{|t-s|}`` (a forward and a backward scan, minus the doubly counted diagonal
``(q_t · k_t) v_t``), so it can replace attention in non-causal models. That form is ours, not the paper's.

**Segments** (``segment_size``; default :data:`~core.attention.linear.SEGMENT_SIZE` on CPU and the whole
sequence on GPU, see :func:`~core.attention.linear.segment_tokens`). In ``mode="chunk"`` the layer runs
segment by segment so that every operand stays cache-sized on CPU: each segment is projected on its own
and the scan carries the state ``KV`` from one segment to the next
(:func:`~core.attention.linear.linear_scan_chunked`); the bidirectional form runs the backward scan over
the segments in reverse order, each segment flipped. Only the input and the output span the whole
sequence. Results equal the one-pass form up to floating-point rounding.

**Masks.** Key padding only: padded keys and values are zeroed, so they add nothing. Decay still counts
padded positions as elapsed time, so left or right padding reproduces the unpadded sequence exactly,
while a gap in the middle also decays what lies before it.

Differences from the official code:

* The official kernels are Triton (GPU only) with hand-written backward tiling; here the tiles are plain
  PyTorch and autograd gives the backward pass (CPU and GPU).
* TNL also uses LRPE-d positional encoding, a SGLU channel mixer and ``bfloat16``; those are network-level
  choices and not part of this token mixer. No scaling of ``q`` (the output norm makes it irrelevant up
  to the norm's ``ε``), no key/value cache for decoding.
"""

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.attention.base import TokenMixer, key_padding_mask
from core.attention.linear import (
    SEGMENT_SIZE,
    linear_attention_chunked,
    linear_attention_recurrent,
    linear_scan_chunked,
    segment_tokens,
    split_segments,
)
from core.attention.mha import merge_heads, split_heads
from core.attention.registry import register_mechanism

__all__ = ["SEGMENT_SIZE", "LightningAttention", "lightning_attention", "lightning_slopes"]

Slopes = Literal["paper", "alibi"]
Norm = Literal["srms", "rms", "layer"]
Mode = Literal["chunk", "recurrent"]


def lightning_slopes(num_heads: int, layer_idx: int, num_layers: int, kind: Slopes = "paper") -> Tensor:
    """Per-head decay rates ``a_h`` (``λ_h = exp(-a_h)``) for layer ``layer_idx`` of ``num_layers``.

    Raises:
        ValueError: For an unknown ``kind``.
    """
    h = torch.arange(num_heads, dtype=torch.float64)
    if kind == "paper":
        return 8.0 * h / num_heads * (1.0 - layer_idx / num_layers)
    if kind == "alibi":
        depth = layer_idx / (num_layers - 1) if num_layers > 1 else 0.0
        return torch.pow(2.0, -8.0 * (h + 1) / num_heads) * (1.0 - depth + 1e-5)
    raise ValueError(f"lightning_slopes: kind must be 'paper' or 'alibi', got {kind!r}")


def lightning_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    log_decay: Tensor,
    *,
    causal: bool = True,
    chunk_size: int = 64,
    mode: Mode = "chunk",
    key_mask: Tensor | None = None,
) -> Tensor:
    """Decayed linear attention ``o_t = Σ_s λ^{|t-s|} (q_t · k_s) v_s`` (``s <= t`` if causal), (B, H, N, D).

    Args:
        q: Queries ``(B, H, N, D)`` (already activated).
        k: Keys ``(B, H, N, D)``.
        v: Values ``(B, H, N, Dv)``.
        log_decay: Decay rates ``a_h >= 0`` of shape ``(H,)``.
        causal: Causal (the paper's); False sums the forward and the backward scan (all keys, ``λ^{|t-s|}``).
        chunk_size: Block length of the tiled form.
        mode: ``chunk`` (tiled) or ``recurrent`` (token loop reference).
        key_mask: Optional key padding ``(B, N)``, True = real token.

    Returns:
        ``(B, H, N, Dv)``.
    """

    def scan(a: Tensor, b: Tensor, c: Tensor, m: Tensor | None) -> Tensor:
        if mode == "recurrent":
            return linear_attention_recurrent(a, b, c, log_decay=log_decay, normalize=False, key_mask=m)
        return linear_attention_chunked(
            a, b, c, causal=True, chunk_size=chunk_size, log_decay=log_decay, normalize=False, key_mask=m
        )

    if mode not in ("chunk", "recurrent"):
        raise ValueError(f"lightning_attention: mode must be 'chunk' or 'recurrent', got {mode!r}")
    forward = scan(q, k, v, key_mask)
    if causal:
        return forward
    flip = [t.flip(2) for t in (q, k, v)]
    backward = scan(*flip, None if key_mask is None else key_mask.flip(1)).flip(2)
    if key_mask is not None:
        k = k * key_mask[:, None, :, None].to(k.dtype)
    diagonal = (q * k).sum(dim=-1, keepdim=True) * v
    return forward + backward - diagonal


@register_mechanism(
    paper="Qin et al. 2024, Various Lengths, Constant Speed: Efficient Language Modeling with Lightning "
    "Attention",
    complexity="O(N d^2)",
    example_kwargs={"num_heads": 2, "chunk_size": 4},
)
class LightningAttention(TokenMixer):
    """TNL's gated linear attention with Lightning Attention's decayed, tiled causal linear attention.

    Args:
        dim: Channel dimension ``C``; must be divisible by ``num_heads``.
        num_heads: Number of heads (each gets its own decay).
        slopes: Decay schedule, ``paper`` (``a_h = 8h/H · (1 - l/L)``) or ``alibi`` (see the module doc).
        chunk_size: Block length of the tiled form.
        mode: ``chunk`` (tiled, trainable) or ``recurrent`` (token-by-token reference).
        output_gate: Multiply the normalised output by ``u = W_u x`` (TNL's gate).
        norm: Output norm over the concatenated heads: ``srms`` (parameter-free RMSNorm, TNL's), ``rms``,
            ``layer``.
        bias: Bias of the projections (TNL: none).
        norm_eps: Epsilon of the output norm.
        segment_size: Tokens per segment of the chunked form (``None``: 2048 on CPU, the whole sequence on
            GPU; see the module doc); it changes speed, not results.
        layer_idx: Index of the owning layer (sets the decay).
        num_layers: Depth of the owning stack (sets the decay).
    """

    paths = "chunked PyTorch (CPU + GPU); no fused Triton kernel"

    supports_mask = True
    supports_causal = True

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int = 4,
        slopes: Slopes = "paper",
        chunk_size: int = 64,
        mode: Mode = "chunk",
        output_gate: bool = True,
        norm: Norm = "srms",
        bias: bool = False,
        norm_eps: float = 1e-6,
        segment_size: int | None = None,
        layer_idx: int = 0,
        num_layers: int = 1,
    ) -> None:
        super().__init__(dim, layer_idx=layer_idx, num_layers=num_layers)
        if num_heads < 1 or dim % num_heads:
            raise ValueError(f"LightningAttention: dim={dim} must be divisible by num_heads={num_heads}")
        if chunk_size < 1 or (segment_size is not None and segment_size < 1):
            raise ValueError(
                f"LightningAttention: chunk_size and segment_size must be positive, got {chunk_size}, "
                f"{segment_size}"
            )
        if mode not in ("chunk", "recurrent"):
            raise ValueError(f"LightningAttention: mode must be 'chunk' or 'recurrent', got {mode!r}")
        if norm not in ("srms", "rms", "layer"):
            raise ValueError(f"LightningAttention: norm must be srms, rms or layer, got {norm!r}")
        self.num_heads = num_heads
        self.slopes: Slopes = slopes
        self.chunk_size = chunk_size
        self.segment_size = segment_size
        self.mode: Mode = mode
        self.output_gate = output_gate
        self.register_buffer(
            "log_decay", lightning_slopes(num_heads, layer_idx, num_layers, slopes).float(), persistent=False
        )
        self.qkv = nn.Linear(dim, 3 * dim, bias=bias)
        self.gate = nn.Linear(dim, dim, bias=bias) if output_gate else None
        if norm == "layer":
            self.norm: nn.Module = nn.LayerNorm(dim, eps=norm_eps)
        else:
            self.norm = nn.RMSNorm(dim, eps=norm_eps, elementwise_affine=norm == "rms")
        self.proj = nn.Linear(dim, dim, bias=bias)

    def mix(
        self,
        x: Tensor,
        *,
        grid: Sequence[int] | None,
        mask: Tensor | None,
        is_causal: bool,
        context: Tensor | None,
    ) -> Tensor:
        """Project, SiLU ``q, k``, decayed linear attention per head, norm, gate, project back."""
        b, n, _ = x.shape
        valid = key_padding_mask(mask, b, n, "LightningAttention")
        if self.mode == "recurrent":
            q, k, v = self._qkv(x)
            out = lightning_attention(
                q, k, v, self.log_decay, causal=is_causal, mode="recurrent", key_mask=valid
            )
            return self._output(out, x)
        # Chunked: segment by segment (see the module doc). Split once; per-segment projections.
        segments = split_segments(x, valid, segment_tokens(self.segment_size, self.chunk_size, n, x.device))
        qkvs = []
        for x_s, m_s in segments:
            q, k, v = self._qkv(x_s)
            if m_s is not None:
                k = k * m_s[:, None, :, None].to(k.dtype)  # padded keys add nothing
            qkvs.append((q, k, v))
        outs, state = [], None
        for q, k, v in qkvs:
            out, state = linear_scan_chunked(
                q, k, v, chunk_size=self.chunk_size, log_decay=self.log_decay, initial_state=state
            )
            outs.append(out)
        if not is_causal:  # backward scan over the reversed segments, minus the doubly counted diagonal
            state = None
            for i in reversed(range(len(qkvs))):
                q, k, v = qkvs[i]
                back, state = linear_scan_chunked(
                    *(t.flip(2) for t in (q, k, v)),
                    chunk_size=self.chunk_size,
                    log_decay=self.log_decay,
                    initial_state=state,
                )
                outs[i] = outs[i] + back.flip(2) - (q * k).sum(dim=-1, keepdim=True) * v
        return torch.cat([self._output(o, x_s) for o, (x_s, _) in zip(outs, segments, strict=True)], dim=1)

    def _qkv(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``SiLU(W_q x), SiLU(W_k x), W_v x`` split into heads, each ``(B, H, N, D)``."""
        q, k, v = (split_heads(t, self.num_heads) for t in self.qkv(x).chunk(3, dim=-1))
        return F.silu(q), F.silu(k), v

    def _output(self, out: Tensor, x: Tensor) -> Tensor:
        """Norm over the merged heads, TNL's output gate and the output projection."""
        out = self.norm(merge_heads(out))
        if self.gate is not None:
            out = out * self.gate(x)
        return self.proj(out)

    def extra_repr(self) -> str:
        """Add heads, decay rates, chunk size and mode to the default representation."""
        decays = ", ".join(f"{math.exp(-a):.3g}" for a in self.log_decay.tolist())
        return (
            f"{super().extra_repr()}, num_heads={self.num_heads}, slopes={self.slopes}, "
            f"decay=[{decays}], chunk_size={self.chunk_size}, segment_size={self.segment_size}, "
            f"mode={self.mode}"
        )
