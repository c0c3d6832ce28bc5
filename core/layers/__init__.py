"""Plain layers below both the attention library and the blocks: MLP, fixed positions, n-d layer picks.

Nothing here imports another part of attnlab, so ``core.attention`` and ``core.blocks`` can both use it
(the layering is checked by ``lint-imports``; see ``pyproject.toml``).
"""

from core.layers.mlp import Mlp
from core.layers.nd import batch_norm_nd, channel_dropout_nd, conv_nd, interpolate_mode
from core.layers.positional import sinusoidal_positions

__all__ = [
    "Mlp",
    "batch_norm_nd",
    "channel_dropout_nd",
    "conv_nd",
    "interpolate_mode",
    "sinusoidal_positions",
]
