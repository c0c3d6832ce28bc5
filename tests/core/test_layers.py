"""core.layers: stochastic depth and the channels-first LayerNorm against literal references."""

import pytest
import torch
from torch import nn

from core.layers import DropPath, LayerNorm2d, drop_path, drop_path_rates


def test_drop_path_zeroes_whole_samples_and_rescales_the_rest() -> None:
    torch.manual_seed(0)
    x = torch.randn(64, 3, 5) + 10.0  # no zero entries, so a zero marks a dropped sample
    out = drop_path(x, 0.25, training=True)
    dropped = (out == 0).flatten(1)
    assert torch.equal(dropped.all(1), dropped.any(1)), "a sample must be dropped whole or not at all"
    kept = ~dropped.all(1)
    assert 0 < int(kept.sum()) < 64
    torch.testing.assert_close(out[kept], x[kept] / 0.75)
    unscaled = drop_path(x, 0.25, training=True, scale_by_keep=False)
    keep = ~(unscaled == 0).flatten(1).all(1)
    torch.testing.assert_close(unscaled[keep], x[keep])


def test_drop_path_keeps_the_expectation() -> None:
    torch.manual_seed(0)
    x = torch.ones(20000, 4)
    mean = drop_path(x, 0.3, training=True).mean(0)
    torch.testing.assert_close(mean, torch.ones(4), atol=0.03, rtol=0)
    kept_fraction = (drop_path(x, 0.3, training=True)[:, 0] != 0).float().mean()
    assert abs(float(kept_fraction) - 0.7) < 0.02


def test_drop_path_is_identity_in_eval_or_at_zero() -> None:
    x = torch.randn(4, 3)
    layer = DropPath(0.5).eval()
    assert layer(x) is x
    assert drop_path(x, 0.0, training=True) is x
    assert repr(DropPath(0.1)) == "DropPath(p=0.1)"
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        DropPath(1.0)


def test_drop_path_rates_are_linear_from_zero() -> None:
    assert drop_path_rates(0.3, 4) == pytest.approx([0.0, 0.1, 0.2, 0.3])
    assert drop_path_rates(0.3, 1) == [0.0]
    assert drop_path_rates(0.3, 0) == []


def test_layer_norm_2d_matches_layer_norm_per_pixel() -> None:
    torch.manual_seed(0)
    norm = LayerNorm2d(6)
    nn.init.normal_(norm.weight)
    nn.init.normal_(norm.bias)
    x = torch.randn(2, 6, 3, 4)
    reference = torch.stack(
        [
            torch.stack(
                [nn.functional.layer_norm(x[b, :, i, j], (6,), norm.weight, norm.bias) for j in range(4)], -1
            )
            for b in range(2)
            for i in range(3)
        ]
    ).reshape(2, 3, 6, 4)
    torch.testing.assert_close(norm(x), reference.permute(0, 2, 1, 3))
