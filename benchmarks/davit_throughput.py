"""DaViT training throughput: ours (core blocks) against timm's ``davit_tiny``, in the same run.

Both models are DaViT-T built without pre-trained weights at the same input (3 bands, 1000 classes by
default); the script first checks that they have the same parameter count and, after loading timm's
weights into ours, the same output. It then times full training steps (forward, cross-entropy, backward,
AdamW) after a warm-up, alternating the two models in rounds, and prints samples/s of both and the ratio
ours / timm (higher = ours faster), with the device and thread count. ``--repeats`` repeats the timed
rounds and prints one row per repeat, so the spread of the ratio is visible.

``--clock cpu`` times with the process's CPU time instead of the wall clock: on a CPU shared with other
jobs, time spent descheduled then does not count against whichever model was running (use it with
``--threads 1``; with more threads the CPU time of all threads adds up).

Run: ``python -m benchmarks.davit_throughput [--batch 8 --size 224 --steps 10 --device cpu --threads 2]``.
"""

import argparse
import time
from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F

from benchmarks.timing import add_training_options, count_parameters, device_label, start_run, training_step
from domains.remote_sensing.models import DaViT


def timed_rounds(
    steps: Mapping[str, Callable[[], None]],
    device: torch.device,
    total: int,
    rounds: int,
    clock: Callable[[], float],
) -> dict[str, float]:
    """Steps per second of each step function, ``rounds`` times ``total // rounds`` steps each, in turn.

    The order of the functions flips every round, so neither always runs right after the other.
    """
    per_round = max(1, total // rounds)
    seconds = dict.fromkeys(steps, 0.0)
    for index in range(rounds):
        order = list(steps.items())
        for name, step in order if index % 2 == 0 else order[::-1]:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = clock()
            for _ in range(per_round):
                step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds[name] += clock() - start
    return {name: rounds * per_round / seconds[name] for name in steps}


def main(argv: Sequence[str] | None = None) -> None:
    """Parse options (``argv``, default the command line), check equality, time both models, print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224, help="square input side")
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=1, help="timed measurements, one table row each")
    parser.add_argument(
        "--clock", choices=("wall", "cpu"), default="wall", help="wall clock, or this process's CPU time"
    )
    add_training_options(parser, steps=10, warmup=2)
    args = parser.parse_args(argv)
    if args.clock == "cpu" and args.device != "cpu":
        parser.error("--clock cpu only measures CPU runs")
    import timm

    device = start_run(args)
    theirs = timm.create_model("davit_tiny", pretrained=False, num_classes=args.classes).to(device)
    ours = DaViT(in_channels=3, num_classes=args.classes).to(device)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    with torch.no_grad():
        gap = (ours.eval()(x) - theirs.eval()(x)).abs().max().item()
    where = device_label(device, f"timm {timm.__version__}")
    print(
        f"# DaViT-T training throughput (fwd + bwd + AdamW), B={args.batch}, {args.size}px, fp32, {where}, "
        f"{args.clock} clock"
    )
    print(f"# same weights, max |ours - timm| of the logits: {gap:.2e}")
    y = torch.randint(0, args.classes, (args.batch,), device=device)
    steps = {
        name: training_step(
            model, torch.optim.AdamW(model.parameters(), lr=1e-4), lambda m: F.cross_entropy(m(x), y)
        )
        for name, model in (("ours", ours), ("timm", theirs))
    }
    for step in steps.values():
        for _ in range(args.warmup):
            step()
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    print("| repeat | params ours | params timm | ours (samples/s) | timm (samples/s) | ours / timm |")
    print("|---|---|---|---|---|---|")
    for repeat in range(args.repeats):
        per_second = timed_rounds(steps, device, args.steps, args.rounds, clock)
        rates = {name: args.batch * rate for name, rate in per_second.items()}
        sizes = f"{count_parameters(ours):,} | {count_parameters(theirs):,}"
        print(
            f"| {repeat + 1} | {sizes} | {rates['ours']:.2f} | {rates['timm']:.2f} "
            f"| {rates['ours'] / rates['timm']:.3f}x |",
            flush=True,
        )


if __name__ == "__main__":
    main()
