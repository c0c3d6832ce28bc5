"""Linear attention ("Transformers are RNNs") and the shared chunked linear-attention kernel.

Paper: Katharopoulos, Vyas, Pappas, Fleuret, "Transformers are RNNs: Fast Autoregressive Transformers with
Linear Attention", ICML 2020 (arXiv 2006.16236). Official code: ``idiap/fast-transformers``
(``attention/linear_attention.py``, ``causal_linear_attention.py``); not read in this session, the
equations below are the paper's.

**Kernelised attention.** With a feature map ``φ`` (``elu(x) + 1`` in the paper) the softmax kernel is
replaced by ``φ(q_i)ᵀ φ(k_j)``, so per head::

    out_i = φ(q_i)ᵀ Σ_j φ(k_j) v_jᵀ  /  φ(q_i)ᵀ Σ_j φ(k_j)                         (non-causal)
    S_i = S_{i-1} + φ(k_i) v_iᵀ,  z_i = z_{i-1} + φ(k_i),  out_i = φ(q_i)ᵀ S_i / φ(q_i)ᵀ z_i   (causal)

computed right-to-left in ``O(N D Dv)``; the causal form is an RNN with a ``D × Dv`` matrix state.

**Normalisation** (``normalization``). ``"denominator"`` is the paper's. As in
:func:`core.attention.care.linear_attention` the ``ε`` guard is relative to the mean key:
``out_i = num_i / (den_i + ε · max(n_i, 1))`` with ``n_i`` the number of keys query ``i`` attends, i.e.
``(num_i / n_i) / (den_i / n_i + ε)``; a query with no key gets zeros. ``"layernorm"`` and ``"rmsnorm"``
drop the denominator and normalise the concatenated head outputs instead: TransNormer's *NormAttention*
(Qin et al., "The Devil in Linear Transformer", EMNLP 2022), ``O = Norm(φ(Q) (φ(K)ᵀ V))``, which avoids the
unbounded gradients of a small denominator.

**Feature maps** (``feature_map``). The denominator is only a valid normaliser when ``φ(q)ᵀ φ(k) >= 0``, so
``"denominator"`` accepts the non-negative maps ``"elu"`` (``elu(x) + 1``, the paper's, default) and
``"relu"``. The norm variants also accept ``"silu"`` (TransNormerLLM's ``φ``) and ``"identity"``.

**Chunked causal form** (:func:`linear_attention_chunked`, the training path). Tokens are cut into chunks
of ``c``. With the state ``(S, z)`` after the previous chunk, chunk ``Q_c, K_c, V_c`` gives::

    num = (Q_c K_cᵀ ⊙ M) V_c + Q_c S,      den = (Q_c K_cᵀ ⊙ M) 1 + Q_c z,
    S ← S + K_cᵀ V_c,                      z ← z + K_cᵀ 1

with ``M`` the lower-triangular ``c × c`` mask: a masked quadratic product inside the chunk and the
carried state between chunks. An optional per-head decay ``λ_h = exp(-a_h)`` (used by
:mod:`core.attention.lightning`) turns ``M`` into ``M_ts = λ^{t-s}`` (``s <= t``), scales ``Q_c S`` by
``λ^{t+1}`` and the state update by ``λ^{c-1-s}`` and ``λ^c``. Work is ``O(N c D + N D Dv)``, memory
``O(N c)`` for the intra-chunk scores plus one ``D × Dv`` state per chunk kept for the backward pass: no
``(N, N)`` tensor and no prefix sum over ``(N, D, Dv)``. The last chunk may be shorter (``N`` need not be
a multiple of ``c``). :func:`linear_attention_recurrent` is the token-by-token reference
(``mode="recurrent"``).

**Masks.** Only key padding (``(B, N)``, or a mask broadcasting as ``(B | 1, 1, 1, N)``): padded keys are
zeroed after the feature map, so they add nothing to any sum. Outputs at padded positions are computed
but meaningless.

Differences from the official code:

* fast-transformers adds ``ε`` to the summed denominator; ours is relative to the mean key (see above),
  which makes ``ε`` independent of the sequence length. Same results up to ``ε``.
* Its causal path is a custom CUDA/CPU prefix-sum kernel; ours is the chunked PyTorch form above (CPU and
  GPU alike, autograd for the backward pass).
* The paper has no output normalisation; ``"layernorm"`` / ``"rmsnorm"`` are TransNormer's alternative.
* Projections have no bias by default (``qkv_bias``) and the output projection has one, like
  :class:`~core.attention.mha.MultiHeadAttention` defaults elsewhere in the library.
"""

