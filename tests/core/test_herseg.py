"""DualGatedLinearAttention (HER-Seg DLA, built from the abstract) against a literal float64 reference.

Tolerances as in test_attention.py: forward atol 1e-5 / rtol 1e-4, gradients atol 1e-4 / rtol 1e-3.
"""

import copy
import math

import pytest
import torch

from core.attention.herseg import DualGatedLinearAttention, dual_gated_linear_attention
from tests.core.reference_check import assert_same_outputs_and_grads

FWD = {"atol": 1e-5, "rtol": 1e-4}
GRAD = {"atol": 1e-4, "rtol": 1e-3}


def phi(t):
    return torch.nn.functional.elu(t) + 1


def literal_dla(x, ref: DualGatedLinearAttention, key_mask=None):
    """Per batch, head and query: keep the top-K scored real tokens, gate them, attend, gate the output."""
    b, n, c = x.shape
    h = ref.num_heads
    d = c // h
    qkv = x @ ref.qkv.weight.T
    q, k, v = qkv[..., :c], qkv[..., c : 2 * c], qkv[..., 2 * c :]
    scores = x @ ref.token_gate.weight.T + ref.token_gate.bias  # (B, N, H)
    keep = n if ref.keep_ratio is None else max(1, math.ceil(ref.keep_ratio * n))
    out = torch.zeros(b, n, c, dtype=x.dtype)
    for bi in range(b):
        for hi in range(h):
            real = [j for j in range(n) if key_mask is None or bool(key_mask[bi, j])]
            order = sorted(range(n), key=lambda j: (j not in real, -float(scores[bi, j, hi].detach())))
            kept = [j for j in order[:keep] if j in real]
            sl = slice(hi * d, (hi + 1) * d)
            for i in range(n):
                num = torch.zeros(d, dtype=x.dtype)
                den = torch.zeros((), dtype=x.dtype)
                for j in kept:
                    s = torch.sigmoid(scores[bi, j, hi]) * (phi(q[bi, i, sl]) @ phi(k[bi, j, sl]))
                    num = num + s * v[bi, j, sl]
                    den = den + s
                out[bi, i, sl] = num / (den + ref.eps * max(len(kept), 1))
    gate = torch.sigmoid(x @ ref.output_gate.weight.T + ref.output_gate.bias)
    return (out * gate) @ ref.proj.weight.T + ref.proj.bias


@pytest.mark.parametrize("keep_ratio", [None, 0.5, 1.0])
def test_dla_matches_literal(keep_ratio) -> None:
    torch.manual_seed(0)
    attn = DualGatedLinearAttention(8, num_heads=2, keep_ratio=keep_ratio)
    ref = copy.deepcopy(attn).double()
    x = torch.randn(2, 7, 8, requires_grad=True)
    x64 = x.detach().double().requires_grad_(True)
    pad = torch.ones(2, 7, dtype=torch.bool)
    pad[1, -3:] = False
    out = attn(x, mask=pad)
    expected = literal_dla(x64, ref, pad)
    torch.testing.assert_close(out.double(), expected, **FWD)
    grad = torch.randn_like(out)
    out.backward(grad)
    expected.backward(grad.double())
    torch.testing.assert_close(x.grad.double(), x64.grad, **GRAD)
    for (name, p), p64 in zip(attn.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p.grad.double(), p64.grad, **GRAD, msg=lambda m, name=name: f"{name}: {m}")
    assert attn.token_gate.weight.grad.abs().sum() > 0  # the importance score is trained


def test_filtered_tokens_are_ignored_and_gradcheck() -> None:
    torch.manual_seed(1)
    q, k, v = (torch.randn(1, 2, 8, 3, dtype=torch.float64, requires_grad=True) for _ in range(3))
    scores = torch.randn(1, 2, 8, dtype=torch.float64, requires_grad=True)
    out = dual_gated_linear_attention(phi(q), phi(k), v, scores, keep=3)
    dropped = scores.detach().argsort(dim=-1)[..., :5]  # the five lowest scores of each head
    k2, v2 = k.detach().clone(), v.detach().clone()
    for hi in range(2):
        k2[0, hi, dropped[0, hi]] += 5.0
        v2[0, hi, dropped[0, hi]] -= 5.0
    torch.testing.assert_close(out, dual_gated_linear_attention(phi(q), phi(k2), v2, scores, keep=3))
    soft = dual_gated_linear_attention(phi(q), phi(k), v, scores)
    assert not torch.allclose(soft, dual_gated_linear_attention(phi(q), phi(k2), v2, scores))
    assert torch.autograd.gradcheck(
        lambda a, b, c, s: dual_gated_linear_attention(phi(a), phi(b), c, s, keep=3), (q, k, v, scores)
    )


def test_errors() -> None:
    attn = DualGatedLinearAttention(8, num_heads=2)
    with pytest.raises(ValueError, match="is_causal"):
        attn(torch.randn(1, 4, 8), is_causal=True)
    with pytest.raises(ValueError, match="keep_ratio"):
        DualGatedLinearAttention(8, keep_ratio=0.0)
    with pytest.raises(ValueError, match="feature_map"):
        DualGatedLinearAttention(8, feature_map="identity")
    with pytest.raises(ValueError, match="divisible"):
        DualGatedLinearAttention(9, num_heads=2)
    q = torch.randn(1, 2, 4, 3)
    with pytest.raises(ValueError, match="keep must be"):
        dual_gated_linear_attention(q, q, q, torch.randn(1, 2, 4), keep=5)
    with pytest.raises(ValueError, match=r"scores \(B, H, M\)"):
        dual_gated_linear_attention(q, q, q, torch.randn(1, 4))


@pytest.mark.parametrize("keep_ratio", [None, 0.5])
@pytest.mark.parametrize("n", [24, 23])
def test_segments_match_unsegmented(keep_ratio, n) -> None:
    """Segments of 8 tokens (and a short last one) equal one segment, values and gradients, in float64."""
    torch.manual_seed(3)
    whole = DualGatedLinearAttention(8, num_heads=2, keep_ratio=keep_ratio, segment_size=64).double()
    seg = copy.deepcopy(whole)
    seg.segment_size = 8
    x = torch.randn(2, n, 8, dtype=torch.float64, requires_grad=True)
    pad = torch.ones(2, n, dtype=torch.bool)
    pad[1, -5:] = False
    out = assert_same_outputs_and_grads(whole, seg, x, mask=pad)
    # ...and both equal the functional (unsegmented) form.
    q, k, v = (t.reshape(2, n, 2, 4).transpose(1, 2) for t in (x.detach() @ whole.qkv.weight.T).chunk(3, -1))
    scores = whole.token_gate(x.detach()).transpose(1, 2)
    keep = None if keep_ratio is None else math.ceil(keep_ratio * n)
    att = dual_gated_linear_attention(whole.phi(q), whole.phi(k), v, scores, keep=keep, key_mask=pad)
    gate = torch.sigmoid(whole.output_gate(x.detach()))
    expected = whole.proj(att.transpose(1, 2).reshape(2, n, 8) * gate)
    torch.testing.assert_close(out.detach(), expected.detach(), atol=1e-12, rtol=1e-10)
