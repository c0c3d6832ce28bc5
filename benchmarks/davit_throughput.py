"""DaViT training throughput: ours (core blocks) against timm's ``davit_tiny``, in the same run.

Both models are DaViT-T built without pre-trained weights at the same input (3 bands, 1000 classes by
default); the script first checks that they have the same parameter count and, after loading timm's
weights into ours, the same output. It then times full training steps (forward, cross-entropy, backward,
AdamW) after a warm-up, alternating the two models in rounds, and prints samples/s of both and the ratio
ours / timm (higher = ours faster), with the device and thread count.

Run: ``python -m benchmarks.davit_throughput [--batch 8 --size 224 --steps 10 --device cpu --threads 2]``.
"""

import argparse
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from benchmarks.timing import (
    add_training_options,
    alternating_steps_per_second,
    count_parameters,
    device_label,
    start_run,
    training_step,
)
from domains.remote_sensing.models import DaViT


def main(argv: Sequence[str] | None = None) -> None:
    """Parse options (``argv``, default the command line), check equality, time both models, print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224, help="square input side")
    parser.add_argument("--classes", type=int, default=1000)
    add_training_options(parser, steps=10, warmup=2)
    args = parser.parse_args(argv)
    import timm

    device = start_run(args)
    theirs = timm.create_model("davit_tiny", pretrained=False, num_classes=args.classes).to(device)
    ours = DaViT(in_channels=3, num_classes=args.classes).to(device)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    with torch.no_grad():
        gap = (ours.eval()(x) - theirs.eval()(x)).abs().max().item()
    where = device_label(device, f"timm {timm.__version__}")
    print(f"# DaViT-T training throughput (fwd + bwd + AdamW), B={args.batch}, {args.size}px, fp32, {where}")
    print(f"# same weights, max |ours - timm| of the logits: {gap:.2e}")
    y = torch.randint(0, args.classes, (args.batch,), device=device)
    steps = {
        name: training_step(
            model, torch.optim.AdamW(model.parameters(), lr=1e-4), lambda m: F.cross_entropy(m(x), y)
        )
        for name, model in (("ours", ours), ("timm", theirs))
    }
    per_second = alternating_steps_per_second(steps, device, args.steps, args.warmup, args.rounds)
    rates = {name: args.batch * rate for name, rate in per_second.items()}
    print("| params ours | params timm | ours (samples/s) | timm (samples/s) | ours / timm |")
    print("|---|---|---|---|---|")
    print(
        f"| {count_parameters(ours):,} | {count_parameters(theirs):,} | {rates['ours']:.2f} "
        f"| {rates['timm']:.2f} | {rates['ours'] / rates['timm']:.2f}x |"
    )


if __name__ == "__main__":
    main()