from collections.abc import Callable, Sequence
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.attention.base import TokenMixer, key_padding_mask
from core.attention.care import feature_map_fn
from core.attention.mha import merge_heads, split_heads
from core.attention.registry import register_mechanism

__all__ = [
    "GROUP_CHUNKS",
    "SEGMENT_SIZE",
    "LinearAttention",
    "LinearFeatureMap",
    "Normalization",
    "linear_attention_chunked",
    "linear_attention_recurrent",
    "linear_feature_map",
    "linear_scan_chunked",
    "segment_tokens",
    "split_segments",
]

LinearFeatureMap = Literal["elu", "relu", "silu", "identity"]
Normalization = Literal["denominator", "layernorm", "rmsnorm"]
Mode = Literal["chunk", "recurrent"]

POSITIVE_MAPS = ("elu", "relu")


def linear_feature_map(name: LinearFeatureMap) -> Callable[[Tensor], Tensor]:
    """``φ`` by name: ``elu`` (``elu(x) + 1``) and ``relu`` (CARE's helper), ``silu``, ``identity``."""
    if name == "silu":
        return F.silu
    if name == "identity":
        return lambda t: t
    if name in POSITIVE_MAPS:
        return feature_map_fn(name)
    raise ValueError(f"feature_map must be one of elu, relu, silu, identity; got {name!r}")


def _check(owner: str, q: Tensor, k: Tensor, v: Tensor, causal: bool, key_mask: Tensor | None) -> None:
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4 or k.shape[:3] != v.shape[:3] or q.shape[:2] != k.shape[:2]:
        raise ValueError(
            f"{owner}: expected q (B, H, N, D), k (B, H, M, D), v (B, H, M, Dv), got "
            f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"{owner}: q and k must share D, got {q.shape[-1]} and {k.shape[-1]}")
    if causal and q.shape[2] != k.shape[2]:
        raise ValueError(f"{owner}: causal needs as many queries as keys, got N={q.shape[2]}, M={k.shape[2]}")
    b, m = k.shape[0], k.shape[2]
    if key_mask is not None and (key_mask.dtype != torch.bool or key_mask.shape != (b, m)):
        raise ValueError(
            f"{owner}: key_mask must be boolean of shape ({b}, {m}), "
            f"got {key_mask.dtype} {tuple(key_mask.shape)}"
        )


def _decay_rates(owner: str, log_decay: Tensor | None, heads: int, causal: bool) -> Tensor | None:
    if log_decay is None:
        return None
    if not causal:
        raise ValueError(f"{owner}: log_decay (a decay over positions) needs causal=True")
    if log_decay.shape != (heads,):
        raise ValueError(f"{owner}: log_decay must have shape ({heads},), got {tuple(log_decay.shape)}")
    return log_decay


def _mask_keys(k: Tensor, key_mask: Tensor | None) -> tuple[Tensor, Tensor]:
    """Zero padded keys; return them and the ``(B | 1, 1, M, 1)`` validity as a float."""
    if key_mask is None:
        return k, k.new_ones(1, 1, k.shape[2], 1)
    valid = key_mask[:, None, :, None].to(k.dtype)
    return k * valid, valid


#: Tokens per segment of the chunked linear layers on CPU (:class:`LinearAttention`,
#: :class:`~core.attention.lightning.LightningAttention`). A segment's largest activations, the q/k/v
#: projection and the block scores, take about ``B · 4C · 4`` bytes per token: 2 MiB for B = 2, C = 64
#: (fp32), so a segment's working set stays in the L2/L3 caches while 64k tokens cost 32 iterations.
SEGMENT_SIZE = 2048


