"""Flux Attention: forced paths against literal float64 references, routing, gradients and the budget loss.

Tolerances: fp32 module vs fp64 literal reference FWD atol 1e-5 / rtol 1e-4.
"""

import copy
import math

import pytest
import torch

from core.attention.flux import FluxAttention, FluxLayerRouter

FWD = {"atol": 1e-5, "rtol": 1e-4}


def literal_attention(x, module, allowed):
    """Per-head softmax(q kᵀ/√d) v over an explicit (B|1, N, N) allowed pattern, then W_o."""
    c = x.shape[-1]
    h = module.num_heads
    d = c // h
    q, k, v = module.qkv(x).chunk(3, -1)
    outs = []
    for hi in range(h):
        sl = slice(hi * d, (hi + 1) * d)
        s = q[..., sl] @ k[..., sl].transpose(1, 2) / math.sqrt(d)
        w = torch.softmax(s.masked_fill(~allowed, float("-inf")), -1).nan_to_num(0.0)
        outs.append(w @ v[..., sl])
    return module.proj(torch.cat(outs, -1))


def window_pattern(n, w, causal):
    i, j = torch.arange(n)[:, None], torch.arange(n)[None, :]
    if causal:
        return (j <= i) & (i - j < w)
    left = w // 2
    start = (i - left).clamp(min=0).clamp(max=n - w)  # NATTEN: windows shifted inward at the borders
    return (j >= start) & (j < start + w)


@pytest.mark.parametrize("causal", [False, True])
def test_forced_paths_match_references(causal: bool) -> None:
    torch.manual_seed(0)
    b, n, c = 2, 9, 8
    x = torch.randn(b, n, c)
    pad = torch.ones(b, n, dtype=torch.bool)
    pad[1, -2:] = False
    for force in ("full", "sparse"):
        mixer = FluxAttention(c, num_heads=2, window=3, force=force)
        ref = copy.deepcopy(mixer).double()
        allowed = torch.ones(n, n, dtype=torch.bool) if force == "full" else window_pattern(n, 3, causal)
        if force == "full" and causal:
            allowed = allowed.tril()
        allowed = allowed[None] & pad[:, None, :]
        out = mixer(x, mask=pad, is_causal=causal)
        torch.testing.assert_close(out.double(), literal_attention(x.double(), ref, allowed), **FWD)
        assert mixer.aux_loss is None


def test_router_gradient_flows_and_aux_loss_in_training() -> None:
    torch.manual_seed(1)
    for relaxation in ("gumbel", "sigmoid"):
        for causal in (False, True):
            mixer = FluxAttention(8, num_heads=2, window=2, relaxation=relaxation).train()
            out = mixer(torch.randn(2, 7, 8), is_causal=causal)
            assert mixer.aux_loss is not None and mixer.aux_loss.ndim == 0
            (out.sum() + mixer.aux_loss).backward()
            assert mixer.router.fc1.weight.grad.abs().sum() > 0
            assert mixer.router.fc2.bias.grad.abs() > 0
            assert mixer.last_decision.shape == ((2, 7) if causal else (2,))


def test_straight_through_forward_is_one_of_the_paths() -> None:
    torch.manual_seed(2)
    x = torch.randn(2, 6, 8)
    mixer = FluxAttention(8, num_heads=2, window=2, relaxation="sigmoid").train()
    full, sparse = copy.deepcopy(mixer), copy.deepcopy(mixer)  # before forward: aux_loss is a graph tensor
    full.force, sparse.force = "full", "sparse"
    out = mixer(x)
    for bi in range(2):
        expected = full(x)[bi] if mixer.last_decision[bi] else sparse(x)[bi]
        torch.testing.assert_close(out[bi], expected)


def test_inference_hard_decision_per_sample() -> None:
    torch.manual_seed(3)
    mixer = FluxAttention(8, num_heads=2, window=2).eval()
    x = torch.randn(4, 6, 8)
    with torch.no_grad():
        # make the decisions differ between samples: the router sees the pooled context
        mixer.router.fc2.weight.zero_()
        mixer.router.fc2.bias.zero_()
        mixer.router.fc2.weight[0, 0] = 1.0
        logits = mixer.router(x, torch.ones(4, 6, dtype=torch.bool))
        out = mixer(x)
    assert mixer.aux_loss is None
    assert torch.equal(mixer.last_decision, logits > 0)
    full, sparse = copy.deepcopy(mixer), copy.deepcopy(mixer)
    full.force, sparse.force = "full", "sparse"
    with torch.no_grad():
        for bi in range(4):
            ref = full(x)[bi] if logits[bi] > 0 else sparse(x)[bi]
            torch.testing.assert_close(out[bi], ref)


def test_causal_routing_is_causal_and_padding_is_ignored() -> None:
    torch.manual_seed(4)
    mixer = FluxAttention(8, num_heads=2, window=3, relaxation="sigmoid")
    x = torch.randn(2, 8, 8)
    y = x.clone()
    y[:, 5:] += 3 * torch.randn_like(y[:, 5:])
    for mode in (mixer.train, mixer.eval):
        mode()
        torch.testing.assert_close(
            mixer(x, is_causal=True)[:, :5], mixer(y, is_causal=True)[:, :5], atol=0, rtol=0
        )
    pad = torch.ones(2, 8, dtype=torch.bool)
    pad[:, 5:] = False
    torch.testing.assert_close(mixer(x, mask=pad)[:, :5], mixer(y, mask=pad)[:, :5])
    valid = torch.ones(2, 8, dtype=torch.bool)
    prefix = FluxLayerRouter.pool(x, valid, True)
    torch.testing.assert_close(prefix[:, 3], x[:, :4].mean(1))


def test_errors_and_flops() -> None:
    with pytest.raises(ValueError, match="relaxation"):
        FluxAttention(8, num_heads=2, relaxation="hard")
    with pytest.raises(ValueError, match="budget"):
        FluxAttention(8, num_heads=2, budget=2.0)
    with pytest.raises(ValueError, match="force"):
        FluxAttention(8, num_heads=2, force="half")
    sparse = FluxAttention(8, num_heads=2, window=2, force="sparse")
    assert sparse.attention_flops(1, 4, 4, is_causal=True) == 4.0 * (1 + 2 + 2 + 2) * 8
