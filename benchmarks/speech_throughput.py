"""Conv-TasNet training throughput: ours against ``torchaudio.models.ConvTasNet``, in the same run.

Both networks have the paper's sizes (N=512, L=16, B=128, H=512, P=3, X=8, R=3, gLN, sigmoid masks) and the
same parameter count (tested in ``tests/speech/test_models.py``). Ours differs in two implementation
details: the residual and skip 1×1 convolutions of each block are one convolution, and the masks multiply
the encoder frames by broadcasting without a copy.

Each step is a full training step on the same random batch: forward, negative SI-SDR with utterance-level
PIT (:class:`~domains.speech.losses.PITSISDRLoss`, identical for both), backward, Adam. After a warm-up the
two models alternate in rounds; the script prints seconds of audio per second of both, the ratio ours /
torchaudio (higher = ours faster), the device and the thread count.

Run: ``python -m benchmarks.speech_throughput [--batch 2 --seconds 1 --steps 6 --device cpu --threads 2]``.
"""

import argparse
from collections.abc import Sequence

import torch

from benchmarks.timing import (
    add_training_options,
    alternating_steps_per_second,
    count_parameters,
    device_label,
    start_run,
    training_step,
)
from domains.speech.losses import PITSISDRLoss
from domains.speech.models import ConvTasNet


def main(argv: Sequence[str] | None = None) -> None:
    """Parse options (``argv``, default the command line), time both models, print a table row."""
    import torchaudio

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=1.0, help="length of each training crop")
    parser.add_argument("--sample-rate", type=int, default=8000)
    add_training_options(parser, steps=6, warmup=1)
    args = parser.parse_args(argv)
    device = start_run(args)
    where = device_label(device)
    samples = round(args.seconds * args.sample_rate)
    sources = torch.randn(args.batch, 2, samples, device=device)
    mixture = sources.sum(dim=1)
    loss = PITSISDRLoss()
    channel_mixture = mixture[:, None]  # torchaudio's model takes (B, 1, T), ours (B, T)
    ours = ConvTasNet().to(device)
    theirs = torchaudio.models.ConvTasNet().to(device)
    steps = {
        "ours": training_step(
            ours, torch.optim.Adam(ours.parameters(), lr=1e-3), lambda m: loss(m(mixture), sources).loss
        ),
        "theirs": training_step(
            theirs,
            torch.optim.Adam(theirs.parameters(), lr=1e-3),
            lambda m: loss(m(channel_mixture), sources).loss,
        ),
    }
    per_second = alternating_steps_per_second(steps, device, args.steps, args.warmup, args.rounds)
    audio = args.batch * args.seconds
    rate_ours, rate_theirs = audio * per_second["ours"], audio * per_second["theirs"]
    print(f"# Conv-TasNet training throughput (fwd + PIT SI-SDR + bwd + Adam), fp32, {where}")
    print(
        "| batch x crop | params ours | params torchaudio | ours (audio s/s) | torchaudio (audio s/s) "
        "| ours / torchaudio |"
    )
    print("|---|---|---|---|---|---|")
    print(
        f"| {args.batch} x {args.seconds:g} s @ {args.sample_rate} Hz | {count_parameters(ours):,} "
        f"| {count_parameters(theirs):,} | {rate_ours:.2f} | {rate_theirs:.2f} "
        f"| {rate_ours / rate_theirs:.2f}x |"
    )


if __name__ == "__main__":
    main()
