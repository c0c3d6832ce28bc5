"""LightningAttention: tiled == recurrent == quadratic (float64), the layer against a literal reference.

Tolerances as in test_attention.py: forward atol 1e-5 / rtol 1e-4, gradients atol 1e-4 / rtol 1e-3 (fp32
implementation vs fp64 reference); fp64 vs fp64: atol 1e-10.
"""

import copy
import math

import pytest
import torch

from core.attention.lightning import LightningAttention, lightning_attention, lightning_slopes
from tests.core.reference_check import assert_segments_match
from tests.core.test_linear import _MaxNumel

FWD = {"atol": 1e-5, "rtol": 1e-4}
GRAD = {"atol": 1e-4, "rtol": 1e-3}
EXACT = {"atol": 1e-10, "rtol": 1e-10}


def quadratic(q, k, v, log_decay, causal=True, key_mask=None):
    """O = (Q Kᵀ ⊙ D) V, D_ts = λ^{|t-s|} (zero above the diagonal if causal), padded keys removed."""
    n = q.shape[2]
    t = torch.arange(n, dtype=q.dtype)
    dist = t[:, None] - t[None, :]
    decay = torch.exp(-log_decay.to(q.dtype)[:, None, None] * dist.abs())  # (H, N, N)
    if causal:
        decay = decay * (dist >= 0)
    scores = (q @ k.transpose(-2, -1)) * decay
    if key_mask is not None:
        scores = scores * key_mask[:, None, None, :]
    return scores @ v


def recurrent(q, k, v, log_decay):
    """kv_t = λ kv_{t-1} + k_t v_tᵀ, o_t = q_t kv_t, written per batch and head."""
    b, h, n, _ = q.shape
    out = torch.zeros(b, h, n, v.shape[-1], dtype=q.dtype)
    for bi in range(b):
        for hi in range(h):
            lam = math.exp(-float(log_decay[hi]))
            kv = torch.zeros(q.shape[-1], v.shape[-1], dtype=q.dtype)
            for t in range(n):
                kv = lam * kv + torch.outer(k[bi, hi, t], v[bi, hi, t])
                out[bi, hi, t] = q[bi, hi, t] @ kv
    return out


def test_slopes_follow_the_stated_formulas() -> None:
    torch.testing.assert_close(
        lightning_slopes(4, 1, 4), torch.tensor([0.0, 1.5, 3.0, 4.5], dtype=torch.float64)
    )
    alibi = torch.tensor([2.0**-2, 2.0**-4, 2.0**-6, 2.0**-8], dtype=torch.float64) * (1 - 1 / 3 + 1e-5)
    torch.testing.assert_close(lightning_slopes(4, 1, 4, "alibi"), alibi)
    torch.testing.assert_close(
        lightning_slopes(2, 0, 1, "alibi"), torch.tensor([0.0625, 2.0**-8]) * (1 + 1e-5), check_dtype=False
    )
    assert lightning_slopes(4, 3, 4).tolist() < lightning_slopes(4, 0, 4).tolist()  # deeper: slower decay
    with pytest.raises(ValueError, match="kind"):
        lightning_slopes(4, 0, 1, "rope")


@pytest.mark.parametrize("chunk", [16, 5])
def test_tiled_equals_recurrent_and_quadratic_t63(chunk: int) -> None:
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 63, 4, dtype=torch.float64) for _ in range(3))
    decay = lightning_slopes(3, 0, 2)  # 0, 8/3 · 1/2, ...: head 0 without decay
    tiled = lightning_attention(q, k, v, decay, chunk_size=chunk)
    torch.testing.assert_close(tiled, quadratic(q, k, v, decay), **EXACT)
    torch.testing.assert_close(tiled, lightning_attention(q, k, v, decay, mode="recurrent"), **EXACT)
    torch.testing.assert_close(
        tiled[:1, :, :20], recurrent(q[:1, :, :20], k[:1, :, :20], v[:1, :, :20], decay), **EXACT
    )
    both = lightning_attention(q, k, v, decay, causal=False, chunk_size=chunk)
    torch.testing.assert_close(both, quadratic(q, k, v, decay, causal=False), **EXACT)


def test_gradients_match_quadratic_and_gradcheck() -> None:
    torch.manual_seed(1)
    decay = torch.tensor([0.0, 0.5])
    mask = torch.tensor([[True] * 9, [False] * 3 + [True] * 6])
    for causal in (True, False):
        qkv = [torch.randn(2, 2, 9, 3, requires_grad=True) for _ in range(3)]
        qkv64 = [t.detach().double().requires_grad_(True) for t in qkv]
        out = lightning_attention(*qkv, decay, causal=causal, chunk_size=4, key_mask=mask)
        expected = quadratic(*qkv64, decay.double(), causal, mask)
        torch.testing.assert_close(out.double(), expected, **FWD)
        grad = torch.randn_like(out)
        out.backward(grad)
        expected.backward(grad.double())
        for t, t64 in zip(qkv, qkv64, strict=True):
            torch.testing.assert_close(t.grad.double(), t64.grad, **GRAD)
    small = [torch.randn(1, 2, 6, 2, dtype=torch.float64, requires_grad=True) for _ in range(3)]
    d64 = decay.double()
    assert torch.autograd.gradcheck(lambda a, b, c: lightning_attention(a, b, c, d64, chunk_size=4), small)
    assert torch.autograd.gradcheck(
        lambda a, b, c: lightning_attention(a, b, c, d64, causal=False, chunk_size=4), small
    )


