"""LinearAttention and the chunked linear-attention kernel against literal float64 references.

Tolerances as in test_attention.py: forward atol 1e-5 / rtol 1e-4, gradients atol 1e-4 / rtol 1e-3 (fp32
implementation vs fp64 reference); fp64 implementation vs fp64 reference: atol 1e-10.
"""

import copy

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from core.attention import linear as linear_module
from core.attention.care import linear_attention
from core.attention.linear import (
    SEGMENT_SIZE,
    LinearAttention,
    linear_attention_chunked,
    linear_attention_recurrent,
    linear_scan_chunked,
    segment_tokens,
)
from tests.core.reference_check import assert_segments_match

FWD = {"atol": 1e-5, "rtol": 1e-4}
GRAD = {"atol": 1e-4, "rtol": 1e-3}
EXACT = {"atol": 1e-10, "rtol": 1e-10}


def phi(t, name="elu"):
    return {
        "elu": lambda: torch.nn.functional.elu(t) + 1,
        "relu": lambda: torch.relu(t),
        "silu": lambda: torch.nn.functional.silu(t),
        "identity": lambda: t,
    }[name]()


def literal_linear(q, k, v, causal=False, key_mask=None, log_decay=None, normalize=True, eps=1e-6):
    """Query by query on features: out_i = Σ_j w_ij (q_i·k_j) v_j [/ (Σ_j w_ij q_i·k_j + eps · n_i)].

    ``w_ij = exp(-a_h (i - j))`` with a decay (1 without); j runs over the real keys (and j <= i if causal).
    """
    b, h, n, _ = q.shape
    m = k.shape[2]
    out = torch.zeros(b, h, n, v.shape[-1], dtype=q.dtype)
    for bi in range(b):
        for hi in range(h):
            for i in range(n):
                keys = [
                    j
                    for j in range(m)
                    if (key_mask is None or bool(key_mask[bi, j])) and (not causal or j <= i)
                ]
                num = torch.zeros(v.shape[-1], dtype=q.dtype)
                den = torch.zeros((), dtype=q.dtype)
                for j in keys:
                    w = 1.0 if log_decay is None else torch.exp(-log_decay[hi] * (i - j))
                    s = w * (q[bi, hi, i] @ k[bi, hi, j])
                    num = num + s * v[bi, hi, j]
                    den = den + s
                out[bi, hi, i] = num / (den + eps * max(len(keys), 1)) if normalize else num
    return out


def _pair(*shape):
    t = torch.randn(*shape, requires_grad=True)
    return t, t.detach().double().requires_grad_(True)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("use_mask", [False, True])
@pytest.mark.parametrize("normalize", [True, False])
def test_chunked_matches_literal(causal: bool, use_mask: bool, normalize: bool) -> None:
    torch.manual_seed(0)
    (q, q64), (k, k64), (v, v64) = (_pair(2, 2, 11, 3) for _ in range(3))
    key_mask = torch.rand(2, 11) > 0.4 if use_mask else None
    if key_mask is not None:
        key_mask[0, :3] = False  # left padding: the first queries have no key
    out = linear_attention_chunked(
        phi(q), phi(k), v, causal=causal, chunk_size=4, normalize=normalize, key_mask=key_mask
    )
    expected = literal_linear(phi(q64), phi(k64), v64, causal, key_mask, normalize=normalize)
    torch.testing.assert_close(out.double(), expected, **FWD)
    grad = torch.randn_like(out)
    out.backward(grad)
    expected.backward(grad.double())
    for t, t64 in zip((q, k, v), (q64, k64, v64), strict=True):
        torch.testing.assert_close(t.grad.double(), t64.grad, **GRAD)
    if causal:
        rec = linear_attention_recurrent(phi(q64), phi(k64), v64, normalize=normalize, key_mask=key_mask)
        torch.testing.assert_close(rec, expected, **EXACT)