def segment_tokens(segment_size: int | None, chunk_size: int, length: int, device: torch.device) -> int:
    """Tokens per segment of a chunked layer: ``segment_size`` rounded down to a multiple of the chunk.

    ``None`` means :data:`SEGMENT_SIZE` on CPU and the whole sequence on other devices, where memory
    bandwidth does not depend on cache-sized operands and every segment costs kernel launches.
    """
    if segment_size is None:
        if device.type != "cpu":
            return max(length, 1)
        segment_size = SEGMENT_SIZE
    return max(1, segment_size // chunk_size) * chunk_size


def split_segments(x: Tensor, valid: Tensor | None, size: int) -> list[tuple[Tensor, Tensor | None]]:
    """``(x_s, valid_s)`` per segment of ``size`` tokens (the last may be shorter), split once.

    Split once rather than sliced in a loop: slicing a full tensor inside the loop would make autograd
    build a full-size gradient per slice.
    """
    xs = x.split(size, dim=1)
    masks = valid.split(size, dim=1) if valid is not None else [None] * len(xs)
    return list(zip(xs, masks, strict=True))


#: Chunks handled together by one vectorised step of the causal form, per device type. On CPU 32 chunks
#: (2,048 tokens at c = 64) keep the step's tensors cache-sized; on CUDA 256 chunks amortise kernel
#: launches (a step is about fifteen kernels) while the ``m × m`` chunk-decay product stays small.
GROUP_CHUNKS: dict[str, int] = {"cpu": 32, "cuda": 256}


class _GroupFactors(NamedTuple):
    """Constants of a group of ``m`` chunks of length ``c``: built once per call, shared by its groups."""

    intra: Tensor  # (c, c) causal mask, or (H, 1, c, c) with λ^{t-s} for s <= t
    q_decay: Tensor | None  # (H, 1, c, 1): λ^{t+1}
    k_decay: Tensor | None  # (H, 1, c, 1): λ^{c-1-s}
    prefix: Tensor | None  # (H, m, m): λ^{c(j-1-i)} for i < j, else 0
    carry: Tensor | None  # (H, m + 1): λ^{c j}
    last: Tensor | None  # (H, m): λ^{c(m-1-i)}


def _group_factors(c: int, m: int, rates: Tensor | None, like: Tensor) -> _GroupFactors:
    """The masks and decay powers of :func:`_chunk_group` (no decay: just the causal mask)."""
    pos = torch.arange(c, device=like.device)
    diff = (pos[:, None] - pos[None, :]).to(like.dtype)  # t - s
    if rates is None:
        return _GroupFactors((diff >= 0).to(like.dtype), None, None, None, None, None)
    a = rates.to(like.dtype)
    a4 = a[:, None, None, None]  # (H, 1, 1, 1)
    intra = torch.exp(torch.where(diff >= 0, -a4 * diff, float("-inf")))
    q_decay = torch.exp(-a4 * (pos + 1).to(like.dtype)[:, None])
    k_decay = torch.exp(-a4 * (c - 1 - pos).to(like.dtype)[:, None])
    chunk_decay = (a * c)[:, None]  # (H, 1)
    steps = torch.arange(m + 1, device=like.device, dtype=like.dtype)
    gap = steps[:m, None] - 1 - steps[None, :m]  # j - 1 - i
    prefix = torch.exp(torch.where(gap >= 0, -chunk_decay[..., None] * gap, float("-inf")))
    carry = torch.exp(-chunk_decay * steps)
    last = torch.exp(-chunk_decay * (m - 1 - steps[:m]))
    return _GroupFactors(intra, q_decay, k_decay, prefix, carry, last)


def _prefix_states(kv: Tensor, entry: Tensor, f: _GroupFactors) -> tuple[Tensor, Tensor]:
    """States before each chunk and after the last: ``S_j = λ^{c j} S_0 + Σ_{i<j} λ^{c(j-1-i)} kv_i``.

    Args:
        kv: Per-chunk contributions ``(B, H, m, D, E)``.
        entry: ``S_0`` ``(B, H, D, E)``.
        f: The group's factors; without decay the prefix is an exclusive cumulative sum.

    Returns:
        ``(B, H, m, D, E)`` entry states of the chunks and the ``(B, H, D, E)`` exit state.
    """
    if f.prefix is None or f.carry is None or f.last is None:
        inclusive = kv.cumsum(dim=2)
        before = torch.cat([torch.zeros_like(kv[:, :, :1]), inclusive[:, :, :-1]], dim=2)
        return before + entry[:, :, None], inclusive[:, :, -1] + entry
    m = kv.shape[2]
    flat = kv.flatten(3)  # (B, H, m, D·E)
    before = (f.prefix @ flat).view_as(kv) + f.carry[:, :m, None, None] * entry[:, :, None]
    exit_state = (f.last[..., None] * flat).sum(dim=2).view_as(entry) + f.carry[:, m, None, None] * entry
    return before, exit_state


def _chunk_group(
    q: Tensor, k: Tensor, v: Tensor, c: int, f: _GroupFactors, state: Tensor, z: Tensor | None
) -> tuple[tuple[Tensor, Tensor | None], Tensor, Tensor | None]:
    """``m`` whole chunks of the causal form at once (their length is a multiple of ``c``).

    The same equations as a loop over chunks, vectorised: the intra-chunk products for all chunks in one
    batched matmul, the per-chunk state contributions ``K_cᵀ V_c``, their (decayed) exclusive prefix
    (:func:`_prefix_states`), and the inter-chunk term ``Q_c S_j`` in one more matmul.
    """
    b, h, n, _ = q.shape
    qs, ks, vs = (t.reshape(b, h, n // c, c, t.shape[-1]) for t in (q, k, v))
    q_in = qs if f.q_decay is None else qs * f.q_decay
    k_w = ks if f.k_decay is None else ks * f.k_decay
    scores = (qs @ ks.transpose(-2, -1)) * f.intra
    k_t = k_w.transpose(-2, -1)  # (B, H, m, D, c)
    before, state = _prefix_states(k_t @ vs, state, f)
    num = (scores @ vs + q_in @ before).reshape(b, h, n, -1)
    den = None
    if z is not None:
        z_before, z = _prefix_states(k_t.sum(dim=-1, keepdim=True), z, f)
        den = (scores.sum(dim=-1, keepdim=True) + q_in @ z_before).reshape(b, h, n, 1)
    return (num, den), state, z


def _causal_chunks(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    chunk_size: int,
    rates: Tensor | None,
    state: Tensor,
    z: Tensor | None,
    group_chunks: int | None = None,
) -> tuple[list[tuple[Tensor, Tensor | None]], Tensor, Tensor | None]:
    """The causal form from the entry state ``(S, z)`` (``z`` None: no denominator), in chunk groups.

    Whole chunks run :func:`_chunk_group` ``group_chunks`` at a time (default :data:`GROUP_CHUNKS` for
    the device), carrying the state from group to group; a last chunk shorter than ``c`` runs alone.
    Returns the per-group ``(num, den)`` (``den`` None without ``z``) and the exit state ``(S, z)``.
    """
    n = q.shape[2]
    c = min(chunk_size, n)
    group = c * (group_chunks or GROUP_CHUNKS.get(q.device.type, GROUP_CHUNKS["cpu"]))
    whole = n - n % c
    sizes = [min(group, whole - start) for start in range(0, whole, group)] + ([n % c] if n % c else [])
    factors: dict[tuple[int, int], _GroupFactors] = {}
    outs: list[tuple[Tensor, Tensor | None]] = []
    # Split once: slicing inside the loop would make autograd build a full-size gradient per group, which
    # turns the backward pass quadratic in N.
    for qg, kg, vg in zip(*(t.split(sizes, dim=2) for t in (q, k, v)), strict=True):
        length = min(c, qg.shape[2])
        key = (length, qg.shape[2] // length)
        if key not in factors:
            factors[key] = _group_factors(*key, rates, q)
        out, state, z = _chunk_group(qg, kg, vg, length, factors[key], state, z)
        outs.append(out)
    return outs, state, z


def linear_scan_chunked(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    chunk_size: int = 64,
    log_decay: Tensor | None = None,
    initial_state: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Unnormalised causal (decayed) linear attention continuing from a state, in chunks.

    ``o_t = λ^{t+1} q_tᵀ S_0 + Σ_{s<=t} λ^{t-s} (q_t · k_s) v_s`` (``λ = 1`` without ``log_decay``) and the
    exit state ``S = λ^N S_0 + Σ_s λ^{N-1-s} k_s v_sᵀ``: the chunked form of
    :func:`linear_attention_chunked` (``causal=True, normalize=False``) with an entry and an exit state,
    so a long sequence can be run segment by segment. Padded keys must already be zeroed.

    Args:
        q: Queries ``(B, H, N, D)``.
        k: Keys ``(B, H, N, D)``.
        v: Values ``(B, H, N, Dv)``.
        chunk_size: Chunk length ``c``.
        log_decay: Optional per-head decay rates ``a_h >= 0`` ``(H,)``.
        initial_state: State ``S_0`` ``(B, H, D, Dv)`` before the first token; zeros when None.

    Returns:
        Outputs ``(B, H, N, Dv)`` and the exit state ``(B, H, D, Dv)``.

    Raises:
        ValueError: On mismatched shapes or ``chunk_size < 1``.
    """
    owner = "linear_scan_chunked"
    _check(owner, q, k, v, True, None)
    if chunk_size < 1:
        raise ValueError(f"{owner}: chunk_size must be positive, got {chunk_size}")
    rates = _decay_rates(owner, log_decay, q.shape[1], True)
    b, h, _, d = q.shape
    state = q.new_zeros(b, h, d, v.shape[-1]) if initial_state is None else initial_state
    outs, state, _ = _causal_chunks(q, k, v, chunk_size, rates, state, None)
    return torch.cat([o[0] for o in outs], dim=2), state


def linear_attention_chunked(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    causal: bool = False,
    chunk_size: int = 64,
    log_decay: Tensor | None = None,
    normalize: bool = True,
    eps: float = 1e-6,
    key_mask: Tensor | None = None,
) -> Tensor:
    """Linear attention on feature-mapped ``(B, H, N, D)`` tensors; causal via the chunked form.

    Args:
        q: Query features ``φ(q)`` ``(B, H, N, D)`` (the feature map is not applied here).
        k: Key features ``φ(k)`` ``(B, H, M, D)``.
        v: Values ``(B, H, M, Dv)``.
        causal: Query ``i`` attends keys ``j <= i`` (needs ``N == M``).
        chunk_size: Chunk length ``c`` of the causal form.
        log_decay: Optional per-head decay rates ``a_h >= 0`` ``(H,)``; key ``j`` is weighted by
            ``exp(-a_h (i - j))`` for query ``i``. Causal only.
        normalize: Divide by the kernel sum (``num / (den + ε · max(n_i, 1))``); False returns ``num``.
        eps: Relative guard of the denominator.
        key_mask: Optional boolean key padding ``(B, M)``, True = real token.

    Returns:
        ``(B, H, N, Dv)``.

    Raises:
        ValueError: On mismatched shapes, a bad mask, ``chunk_size < 1`` or a decay without ``causal``.
    """
    owner = "linear_attention_chunked"
    _check(owner, q, k, v, causal, key_mask)
    if chunk_size < 1:
        raise ValueError(f"{owner}: chunk_size must be positive, got {chunk_size}")
    rates = _decay_rates(owner, log_decay, q.shape[1], causal)
    k, valid = _mask_keys(k, key_mask)
    if not causal:
        num = q @ (k.transpose(-2, -1) @ v)
        if not normalize:
            return num
        den = q @ k.sum(dim=2).unsqueeze(-1)  # (B, H, N, 1)
        count = valid.sum(dim=2, keepdim=True).clamp_min(1.0)
        return num / (den + eps * count)
    state = q.new_zeros(q.shape[0], q.shape[1], q.shape[-1], v.shape[-1])
    z = q.new_zeros(q.shape[0], q.shape[1], q.shape[-1], 1) if normalize else None
    outs, _, _ = _causal_chunks(q, k, v, chunk_size, rates, state, z)
    num = torch.cat([o[0] for o in outs], dim=2)
    if not normalize:
        return num
    den = torch.cat([o[1] for o in outs], dim=2)
    count = valid.cumsum(dim=2).clamp_min(1.0)
    return num / (den + eps * count)


def linear_attention_recurrent(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    log_decay: Tensor | None = None,
    normalize: bool = True,
    eps: float = 1e-6,
    key_mask: Tensor | None = None,
) -> Tensor:
    """Causal reference per token: ``S_t = λ S_{t-1} + φ(k_t) v_tᵀ``, ``out_t = φ(q_t)ᵀ S_t / φ(q_t)ᵀ z_t``.

    Same arguments and result as :func:`linear_attention_chunked` with ``causal=True``; ``λ = 1`` without
    ``log_decay``. Slow (one step per token); for tests and debugging.
    """
    owner = "linear_attention_recurrent"
    _check(owner, q, k, v, True, key_mask)
    rates = _decay_rates(owner, log_decay, q.shape[1], True)
    k, valid = _mask_keys(k, key_mask)
    b, h, n, d = q.shape
    lam = None if rates is None else torch.exp(-rates.to(q.dtype))[:, None, None]  # (H, 1, 1)
    state = q.new_zeros(b, h, d, v.shape[-1])
    z = q.new_zeros(b, h, d, 1)
    outs = []
    count = valid.cumsum(dim=2).clamp_min(1.0)
    for t in range(n):
        kt, vt, qt = k[:, :, t, :, None], v[:, :, t, None, :], q[:, :, t, None, :]
        state = (state if lam is None else lam * state) + kt @ vt
        z = (z if lam is None else lam * z) + kt
        num = qt @ state  # (B, H, 1, Dv)
        if normalize:
            num = num / (qt @ z + eps * count[:, :, t, None])
        outs.append(num)
    return torch.cat(outs, dim=2)


@register_mechanism(
    paper="Katharopoulos et al. 2020, Transformers are RNNs: Fast Autoregressive Transformers with Linear "
    "Attention",
    complexity="O(N d^2)",
    example_kwargs={"num_heads": 2, "chunk_size": 4},
)
class LinearAttention(TokenMixer):
    """Multi-head kernelised linear attention, non-causal ``O(N d²)`` or causal in chunks.

    Args:
        dim: Channel dimension ``C``; must be divisible by ``num_heads``.
        num_heads: Number of heads; head size ``C / num_heads``.
        feature_map: ``elu`` (``elu(x) + 1``, the paper's), ``relu``; with a norm also ``silu``,
            ``identity``.
        normalization: ``denominator`` (the paper's), or ``layernorm`` / ``rmsnorm`` on the concatenated
            head outputs without a denominator (TransNormer's NormAttention).
        chunk_size: Chunk length of the causal chunked form.
        mode: ``chunk`` (parallel, trainable) or ``recurrent`` (token-by-token reference; causal only,
            the non-causal form has no recurrence and is the same in both modes).
        qkv_bias: Bias of the q/k/v projection.
        proj_bias: Bias of the output projection.
        eps: Relative guard of the denominator.
        segment_size: Tokens per segment of the chunked form (``None``: :data:`SEGMENT_SIZE` on CPU, the
            whole sequence on GPU; see :func:`segment_tokens`); it changes speed, not results.
        layer_idx: Index of the owning layer.
        num_layers: Depth of the owning stack.
    """

    paths = "chunked PyTorch (CPU + GPU); no fused Triton kernel"

    supports_mask = True
    supports_causal = True

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int = 4,
        feature_map: LinearFeatureMap = "elu",
        normalization: Normalization = "denominator",
        chunk_size: int = 64,
        mode: Mode = "chunk",
        qkv_bias: bool = False,
        proj_bias: bool = True,
        eps: float = 1e-6,
        segment_size: int | None = None,
        layer_idx: int = 0,
        num_layers: int = 1,
    ) -> None:
        super().__init__(dim, layer_idx=layer_idx, num_layers=num_layers)
        if num_heads < 1 or dim % num_heads:
            raise ValueError(f"LinearAttention: dim={dim} must be divisible by num_heads={num_heads}")
        if segment_size is not None and segment_size < 1:
            raise ValueError(f"LinearAttention: segment_size must be positive or None, got {segment_size}")
        if normalization not in ("denominator", "layernorm", "rmsnorm"):
            raise ValueError(
                "LinearAttention: normalization must be denominator, layernorm or rmsnorm, "
                f"got {normalization!r}"
            )
        linear_feature_map(feature_map)
        if normalization == "denominator" and feature_map not in POSITIVE_MAPS:
            raise ValueError(
                f"LinearAttention: feature_map={feature_map!r} can be negative, so the denominator is no "
                "normaliser; use elu or relu, or normalization='layernorm' / 'rmsnorm'"
            )
        if chunk_size < 1:
            raise ValueError(f"LinearAttention: chunk_size must be positive, got {chunk_size}")
        if mode not in ("chunk", "recurrent"):
            raise ValueError(f"LinearAttention: mode must be 'chunk' or 'recurrent', got {mode!r}")
        self.num_heads = num_heads
        self.feature_map: LinearFeatureMap = feature_map
        self.normalization: Normalization = normalization
        self.chunk_size = chunk_size
        self.mode: Mode = mode
        self.eps = eps
        self.segment_size = segment_size
        self.phi = linear_feature_map(feature_map)
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        if normalization == "layernorm":
            self.norm: nn.Module = nn.LayerNorm(dim)
        elif normalization == "rmsnorm":
            self.norm = nn.RMSNorm(dim)
        else:
            self.norm = nn.Identity()
        self.proj = nn.Linear(dim, dim, bias=proj_bias)

    def mix(
        self,
        x: Tensor,
        *,
        grid: Sequence[int] | None,
        mask: Tensor | None,
        is_causal: bool,
        context: Tensor | None,
    ) -> Tensor:
        """Project, apply ``φ``, attend linearly per head, normalise and project back.

        The chunked form runs segment by segment (:func:`segment_tokens`): each segment is projected on
        its own; causal calls carry ``(S, z)`` and the key count from segment to segment, non-causal
        calls sum ``Σ φ(k) vᵀ``, ``Σ φ(k)`` and the count in a first pass and read them in a second.
        """
        b, n, _ = x.shape
        valid = key_padding_mask(mask, b, n, "LinearAttention")
        if is_causal and self.mode == "recurrent":
            q, k, v = self._qkv(x)
            out = linear_attention_recurrent(
                q, k, v, normalize=self.normalization == "denominator", eps=self.eps, key_mask=valid
            )
            return self.proj(self.norm(merge_heads(out)))
        parts = []
        for x_s, m_s in split_segments(
            x, valid, segment_tokens(self.segment_size, self.chunk_size, n, x.device)
        ):
            q, k, v = self._qkv(x_s)
            k, keep = _mask_keys(k, m_s)
            parts.append((q, k, v, keep))
        nums, dens, counts = self._causal(parts) if is_causal else self._global(parts)
        outs = []
        for num, den, count in zip(nums, dens, counts, strict=True):
            out = num if den is None else num / (den + self.eps * count.clamp_min(1.0))
            outs.append(self.proj(self.norm(merge_heads(out))))
        return torch.cat(outs, dim=1)

    def _qkv(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``φ(W_q x), φ(W_k x), W_v x`` split into heads, each ``(B, H, N, D)``."""
        q, k, v = (split_heads(t, self.num_heads) for t in self.qkv(x).chunk(3, dim=-1))
        return self.phi(q), self.phi(k), v

    def _causal(self, parts: list) -> tuple[list, list, list]:
        """Per segment ``num``, ``den`` (None without a denominator) and the keys seen so far."""
        q0, _, v0, _ = parts[0]
        b, h, _, d = q0.shape
        state = q0.new_zeros(b, h, d, v0.shape[-1])
        z = q0.new_zeros(b, h, d, 1) if self.normalization == "denominator" else None
        seen: Tensor | float = 0.0
        nums, dens, counts = [], [], []
        for q, k, v, keep in parts:
            outs, state, z = _causal_chunks(q, k, v, self.chunk_size, None, state, z)
            nums.append(torch.cat([o[0] for o in outs], dim=2))
            dens.append(None if z is None else torch.cat([o[1] for o in outs], dim=2))
            counts.append(seen + keep.cumsum(dim=2))
            seen = counts[-1][:, :, -1:]
        return nums, dens, counts

    def _global(self, parts: list) -> tuple[list, list, list]:
        """Non-causal: every query reads ``Σ φ(k) vᵀ`` and ``Σ φ(k)`` over all segments."""
        kv = sum(k.transpose(-2, -1) @ v for _, k, v, _ in parts)
        nums = [q @ kv for q, _, _, _ in parts]
        if self.normalization != "denominator":
            return nums, [None] * len(parts), [None] * len(parts)
        ksum = sum(k.sum(dim=2).unsqueeze(-1) for _, k, _, _ in parts)
        count = sum(keep.sum(dim=2, keepdim=True) for *_, keep in parts)
        return nums, [q @ ksum for q, _, _, _ in parts], [count] * len(parts)

    def extra_repr(self) -> str:
        """Add heads, feature map, normalisation, chunk size and mode to the default representation."""
        return (
            f"{super().extra_repr()}, num_heads={self.num_heads}, feature_map={self.feature_map}, "
            f"segment_size={self.segment_size}, "
            f"normalization={self.normalization}, chunk_size={self.chunk_size}, mode={self.mode}"
        )
