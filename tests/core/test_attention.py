"""Every attention mechanism against a literal float64 reference of its equations, plus its contract.

Tolerances (fp32 implementation vs fp64 reference): forward atol 1e-5 / rtol 1e-4, gradients atol 1e-4 /
rtol 1e-3 — tighter than NATTEN's fp32 forward atol (1e-4) and xformers' (3e-4), because the reference is
float64 on CPU.
"""

import math

import pytest
import torch
from torch import nn

from core.attention import (
    AxisAttention,
    CrossAttention,
    MultiHeadAttention,
    TokenMixer,
    get_mechanism,
    invert_mask,
    list_mechanisms,
    mechanism_table,
    normalize_mask,
    reference_attention,
    register_mechanism,
    sdpa,
)

FWD = {"atol": 1e-5, "rtol": 1e-4}
GRAD = {"atol": 1e-4, "rtol": 1e-3}


def literal_mha(
    x, qkv: nn.Linear, proj: nn.Linear, heads: int, mask=None, causal=False, context=None, q_lin=None
):
    """Vaswani et al. Eq. 1 per head, with explicit loops over heads, in the dtype of x."""
    b, n, c = x.shape
    d = c // heads
    if context is None:
        q, k, v = (qkv(x)[..., i * c : (i + 1) * c] for i in range(3))
        m = n
    else:
        q = q_lin(x)
        kv = qkv(context)
        k, v = kv[..., :c], kv[..., c:]
        m = context.shape[1]
    allowed = torch.ones(b, heads, n, m, dtype=torch.bool)
    if mask is not None:
        allowed = allowed & mask
    if causal:
        allowed = allowed & torch.ones(n, m, dtype=torch.bool).tril()
    outs = []
    for h in range(heads):
        qh, kh, vh = (t[..., h * d : (h + 1) * d] for t in (q, k, v))
        scores = qh @ kh.transpose(1, 2) / math.sqrt(d)
        scores = scores.masked_fill(~allowed[:, h], float("-inf"))
        weights = torch.softmax(scores, dim=-1).nan_to_num(0.0)
        outs.append(weights @ vh)
    return proj(torch.cat(outs, dim=-1))


