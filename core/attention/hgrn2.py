"""HGRN2: a gated linear RNN whose hidden state is expanded by an outer product.

Paper: Qin, Yang, Sun, Shen, Li, Sun, Zhong, "HGRN2: Gated Linear RNNs with State Expansion", COLM 2024
(arXiv 2404.07904). Official code: ``OpenNLPLab/HGRN2``, built on the flash-linear-attention layer
``fla/layers/hgrn2.py`` (``HGRN2Attention``) and its gated-linear-attention (GLA) Triton kernels.

**Equations.** HGRN (v1) is an element-wise linear RNN ``h_t = f_t ⊙ h_{t-1} + (1 − f_t) ⊙ i_t`` whose
forget gate has a lower bound that grows with depth (lower layers forget fast and model local
context, upper layers keep long-range memory). HGRN2 expands the state from a vector to a matrix
with an outer product, without new parameters: the input gate ``1 − f_t`` becomes a key. Per head,
with ``e`` the expansion (state rows) and ``d`` the head width::

    f_t = λ + (1 − λ) σ(W_f x_t) ∈ (λ, 1)^e          forget gate with lower bound λ = λ(layer)
    k_t = 1 − f_t                                    input gate, tied to the forget gate
    i_t = W_i x_t ∈ R^d                              input (the "value")
    q_t = swish(W_q x_t) ∈ R^e                       output gate (the "query")
    S_t = diag(f_t) S_{t-1} + k_t i_tᵀ ∈ R^{e × d}
    y_t = S_tᵀ q_t
    out = W_o RMSNorm(concat_heads(y_t))

This is gated linear attention with a per-dimension (key-wise) decay ``f_t``. The lower bound follows
the official model: ``λ_l = cumsum(softmax(Γ))_l − softmax(Γ)_0`` over layers, which is 0 for the first
layer and grows with depth; with the official zero initialisation of ``Γ`` it equals ``l / L``
(``lower_bound="layer"``, the default).

**Chunked form** (:func:`gla_chunked`, the training path). Inside a chunk with cumulative log decays
``b_t = Σ_{s≤t} log f_s`` (per dimension) and entry state ``S_0``::

    y_t = (q_t ⊙ e^{b_t})ᵀ S_0 + Σ_{i≤t} (Σ_j q_tj k_ij e^{b_tj − b_ij}) i_i
    S_c = diag(e^{b_c}) S_0 + Σ_i (k_i ⊙ e^{b_c − b_i}) i_iᵀ

Every exponent is ``≤ 0`` (pairs ``i > t`` are masked to ``−∞`` before the exponential), so the form is
stable for any decay, unlike the ``q ⊙ e^{b}``, ``k ⊙ e^{−b}`` factorisation. The price is an intra-chunk
tensor of ``c × c × e`` per chunk: time and memory ``O(N c e)`` per head, linear in ``N``; keep
``chunk_size`` small (default 16). :func:`gla_recurrent` is the token-by-token reference.

**Segments** (``segment_size``, default :data:`SEGMENT_SIZE`). In ``mode="chunk"`` the layer runs
segment by segment so that every operand stays cache-sized on CPU: each segment is projected, run
through :func:`gla_chunked` from the previous segment's exit state, normalised and projected on its own.
Only the input and the output span the whole sequence. Results equal the one-pass form up to
floating-point rounding.

**Masks.** Key padding only (see :func:`core.attention.gated_delta.key_padding_mask`): a padded token
has ``k = 0`` and ``f = 1``, so the state passes it unchanged and left/right padding gives the outputs
of the unpadded sequence. Outputs at padded positions are meaningless.

Differences from the official code:

* Plain PyTorch chunked form instead of fla's Triton GLA kernels (GPU only); it trains on CPU.
* The official lower bounds are one ``(num_layers, C)`` parameter owned by the *model* and shared by all
  layers through the softmax-cumsum. A token mixer is built on its own, so here the bound is the fixed
  value that parameterisation takes at initialisation, ``layer_idx / num_layers`` (the same for every
  dimension), or a given constant. It is not learned.
* The paper writes ``y_t = o_t S_t`` with no scale; we apply none either (``scale=1``; fla's kernel
  default is ``e^{-1/2}``). The output RMSNorm makes the scale nearly irrelevant.
* fla offers an optional short convolution (off by default); it is not included.
"""

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.attention.base import TokenMixer, key_padding_mask
from core.attention.gated_delta import check_recurrent_inputs, pad_to_chunks
from core.attention.mha import merge_heads, split_heads
from core.attention.registry import register_mechanism