def literal_layer(x, ref: LightningAttention, causal=True, key_mask=None):
    c = x.shape[-1]
    h = ref.num_heads
    d = c // h
    qkv = x @ ref.qkv.weight.T
    q, k, v = (
        torch.nn.functional.silu(qkv[..., :c]),
        torch.nn.functional.silu(qkv[..., c : 2 * c]),
        qkv[..., 2 * c :],
    )
    heads = []
    for hi in range(h):
        sl = slice(hi * d, (hi + 1) * d)
        qh, kh, vh = (t[..., sl][:, None] for t in (q, k, v))
        heads.append(quadratic(qh, kh, vh, ref.log_decay[hi : hi + 1], causal, key_mask)[:, 0])
    o = torch.cat(heads, dim=-1)
    o = o / torch.sqrt(o.pow(2).mean(-1, keepdim=True) + ref.norm.eps)  # SRMSNorm
    o = o * (x @ ref.gate.weight.T)
    return o @ ref.proj.weight.T


@pytest.mark.parametrize("causal", [True, False])
def test_layer_matches_literal(causal: bool) -> None:
    torch.manual_seed(2)
    attn = LightningAttention(8, num_heads=2, chunk_size=3, layer_idx=1, num_layers=3)
    ref = copy.deepcopy(attn).double()
    x = torch.randn(2, 8, 8, requires_grad=True)
    x64 = x.detach().double().requires_grad_(True)
    pad = torch.ones(2, 8, dtype=torch.bool)
    pad[1, :2] = False
    out = attn(x, mask=pad, is_causal=causal)
    expected = literal_layer(x64, ref, causal, pad)
    torch.testing.assert_close(out.double(), expected, **FWD)
    grad = torch.randn_like(out)
    out.backward(grad)
    expected.backward(grad.double())
    torch.testing.assert_close(x.grad.double(), x64.grad, **GRAD)
    for (name, p), p64 in zip(attn.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p.grad.double(), p64.grad, **GRAD, msg=lambda m, name=name: f"{name}: {m}")


def test_causality_padding_and_modes() -> None:
    torch.manual_seed(3)
    attn = LightningAttention(8, num_heads=2, chunk_size=4, slopes="alibi", norm="rms").double()
    x = torch.randn(2, 11, 8, dtype=torch.float64)
    y = x.clone()
    y[:, 6:] += torch.randn_like(y[:, 6:])
    a, b = attn(x, is_causal=True), attn(y, is_causal=True)
    torch.testing.assert_close(a[:, :6], b[:, :6], atol=0, rtol=0)
    assert not torch.allclose(a[:, 6:], b[:, 6:])
    rec = copy.deepcopy(attn)
    rec.mode = "recurrent"
    torch.testing.assert_close(rec(x, is_causal=True), a, **EXACT)
    # Left padding gives the unpadded outputs exactly (padded keys add nothing; relative decay unchanged).
    padded = torch.cat([torch.randn(2, 3, 8, dtype=torch.float64), x], dim=1)
    mask = torch.ones(2, 14, dtype=torch.bool)
    mask[:, :3] = False
    torch.testing.assert_close(attn(padded, mask=mask, is_causal=True)[:, 3:], a, **EXACT)
    torch.testing.assert_close(attn(padded, mask=mask)[:, 3:], attn(x), **EXACT)


def test_tiled_path_is_linear_in_memory() -> None:
    """Largest tensors: a chunk group's intra-chunk scores (``N · c``) and per-chunk states; no ``N²``."""
    n, d = 64, 4
    q, k, v = (torch.randn(1, 1, n, d, requires_grad=True) for _ in range(3))
    with _MaxNumel() as mode:
        out = lightning_attention(q, k, v, torch.tensor([0.2]), chunk_size=8)
        out = out + lightning_attention(q, k, v, torch.tensor([0.2]), causal=False, chunk_size=8)
        out.sum().backward()
    assert mode.largest <= max(n * 8, (n // 8) * d * d) < n * d * d < n * n


def test_errors() -> None:
    with pytest.raises(ValueError, match="divisible"):
        LightningAttention(9, num_heads=2)
    with pytest.raises(ValueError, match="norm"):
        LightningAttention(8, norm="batch")
    with pytest.raises(ValueError, match="mode"):
        LightningAttention(8, mode="parallel")
    with pytest.raises(ValueError, match="chunk_size"):
        LightningAttention(8, chunk_size=0)
    with pytest.raises(ValueError, match="kind"):
        LightningAttention(8, slopes="rope")
    with pytest.raises(ValueError, match="key-padding"):
        LightningAttention(8, num_heads=2)(torch.randn(1, 4, 8), mask=torch.ones(1, 4, 4, dtype=torch.bool))


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("n", [24, 23])
def test_segments_match_one_pass_and_quadratic(causal, n) -> None:
    """Segments of 8 tokens (chunk 4, a short last segment) equal one segment and the quadratic form."""
    torch.manual_seed(5)
    whole = LightningAttention(8, num_heads=2, chunk_size=4, segment_size=64, layer_idx=1, num_layers=4)
    whole = whole.double()
    out, x, pad = assert_segments_match(whole, 10, n, causal)  # 10 is rounded down to 8, a chunk multiple
    with torch.no_grad():
        q, k, v = whole._qkv(x)
        att = quadratic(q, k, v, whole.log_decay, causal=causal, key_mask=pad)
        torch.testing.assert_close(out.detach(), whole._output(att, x), **EXACT)