def _double(module: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(module).double()


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("use_mask", [False, True])
@pytest.mark.parametrize("backend", ["sdpa", "reference"])
def test_mha_matches_literal_reference(causal: bool, use_mask: bool, backend: str) -> None:
    b, n, c, heads = 2, 7, 12, 3
    attn = MultiHeadAttention(c, num_heads=heads, backend=backend)
    ref = _double(attn)
    x = torch.randn(b, n, c, requires_grad=True)
    x64 = x.detach().double().requires_grad_(True)
    mask = torch.rand(b, 1, n, n) > 0.3 if use_mask else None
    out = attn(x, mask=mask, is_causal=causal)
    expected = literal_mha(x64, ref.qkv, ref.proj, heads, mask=mask, causal=causal)
    torch.testing.assert_close(out.double(), expected, **FWD)
    grad = torch.randn_like(out)
    out.backward(grad)
    expected.backward(grad.double())
    torch.testing.assert_close(x.grad.double(), x64.grad, **GRAD)
    for (name, p), p64 in zip(attn.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p.grad.double(), p64.grad, **GRAD, msg=lambda m, name=name: f"{name}: {m}")


def test_cross_attention_matches_literal_reference() -> None:
    b, n, m, c, heads = 2, 5, 9, 8, 2
    attn = CrossAttention(c, num_heads=heads)
    ref = _double(attn)
    x, ctx = torch.randn(b, n, c, requires_grad=True), torch.randn(b, m, c, requires_grad=True)
    pad = torch.rand(b, m) > 0.2
    out = attn(x, context=ctx, mask=pad)
    expected = literal_mha(
        x.detach().double(),
        ref.kv,
        ref.proj,
        heads,
        mask=pad[:, None, None, :],
        context=ctx.detach().double(),
        q_lin=ref.q,
    )
    torch.testing.assert_close(out.double(), expected, **FWD)


def test_sdpa_wrapper_matches_reference_and_zeroes_fully_masked_rows() -> None:
    q, k, v = (torch.randn(2, 3, 6, 4, dtype=torch.float64, requires_grad=True) for _ in range(3))
    mask = torch.rand(2, 1, 6, 6) > 0.5
    mask[:, :, 2] = False  # a query with no key
    out = sdpa(q, k, v, attn_mask=mask, is_causal=True)
    ref = reference_attention(q, k, v, attn_mask=mask, is_causal=True)
    torch.testing.assert_close(out, ref)
    assert torch.isfinite(out).all() and (out[:, :, 2] == 0).all()
    assert torch.autograd.gradcheck(lambda a, b_, c_: sdpa(a, b_, c_, attn_mask=mask), (q, k, v))


@pytest.mark.parametrize("info", list_mechanisms("token"), ids=lambda i: i.name)
def test_registered_mechanism_contract(info) -> None:
    """Registry-driven: shape, dtype, backward, causality, masking and error contract for every mechanism."""
    dim, b, n, m = 8, 2, 6, 5
    mixer = info.cls(dim, **dict(info.example_kwargs)).double()
    x = torch.randn(b, n, dim, dtype=torch.float64, requires_grad=True)
    kw = {"context": torch.randn(b, m, dim, dtype=torch.float64)} if info.cls.requires_context else {}
    if info.cls.needs_grid:
        kw["grid"] = (2, 3)
        with pytest.raises(ValueError, match="needs `grid`"):
            mixer(x)
    causal = {"is_causal": True} if info.cls.causal_only else {}
    out = mixer(x, **kw, **causal)
    assert out.shape == x.shape and out.dtype == x.dtype
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()

    if info.cls.supports_causal and not info.cls.requires_context:
        y = x.detach().clone()
        y[:, 4:] += torch.randn_like(y[:, 4:])
        a, c = mixer(x.detach(), is_causal=True), mixer(y, is_causal=True)
        torch.testing.assert_close(a[:, :4], c[:, :4], atol=0, rtol=0)
    elif not info.cls.supports_causal:
        with pytest.raises(ValueError, match="is_causal"):
            mixer(x, is_causal=True)

    if info.cls.supports_mask:
        kv_len = m if info.cls.requires_context else n
        pad = torch.ones(b, kv_len, dtype=torch.bool)
        pad[:, -2:] = False
        source = kw["context"] if "context" in kw else x.detach()
        changed = source.clone()
        changed[:, -2:] += 10 * torch.randn_like(changed[:, -2:])
        has_context = "context" in kw
        kw2 = {**kw, "context": changed} if has_context else kw
        a = mixer(x.detach(), mask=pad, **kw, **causal)
        c = mixer(x.detach() if has_context else changed, mask=pad, **kw2, **causal)
        keep = slice(None) if has_context else slice(0, n - 2)
        torch.testing.assert_close(a[:, keep], c[:, keep])
        none = torch.zeros(b, kv_len, dtype=torch.bool)
        assert torch.isfinite(mixer(x.detach(), mask=none, **kw, **causal)).all()

    with pytest.raises(ValueError, match=r"\(B, N, 8\)"):
        mixer(torch.randn(b, n, dim + 1, dtype=torch.float64), **kw, **causal)
    if not info.cls.supports_context:
        with pytest.raises(ValueError, match="context"):
            mixer(x, context=torch.randn(b, m, dim, dtype=torch.float64), **kw, **causal)


def test_mask_contract_errors() -> None:
    attn = MultiHeadAttention(8, num_heads=2)
    x = torch.randn(2, 5, 8)
    with pytest.raises(ValueError, match="boolean"):
        attn(x, mask=torch.ones(2, 5))
    with pytest.raises(ValueError, match=r"mask of shape \(2, 4\)"):
        attn(x, mask=torch.ones(2, 4, dtype=torch.bool))
    assert normalize_mask(torch.ones(5, dtype=torch.bool)[None].expand(2, 5), 2, 5, 5).shape == (2, 1, 1, 5)
    blocked = torch.tensor([[False, True]])
    assert invert_mask(blocked).tolist() == [[True, False]]


def test_grid_must_match_tokens() -> None:
    attn = MultiHeadAttention(8, num_heads=2)
    with pytest.raises(ValueError, match=r"grid \(2, 2\) holds 4 tokens but x has N=6"):
        attn(torch.randn(1, 6, 8), grid=(2, 2))


def test_construction_errors_name_the_argument() -> None:
    with pytest.raises(ValueError, match="divisible by num_heads"):
        MultiHeadAttention(10, num_heads=3)
    with pytest.raises(ValueError, match="layer_idx"):
        MultiHeadAttention(8, layer_idx=2, num_layers=2)
    with pytest.raises(ValueError, match="backend"):
        MultiHeadAttention(8, backend="flex")


@pytest.mark.parametrize("axis", ["time", "feature"])
def test_axis_attention_3d_matches_manual_permutation(axis: str) -> None:
    b, t, f = 2, 6, 4
    dim = f if axis == "time" else t
    mixer = MultiHeadAttention(dim, num_heads=1)
    wrapped = AxisAttention(mixer, axis)
    x = torch.randn(b, t, f)
    expected = mixer(x) if axis == "time" else mixer(x.transpose(1, 2)).transpose(1, 2)
    torch.testing.assert_close(wrapped(x), expected)


@pytest.mark.parametrize("axis", ["time", "feature"])
def test_axis_attention_4d_folds_the_other_axis(axis: str) -> None:
    b, t, f, c = 2, 5, 3, 4
    mixer = MultiHeadAttention(c, num_heads=2)
    x = torch.randn(b, t, f, c)
    out = AxisAttention(mixer, axis)(x)
    if axis == "time":
        for j in range(f):
            torch.testing.assert_close(out[:, :, j], mixer(x[:, :, j]))
    else:
        for i in range(t):
            torch.testing.assert_close(out[:, i], mixer(x[:, i]))
    with pytest.raises(ValueError, match="dim=4"):
        AxisAttention(MultiHeadAttention(4, num_heads=1), axis)(torch.randn(b, t, f, 6))


def test_registry_lookup_and_table() -> None:
    assert get_mechanism("MultiHeadAttention").cls is MultiHeadAttention
    assert "noncausal_cross" in get_mechanism("CrossAttention").patterns
    with pytest.raises(KeyError, match="registered"):
        get_mechanism("NoSuchAttention")
    assert "| MultiHeadAttention |" in mechanism_table()
    with pytest.raises(TypeError):
        register_mechanism(paper="x", complexity="y")(nn.Linear)


def test_custom_mixer_flags_are_enforced() -> None:
    class Identity(TokenMixer):
        supports_mask = False

        def mix(self, x, **_):
            return x

    mixer = Identity(4)
    with pytest.raises(ValueError, match="does not support `mask`"):
        mixer(torch.randn(1, 3, 4), mask=torch.ones(1, 3, dtype=torch.bool))


SPATIAL_SIZES = (6, 4, 4)  # odd-ish sizes so windows, pooling and strides meet ragged edges


def _feature_map(channels: int, dims: int, scale: int = 1) -> torch.Tensor:
    size = tuple(s // scale for s in SPATIAL_SIZES[:dims])
    return torch.randn(2, channels, *size, dtype=torch.float64, requires_grad=True)


@pytest.mark.parametrize("info", list_mechanisms("spatial"), ids=lambda i: i.name)
def test_registered_spatial_mixer_contract(info) -> None:
    """Registry-driven: every SpatialMixer keeps (B, C, *S), backpropagates and names bad shapes."""
    assert info.cls.supported_dims, f"{info.name} supports no spatial_dims"
    for dims in info.cls.supported_dims:
        mixer = info.cls(8, spatial_dims=dims, **dict(info.example_kwargs)).double()
        x = _feature_map(8, dims)
        out = mixer(x)
        assert out.shape == x.shape and out.dtype == x.dtype
        out.sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all()
        with pytest.raises(ValueError, match=r"expected x of shape \(B, 8"):
            mixer(_feature_map(9, dims))
        with pytest.raises(ValueError, match="spatial_dims"):
            mixer(torch.randn(2, 8, *([4] * (dims + 1)), dtype=torch.float64))
    unsupported = {1, 2, 3} - set(info.cls.supported_dims)
    for dims in unsupported:
        with pytest.raises(ValueError, match="spatial_dims"):
            info.cls(8, spatial_dims=dims, **dict(info.example_kwargs))


@pytest.mark.parametrize("info", list_mechanisms("gate"), ids=lambda i: i.name)
def test_registered_attention_gate_contract(info) -> None:
    """Registry-driven: every AttentionGate returns x's shape for a coarser g and names bad shapes."""
    for dims in info.cls.supported_dims:
        gate = info.cls(8, 6, spatial_dims=dims, **dict(info.example_kwargs)).double()
        x, g = _feature_map(8, dims), _feature_map(6, dims, scale=2)
        out = gate(x, g)
        assert out.shape == x.shape and out.dtype == x.dtype
        out.sum().backward()
        assert torch.isfinite(x.grad).all() and torch.isfinite(g.grad).all()
        with pytest.raises(ValueError, match=r"expected g of shape \(B, 6"):
            gate(x, _feature_map(5, dims, scale=2))


@pytest.mark.parametrize("info", list_mechanisms("module"), ids=lambda i: i.name)
def test_registered_attention_module_runs(info) -> None:
    """Registry-driven: multi-input attention modules run forward and backward on their example inputs."""
    module = info.cls(**dict(info.example_kwargs)).double()
    inputs = info.cls.example_inputs(2, torch.float64)
    for t in inputs:
        if t.is_floating_point():
            t.requires_grad_(True)
    out = module(*inputs)
    outs = [out] if isinstance(out, torch.Tensor) else [o for o in out if isinstance(o, torch.Tensor)]
    assert outs and all(torch.isfinite(o).all() for o in outs)
    sum(o.sum() for o in outs).backward()
    grads = [t.grad for t in inputs if t.is_floating_point()]
    assert any(g is not None for g in grads) and all(torch.isfinite(g).all() for g in grads if g is not None)


def test_backend_resolution_names_the_backend_and_reason() -> None:
    from core.attention.backends import check_backend, resolve_backend

    cpu = torch.device("cpu")
    assert resolve_backend("X", "auto", ("sdpa", "flex"), cpu, needs_grad=True) == "sdpa"
    assert resolve_backend("X", "auto", ("reference",), cpu, needs_grad=False) == "reference"
    with pytest.raises(RuntimeError, match=r"X: backend='flex' is unavailable: .*backward on cpu"):
        resolve_backend("X", "flex", ("sdpa", "flex"), cpu, needs_grad=True)
    assert resolve_backend("X", "flex", ("sdpa", "flex"), cpu, needs_grad=False) == "flex"
    with pytest.raises(ValueError, match="'natten'"):
        check_backend("X", "natten", ("sdpa",))
    try:
        import natten  # noqa: F401
    except ImportError:
        with pytest.raises(RuntimeError, match="natten package is not installed"):
            resolve_backend("X", "natten", ("sdpa", "natten"), cpu, needs_grad=False)


def test_spatial_and_gate_protocols_check_shapes() -> None:
    from core.attention import AttentionGate, SpatialMixer

    class Scale(SpatialMixer):
        supported_dims = (2,)

        def mix(self, x):
            return 2 * x

    class Pass(AttentionGate):
        def gate(self, x, g):
            return x

    assert Scale(3)(torch.ones(1, 3, 2, 2)).eq(2).all()
    with pytest.raises(ValueError, match=r"expected x of shape \(B, 3, H, W\) for spatial_dims=2"):
        Scale(3)(torch.ones(1, 3, 2))
    with pytest.raises(ValueError, match="spatial_dims must be one of"):
        Scale(3, spatial_dims=3)
    with pytest.raises(ValueError, match="batch size"):
        Pass(2, 2)(torch.ones(1, 2, 4, 4), torch.ones(2, 2, 2, 2))


def test_a_mixer_with_a_graph_attached_aux_loss_can_be_copied() -> None:
    import copy

    mixer = MultiHeadAttention(8, num_heads=2)
    x = torch.randn(2, 5, 8, requires_grad=True)
    mixer.aux_loss = mixer(x).square().mean()  # what MoH / Flux leave after a training forward
    clone = copy.deepcopy(mixer)
    assert clone.aux_loss is None and mixer.aux_loss is not None
    torch.testing.assert_close(clone(x), mixer(x))


def test_docs_list_every_registered_mechanism() -> None:
    from pathlib import Path

    from core.attention.registry import mechanism_table

    docs = (Path(__file__).resolve().parents[2] / "docs" / "attention.md").read_text()
    # The docs site replaces this marker by the registry's own table (docs/hooks/site.py), at build time.
    assert "<!-- attention-registry -->" in docs, "docs/attention.md lost the registry table's marker"
    table = mechanism_table()
    missing = [i.name for i in list_mechanisms() if f"| {i.name} |" not in table]
    assert not missing, f"the registry table lacks {missing}"
