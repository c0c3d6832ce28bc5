"""CASWiT cross-scale fusion against a literal float64 reference, plus its gate, mask and error contract.

Tolerances as in test_attention.py: forward atol 1e-5 / rtol 1e-4, gradients atol 1e-4 / rtol 1e-3.
"""

import copy
import math

import pytest
import torch
from torch import nn

from core.attention import get_mechanism
from core.attention.caswit import CrossScaleFusion

FWD = {"atol": 1e-5, "rtol": 1e-4}
GRAD = {"atol": 1e-4, "rtol": 1e-3}


def _layer_norm(x, ln: nn.LayerNorm):
    mean = x.mean(dim=-1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + ln.eps) * ln.weight + ln.bias


def literal_fusion(x, ctx, m: CrossScaleFusion, pad=None):
    """out_n = x_n + γ ⊙ W_O concat_h Σ_j softmax_j(q_n·k_j/√d) v_j over the unpadded context tokens j."""
    b, n, c = x.shape
    heads, d = m.num_heads, c // m.num_heads
    xn, cn = _layer_norm(x, m.norm_q), _layer_norm(ctx, m.norm_kv)
    wk, wv = m.kv.weight[:c], m.kv.weight[c:]
    bk, bv = m.kv.bias[:c], m.kv.bias[c:]
    rows = []
    for bi in range(b):
        keys = [j for j in range(ctx.shape[1]) if pad is None or bool(pad[bi, j])]
        outs = []
        for t in range(n):
            q = m.q.weight @ xn[bi, t] + m.q.bias
            head_outs = []
            for h in range(heads):
                sl = slice(h * d, (h + 1) * d)
                if not keys:
                    head_outs.append(torch.zeros(d, dtype=x.dtype))
                    continue
                ks = [(wk @ cn[bi, j] + bk)[sl] for j in keys]
                vs = [(wv @ cn[bi, j] + bv)[sl] for j in keys]
                w = torch.softmax(torch.stack([q[sl] @ k for k in ks]) / math.sqrt(d), dim=0)
                head_outs.append(sum(wi * vi for wi, vi in zip(w, vs, strict=True)))
            attended = m.proj.weight @ torch.cat(head_outs) + m.proj.bias
            outs.append(x[bi, t] + m.gate * attended)
        rows.append(torch.stack(outs))
    return torch.stack(rows)


def _randomise(module: nn.Module) -> nn.Module:
    with torch.no_grad():
        module.gate.normal_()
        for ln in (module.norm_q, module.norm_kv):
            ln.weight.normal_(1.0, 0.2)
            ln.bias.normal_(0.0, 0.2)
    return module


@pytest.mark.parametrize("use_mask", [False, True])
@pytest.mark.parametrize("backend", ["sdpa", "reference"])
def test_fusion_matches_literal_reference(use_mask: bool, backend: str) -> None:
    fusion = _randomise(CrossScaleFusion(8, num_heads=2, context_dim=6, backend=backend))
    ref = copy.deepcopy(fusion).double()
    x = torch.randn(2, 5, 8, requires_grad=True)
    ctx = torch.randn(2, 7, 6, requires_grad=True)
    pad = torch.rand(2, 7) > 0.3 if use_mask else None
    if pad is not None:
        pad[1] = False  # a batch whose context is fully padded: the injection is γ ⊙ b_O
    x64, ctx64 = (t.detach().double().requires_grad_(True) for t in (x, ctx))
    out = fusion(x, context=ctx, mask=pad)
    expected = literal_fusion(x64, ctx64, ref, pad)
    torch.testing.assert_close(out.double(), expected, **FWD)
    grad = torch.randn_like(out)
    out.backward(grad)
    expected.backward(grad.double())
    torch.testing.assert_close(x.grad.double(), x64.grad, **GRAD)
    torch.testing.assert_close(ctx.grad.double(), ctx64.grad, **GRAD)
    for (name, p), p64 in zip(fusion.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p.grad.double(), p64.grad, **GRAD, msg=lambda m, name=name: f"{name}: {m}")


def test_fusion_gradcheck() -> None:
    fusion = _randomise(CrossScaleFusion(4, num_heads=2)).double()
    x = torch.randn(1, 3, 4, dtype=torch.float64, requires_grad=True)
    ctx = torch.randn(1, 5, 4, dtype=torch.float64, requires_grad=True)
    pad = torch.tensor([[True, False, True, True, False]])
    assert torch.autograd.gradcheck(lambda a, c: fusion(a, context=c, mask=pad), (x, ctx))


def test_padded_context_tokens_do_not_matter() -> None:
    fusion = _randomise(CrossScaleFusion(8, num_heads=2)).double()
    x, ctx = torch.randn(2, 5, 8, dtype=torch.float64), torch.randn(2, 6, 8, dtype=torch.float64)
    pad = torch.ones(2, 6, dtype=torch.bool)
    pad[:, 4:] = False
    changed = ctx.clone()
    changed[:, 4:] += 10 * torch.randn_like(changed[:, 4:])
    torch.testing.assert_close(fusion(x, context=ctx, mask=pad), fusion(x, context=changed, mask=pad))
    assert not torch.allclose(fusion(x, context=ctx), fusion(x, context=changed))


def test_gate_starts_closed_and_residual_flag() -> None:
    x, ctx = torch.randn(2, 5, 8), torch.randn(2, 3, 8)
    fusion = CrossScaleFusion(8, num_heads=2)
    torch.testing.assert_close(fusion(x, context=ctx), x, atol=0, rtol=0)  # γ = 0: the HR branch unchanged
    open_ = _randomise(CrossScaleFusion(8, num_heads=2))
    delta = CrossScaleFusion(8, num_heads=2, residual=False)
    delta.load_state_dict(open_.state_dict())
    torch.testing.assert_close(open_(x, context=ctx), x + delta(x, context=ctx))
    plain = CrossScaleFusion(8, num_heads=2, norm=False, gate_init=1.0)
    assert isinstance(plain.norm_q, nn.Identity) and plain.gate.eq(1.0).all()


def test_fusion_errors_and_registry() -> None:
    fusion = CrossScaleFusion(8, num_heads=2, context_dim=6)
    x = torch.randn(2, 5, 8)
    with pytest.raises(ValueError, match=r"expected context of shape \(B, M, 6\)"):
        fusion(x, context=torch.randn(2, 4, 8))
    with pytest.raises(ValueError, match="pass `context`"):
        fusion(x)
    with pytest.raises(ValueError, match="is_causal"):
        fusion(x, context=torch.randn(2, 4, 6), is_causal=True)
    with pytest.raises(ValueError, match=r"mask of shape \(2, 5\)"):
        fusion(x, context=torch.randn(2, 4, 6), mask=torch.ones(2, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"expected context of shape \(2, M, C_ctx\)"):
        fusion(x, context=torch.randn(3, 4, 6))
    info = get_mechanism("CrossScaleFusion")
    assert info.kind == "token" and info.patterns == ("noncausal_cross",)
