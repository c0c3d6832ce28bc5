"""CARE linear attention and CAREAttention against literal float64 references of the paper's equations.

Tolerances as in test_attention.py: forward atol 1e-5 / rtol 1e-4, gradients atol 1e-4 / rtol 1e-3.
"""

import copy
import math

import pytest
import torch

from core.attention.care import CAREAttention, linear_attention

FWD = {"atol": 1e-5, "rtol": 1e-4}
GRAD = {"atol": 1e-4, "rtol": 1e-3}


def phi(t, name):
    return torch.nn.functional.elu(t) + 1 if name == "elu" else torch.relu(t)


def literal_linear_attention(q, k, v, name="elu", key_mask=None, causal=False, eps=1e-6):
    """Query by query: out_i = Σ_j s_ij v_j / count / (Σ_j s_ij / count + eps), s_ij = φ(q_i)·φ(k_j)."""
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
                count = max(len(keys), 1)
                num = torch.zeros(v.shape[-1], dtype=q.dtype)
                den = torch.zeros((), dtype=q.dtype)
                for j in keys:
                    s = phi(q[bi, hi, i], name) @ phi(k[bi, hi, j], name)
                    num = num + s * v[bi, hi, j]
                    den = den + s
                out[bi, hi, i] = (num / count) / (den / count + eps)
    return out


def literal_dwconv(x, conv):
    """Depthwise 'same' convolution written as a sum over kernel offsets with zero padding."""
    _, c, height, width = x.shape
    kh, kw = conv.weight.shape[-2:]
    ph, pw = kh // 2, kw // 2
    padded = torch.zeros(x.shape[0], c, height + 2 * ph, width + 2 * pw, dtype=x.dtype)
    padded[:, :, ph : ph + height, pw : pw + width] = x
    out = conv.bias.view(1, c, 1, 1).expand(x.shape[0], c, height, width).clone()
    for di in range(kh):
        for dj in range(kw):
            w = conv.weight[:, 0, di, dj].view(1, c, 1, 1)
            out = out + w * padded[:, :, di : di + height, dj : dj + width]
    return out


def pointwise(x, conv):
    """1×1 convolution as a matrix product over channels."""
    return torch.einsum("oc,bchw->bohw", conv.weight[:, :, 0, 0], x) + conv.bias.view(1, -1, 1, 1)


def literal_batchnorm(x, bn):
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    var = x.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    return (x - mean) / torch.sqrt(var + bn.eps) * bn.weight.view(1, -1, 1, 1) + bn.bias.view(1, -1, 1, 1)


def literal_interaction(x, block):
    h = literal_batchnorm(x, block.norm) if isinstance(block.norm, torch.nn.BatchNorm2d) else x
    h = pointwise(h, block.fc1)
    h = 0.5 * h * (1 + torch.erf(h / math.sqrt(2)))
    return x + pointwise(literal_dwconv(h, block.dwconv), block.fc2)


def literal_care(x, module: CAREAttention, height, width):
    """CARE (official CARETrans.TokenMixer + InterModule) written out channel group by channel group."""
    b, n, c = x.shape
    g, heads = module.mem_dim, module.num_heads
    d = g // heads
    fmap = x.transpose(1, 2).reshape(b, c, height, width)
    mem_c = c - 3 * g
    memory = fmap[:, :mem_c]
    att_in = fmap[:, mem_c : mem_c + g]
    qk = pointwise(att_in, module.qk).reshape(b, 2 * g, n)
    q, k, v = qk[:, :g], qk[:, g:], att_in.reshape(b, g, n)
    head_out = []
    for h in range(heads):
        sl = slice(h * d, (h + 1) * d)
        qh, kh, vh = (t[:, sl].transpose(1, 2)[:, None] for t in (q, k, v))  # (B, 1, N, d)
        head_out.append(literal_linear_attention(qh, kh, vh, module.feature_map, eps=module.eps)[:, 0])
    att = torch.cat(head_out, dim=-1).transpose(1, 2).reshape(b, g, height, width)
    loc1 = literal_dwconv(fmap[:, mem_c + g : mem_c + 2 * g], module.local1)
    loc2 = literal_dwconv(fmap[:, mem_c + 2 * g :], module.local2)
    feats = literal_interaction(torch.cat([att, loc1, loc2], dim=1), module.interact_local_global)
    out = literal_interaction(torch.cat([memory, feats], dim=1), module.interact_memory)
    return out.reshape(b, c, n).transpose(1, 2)


@pytest.mark.parametrize("name", ["elu", "relu"])
@pytest.mark.parametrize("use_mask", [False, True])
@pytest.mark.parametrize("causal", [False, True])
def test_linear_attention_matches_literal(name: str, use_mask: bool, causal: bool) -> None:
    q, k, v = (torch.randn(2, 2, 5, 3, requires_grad=True) for _ in range(3))
    q64, k64, v64 = (t.detach().double().requires_grad_(True) for t in (q, k, v))
    key_mask = torch.rand(2, 5) > 0.4 if use_mask else None
    if key_mask is not None:
        key_mask[0] = False  # a batch row with no key at all -> zeros
    out = linear_attention(q, k, v, name, key_mask=key_mask, is_causal=causal)
    expected = literal_linear_attention(q64, k64, v64, name, key_mask, causal)
    torch.testing.assert_close(out.double(), expected, **FWD)
    grad = torch.randn_like(out)
    out.backward(grad)
    expected.backward(grad.double())
    for t, t64 in zip((q, k, v), (q64, k64, v64), strict=True):
        torch.testing.assert_close(t.grad.double(), t64.grad, **GRAD)


