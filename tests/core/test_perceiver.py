"""Dynamic Perceiver cross-attention (x2z, z2x) and its block against literal float64 references.

Tolerances: forward atol 1e-5 / rtol 1e-4, gradients atol 1e-4 / rtol 1e-3 (fp32 module vs fp64 literal).
"""

import copy
import math

import pytest
import torch

from core.attention import MultiHeadAttention
from core.attention.perceiver import PerceiverCrossAttention
from core.blocks.perceiver import PerceiverBlock

FWD = {"atol": 1e-5, "rtol": 1e-4}
GRAD = {"atol": 1e-4, "rtol": 1e-3}


def _ln(x, norm):
    mu = x.mean(dim=-1, keepdim=True)
    var = ((x - mu) ** 2).mean(dim=-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + norm.eps) * norm.weight + norm.bias


def _gelu(x):
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


def _affine(x, layer):
    out = x @ layer.weight.T
    return out if layer.bias is None else out + layer.bias


def literal_cross_layer(layer, x, ctx, valid=None):
    """X ← x + Attn(LN(x), LN(ctx)) with keys (LN(ctx) W_k + E); x ← x + MLP(LN(x)); query by query."""
    attn = layer.attn
    heads, inner = attn.num_heads, attn.inner_dim
    d = inner // heads
    q = _affine(_ln(x, layer.q_norm), attn.q)
    kv = _affine(_ln(ctx, layer.kv_norm), attn.kv)
    k, v = kv[..., :inner], kv[..., inner:]
    if attn.key_embed is not None:
        k = k + attn.key_embed
    valid = torch.ones(ctx.shape[:2], dtype=torch.bool) if valid is None else valid
    rows = []
    for bi in range(x.shape[0]):
        outs = []
        for n in range(x.shape[1]):
            keys = [m for m in range(ctx.shape[1]) if bool(valid[bi, m])]
            per_head = []
            for h in range(heads):
                sl = slice(h * d, (h + 1) * d)
                if not keys:
                    per_head.append(torch.zeros(d, dtype=x.dtype))
                    continue
                s = torch.stack([q[bi, n, sl] @ k[bi, m, sl] for m in keys]) / math.sqrt(d)
                w = torch.exp(s - s.max()) / torch.exp(s - s.max()).sum()
                per_head.append(sum(wi * v[bi, m, sl] for wi, m in zip(w, keys, strict=True)))
            outs.append(torch.cat(per_head))
        rows.append(torch.stack(outs))
    x = x + _affine(torch.stack(rows), attn.proj)
    h = _ln(x, layer.mlp_norm)
    return x + _affine(_gelu(_affine(h, layer.mlp.fc1)), layer.mlp.fc2)


def _module(**kw) -> PerceiverCrossAttention:
    torch.manual_seed(0)
    args = {"num_heads": 2, "z2x_reduction": 2, "num_feature_tokens": 9} | kw
    m = PerceiverCrossAttention(8, 6, **args)
    with torch.no_grad():  # non-trivial norms and key embedding (zeros / ones at init)
        for name, p in m.named_parameters():
            if "norm" in name or "key_embed" in name:
                p.add_(0.3 * torch.randn_like(p))
    return m


def _inputs(dtype=torch.float32):
    torch.manual_seed(1)
    return torch.randn(2, 9, 8, dtype=dtype), torch.randn(2, 4, 6, dtype=dtype)


def test_matches_literal_reference_forward_and_grad() -> None:
    m = _module()
    ref = copy.deepcopy(m).double()
    x, z = _inputs()
    fmask = torch.tensor([[True] * 9, [True] * 6 + [False] * 3])
    x.requires_grad_(True)
    z.requires_grad_(True)
    x64 = x.detach().double().requires_grad_(True)
    z64 = z.detach().double().requires_grad_(True)
    x_out, z_out = m(x, z, feature_mask=fmask)
    z_exp = literal_cross_layer(ref.x2z, z64, x64, fmask)
    x_exp = literal_cross_layer(ref.z2x, x64, z_exp)
    torch.testing.assert_close(z_out.double(), z_exp, **FWD)
    torch.testing.assert_close(x_out.double(), x_exp, **FWD)
    wx, wz = torch.randn_like(x_out), torch.randn_like(z_out)
    ((x_out * wx).sum() + (z_out * wz).sum()).backward()
    ((x_exp * wx.double()).sum() + (z_exp * wz.double()).sum()).backward()
    torch.testing.assert_close(x.grad.double(), x64.grad, **GRAD)
    torch.testing.assert_close(z.grad.double(), z64.grad, **GRAD)
    for (name, p), p64 in zip(m.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p.grad.double(), p64.grad, **GRAD, msg=name)


def test_official_widths() -> None:
    m = PerceiverCrossAttention(64, 32)
    assert m.z2x.attn.q.weight.shape == (8, 64)  # z2x attends at C_x / 8
    assert m.z2x.attn.kv.weight.shape == (16, 32)
    assert m.z2x.attn.proj.weight.shape == (64, 8)
    assert m.x2z.attn.q.weight.shape == (32, 32) and m.x2z.attn.kv.weight.shape == (64, 64)
    assert m.x2z.attn.q.bias is None and m.x2z.attn.key_embed is None
    assert m.x2z.mlp.fc1.weight.shape == (32, 32)  # widening factor 1


