"""Hybrid linear/full stacks: layouts per ratio, mixer types and layer indices, shapes, causality, masks."""

from functools import partial

import pytest
import torch

from core.attention import MultiHeadAttention
from core.attention.gated_delta import GatedDeltaNet
from core.attention.hgrn2 import HGRN2
from core.blocks.hybrid import HybridStack, hybrid_layout


@pytest.mark.parametrize(
    ("num_layers", "ratio", "expected"),
    [
        (8, 3, "LLLFLLLF"),
        (8, 4, "LLLLFLLL"),
        (10, 4, "LLLLFLLLLF"),
        (12, 5, "LLLLLFLLLLLF"),
        (14, 6, "LLLLLLFLLLLLLF"),
        (4, 1, "LFLF"),
        (3, 0, "FFF"),
        (3, None, "LLL"),
    ],
)
def test_layout_places_the_full_layer_last_in_each_group(num_layers, ratio, expected) -> None:
    layout = hybrid_layout(num_layers, ratio)
    assert "".join("L" if k == "linear" else "F" for k in layout) == expected
    if ratio:
        full = layout.count("full")
        assert full == num_layers // (ratio + 1)


def test_layout_errors() -> None:
    with pytest.raises(ValueError, match="num_layers"):
        hybrid_layout(0, 3)
    with pytest.raises(ValueError, match="ratio"):
        hybrid_layout(4, -1)
    with pytest.raises(ValueError, match="ratio"):
        hybrid_layout(4, 1.5)


@pytest.mark.parametrize("linear_cls", [GatedDeltaNet, HGRN2])
def test_stack_builds_the_right_mixers_and_is_causal(linear_cls) -> None:
    torch.manual_seed(0)
    linear = partial(linear_cls, num_heads=2, chunk_size=4)
    full = partial(MultiHeadAttention, num_heads=2)
    stack = HybridStack(8, 4, 1, linear, full, mlp_ratio=2.0).double()
    mixers = [block.mixer for block in stack.blocks]
    assert [type(m) for m in mixers] == [linear_cls, MultiHeadAttention, linear_cls, MultiHeadAttention]
    assert [m.layer_idx for m in mixers] == [0, 1, 2, 3] and {m.num_layers for m in mixers} == {4}
    assert "layout=LFLF" in repr(stack)
    x = torch.randn(2, 9, 8, dtype=torch.float64, requires_grad=True)
    out = stack(x, is_causal=True)
    assert out.shape == x.shape
    out.sum().backward()
    assert torch.isfinite(x.grad).all()
    y = x.detach().clone()
    y[:, 5:] += torch.randn_like(y[:, 5:])
    torch.testing.assert_close(stack(x.detach(), is_causal=True)[:, :5], stack(y, is_causal=True)[:, :5])
    pad = torch.ones(2, 9, dtype=torch.bool)
    pad[:, -2:] = False
    y = x.detach().clone()
    y[:, -2:] += 10.0
    a, c = stack(x.detach(), mask=pad, is_causal=True), stack(y, mask=pad, is_causal=True)
    torch.testing.assert_close(a[:, :7], c[:, :7])


def test_stack_options_and_errors() -> None:
    linear = partial(GatedDeltaNet, num_heads=2, chunk_size=4)
    full = partial(MultiHeadAttention, num_heads=2)
    stack = HybridStack(8, 2, 3, linear, full, norm="layer", final_norm=False)
    assert isinstance(stack.norm, torch.nn.Identity) and isinstance(stack.blocks[0].norm1, torch.nn.LayerNorm)
    assert stack.layout == ["linear", "linear"]
    with pytest.raises(ValueError, match="causal-only"):
        stack(torch.randn(1, 4, 8))
    with pytest.raises(ValueError, match="norm"):
        HybridStack(8, 2, 1, linear, full, norm="batch")
    with pytest.raises(ValueError, match="must return a TokenMixer"):
        HybridStack(8, 2, 1, linear, lambda dim, **_: torch.nn.Identity())