def test_linear_attention_gradcheck_and_independence() -> None:
    q, k, v = (torch.randn(1, 2, 4, 3, dtype=torch.float64, requires_grad=True) for _ in range(3))
    mask = torch.tensor([[True, False, True, True]])
    assert torch.autograd.gradcheck(lambda a, b, c: linear_attention(a, b, c, key_mask=mask), (q, k, v))
    assert torch.autograd.gradcheck(lambda a, b, c: linear_attention(a, b, c, is_causal=True), (q, k, v))
    k2, v2 = k.detach().clone(), v.detach().clone()
    k2[:, :, 1] += 5.0
    v2[:, :, 1] -= 5.0
    a = linear_attention(q, k, v, key_mask=mask)
    torch.testing.assert_close(a, linear_attention(q, k2, v2, key_mask=mask))  # masked key is ignored
    k3, v3 = k.detach().clone(), v.detach().clone()
    k3[:, :, 3] += 5.0
    v3[:, :, 3] -= 5.0
    c1, c2 = linear_attention(q, k, v, is_causal=True), linear_attention(q, k3, v3, is_causal=True)
    torch.testing.assert_close(c1[:, :, :3], c2[:, :, :3], atol=0, rtol=0)
    assert not torch.allclose(c1[:, :, 3], c2[:, :, 3])


def test_linear_attention_errors() -> None:
    q = torch.randn(1, 2, 4, 3)
    with pytest.raises(ValueError, match=r"key_mask must be boolean of shape \(1, 4\)"):
        linear_attention(q, q, q, key_mask=torch.ones(1, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"q \(B, H, N, D\)"):
        linear_attention(q[0], q, q)
    with pytest.raises(ValueError, match="is_causal needs"):
        linear_attention(q, q[:, :, :3], q[:, :, :3], is_causal=True)
    with pytest.raises(ValueError, match="feature_map"):
        linear_attention(q, q, q, "softmax")


@pytest.mark.parametrize(("grid", "kwargs"), [((3, 4), {}), (None, {"norm": "none", "feature_map": "relu"})])
def test_care_matches_literal(grid, kwargs) -> None:
    dim, n = 16, 12
    attn = CAREAttention(dim, ratios=(2, 3), **kwargs)
    ref = copy.deepcopy(attn).double()
    x = torch.randn(3, n, dim, requires_grad=True)
    x64 = x.detach().double().requires_grad_(True)
    out = attn(x, grid=grid)
    height, width = grid if grid is not None else (1, n)
    expected = literal_care(x64, ref, height, width)
    torch.testing.assert_close(out.double(), expected, **FWD)
    grad = torch.randn_like(out)
    out.backward(grad)
    expected.backward(grad.double())
    torch.testing.assert_close(x.grad.double(), x64.grad, **GRAD)
    for (name, p), p64 in zip(attn.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p.grad.double(), p64.grad, **GRAD, msg=lambda m, name=name: f"{name}: {m}")


def test_care_gradcheck() -> None:
    attn = CAREAttention(8, ratios=(1, 1)).double()
    x = torch.randn(2, 6, 8, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: attn(t, grid=(2, 3)), (x,), fast_mode=True)


def test_care_sequence_is_a_one_row_image() -> None:
    attn = CAREAttention(8).double().eval()
    x = torch.randn(2, 7, 8, dtype=torch.float64)
    torch.testing.assert_close(attn(x), attn(x, grid=(1, 7)))
    torch.testing.assert_close(attn(x), attn(x, grid=(7,)))
    assert not torch.allclose(attn(x[:, :6]), attn(x[:, :6], grid=(2, 3)))


def test_care_memory_is_local_and_attention_is_global() -> None:
    """Memory channels skip token mixing (only the 2nd interaction's 3×3 sees them); attention is global."""
    attn = CAREAttention(8, norm="none").double()
    x = torch.randn(1, 25, 8, dtype=torch.float64)
    far = [t for t in range(25) if max(t // 5, t % 5) > 1]  # tokens outside the 3×3 around (0, 0)
    y = x.clone()
    y[:, 0, :2] += 3.0  # memory channels of token (0, 0)
    torch.testing.assert_close(attn(x, grid=(5, 5))[:, far], attn(y, grid=(5, 5))[:, far], atol=0, rtol=0)
    z = x.clone()
    z[:, 0, 2:4] += 3.0  # attention channels of token (0, 0)
    assert not torch.allclose(attn(x, grid=(5, 5))[:, far], attn(z, grid=(5, 5))[:, far])


def test_care_contract_errors() -> None:
    attn = CAREAttention(8)
    x = torch.randn(2, 6, 8)
    with pytest.raises(ValueError, match=r"grid must be \(H, W\), \(N,\) or None"):
        attn(x, grid=(1, 2, 3))
    with pytest.raises(ValueError, match=r"grid \(2, 2\) holds 4 tokens"):
        attn(x, grid=(2, 2))
    with pytest.raises(ValueError, match=r"\(B, N, 8\)"):
        attn(torch.randn(2, 6, 9))
    with pytest.raises(ValueError, match="does not support `mask`"):
        attn(x, mask=torch.ones(2, 6, dtype=torch.bool))
    with pytest.raises(ValueError, match="is_causal"):
        attn(x, is_causal=True)
    with pytest.raises(ValueError, match="mem_dim"):
        CAREAttention(8, mem_dim=3)
    with pytest.raises(ValueError, match="num_heads"):
        CAREAttention(12, num_heads=2)
    with pytest.raises(ValueError, match="kernel_sizes"):
        CAREAttention(8, kernel_sizes=(3, 4))
    with pytest.raises(ValueError, match="norm"):
        CAREAttention(8, norm="layer")
