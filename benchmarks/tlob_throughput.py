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
import time
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

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


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _Trainer:
    """One model, its Adam optimizer and a fixed random batch."""

    def __init__(self, model: nn.Module, x: Tensor, y: Tensor) -> None:
        self.model = model.train()
        self.opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        self.x, self.y = x, y
        self.seconds = 0.0
        self.steps = 0

    def step(self) -> None:
        self.opt.zero_grad(set_to_none=True)
        logits = self.model(self.x)
        loss = F.cross_entropy(logits.flatten(0, 1), self.y.flatten())
        loss.backward()
        self.opt.step()

    def timed(self, steps: int, device: torch.device) -> None:
        _sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            self.step()
        _sync(device)
        self.seconds += time.perf_counter() - start
        self.steps += steps


def main(argv: Sequence[str] | None = None) -> None:
    """Parse options (``argv``, default the command line), time both models per shape, print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per model and shape")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2, help="alternate the models this many times")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    if device.type == "cuda":
        where = f"{torch.cuda.get_device_name(device)} (torch {torch.__version__})"
    else:
        where = f"CPU, {torch.get_num_threads()} threads (torch {torch.__version__})"
    print(f"# TLOB training throughput (fwd + bwd + Adam), B={args.batch}, L=4, heads=1, fp32, {where}")
    print(
        "| shape | T | F | H ours / official | params ours | params official | ours (samples/s) "
        "| official (samples/s) | ours / official |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, f, t, hidden in SHAPES:
        x = torch.randn(args.batch, t, f, device=device)
        y = torch.randint(0, 3, (args.batch, 1), device=device)
        ours = _Trainer(TLOB(num_features=f, seq_len=t, hidden_dim=hidden).to(device), x, y)
        official = _Trainer(OfficialStyleTLOB(num_features=f, seq_len=t).to(device), x, y)
        for trainer in (ours, official):
            for _ in range(args.warmup):
                trainer.step()
        per_round = max(1, args.steps // args.rounds)
        for _ in range(args.rounds):
            ours.timed(per_round, device)
            official.timed(per_round, device)
        rate_ours = args.batch * ours.steps / ours.seconds
        rate_official = args.batch * official.steps / official.seconds
        print(
            f"| {name} | {t} | {f} | {hidden} / {f} | {count_parameters(ours.model):,} "
            f"| {count_parameters(official.model):,} | {rate_ours:.1f} | {rate_official:.1f} "
            f"| {rate_ours / rate_official:.2f}x |"
        )


if __name__ == "__main__":
    main()
