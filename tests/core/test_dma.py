"""Dynamic Mask Attention against a literal, query-by-query float64 reference of the paper's equations.

Tolerances: every comparison runs in float64, forward atol 1e-10, gradients atol 1e-8 (the paths differ
only by summation order). The fp32 module against the fp64 reference uses the repo's FWD (atol 1e-5 /
rtol 1e-4).
"""

import copy
import math

import pytest
import torch

from core.attention.dma import DynamicMaskAttention, dynamic_mask_attention, dynamic_topk

EXACT = {"atol": 1e-10, "rtol": 1e-10}
FWD = {"atol": 1e-5, "rtol": 1e-4}


def literal_dma(q, k, v, delta, top_k, key_mask=None, causal=False):
    """For every (b, h, i): eligible keys, keep the top_k by δ, softmax(q·k/√d + δ) over them."""
    b, h, n, d = q.shape
    out = torch.zeros(b, h, n, v.shape[-1], dtype=q.dtype)
    for bi in range(b):
        for hi in range(h):
            for i in range(n):
                keys = [
                    j
                    for j in range(k.shape[2])
                    if (key_mask is None or bool(key_mask[bi, j])) and (not causal or j <= i)
                ]
                keys = sorted(keys, key=lambda j: -float(delta[bi, hi, j].detach()))[:top_k]
                if not keys:
                    continue
                logits = torch.stack(
                    [q[bi, hi, i] @ k[bi, hi, j] / math.sqrt(d) + delta[bi, hi, j] for j in keys]
                )
                w = torch.softmax(logits, 0)
                out[bi, hi, i] = sum(w[t] * v[bi, hi, j] for t, j in enumerate(keys))
    return out


@pytest.mark.parametrize("backend", ["gather", "sdpa", "reference"])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("use_mask", [False, True])
def test_functional_matches_literal(backend: str, causal: bool, use_mask: bool) -> None:
    torch.manual_seed(0)
    b, h, n, d, top_k = 2, 2, 9, 4, 3
    q, k, v = (torch.randn(b, h, n, d, dtype=torch.float64, requires_grad=True) for _ in range(3))
    delta = torch.rand(b, h, n, dtype=torch.float64, requires_grad=True)
    key_mask = torch.rand(b, n) > 0.3 if use_mask else None
    if key_mask is not None:
        key_mask[1, :2] = False  # causal row 0/1 of sample 1 has no eligible key -> zeros
    mask4 = None if key_mask is None else key_mask[:, None, None, :]
    out = dynamic_mask_attention(q, k, v, delta, top_k, mask=mask4, is_causal=causal, backend=backend)
    ref = literal_dma(q, k, v, delta, top_k, key_mask, causal)
    torch.testing.assert_close(out, ref, **EXACT)
    g = torch.randn_like(out)
    grads = torch.autograd.grad(out, (q, k, v, delta), g)
    grads_ref = torch.autograd.grad(ref, (q, k, v, delta), g)
    for a, r in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(a, r, atol=1e-8, rtol=1e-8)


def test_exactly_top_k_keys_are_attended() -> None:
    torch.manual_seed(1)
    mixer = DynamicMaskAttention(8, num_heads=2, top_k=3).double()
    x = torch.randn(2, 10, 8, dtype=torch.float64)
    for causal in (False, True):
        sel = mixer.selection(x, is_causal=causal)
        eligible = (
            torch.ones(10, 10, dtype=torch.bool).tril() if causal else torch.ones(10, 10, dtype=torch.bool)
        )
        counts = sel.sum(-1)
        expected = eligible.sum(-1).clamp(max=3)
        assert (counts == expected).all()
        assert not (sel & ~eligible).any()
        delta = mixer.importance(mixer.qkv(x).chunk(3, -1)[2])  # (B, H, N)
        # every selected key beats every eligible unselected key of the same row
        for bi in range(2):
            for hi in range(2):
                for i in range(10):
                    s, e = sel[bi, hi, i], eligible[i] & ~sel[bi, hi, i]
                    if e.any():
                        assert delta[bi, hi, s].min() > delta[bi, hi, e].max()


def test_unselected_keys_do_not_matter() -> None:
    """Changing the key (not the value, which drives δ) of an unselected position leaves outputs unchanged."""
    torch.manual_seed(2)
    b, h, n, d = 1, 1, 8, 4
    q, k, v = (torch.randn(b, h, n, d, dtype=torch.float64) for _ in range(3))
    delta = torch.rand(b, h, n, dtype=torch.float64)
    index, _ = dynamic_topk(delta, 3)
    out = dynamic_mask_attention(q, k, v, delta, 3)
    unselected = [j for j in range(n) if j not in index.flatten().tolist()]
    k2 = k.clone()
    k2[:, :, unselected] += 100.0
    torch.testing.assert_close(dynamic_mask_attention(q, k2, v, delta, 3), out, atol=0, rtol=0)
    k2[:, :, index[0, 0, 0, 0]] += 1.0
    assert not torch.allclose(dynamic_mask_attention(q, k2, v, delta, 3), out)


def test_module_matches_literal_and_is_causal() -> None:
    torch.manual_seed(3)
    mixer = DynamicMaskAttention(8, num_heads=2, top_k=4)
    ref = copy.deepcopy(mixer).double()
    x = torch.randn(2, 11, 8)
    pad = torch.ones(2, 11, dtype=torch.bool)
    pad[0, -3:] = False
    for causal in (False, True):
        out = mixer(x, mask=pad, is_causal=causal)
        x64 = x.double()
        qkv = ref.qkv(x64)
        q, k, v = (t.view(2, 11, 2, 4).transpose(1, 2) for t in qkv.chunk(3, -1))
        delta = ref.importance(qkv.chunk(3, -1)[2])
        lit = literal_dma(q, k, v, delta, 4, pad, causal)
        expected = ref.proj(lit.transpose(1, 2).reshape(2, 11, 8))
        torch.testing.assert_close(out.double(), expected, **FWD)
    y = x.clone()
    y[:, 6:] += torch.randn_like(y[:, 6:])
    torch.testing.assert_close(
        mixer(x, is_causal=True)[:, :6], mixer(y, is_causal=True)[:, :6], atol=0, rtol=0
    )


def test_delta_parameters_get_gradients_and_errors() -> None:
    mixer = DynamicMaskAttention(8, num_heads=2, top_k=2)
    mixer(torch.randn(2, 6, 8), is_causal=True).sum().backward()
    assert mixer.A.grad is not None and mixer.A.grad.abs().sum() > 0
    assert mixer.dt_proj.weight.grad.abs().sum() > 0
    assert mixer.attention_flops(1, 4, 4, is_causal=True) == 4.0 * (1 + 2 + 2 + 2) * 8
    with pytest.raises(ValueError, match="top_k"):
        DynamicMaskAttention(8, num_heads=2, top_k=0)
    with pytest.raises(ValueError, match="backend"):
        DynamicMaskAttention(8, num_heads=2, backend="flex")
