"""HeadMixingAttention: each mixing structure's weights, its head isolation, and a literal reference.

The reference is the literal per-head attention of test_attention.py with the dense output projection
replaced by the effective ``C × C`` matrix built entry by entry from the paper's definition. Tolerances
(reference_check): forward atol 1e-5 / rtol 1e-4, gradients atol 1e-4 / rtol 1e-3.
"""

import pytest
import torch

from core.attention.head_mixing import HeadMixingAttention
from tests.core.reference_check import assert_matches_reference
from tests.core.test_attention import literal_mha


def literal_weight(module: HeadMixingAttention) -> torch.Tensor:
    """W[(h, i), (g, j)] written out entry by entry from the definition of each mixing structure."""
    if module.mixing == "dense":
        return module.proj.weight
    h_count, d = module.num_heads, module.head_dim
    w = torch.zeros(h_count * d, h_count * d, dtype=module.head_weight.dtype)
    for h in range(h_count):
        for g in range(h_count):
            if module.mixing == "independent":
                if g == h:
                    w[h * d : (h + 1) * d, g * d : (g + 1) * d] = module.head_weight[g]
            else:
                w[h * d : (h + 1) * d, g * d : (g + 1) * d] = module.mix_weight[h, g] * module.head_weight[g]
    return w


class _Literal(torch.nn.Module):
    def __init__(self, module, mask, causal):
        super().__init__()
        self.module, self.mask, self.causal = module, mask, causal

    def forward(self, x):
        return self.module(x, mask=self.mask, is_causal=self.causal)


def reference(wrapped, x):
    m = wrapped.module
    bias = m.proj.bias if m.mixing == "dense" else m.head_bias
    proj = lambda o: o @ literal_weight(m).T + bias  # noqa: E731
    mask = None if wrapped.mask is None else wrapped.mask[:, None, None, :]
    return literal_mha(x, m.qkv, proj, m.num_heads, mask=mask, causal=wrapped.causal)


@pytest.mark.parametrize("mixing", ["independent", "kronecker", "dense"])
@pytest.mark.parametrize("causal", [False, True])
def test_matches_literal(mixing: str, causal: bool) -> None:
    torch.manual_seed(0)
    attn = HeadMixingAttention(12, num_heads=3, mixing=mixing)
    if mixing == "kronecker":
        with torch.no_grad():
            attn.mix_weight.add_(0.3 * torch.randn(3, 3))  # leave the identity init
    mask = torch.rand(2, 6) > 0.3
    mask[:, 0] = True
    x = torch.randn(2, 6, 12, requires_grad=True)
    assert_matches_reference(_Literal(attn, mask, causal), reference, x)


@pytest.mark.parametrize("mixing", ["independent", "kronecker", "dense"])
def test_weight_structure_and_parameter_count(mixing: str) -> None:
    h, d = 4, 3
    attn = HeadMixingAttention(h * d, num_heads=h, mixing=mixing)
    if mixing == "kronecker":
        with torch.no_grad():
            attn.mix_weight.normal_()
    w = attn.output_weight().detach()
    torch.testing.assert_close(w, literal_weight(attn).detach())
    proj_params = sum(p.numel() for n, p in attn.named_parameters() if not n.startswith("qkv"))
    expected = {
        "independent": h * d * d + h * d,
        "kronecker": h * d * d + h * h + h * d,
        "dense": (h * d) ** 2 + h * d,
    }
    assert proj_params == expected[mixing]
    blocks = w.view(h, d, h, d).permute(0, 2, 1, 3)  # (h, g, d, d): block (h, g) of W
    off_diagonal = blocks[~torch.eye(h, dtype=torch.bool)]
    if mixing == "independent":
        assert (off_diagonal == 0).all()
    elif mixing == "kronecker":  # block (h, g) is the scalar A_hg times head g's own map W_g
        a, maps = attn.mix_weight.detach(), attn.head_weight.detach()
        for hi in range(h):
            for g in range(h):
                torch.testing.assert_close(blocks[hi, g], a[hi, g] * maps[g])
    else:
        assert off_diagonal.abs().sum() > 0


def test_independent_output_block_depends_only_on_its_head() -> None:
    """Perturbing head g's attention output changes output channels of block g and nothing else."""
    h, d = 3, 4
    attn = HeadMixingAttention(h * d, num_heads=h, mixing="independent").double()
    heads = torch.randn(2, 5, h, d, dtype=torch.float64)
    base = attn.mix_heads(heads)
    for g in range(h):
        bumped = heads.clone()
        bumped[:, :, g] += torch.randn(2, 5, d, dtype=torch.float64)
        diff = (attn.mix_heads(bumped) - base).view(2, 5, h, d).abs().sum(dim=(0, 1, 3))
        assert diff[g] > 0 and (diff[torch.arange(h) != g] == 0).all()
    kron = HeadMixingAttention(h * d, num_heads=h, mixing="kronecker").double()
    torch.testing.assert_close(kron.output_weight(), torch.block_diag(*kron.head_weight.unbind(0)))  # A = I


def test_kronecker_preserves_channel_alignment() -> None:
    """With W_g = I, channel j of head g reaches only channel j of every output block (scalar mixing)."""
    h, d = 3, 4
    attn = HeadMixingAttention(h * d, num_heads=h, mixing="kronecker", proj_bias=False).double()
    with torch.no_grad():
        attn.head_weight.copy_(torch.eye(d).expand(h, d, d))
        attn.mix_weight.normal_()
    heads = torch.zeros(1, 1, h, d, dtype=torch.float64)
    heads[0, 0, 1, 2] = 1.0
    out = attn.mix_heads(heads).view(h, d)
    torch.testing.assert_close(out[:, 2], attn.mix_weight[:, 1].detach())
    assert (out[:, [0, 1, 3]] == 0).all()


def test_errors() -> None:
    with pytest.raises(ValueError, match="mixing"):
        HeadMixingAttention(8, num_heads=2, mixing="sparse")
    with pytest.raises(ValueError, match="divisible by num_heads"):
        HeadMixingAttention(10, num_heads=3)
