"""Plain layers below both the attention library and the blocks: MLP, stochastic depth, norms, positions.

Also the n-d layer picks (``conv_nd`` and friends).

Nothing here imports another part of attnlab, so ``core.attention`` and ``core.blocks`` can both use it
(the layering is checked by ``lint-imports``; see ``pyproject.toml``).
"""

from core.layers.drop import DropPath, drop_path, drop_path_rates
from core.layers.mlp import Mlp
from core.layers.nd import batch_norm_nd, channel_dropout_nd, conv_nd, interpolate_mode
from core.layers.norm import LayerNorm2d
from core.layers.positional import sinusoidal_positions

__all__ = [
    "DropPath",
    "LayerNorm2d",
    "Mlp",
    "batch_norm_nd",
    "channel_dropout_nd",
    "conv_nd",
    "drop_path",
    "drop_path_rates",
    "interpolate_mode",
    "sinusoidal_positions",
]
