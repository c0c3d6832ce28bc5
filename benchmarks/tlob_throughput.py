"""TLOB training throughput: ours against an official-style re-implementation, in the same run.

``OfficialStyleTLOB`` is written from the paper and the project's research notes on the official code
(not copied from it). It keeps the two things our :class:`~domains.finance.models.TLOB` deliberately
changes: every attention layer projects q, k, v with ``Linear(d, d·heads)`` and then feeds
``nn.MultiheadAttention(d·heads, heads)``, which projects again (plus a ``w0`` output Linear), and the
hidden width is forced to the number of features. Everything else (BiN, positions, MLPs, head) is the
same architecture.

For each shape the script times full training steps (forward, cross-entropy, backward, Adam) after a
warm-up, alternating the two models in rounds, and prints samples/s of both, the ratio ours / official
(higher = ours faster), the parameter counts, the device and the thread count.

Run: ``python -m benchmarks.tlob_throughput [--batch 32 --steps 20 --device cpu --threads 2]``.
"""

import argparse
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmarks.timing import (
    add_training_options,
    alternating_steps_per_second,
    count_parameters,
    device_label,
    start_run,
    training_step,
)
from core.layers import Mlp, sinusoidal_positions
from domains.finance.models import TLOB, BiN
from domains.finance.models.common import build_head

# name, num_features F, seq_len T, our hidden_dim (the official code forces H = F; ours must be a
# multiple of 4, so LOBSTER's 46 becomes 48).
SHAPES = (("FI-2010", 144, 128, 144), ("LOBSTER L10", 46, 128, 48))


class OfficialStyleLayer(nn.Module):
    """The official TransformerLayer as described: double q/k/v projection, post-norm, MLP, GELU.

    Args:
        dim: Channel width ``d``.
        out_features: Output width (``d`` keeps it and adds the MLP residual).
        num_heads: Heads; the official code widens to ``d · heads`` before attention.
    """

    def __init__(self, dim: int, out_features: int, num_heads: int = 1) -> None:
        super().__init__()
        wide = dim * num_heads
        self.q = nn.Linear(dim, wide)
        self.k = nn.Linear(dim, wide)
        self.v = nn.Linear(dim, wide)
        self.attn = nn.MultiheadAttention(wide, num_heads, batch_first=True)
        self.w0 = nn.Linear(wide, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, 4 * dim, out_features)
        self.norm2 = nn.LayerNorm(out_features)
        self.residual = out_features == dim

    def forward(self, x: Tensor) -> Tensor:
        """``(B, N, d) -> (B, N, out)``."""
        attn, _ = self.attn(self.q(x), self.k(x), self.v(x), need_weights=False)
        x = self.norm1(x + self.w0(attn))
        y = self.mlp(x)
        if self.residual:
            y = y + x
        return F.gelu(self.norm2(y))


class OfficialStyleTLOB(nn.Module):
    """TLOB as the official code builds it (hidden width = number of features, double projection).

    Args:
        num_features: Features per snapshot ``F`` (also the hidden width).
        seq_len: Window length ``T``.
        num_layers: Dual-attention pairs.
        num_heads: Heads.
        num_classes: Classes (single horizon).
    """

    def __init__(
        self, num_features: int, seq_len: int, num_layers: int = 4, num_heads: int = 1, num_classes: int = 3
    ) -> None:
        super().__init__()
        h, t = num_features, seq_len
        self.bin = BiN(num_features, seq_len)
        self.embed = nn.Linear(num_features, h)
        self.register_buffer("pos", sinusoidal_positions(t, h), persistent=False)
        layers = []
        for p in range(num_layers):
            last = p == num_layers - 1
            layers.append(OfficialStyleLayer(h, h // 4 if last else h, num_heads))
            layers.append(OfficialStyleLayer(t, t // 4 if last else t, num_heads))
        self.layers = nn.ModuleList(layers)
        self.head = build_head((t // 4) * (h // 4), num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, T, F) -> (B, 1, num_classes)`` logits."""
        x = self.bin(x.permute(0, 2, 1)).permute(0, 2, 1)
        x = self.embed(x) + self.pos
        for temporal, feature in zip(self.layers[0::2], self.layers[1::2], strict=True):
            x = temporal(x).permute(0, 2, 1)
            x = feature(x).permute(0, 2, 1)
        return self.head(x.reshape(x.shape[0], -1)).unsqueeze(1)


def main(argv: Sequence[str] | None = None) -> None:
    """Parse options (``argv``, default the command line), time both models per shape, print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    add_training_options(parser, steps=20, warmup=3, steps_help="timed steps per model and shape")
    args = parser.parse_args(argv)
    device = start_run(args)
    where = device_label(device)
    print(f"# TLOB training throughput (fwd + bwd + Adam), B={args.batch}, L=4, heads=1, fp32, {where}")
    print(
        "| shape | T | F | H ours / official | params ours | params official | ours (samples/s) "
        "| official (samples/s) | ours / official |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, f, t, hidden in SHAPES:
        x = torch.randn(args.batch, t, f, device=device)
        y = torch.randint(0, 3, (args.batch, 1), device=device)
        ours = TLOB(num_features=f, seq_len=t, hidden_dim=hidden).to(device)
        official = OfficialStyleTLOB(num_features=f, seq_len=t).to(device)
        steps = {
            name: training_step(
                model,
                torch.optim.Adam(model.parameters(), lr=1e-4),
                lambda m, x=x, y=y: F.cross_entropy(m(x).flatten(0, 1), y.flatten()),
            )
            for name, model in (("ours", ours), ("official", official))
        }
        per_second = alternating_steps_per_second(steps, device, args.steps, args.warmup, args.rounds)
        rate_ours = args.batch * per_second["ours"]
        rate_official = args.batch * per_second["official"]
        print(
            f"| {name} | {t} | {f} | {hidden} / {f} | {count_parameters(ours):,} "
            f"| {count_parameters(official):,} | {rate_ours:.1f} | {rate_official:.1f} "
            f"| {rate_ours / rate_official:.2f}x |"
        )


if __name__ == "__main__":
    main()
