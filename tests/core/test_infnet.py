"""INFNetProxyAttention against a literal float64 loop: proxies gather from the context, queries read proxies.

Tolerances (reference_check): forward atol 1e-5 / rtol 1e-4, gradients atol 1e-4 / rtol 1e-3.
"""

import math

import pytest
import torch

from core.attention.infnet import INFNetProxyAttention
from tests.core.reference_check import assert_matches_reference


def literal_attend(q, k, v, heads, allowed=None):
    """Query by query, head by head: softmax(q·k / √d) over the allowed keys, times v (zeros if none)."""
    n, c = q.shape
    d = c // heads
    rows = []
    for i in range(n):
        parts = []
        for h in range(heads):
            sl = slice(h * d, (h + 1) * d)
            keys = [j for j in range(k.shape[0]) if allowed is None or allowed[j]]
            if not keys:
                parts.append(q.new_zeros(d))
                continue
            w = torch.softmax(torch.stack([q[i, sl] @ k[j, sl] for j in keys]) / math.sqrt(d), 0)
            parts.append(sum(w[a] * v[j, sl] for a, j in enumerate(keys)))
        rows.append(torch.cat(parts))
    return torch.stack(rows)


def literal_infnet(m: INFNetProxyAttention, x, context=None, pad=None):
    c = m.dim
    out = []
    for bi in range(x.shape[0]):
        y = x[bi] if context is None else context[bi]
        kv = m.gather_kv(y)
        gathered = literal_attend(
            m.gather_q(m.proxies), kv[:, :c], kv[:, c:], m.num_heads, None if pad is None else pad[bi]
        )
        z = m.gather_proj(gathered)
        z = m.proxies + z if m.proxy_residual else z
        kv2 = m.scatter_kv(z)
        out.append(m.proj(literal_attend(m.scatter_q(x[bi]), kv2[:, :c], kv2[:, c:], m.num_heads)))
    return torch.stack(out)


class _Call(torch.nn.Module):
    def __init__(self, inner, pad, with_context):
        super().__init__()
        self.inner, self.pad, self.with_context = inner, pad, with_context

    def forward(self, x, *context):
        return self.inner(x, mask=self.pad, context=context[0] if self.with_context else None)


@pytest.mark.parametrize("with_context", [False, True])
@pytest.mark.parametrize("use_pad", [False, True])
@pytest.mark.parametrize("residual", [True, False])
def test_matches_literal(with_context, use_pad, residual) -> None:
    torch.manual_seed(0)
    ctx_dim = 6 if with_context else None
    attn = INFNetProxyAttention(8, num_heads=2, num_proxies=3, context_dim=ctx_dim, proxy_residual=residual)
    x = torch.randn(2, 5, 8, requires_grad=True)
    m = 7 if with_context else 5
    pad = None
    if use_pad:
        pad = torch.rand(2, m) > 0.3
        pad[0] = False  # a sample with no context at all: proxies gather nothing
    inputs = [x, torch.randn(2, m, 6, requires_grad=True)] if with_context else [x]
    assert_matches_reference(
        _Call(attn, pad, with_context),
        lambda r, t, *ctx: literal_infnet(r.inner, t, ctx[0] if ctx else None, pad),
        *inputs,
    )


def test_cost_is_linear_in_tokens(monkeypatch) -> None:
    """No (N, M) attention: the gather attends P proxies to M keys, the scatter N queries to P proxies."""
    import core.attention.infnet as infnet_module

    shapes = []
    real = infnet_module.sdpa

    def spy(q, k, v, **kwargs):
        shapes.append((q.shape[2], k.shape[2]))
        return real(q, k, v, **kwargs)

    monkeypatch.setattr(infnet_module, "sdpa", spy)
    attn = INFNetProxyAttention(8, num_heads=2, num_proxies=3)
    attn(torch.randn(1, 40, 8), context=torch.randn(1, 50, 8))
    assert shapes == [(3, 50), (40, 3)]
    assert attn.attention_flops(1, 40, 50) == 4.0 * 3 * 90 * 8


def test_self_attention_fallback_and_key_padding() -> None:
    attn = INFNetProxyAttention(8, num_heads=2, num_proxies=2).double()
    x = torch.randn(2, 6, 8, dtype=torch.float64)
    torch.testing.assert_close(attn(x), attn(x, context=x))
    pad = torch.ones(2, 6, dtype=torch.bool)
    pad[:, 4:] = False
    y = x.clone()
    y[:, 4:] += 3.0
    torch.testing.assert_close(attn(x, mask=pad)[:, :4], attn(y, mask=pad)[:, :4])
    three_d = pad[:, None, :]  # (B, 1, M): query axis 1 is key padding too
    torch.testing.assert_close(attn(x, mask=three_d), attn(x, mask=pad))


def test_gradcheck() -> None:
    attn = INFNetProxyAttention(4, num_heads=2, num_proxies=2).double()
    x = torch.randn(1, 3, 4, dtype=torch.float64, requires_grad=True)
    ctx = torch.randn(1, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, c: attn(a, context=c), (x, ctx), fast_mode=True)


def test_errors() -> None:
    attn = INFNetProxyAttention(8, num_heads=2, num_proxies=2)
    x = torch.randn(2, 5, 8)
    with pytest.raises(ValueError, match="only key-padding masks"):
        attn(x, mask=torch.ones(2, 5, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="is_causal"):
        attn(x, is_causal=True)
    with pytest.raises(ValueError, match=r"context of shape \(B, M, 8\)"):
        attn(x, context=torch.randn(2, 3, 6))
    with pytest.raises(ValueError, match="used as its own context"):
        INFNetProxyAttention(8, num_heads=2, context_dim=6)(x)
    with pytest.raises(ValueError, match="num_proxies"):
        INFNetProxyAttention(8, num_heads=2, num_proxies=0)
