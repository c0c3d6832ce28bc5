"""Windowed sparse + global attention (QualityFM) and Hydra's intermittent layer, against literal references.

The reference builds the pattern pair by pair from the definition in the module docstring and runs a
per-head masked softmax in float64. Tolerances: float64 paths atol/rtol 1e-10 (gradients 1e-8); fp32
module vs fp64 reference FWD atol 1e-5 / rtol 1e-4.
"""

import copy
import math

import pytest
import torch

from core.attention.sparse_global import (
    HydraSparseGlobalAttention,
    WindowedSparseAttention,
    global_positions,
    sparse_global_pattern,
    windowed_sparse_attention,
)

EXACT = {"atol": 1e-10, "rtol": 1e-10}
FWD = {"atol": 1e-5, "rtol": 1e-4}


def literal_pattern(n, w, g, s, causal):
    out = torch.zeros(n, n, dtype=torch.bool)
    glob = {j for j in range(n) if j < g or (s > 0 and j % s == s - 1)}
    for i in range(n):
        for j in range(n):
            local = (0 <= i - j <= w - 1) if causal else (-(w // 2) <= j - i <= w - 1 - w // 2)
            ok = local or j in glob or i in glob
            out[i, j] = ok and (not causal or j <= i)
    return out


def literal_attention(q, k, v, allowed):
    """Query by query: softmax over the allowed keys; no key -> zeros."""
    b, h, n, d = q.shape
    out = torch.zeros(b, h, n, v.shape[-1], dtype=q.dtype)
    for bi in range(b):
        for hi in range(h):
            for i in range(n):
                js = [j for j in range(n) if allowed[bi, i, j]]
                if js:
                    lg = torch.stack([q[bi, hi, i] @ k[bi, hi, j] / math.sqrt(d) for j in js])
                    w = torch.softmax(lg, 0)
                    out[bi, hi, i] = sum(w[t] * v[bi, hi, j] for t, j in enumerate(js))
    return out


def test_pattern_and_positions() -> None:
    assert global_positions(10, 2, 4).tolist() == [0, 1, 3, 7]
    assert global_positions(5, 0, 0).numel() == 0
    for causal in (False, True):
        for w, g, s in ((3, 1, 4), (4, 0, 3), (1, 2, 0), (20, 0, 0)):
            assert torch.equal(
                sparse_global_pattern(11, w, g, s, causal), literal_pattern(11, w, g, s, causal)
            )


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("use_mask", [False, True])
@pytest.mark.parametrize("config", [(3, 1, 4), (4, 0, 0), (2, 2, 5), (15, 0, 3)])
def test_functional_matches_literal(causal: bool, use_mask: bool, config) -> None:
    torch.manual_seed(0)
    w, g, s = config
    b, h, n, d = 2, 2, 11, 4
    q, k, v = (torch.randn(b, h, n, d, dtype=torch.float64, requires_grad=True) for _ in range(3))
    pad = torch.rand(b, n) > 0.25 if use_mask else torch.ones(b, n, dtype=torch.bool)
    pad[1, :3] = False if use_mask else True
    allowed = literal_pattern(n, w, g, s, causal)[None] & pad[:, None, :]
    m4 = pad[:, None, None, :] if use_mask else None
    out = windowed_sparse_attention(q, k, v, window=w, num_global=g, stride=s, mask=m4, is_causal=causal)
    ref = literal_attention(q, k, v, allowed)
    torch.testing.assert_close(out, ref, **EXACT)
    dense = windowed_sparse_attention(
        q, k, v, window=w, num_global=g, stride=s, mask=m4, is_causal=causal, backend="reference"
    )
    torch.testing.assert_close(dense, ref, **EXACT)
    gr = torch.randn_like(out)
    for a, r in zip(
        torch.autograd.grad(out, (q, k, v), gr), torch.autograd.grad(ref, (q, k, v), gr), strict=True
    ):
        torch.testing.assert_close(a, r, atol=1e-8, rtol=1e-8)


def test_per_query_mask_and_module_reference() -> None:
    torch.manual_seed(1)
    mixer = WindowedSparseAttention(8, num_heads=2, window=3, num_global=1, stride=4)
    ref = copy.deepcopy(mixer).double()
    x = torch.randn(2, 10, 8)
    mask = torch.rand(2, 10, 10) > 0.3
    for causal in (False, True):
        out = mixer(x, mask=mask, is_causal=causal)
        q, k, v = (t.view(2, 10, 2, 4).transpose(1, 2) for t in ref.qkv(x.double()).chunk(3, -1))
        allowed = literal_pattern(10, 3, 1, 4, causal)[None] & mask
        expected = ref.proj(literal_attention(q, k, v, allowed).transpose(1, 2).reshape(2, 10, 8))
        torch.testing.assert_close(out.double(), expected, **FWD)
    y = x.clone()
    y[:, 6:] += torch.randn_like(y[:, 6:])
    torch.testing.assert_close(
        mixer(x, is_causal=True)[:, :6], mixer(y, is_causal=True)[:, :6], atol=0, rtol=0
    )
    assert mixer.attention_flops(1, 10, 10) == 4.0 * int(literal_pattern(10, 3, 1, 4, False).sum()) * 8


def test_hydra_schedule() -> None:
    torch.manual_seed(2)
    x = torch.randn(2, 9, 8)
    layers = [HydraSparseGlobalAttention(8, num_heads=2, every=3, window=3, num_global=1, stride=3,
                                         layer_idx=i, num_layers=6) for i in range(6)]  # fmt: skip
    assert [m.is_global_layer for m in layers] == [False, False, True, False, False, True]
    for m in layers:
        plain = WindowedSparseAttention(8, num_heads=2, window=3, num_global=1 if m.is_global_layer else 0,
                                        stride=3 if m.is_global_layer else 0)  # fmt: skip
        plain.load_state_dict(m.state_dict())
        for causal in (False, True):
            torch.testing.assert_close(m(x, is_causal=causal), plain(x, is_causal=causal), atol=0, rtol=0)
    zero = HydraSparseGlobalAttention(8, num_heads=2, every=2, off_path="zero", layer_idx=0, num_layers=2)
    assert (zero(x) == 0).all() and zero.attention_flops(1, 9, 9) == 0.0
    on = HydraSparseGlobalAttention(8, num_heads=2, every=2, off_path="zero", layer_idx=1, num_layers=2)
    assert on(x).abs().sum() > 0
    with pytest.raises(ValueError, match="every"):
        HydraSparseGlobalAttention(8, num_heads=2, every=0)
    with pytest.raises(ValueError, match="off_path"):
        HydraSparseGlobalAttention(8, num_heads=2, off_path="ssm")
