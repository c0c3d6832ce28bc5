"""``MultiHeadAttention`` (SDPA path) against the plain reference equation, forward + backward.

Both run in the same process on the same inputs and weights; the script prints median times and the
ratio ``reference / ours`` (higher = ours faster) for several sequence lengths N, plus the thread count
and device. Run: ``python -m benchmarks.attention_mha [--device cpu] [--threads 2]``.
"""

import argparse
from collections.abc import Callable

import torch

from benchmarks.timing import median_ms
from core.attention import MultiHeadAttention


def _step(module: MultiHeadAttention, x: torch.Tensor, causal: bool) -> Callable[[], None]:
    def run() -> None:
        module.zero_grad(set_to_none=True)
        x.grad = None
        module(x, is_causal=causal).sum().backward()

    return run


def main() -> None:
    """Parse options, run the sweep and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 256, 512, 1024, 2048])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    ours = MultiHeadAttention(args.dim, num_heads=args.heads).to(device)
    reference = MultiHeadAttention(args.dim, num_heads=args.heads, backend="reference").to(device)
    reference.load_state_dict(ours.state_dict())
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {args.threads} threads"
    print(f"# MultiHeadAttention fwd+bwd, B={args.batch} C={args.dim} heads={args.heads}, fp32, {name}")
    print("| N | causal | ours (ms) | reference (ms) | reference / ours |")
    print("|---|---|---|---|---|")
    for n in args.lengths:
        for causal in (False, True):
            x = torch.randn(args.batch, n, args.dim, device=device, requires_grad=True)
            t_ours = median_ms(_step(ours, x, causal), device, args.repeats)
            t_ref = median_ms(_step(reference, x, causal), device, args.repeats)
            print(f"| {n} | {causal} | {t_ours:.2f} | {t_ref:.2f} | {t_ref / t_ours:.2f}x |")


if __name__ == "__main__":
    main()
