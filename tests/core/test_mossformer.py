"""MossFormer joint attention, GAU mixer and block against literal float64 references of the equations.

Tolerances as in test_attention.py: fp32 implementation vs fp64 reference, forward atol 1e-5 / rtol 1e-4,
gradients atol 1e-4 / rtol 1e-3; fp64 vs fp64 (chunked vs recurrent, padding invariance) atol 1e-10.
"""

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from core.attention.base import key_padding_mask
from core.attention.mossformer import (
    MossFormerAttention,
    joint_attention,
    joint_attention_reference,
    rotate_partial,
)
from core.blocks.mossformer import MossFormerBlock, MossFormerStack, ScaleNorm
from tests.core.reference_check import assert_same_outputs_and_grads

FWD = {"atol": 1e-5, "rtol": 1e-4}
GRAD = {"atol": 1e-4, "rtol": 1e-3}
EXACT = {"atol": 1e-10, "rtol": 1e-10}


def _inputs(b, n, d, ev, eu, dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    shapes = [(b, n, d)] * 4 + [(b, n, ev), (b, n, eu)]
    return [torch.randn(*s, generator=gen, dtype=dtype).requires_grad_(True) for s in shapes]


def _mask(b, n, seed=1):
    mask = torch.rand(b, n, generator=torch.Generator().manual_seed(seed)) > 0.3
    mask[0, 0] = True
    return mask


def recurrent_causal(qq, kq, ql, kl, v, u, g, key_mask=None):
    """Streaming form: token by token, a cache of the current chunk's keys and a committed per-chunk state."""
    b, n, d = qq.shape
    vu = torch.cat((v, u), dim=-1)
    out = torch.zeros(b, n, vu.shape[-1], dtype=vu.dtype)
    for bi in range(b):
        state = torch.zeros(d, vu.shape[-1], dtype=vu.dtype)
        pending = torch.zeros_like(state)
        cache: list[int] = []
        for i in range(n):
            if i % g == 0:  # a chunk completed: commit its summary, start a new cache
                state, pending, cache = state + pending, torch.zeros_like(state), []
            if key_mask is None or key_mask[bi, i]:
                cache.append(i)
                pending = pending + torch.outer(kl[bi, i], vu[bi, i]) / g
            local = sum((F.relu(qq[bi, i] @ kq[bi, j] / g) ** 2 * vu[bi, j] for j in cache), torch.zeros(1))
            out[bi, i] = ql[bi, i] @ state + local
    return out[..., : v.shape[-1]], out[..., v.shape[-1] :]


def literal_rotate(t, rotary_dim):
    """Pair (2j, 2j+1) of position p rotated by p · 10000^(-2j/r) (rotary_embedding_torch), rest untouched."""
    out = t.clone()
    pos = torch.arange(t.shape[-2], dtype=torch.float64)
    for j in range(rotary_dim // 2):
        theta = (pos * 10000 ** (-2 * j / rotary_dim))[:, None].to(t.dtype)
        x1, x2 = t[..., :, 2 * j : 2 * j + 1], t[..., :, 2 * j + 1 : 2 * j + 2]
        out[..., :, 2 * j : 2 * j + 1] = x1 * theta.cos() - x2 * theta.sin()
        out[..., :, 2 * j + 1 : 2 * j + 2] = x2 * theta.cos() + x1 * theta.sin()
    return out


def literal_core(core, z, v, u, causal, key_mask):
    """OffsetScale (official head order q_quad, q_lin, k_quad, k_lin), RoPE, literal joint attention."""
    heads = [z * core.offset_scale.gamma[h] + core.offset_scale.beta[h] for h in range(4)]
    qq, ql, kq, kl = (literal_rotate(t, core.rotary_dim) for t in heads)
    return joint_attention_reference(
        qq, kq, ql, kl, v, u, group_size=core.group_size, is_causal=causal, key_mask=key_mask
    )


def literal_gau(mixer, x, causal, key_mask):
    v, u = F.silu(x @ mixer.to_hidden.weight.T + mixer.to_hidden.bias).chunk(2, dim=-1)
    z = F.silu(x @ mixer.to_qk.weight.T + mixer.to_qk.bias)
    att_v, att_u = literal_core(mixer.attention, z, v, u, causal, key_mask)
    gated = att_u * v * (1 / (1 + torch.exp(-(att_v * u))))
    return gated @ mixer.to_out.weight.T + mixer.to_out.bias


def literal_ffconvm(ff, h, causal, key_mask):
    if isinstance(ff.norm, ScaleNorm):
        rms = torch.sqrt((h**2).sum(-1, keepdim=True) / h.shape[-1])
        h = h / rms.clamp_min(ff.norm.eps) * ff.norm.g
    else:
        mean, var = h.mean(-1, keepdim=True), h.var(-1, unbiased=False, keepdim=True)
        h = (h - mean) / torch.sqrt(var + ff.norm.eps) * ff.norm.weight + ff.norm.bias
    h = F.silu(h @ ff.linear.weight.T + ff.linear.bias)
    src = h if key_mask is None else h * key_mask[..., None]
    k, n = ff.conv.kernel_size, h.shape[1]
    conv = torch.zeros_like(h)
    for t in range(n):  # output frame t reads frames t - (k-1) .. t (causal) or t - k//2 .. t + k//2
        for tap in range(k):
            s = t - (k - 1) + tap if causal else t - k // 2 + tap
            if 0 <= s < n:
                conv[:, t] = conv[:, t] + ff.conv.conv.weight[:, 0, tap] * src[:, s]
    return h + conv


def literal_block(block, x, key_mask):
    causal = block.causal
    src = x if key_mask is None else x * key_mask[..., None]
    half = math.ceil(x.shape[-1] / 2)
    shifted = torch.zeros_like(x[..., :half])
    shifted[:, 1:] = src[:, :-1, :half]
    h = torch.cat((shifted, x[..., half:]), dim=-1) if block.shift_tokens else x
    v, u = literal_ffconvm(block.to_hidden, h, causal, key_mask).chunk(2, dim=-1)
    z = literal_ffconvm(block.to_qk, h, causal, key_mask)
    att_v, att_u = literal_core(block.attention, z, v, u, causal, key_mask)
    gated = att_u * v * torch.sigmoid(att_v * u)
    return x + literal_ffconvm(block.to_out, gated, causal, key_mask)


@pytest.mark.parametrize(("n", "g"), [(13, 4), (63, 16), (8, 4)])
@pytest.mark.parametrize("use_mask", [False, True])
@pytest.mark.parametrize("causal", [False, True])
def test_joint_attention_matches_literal(n: int, g: int, use_mask: bool, causal: bool) -> None:
    inputs = _inputs(2, n, 6, 3, 5)
    inputs64 = [t.detach().double().requires_grad_(True) for t in inputs]
    key_mask = _mask(2, n) if use_mask else None
    out = torch.cat(joint_attention(*inputs, group_size=g, is_causal=causal, key_mask=key_mask), -1)
    expected = torch.cat(
        joint_attention_reference(*inputs64, group_size=g, is_causal=causal, key_mask=key_mask), -1
    )
    torch.testing.assert_close(out.double(), expected, **FWD)
    grad = torch.randn_like(out)
    out.backward(grad)
    expected.backward(grad.double())
    for t, t64 in zip(inputs, inputs64, strict=True):
        torch.testing.assert_close(t.grad.double(), t64.grad, **GRAD)


@pytest.mark.parametrize("use_mask", [False, True])
def test_causal_chunked_matches_recurrent(use_mask: bool) -> None:
    inputs = [t.detach() for t in _inputs(2, 63, 4, 3, 2, torch.float64)]
    key_mask = _mask(2, 63) if use_mask else None
    out = joint_attention(*inputs, group_size=16, is_causal=True, key_mask=key_mask)
    rec = recurrent_causal(*inputs, 16, key_mask)
    for a, r in zip(out, rec, strict=True):
        torch.testing.assert_close(a, r, **EXACT)


@pytest.mark.parametrize("causal", [False, True])
def test_joint_attention_gradcheck(causal: bool) -> None:
    inputs = _inputs(1, 7, 3, 2, 2, torch.float64)
    mask = torch.tensor([[True, True, False, True, True, True, False]])
    assert torch.autograd.gradcheck(
        lambda *t: joint_attention(*t, group_size=3, is_causal=causal, key_mask=mask), inputs
    )


@pytest.mark.parametrize("t", [2, 5, 6])  # inside a chunk, first token of a chunk, later
def test_joint_attention_is_causal(t: int) -> None:
    inputs = [x.detach() for x in _inputs(2, 13, 4, 3, 3, torch.float64)]
    changed = [x.clone() for x in inputs]
    for x in changed:
        x[:, t:] += torch.randn_like(x[:, t:])
    a = torch.cat(joint_attention(*inputs, group_size=5, is_causal=True), -1)
    c = torch.cat(joint_attention(*changed, group_size=5, is_causal=True), -1)
    torch.testing.assert_close(a[:, :t], c[:, :t], atol=0, rtol=0)
    assert not torch.allclose(a[:, t:], c[:, t:])
    nc_a = torch.cat(joint_attention(*inputs, group_size=5), -1)
    nc_c = torch.cat(joint_attention(*changed, group_size=5), -1)
    assert not torch.allclose(nc_a[:, :t], nc_c[:, :t])  # the non-causal linear part sees the future


@pytest.mark.parametrize("causal", [False, True])
def test_joint_attention_padding_invariance(causal: bool) -> None:
    """A key-padded batch gives the unpadded outputs on its valid tokens (chunks start at 0)."""
    inputs = [x.detach() for x in _inputs(2, 13, 4, 3, 3, torch.float64)]
    mask = torch.ones(2, 13, dtype=torch.bool)
    mask[:, 10:] = False
    full = joint_attention(*inputs, group_size=4, is_causal=causal, key_mask=mask)
    short = joint_attention(*(x[:, :10] for x in inputs), group_size=4, is_causal=causal)
    for a, s in zip(full, short, strict=True):
        torch.testing.assert_close(a[:, :10], s, **EXACT)
    empty = joint_attention(*inputs, group_size=4, is_causal=causal, key_mask=torch.zeros_like(mask))
    assert all((t == 0).all() for t in empty)


def test_rotary_is_literal_and_relative() -> None:
    t = torch.randn(2, 9, 10, dtype=torch.float64)
    torch.testing.assert_close(rotate_partial(t, 6), literal_rotate(t, 6), **EXACT)
    torch.testing.assert_close(rotate_partial(t, 0), t)
    q, k = torch.randn(10, dtype=torch.float64), torch.randn(10, dtype=torch.float64)
    seq_q, seq_k = rotate_partial(q.expand(1, 9, 10), 6)[0], rotate_partial(k.expand(1, 9, 10), 6)[0]
    torch.testing.assert_close(seq_q[5] @ seq_k[2], seq_q[7] @ seq_k[4], **EXACT)  # depends on p - s only


@pytest.mark.parametrize(("causal", "use_mask", "rotary_dim"), [(False, False, None), (True, True, 4)])
def test_gau_mixer_matches_literal(causal: bool, use_mask: bool, rotary_dim: int | None) -> None:
    mixer = MossFormerAttention(8, group_size=4, query_key_dim=8, expansion_factor=2, rotary_dim=rotary_dim)
    with torch.no_grad():
        mixer.attention.offset_scale.gamma.normal_()  # larger than the 0.02 init so relu² matters
        mixer.attention.offset_scale.beta.normal_()
    ref = copy.deepcopy(mixer).double()
    x = torch.randn(2, 11, 8, requires_grad=True)
    x64 = x.detach().double().requires_grad_(True)
    mask = _mask(2, 11) if use_mask else None
    out = mixer(x, mask=mask, is_causal=causal)
    expected = literal_gau(ref, x64, causal, mask)
    torch.testing.assert_close(out.double(), expected, **FWD)
    grad = torch.randn_like(out)
    out.backward(grad)
    expected.backward(grad.double())
    torch.testing.assert_close(x.grad.double(), x64.grad, **GRAD)
    for (name, p), p64 in zip(mixer.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p.grad.double(), p64.grad, **GRAD, msg=lambda m, name=name: f"{name}: {m}")


def test_gau_mixer_contract() -> None:
    mixer = MossFormerAttention(8, group_size=4, query_key_dim=8)
    assert mixer.hidden == 32 and mixer.to_out.in_features == 16  # v, u = 2C each (official e = 4)
    assert mixer.attention.rotary_dim == 8  # min(32, d)
    assert mixer.attention_flops(2, 10, 10) > mixer.attention_flops(2, 10, 10, is_causal=True) > 0
    x = torch.randn(2, 6, 8)
    with pytest.raises(ValueError, match="key-padding masks only"):
        mixer(x, mask=torch.ones(2, 6, 6, dtype=torch.bool))
    assert key_padding_mask(torch.ones(1, 1, 1, 6, dtype=torch.bool), 2, 6).shape == (2, 6)
    with pytest.raises(ValueError, match="expansion_factor"):
        MossFormerAttention(3, expansion_factor=1.0)
    with pytest.raises(ValueError, match="rotary_dim"):
        MossFormerAttention(8, query_key_dim=8, rotary_dim=5)
    with pytest.raises(ValueError, match="group_size"):
        MossFormerAttention(8, group_size=0)
    with pytest.raises(ValueError, match=r"key_mask must be boolean of shape \(2, 6\)"):
        joint_attention(*_inputs(2, 6, 4, 2, 2), group_size=4, key_mask=torch.ones(2, 5, dtype=torch.bool))


@pytest.mark.parametrize(("causal", "use_mask", "norm"), [(False, False, "scale"), (True, True, "layer")])
def test_block_matches_literal(causal: bool, use_mask: bool, norm: str) -> None:
    """The whole block (token shift, FFConvMs, joint attention, gate, residual) against its literal form."""
    block = MossFormerBlock(
        10, group_size=4, query_key_dim=8, causal=causal, dropout=0.0, norm=norm, kernel_size=5
    )
    with torch.no_grad():
        block.attention.offset_scale.gamma.normal_()
    ref = copy.deepcopy(block).double()
    x = torch.randn(2, 11, 10, requires_grad=True)
    x64 = x.detach().double().requires_grad_(True)
    mask = _mask(2, 11) if use_mask else None
    out = block(x, mask=mask)
    expected = literal_block(ref, x64, mask)
    assert out.shape == x.shape
    torch.testing.assert_close(out.double(), expected, **FWD)
    grad = torch.randn_like(out)
    out.backward(grad)
    expected.backward(grad.double())
    torch.testing.assert_close(x.grad.double(), x64.grad, **GRAD)


def test_block_causality() -> None:
    kw = {"group_size": 4, "query_key_dim": 8, "dropout": 0.0, "kernel_size": 5}
    causal, noncausal = MossFormerBlock(8, causal=True, **kw).double(), MossFormerBlock(8, **kw).double()
    x = torch.randn(2, 13, 8, dtype=torch.float64)
    y = x.clone()
    y[:, 6:] += torch.randn_like(y[:, 6:])
    torch.testing.assert_close(causal(x)[:, :6], causal(y)[:, :6], atol=0, rtol=0)
    assert not torch.allclose(causal(x)[:, 6:], causal(y)[:, 6:])
    assert not torch.allclose(noncausal(x)[:, :6], noncausal(y)[:, :6])


@pytest.mark.parametrize("causal", [False, True])
def test_block_padding_invariance(causal: bool) -> None:
    block = MossFormerBlock(8, group_size=4, query_key_dim=8, causal=causal, kernel_size=5).double().eval()
    x = torch.randn(2, 13, 8, dtype=torch.float64)
    mask = torch.ones(2, 13, dtype=torch.bool)
    mask[:, 9:] = False
    x_pad = x.clone()
    x_pad[:, 9:] = 100.0  # garbage in the padding must not leak through convs, shift or attention
    torch.testing.assert_close(block(x_pad, mask=mask)[:, :9], block(x[:, :9]), **EXACT)


def test_stack_and_errors() -> None:
    stack = MossFormerStack(8, 3, group_size=4, query_key_dim=8, causal=True, dropout=0.1)
    x = torch.randn(2, 9, 8)
    out = stack(x)
    assert out.shape == x.shape and len(stack.blocks) == 3
    torch.testing.assert_close(out.mean(-1), torch.zeros(2, 9), atol=1e-5, rtol=0)  # final LayerNorm
    out.sum().backward()
    assert all(p.grad is not None for p in stack.parameters())
    with pytest.raises(ValueError, match=r"\(B, N, 8\)"):
        stack.blocks[0](torch.randn(2, 9, 7))
    with pytest.raises(ValueError, match="depth"):
        MossFormerStack(8, 0)
    with pytest.raises(ValueError, match="kernel_size"):
        MossFormerBlock(8, kernel_size=4)
    with pytest.raises(ValueError, match="norm"):
        MossFormerBlock(8, norm="batch")
    with pytest.raises(ValueError, match="expansion_factor"):
        MossFormerBlock(3, expansion_factor=1.0)


def test_block_overfits_a_tiny_target() -> None:
    """Sanity: a causal 1-block stack fits a fixed random target (loss halves in 30 Adam steps)."""
    torch.manual_seed(0)
    stack = MossFormerStack(8, 1, group_size=4, query_key_dim=8, causal=True, dropout=0.0, kernel_size=3)
    x, target = torch.randn(2, 10, 8), torch.randn(2, 10, 8)
    opt = torch.optim.Adam(stack.parameters(), lr=1e-2)
    first = None
    for _ in range(30):
        loss = F.mse_loss(stack(x), target)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first / 2


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize(("n", "segment"), [(24, 8), (23, 9)])
def test_segments_match_one_pass(causal: bool, n: int, segment: int) -> None:
    """Segments of whole chunks (g = 4, a short last segment) equal one segment, values and gradients."""
    torch.manual_seed(8)
    whole = MossFormerAttention(8, group_size=4, query_key_dim=8, rotary_dim=4, segment_size=64).double()
    seg = copy.deepcopy(whole)
    seg.segment_size = segment  # rounded down to 8
    x = torch.randn(2, n, 8, dtype=torch.float64, requires_grad=True)
    pad = _mask(2, n)
    out = assert_same_outputs_and_grads(whole, seg, x, mask=pad, is_causal=causal)
    with torch.no_grad():  # ...and the one-pass functional form
        v, u = F.silu(whole.to_hidden(x)).chunk(2, dim=-1)
        z = F.silu(whole.to_qk(x))
        att_v, att_u = whole.attention(z, v, u, is_causal=causal, key_mask=pad)
        expected = whole.to_out((att_u * v) * torch.sigmoid(att_v * u))
        torch.testing.assert_close(out.detach(), expected, **EXACT)