@pytest.mark.parametrize("chunk", [1, 16, 64, 100])
def test_chunked_equals_recurrent_and_care_at_t63(chunk: int) -> None:
    """T = 63 is no multiple of 16 (short last chunk); chunk 64/100 > T is a single chunk."""
    torch.manual_seed(1)
    q, k, v = (torch.randn(2, 2, 63, 4, dtype=torch.float64) for _ in range(3))
    key_mask = torch.rand(2, 63) > 0.2
    chunked = linear_attention_chunked(phi(q), phi(k), v, causal=True, chunk_size=chunk, key_mask=key_mask)
    recurrent = linear_attention_recurrent(phi(q), phi(k), v, key_mask=key_mask)
    care = linear_attention(q, k, v, "elu", key_mask=key_mask, is_causal=True)
    torch.testing.assert_close(chunked, recurrent, **EXACT)
    torch.testing.assert_close(chunked, care, **EXACT)
    decay = torch.tensor([0.0, 0.7], dtype=torch.float64)
    a = linear_attention_chunked(q, k, v, causal=True, chunk_size=chunk, log_decay=decay, normalize=False)
    b = linear_attention_recurrent(q, k, v, log_decay=decay, normalize=False)
    torch.testing.assert_close(a, b, **EXACT)


def test_chunked_with_decay_matches_literal() -> None:
    q, k, v = (torch.randn(1, 2, 9, 3, dtype=torch.float64) for _ in range(3))
    decay = torch.tensor([0.2, 1.5], dtype=torch.float64)
    for normalize in (False, True):
        q_, k_ = (phi(t) for t in (q, k)) if normalize else (q, k)
        out = linear_attention_chunked(
            q_, k_, v, causal=True, chunk_size=4, log_decay=decay, normalize=normalize
        )
        expected = literal_linear(q_, k_, v, True, log_decay=decay, normalize=normalize)
        torch.testing.assert_close(out, expected, **EXACT)


def test_chunked_gradcheck() -> None:
    q, k, v = (torch.randn(1, 2, 7, 2, dtype=torch.float64, requires_grad=True) for _ in range(3))
    mask = torch.tensor([[True, False, True, True, True, False, True]])
    decay = torch.tensor([0.1, 0.9], dtype=torch.float64)
    assert torch.autograd.gradcheck(
        lambda a, b, c: linear_attention_chunked(phi(a), phi(b), c, causal=True, chunk_size=3, key_mask=mask),
        (q, k, v),
    )
    assert torch.autograd.gradcheck(
        lambda a, b, c: linear_attention_chunked(
            a, b, c, causal=True, chunk_size=3, log_decay=decay, normalize=False
        ),
        (q, k, v),
    )