def test_reference_backend_matches_sdpa() -> None:
    x, z = _inputs(torch.float64)
    fast = _module().double()
    slow = _module(backend="reference").double()
    slow.load_state_dict(fast.state_dict())
    for o, e in zip(fast(x, z), slow(x, z), strict=True):
        torch.testing.assert_close(o, e, atol=1e-12, rtol=0)


def test_gradcheck() -> None:
    m = _module(num_feature_tokens=5).double()
    x = torch.randn(1, 5, 8, dtype=torch.float64, requires_grad=True)
    z = torch.randn(1, 3, 6, dtype=torch.float64, requires_grad=True)
    fmask = torch.tensor([[True] * 4 + [False]])
    fn = lambda a, b: m(a, b, feature_mask=fmask)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, z), eps=1e-6, atol=1e-5, fast_mode=True)


def test_padded_features_do_not_reach_latents_or_other_features() -> None:
    m = _module().double()
    x, z = _inputs(torch.float64)
    fmask = torch.ones(2, 9, dtype=torch.bool)
    fmask[:, -2:] = False
    x2 = x.clone()
    x2[:, -2:] = 50 * torch.randn(2, 2, 8, dtype=torch.float64)
    x_a, z_a = m(x, z, feature_mask=fmask)
    x_b, z_b = m(x2, z, feature_mask=fmask)
    torch.testing.assert_close(z_a, z_b, atol=0, rtol=0)
    torch.testing.assert_close(x_a[:, :-2], x_b[:, :-2], atol=0, rtol=0)
    _, z_c = m(x2, z)  # unmasked, the same change moves the latents
    assert not torch.allclose(z_a, z_c)


def test_padded_latents_do_not_reach_features() -> None:
    m = _module().double()
    x, z = _inputs(torch.float64)
    lmask = torch.tensor([[True, True, True, False], [True, False, False, False]])
    z2 = z.clone()
    z2[0, 3] += 5.0
    z2[1, 1:] -= 3.0
    x_a, z_a = m(x, z, latent_mask=lmask)
    x_b, z_b = m(x, z2, latent_mask=lmask)
    torch.testing.assert_close(x_a, x_b, atol=0, rtol=0)
    torch.testing.assert_close(z_a[0, :3], z_b[0, :3], atol=0, rtol=0)
    x_all, _ = m(x, z, latent_mask=torch.zeros(2, 4, dtype=torch.bool))
    assert torch.isfinite(x_all).all()


@pytest.mark.parametrize(
    ("x_shape", "z_shape", "match"),
    [
        ((2, 9, 7), (2, 4, 6), r"expected features of shape \(B, N, 8\)"),
        ((2, 9, 8), (2, 4, 5), r"expected latents of shape \(2, L, 6\)"),
        ((2, 9, 8), (3, 4, 6), r"expected latents of shape \(2, L, 6\)"),
        ((2, 8, 8), (2, 4, 6), r"expected context of shape \(B, 9, 8\)"),
    ],
)
def test_shape_errors(x_shape, z_shape, match) -> None:
    m = _module()
    with pytest.raises(ValueError, match=match):
        m(torch.randn(*x_shape), torch.randn(*z_shape))


def test_constructor_errors() -> None:
    with pytest.raises(ValueError, match="divisible by z2x_reduction"):
        PerceiverCrossAttention(12, z2x_reduction=8)
    with pytest.raises(ValueError, match="must be divisible by num_heads"):
        PerceiverCrossAttention(16, z2x_heads=4, z2x_reduction=8)


# --- PerceiverBlock -------------------------------------------------------------------------------


def test_block_is_x2z_then_latent_layers_then_z2x() -> None:
    torch.manual_seed(0)
    block = PerceiverBlock(8, 6, num_latents=4, depth=2, num_heads=2, z2x_reduction=2).double()
    x = torch.randn(2, 9, 8, dtype=torch.float64)
    x_out, z_out = block(x)
    z = block.cross.x2z(block.latents.expand(2, -1, -1), x)
    for layer in block.layers:
        h = layer.norm1(z)
        z = z + layer.attn(h)
        z = z + layer.mlp.fc2(_gelu(layer.mlp.fc1(_ln(z, layer.norm2))))
    torch.testing.assert_close(z_out, z, atol=1e-12, rtol=0)
    torch.testing.assert_close(x_out, literal_cross_layer(block.cross.z2x, x, z), atol=1e-10, rtol=0)
    (x_out.sum() + z_out.sum()).backward()
    assert block.latents.grad is not None and block.latents.grad.abs().sum() > 0


def test_block_takes_an_attention_factory() -> None:
    calls = []

    def factory(dim, *, layer_idx=0, num_layers=1):
        calls.append((dim, layer_idx, num_layers))
        return MultiHeadAttention(dim, num_heads=3, layer_idx=layer_idx, num_layers=num_layers)

    block = PerceiverBlock(8, 6, num_latents=5, depth=3, attention=factory, z2x_reduction=4)
    assert calls == [(6, 0, 3), (6, 1, 3), (6, 2, 3)]
    x_out, z_out = block(torch.randn(2, 10, 8), torch.randn(2, 7, 6))
    assert x_out.shape == (2, 10, 8) and z_out.shape == (2, 7, 6)
    default = PerceiverBlock(8, num_latents=3, depth=1, num_heads=2)
    assert default.layers[0].attn.num_heads == 2 and default.layers[0].attn.qkv.bias is None
    with pytest.raises(ValueError, match="num_latents must be positive"):
        PerceiverBlock(8, num_latents=0)