__all__ = ["HGRN2", "SEGMENT_SIZE", "gla_chunked", "gla_recurrent"]

Mode = Literal["chunk", "recurrent"]
QueryActivation = Literal["swish", "sigmoid"]

#: Tokens per segment of the chunked layer (rounded down to a multiple of ``chunk_size``). The largest
#: per-segment temporary is the stable intra-chunk decay ``(B, H, c, c, e)``, ``c · e`` floats per head and
#: token: 8 KiB per token for B = 2, C = 64, 4 heads, e = 16, c = 16 (fp32), so 256 tokens keep it at
#: 2 MiB (L2 sized) and a segment's working set at a few MiB (inside L3).
SEGMENT_SIZE = 256


def gla_recurrent(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    log_decay: Tensor,
    *,
    scale: float = 1.0,
    initial_state: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Token-by-token gated linear attention: ``S_t = diag(exp(g_t)) S_{t-1} + k_t v_tᵀ``, ``o_t = S_tᵀ q_t``.

    Args:
        q: Queries ``(B, H, N, Dk)``.
        k: Keys ``(B, H, N, Dk)``.
        v: Values ``(B, H, N, Dv)``.
        log_decay: Per-dimension log decays ``g`` ``(B, H, N, Dk)``, ``≤ 0``.
        scale: Query scale.
        initial_state: Optional ``(B, H, Dk, Dv)`` state before the first token.

    Returns:
        Outputs ``(B, H, N, Dv)`` and the final state ``(B, H, Dk, Dv)``.
    """
    check_recurrent_inputs("gla_recurrent", q, k, v, log_decay)
    b, h, n, dk = q.shape
    state = q.new_zeros(b, h, dk, v.shape[-1]) if initial_state is None else initial_state
    outs = []
    for t in range(n):
        state = log_decay[:, :, t, :, None].exp() * state + k[:, :, t, :, None] * v[:, :, t, None, :]
        outs.append(((q[:, :, t] * scale).unsqueeze(-2) @ state).squeeze(-2))
    return torch.stack(outs, dim=2), state


def gla_chunked(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    log_decay: Tensor,
    *,
    chunk_size: int = 16,
    scale: float = 1.0,
    initial_state: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Chunkwise-parallel gated linear attention with per-dimension decay (stable in any decay).

    Same arguments and results as :func:`gla_recurrent`; ``N`` need not be a multiple of
    ``chunk_size`` (the tail is zero-padded with ``k = 0``, ``g = 0``).

    Raises:
        ValueError: For mismatched shapes or ``chunk_size < 1``.
    """
    check_recurrent_inputs("gla_chunked", q, k, v, log_decay)
    if log_decay.shape != k.shape:
        raise ValueError(f"gla_chunked: log_decay must be shaped like k, got {tuple(log_decay.shape)}")
    if chunk_size < 1:
        raise ValueError(f"gla_chunked: chunk_size must be positive, got {chunk_size}")
    b, h, n, dk = q.shape
    dv = v.shape[-1]
    c = min(chunk_size, n)
    qc, kc, vc, gc = (pad_to_chunks(t, c) for t in (q * scale, k, v, log_decay))  # (B, H, nc, c, D)
    cum = gc.cumsum(-2)
    incl = torch.ones(c, c, dtype=torch.bool, device=q.device).tril().unsqueeze(-1)
    pair_decay = (cum.unsqueeze(-2) - cum.unsqueeze(-3)).masked_fill(~incl, float("-inf")).exp()
    scores = torch.einsum("...td,...id,...tid->...ti", qc, kc, pair_decay)  # (B, H, nc, c, c)
    q_decayed = qc * cum.exp()
    k_decayed = kc * (cum[..., -1:, :] - cum).exp()
    chunk_decay = cum[..., -1, :].exp().unsqueeze(-1)  # (B, H, nc, Dk, 1)
    state = q.new_zeros(b, h, dk, dv) if initial_state is None else initial_state
    outs = []
    per_chunk = (t.unbind(2) for t in (q_decayed, scores, vc, k_decayed, chunk_decay))  # see gated_delta
    for q_i, scores_i, v_i, k_i, decay_i in zip(*per_chunk, strict=True):
        outs.append(q_i @ state + scores_i @ v_i)
        state = decay_i * state + k_i.transpose(-1, -2) @ v_i
    out = torch.stack(outs, dim=2).reshape(b, h, -1, dv)[:, :, :n]
    return out, state


@register_mechanism(
    paper="Qin et al. 2024, HGRN2: Gated Linear RNNs with State Expansion",
    complexity="O(N d^2)",
    example_kwargs={"num_heads": 2, "chunk_size": 4},
)
class HGRN2(TokenMixer):
    """HGRN2 token mixer (causal only: it is a recurrent model).

    Args:
        dim: Channel dimension ``C``; must be divisible by ``num_heads``.
        num_heads: Number of heads ``H``; the input (value) width per head is ``C / H``.
        expand_ratio: State expansion ``e`` (rows of each head's state, width of q and f); defaults to
            ``C / H`` (official: 128 with ``H = C / 128``, i.e. square states).
        lower_bound: Forget-gate lower bound ``λ``: ``"layer"`` for ``layer_idx / num_layers`` (0 in the
            first layer, growing with depth), a constant in ``[0, 1)``, or None for 0.
        q_activation: Activation of the output gate / query (official: ``swish``).
        scale: Query scale (paper: 1).
        chunk_size: Tokens per chunk of the chunked form.
        mode: ``chunk`` (parallel, trainable) or ``recurrent`` (the token-by-token reference).
        norm_eps: Epsilon of the output RMSNorm.
        segment_size: Tokens per segment of the chunked form (see the module doc); it changes speed,
            not results.
        layer_idx: Index of the owning layer.
        num_layers: Depth of the owning stack.
    """

    paths = "chunked PyTorch (CPU + GPU); no fused Triton kernel"

    supports_mask = True
    supports_causal = True
    causal_only = True

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int = 4,
        expand_ratio: int | None = None,
        lower_bound: Literal["layer"] | float | None = "layer",
        q_activation: QueryActivation = "swish",
        scale: float = 1.0,
        chunk_size: int = 16,
        mode: Mode = "chunk",
        norm_eps: float = 1e-5,
        segment_size: int = SEGMENT_SIZE,
        layer_idx: int = 0,
        num_layers: int = 1,
    ) -> None:
        super().__init__(dim, layer_idx=layer_idx, num_layers=num_layers)
        if segment_size < 1:
            raise ValueError(f"HGRN2: segment_size must be positive, got {segment_size}")
        if num_heads < 1 or dim % num_heads:
            raise ValueError(f"HGRN2: dim={dim} must be divisible by num_heads={num_heads}")
        expand_ratio = dim // num_heads if expand_ratio is None else expand_ratio
        if expand_ratio < 1:
            raise ValueError(f"HGRN2: expand_ratio must be positive, got {expand_ratio}")
        if lower_bound == "layer":
            bound = layer_idx / num_layers
        elif lower_bound is None:
            bound = 0.0
        elif isinstance(lower_bound, int | float) and 0.0 <= lower_bound < 1.0:
            bound = float(lower_bound)
        else:
            raise ValueError(
                f"HGRN2: lower_bound must be 'layer', None or a float in [0, 1), got {lower_bound!r}"
            )
        if q_activation not in ("swish", "sigmoid"):
            raise ValueError(f"HGRN2: q_activation must be 'swish' or 'sigmoid', got {q_activation!r}")
        if mode not in ("chunk", "recurrent"):
            raise ValueError(f"HGRN2: mode must be 'chunk' or 'recurrent', got {mode!r}")
        if chunk_size < 1:
            raise ValueError(f"HGRN2: chunk_size must be positive, got {chunk_size}")
        self.num_heads, self.expand_ratio, self.lower_bound = num_heads, expand_ratio, bound
        self.q_activation: QueryActivation = q_activation
        self.scale, self.chunk_size, self.segment_size = scale, chunk_size, segment_size
        self.mode: Mode = mode
        forget_dim = num_heads * expand_ratio
        self.q_proj = nn.Linear(dim, forget_dim, bias=False)
        self.f_proj = nn.Linear(dim, forget_dim, bias=False)
        self.i_proj = nn.Linear(dim, dim, bias=False)
        self.g_norm = nn.RMSNorm(dim, eps=norm_eps)
        self.o_proj = nn.Linear(dim, dim, bias=False)

    def gates(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Key ``k = 1 − f`` and log forget gate ``log f``, each ``(B, N, H · e)``, in stable forms."""
        z = self.f_proj(x)
        lam = self.lower_bound
        if lam == 0.0:
            return torch.sigmoid(-z), F.logsigmoid(z)
        return (1.0 - lam) * torch.sigmoid(-z), torch.log(lam + (1.0 - lam) * torch.sigmoid(z))

    def mix(
        self,
        x: Tensor,
        *,
        grid: Sequence[int] | None,
        mask: Tensor | None,
        is_causal: bool,
        context: Tensor | None,
    ) -> Tensor:
        """Gates, the per-head expanded-state recurrence, RMSNorm and the output projection."""
        b, n, _ = x.shape
        valid = key_padding_mask(mask, b, n, "HGRN2")
        if self.mode == "recurrent":
            o, _ = gla_recurrent(*self._inputs(x, valid), scale=self.scale)
            return self.o_proj(self.g_norm(merge_heads(o)))
        # Chunked: segment by segment (see the module doc). Split once; per-segment projections.
        seg = max(1, self.segment_size // self.chunk_size) * self.chunk_size
        xs = x.split(seg, dim=1)
        masks = valid.split(seg, dim=1) if valid is not None else [None] * len(xs)
        outs, state = [], None
        for x_s, m_s in zip(xs, masks, strict=True):
            o, state = gla_chunked(
                *self._inputs(x_s, m_s), chunk_size=self.chunk_size, scale=self.scale, initial_state=state
            )
            outs.append(self.o_proj(self.g_norm(merge_heads(o))))
        return torch.cat(outs, dim=1)

    def _inputs(self, x: Tensor, valid: Tensor | None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Per-head query, key, value and log forget gate of a segment, each ``(B, H, N, ·)``."""
        q = self.q_proj(x)
        q = F.silu(q) if self.q_activation == "swish" else torch.sigmoid(q)
        k, log_f = self.gates(x)
        if valid is not None:
            keep = valid.unsqueeze(-1).to(k.dtype)
            k, log_f = k * keep, log_f * keep  # padded tokens: f = 1, k = 0, the state is untouched
        q, k, log_f, v = (split_heads(t, self.num_heads) for t in (q, k, log_f, self.i_proj(x)))
        return q, k, v, log_f

    def extra_repr(self) -> str:
        """Add heads, expansion, lower bound and mode to the default representation."""
        return (
            f"{super().extra_repr()}, num_heads={self.num_heads}, expand_ratio={self.expand_ratio}, "
            f"lower_bound={self.lower_bound:.3g}, chunk_size={self.chunk_size}, "
            f"segment_size={self.segment_size}, mode={self.mode}"
        )