class _MaxNumel(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, tuple | list) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def test_chunked_path_is_linear_in_memory() -> None:
    """No (N, N) tensor and no prefix sum over (N, D, Dv), forward and backward.

    The largest tensors are the intra-chunk scores of a chunk group, ``N · c`` (``c = 8`` here), and the
    per-chunk states ``(N / c) · D · Dv``; both stay below ``N · D · Dv`` and ``N²``.
    """
    n, d = 64, 4
    q, k, v = (torch.randn(1, 1, n, d, requires_grad=True) for _ in range(3))
    decay = torch.tensor([0.3])
    with _MaxNumel() as mode:
        out = linear_attention_chunked(phi(q), phi(k), v, causal=True, chunk_size=8)
        out = out + linear_attention_chunked(q, k, v, causal=True, chunk_size=8, log_decay=decay)
        out.sum().backward()
    assert mode.largest <= max(n * 8, (n // 8) * d * d) < n * d * d < n * n


def literal_module(x, ref: LinearAttention, causal=False, key_mask=None):
    """LinearAttention written out head by head with explicit Linear / norm arithmetic."""
    c = x.shape[-1]
    h = ref.num_heads
    d = c // h
    qkv = x @ ref.qkv.weight.T + (ref.qkv.bias if ref.qkv.bias is not None else 0)
    q, k, v = qkv[..., :c], qkv[..., c : 2 * c], qkv[..., 2 * c :]
    heads = []
    normalize = ref.normalization == "denominator"
    for hi in range(h):
        sl = slice(hi * d, (hi + 1) * d)
        qh, kh, vh = (t[..., sl][:, None] for t in (q, k, v))
        fq, fk = phi(qh, ref.feature_map), phi(kh, ref.feature_map)
        heads.append(literal_linear(fq, fk, vh, causal, key_mask, normalize=normalize, eps=ref.eps)[:, 0])
    o = torch.cat(heads, dim=-1)
    if ref.normalization == "layernorm":
        mu = o.mean(-1, keepdim=True)
        var = o.var(-1, unbiased=False, keepdim=True)
        o = (o - mu) / torch.sqrt(var + ref.norm.eps) * ref.norm.weight + ref.norm.bias
    elif ref.normalization == "rmsnorm":
        eps = torch.finfo(o.dtype).eps if ref.norm.eps is None else ref.norm.eps
        o = o / torch.sqrt(o.pow(2).mean(-1, keepdim=True) + eps) * ref.norm.weight
    return o @ ref.proj.weight.T + ref.proj.bias


@pytest.mark.parametrize(
    ("kwargs", "causal"),
    [
        ({}, False),
        ({}, True),
        ({"normalization": "layernorm", "feature_map": "silu", "qkv_bias": True}, True),
        ({"normalization": "rmsnorm", "feature_map": "identity"}, False),
        ({"feature_map": "relu", "mode": "recurrent"}, True),
    ],
)
def test_module_matches_literal(kwargs, causal: bool) -> None:
    torch.manual_seed(2)
    attn = LinearAttention(8, num_heads=2, chunk_size=3, **kwargs)
    ref = copy.deepcopy(attn).double()
    x, x64 = _pair(2, 7, 8)
    pad = torch.ones(2, 7, dtype=torch.bool)
    pad[1, -2:] = False
    out = attn(x, mask=pad, is_causal=causal)
    expected = literal_module(x64, ref, causal, pad)
    torch.testing.assert_close(out.double(), expected, **FWD)
    grad = torch.randn_like(out)
    out.backward(grad)
    expected.backward(grad.double())
    torch.testing.assert_close(x.grad.double(), x64.grad, **GRAD)
    for (name, p), p64 in zip(attn.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p.grad.double(), p64.grad, **GRAD, msg=lambda m, name=name: f"{name}: {m}")


def test_module_modes_agree_and_causality_crosses_chunks() -> None:
    attn = LinearAttention(8, num_heads=2, chunk_size=4).double()
    rec = copy.deepcopy(attn)
    rec.mode = "recurrent"
    x = torch.randn(2, 10, 8, dtype=torch.float64)
    torch.testing.assert_close(attn(x, is_causal=True), rec(x, is_causal=True), **EXACT)
    torch.testing.assert_close(attn(x), rec(x), **EXACT)  # non-causal: same global form
    y = x.clone()
    y[:, 5:] += torch.randn_like(y[:, 5:])
    a, b = attn(x, is_causal=True), attn(y, is_causal=True)
    torch.testing.assert_close(a[:, :5], b[:, :5], atol=0, rtol=0)
    assert not torch.allclose(a[:, 5:], b[:, 5:])
    assert not torch.allclose(attn(x)[:, :5], attn(y)[:, :5])  # non-causal sees the future


def test_errors() -> None:
    q = torch.randn(1, 2, 4, 3)
    with pytest.raises(ValueError, match="normaliser"):
        LinearAttention(8, feature_map="identity")
    with pytest.raises(ValueError, match="feature_map"):
        LinearAttention(8, feature_map="softmax", normalization="rmsnorm")
    with pytest.raises(ValueError, match="normalization"):
        LinearAttention(8, normalization="batch")
    with pytest.raises(ValueError, match="divisible"):
        LinearAttention(9, num_heads=2)
    with pytest.raises(ValueError, match="mode"):
        LinearAttention(8, mode="parallel")
    with pytest.raises(ValueError, match="chunk_size"):
        linear_attention_chunked(q, q, q, causal=True, chunk_size=0)
    with pytest.raises(ValueError, match="causal needs"):
        linear_attention_chunked(q, q[:, :, :3], q[:, :, :3], causal=True)
    with pytest.raises(ValueError, match="log_decay"):
        linear_attention_chunked(q, q, q, log_decay=torch.zeros(2))
    with pytest.raises(ValueError, match=r"key_mask must be boolean of shape \(1, 4\)"):
        linear_attention_chunked(q, q, q, key_mask=torch.ones(1, 4))
    with pytest.raises(ValueError, match="key-padding"):
        LinearAttention(8, num_heads=2)(torch.randn(1, 4, 8), mask=torch.ones(1, 4, 4, dtype=torch.bool))


@pytest.mark.parametrize("decay", [False, True])
def test_scan_continues_from_a_state(decay: bool) -> None:
    """Scanning 23 tokens as 8 + 8 + 7 with the carried state equals one scan, values and gradients."""
    torch.manual_seed(4)
    q, k, v = (torch.randn(2, 2, 23, 3, dtype=torch.float64, requires_grad=True) for _ in range(3))
    rates = torch.tensor([0.0, 0.3], dtype=torch.float64) if decay else None
    whole = linear_attention_chunked(q, k, v, causal=True, chunk_size=4, log_decay=rates, normalize=False)
    ref, end = linear_scan_chunked(q, k, v, chunk_size=4, log_decay=rates)
    torch.testing.assert_close(ref, whole, atol=1e-12, rtol=1e-10)
    outs, state = [], None
    for qs, ks, vs in zip(*(t.split(8, dim=2) for t in (q, k, v)), strict=True):
        out, state = linear_scan_chunked(qs, ks, vs, chunk_size=4, log_decay=rates, initial_state=state)
        outs.append(out)
    seg = torch.cat(outs, dim=2)
    torch.testing.assert_close(seg, whole, atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(state, end, atol=1e-12, rtol=1e-10)
    grads = torch.autograd.grad((seg * whole.detach()).sum() + state.sum(), (q, k, v))
    grads_ref = torch.autograd.grad((whole * whole.detach()).sum() + end.sum(), (q, k, v))
    for g, g_ref in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(g, g_ref, atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("group", [1, 2, 3])
@pytest.mark.parametrize("decay", [False, True])
def test_chunk_groups_match_the_recurrence(monkeypatch, group: int, decay: bool) -> None:
    """Groups of 1–3 chunks (several groups, a short last chunk) = the token recurrence, with gradients."""
    monkeypatch.setitem(linear_module.GROUP_CHUNKS, "cpu", group)
    torch.manual_seed(6)
    q, k, v = (torch.randn(2, 2, 23, 3, dtype=torch.float64, requires_grad=True) for _ in range(3))
    mask = torch.ones(2, 23, dtype=torch.bool)
    mask[0, 5:9] = False
    rates = torch.tensor([0.05, 0.6], dtype=torch.float64) if decay else None
    for normalize in (True, False):
        qf, kf = (phi(t) for t in (q, k))
        args = {"log_decay": rates, "normalize": normalize, "key_mask": mask}
        out = linear_attention_chunked(qf, kf, v, causal=True, chunk_size=4, **args)
        ref = linear_attention_recurrent(qf, kf, v, **args)
        torch.testing.assert_close(out, ref, **EXACT)
        grads = torch.autograd.grad(out.square().sum(), (q, k, v), retain_graph=True)
        grads_ref = torch.autograd.grad(ref.square().sum(), (q, k, v))
        for g, g_ref in zip(grads, grads_ref, strict=True):
            torch.testing.assert_close(g, g_ref, **EXACT)


@pytest.mark.parametrize("normalization", ["denominator", "layernorm"])
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("n", [24, 23])
def test_module_segments_match_one_pass(normalization: str, causal: bool, n: int) -> None:
    """Segments of 8 tokens (a short last one, left padding) = one pass = the literal module."""
    torch.manual_seed(5)
    feature = "elu" if normalization == "denominator" else "silu"
    whole = LinearAttention(8, num_heads=2, chunk_size=4, normalization=normalization, feature_map=feature)
    whole = whole.double()
    whole.segment_size = 10_000
    out, x, pad = assert_segments_match(whole, 10, n, causal)  # 10 is rounded down to 8, a chunk multiple
    with torch.no_grad():
        torch.testing.assert_close(out, literal_module(x, whole, causal, pad), **EXACT)


def test_segment_tokens_defaults_per_device() -> None:
    assert segment_tokens(None, 64, 100_000, torch.device("cpu")) == SEGMENT_SIZE
    assert segment_tokens(None, 64, 100_000, torch.device("cuda")) == 100_000
    assert segment_tokens(100, 64, 100_000, torch.device("cuda")) == 64
    assert segment_tokens(10, 64, 100_000, torch.device("cpu")) == 64  # at least one chunk
    with pytest.raises(ValueError, match="segment_size must be positive or None"):
        LinearAttention(8, segment_size=0)
