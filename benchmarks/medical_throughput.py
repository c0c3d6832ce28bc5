"""Medical U-Net throughput: our AGUNet against MONAI's ``AttentionUnet``, and sliding-window peak memory.

Training: for each network the script times full training steps (forward, MONAI ``DiceCELoss``,
backward, Adam) on the same random batch, after ``--warmup`` steps, alternating the networks step by step
so that a noisy machine slows them alike, and reports the median step time, patches/s and the ratio
``ours / MONAI`` in steps/s (higher = ours faster). Rows:

* ``monai-attention-unet``: ``monai.networks.nets.AttentionUnet(channels, strides=2)``, the reference,
  as MONAI builds it (default contiguous memory format).
* ``monai-attention-unet-cl``: the same network converted to ``channels_last(_3d)`` with its input (what
  our U-Net does internally by default), to show how much of the difference is the memory format
  (``--no-monai-cl`` skips it).
* ``agunet-gate``: our :class:`~domains.medical.models.UNet` with AGUNet's ``ConcatAttentionGate`` and
  the same ``channels`` (no pyramid, no deep supervision): the like-for-like comparison, which decides
  PASS (ratio >= 1.0) or FAIL.
* ``agunet``: the task's AGUNet defaults (gate + input pyramid + deep supervision, loss on every level).

Architectural note: at equal ``channels`` our decoder is the official AGUNet one, a *two*-conv block
after the concatenation, while MONAI's ``AttentionLayer`` merges with a *single* conv; ours does more
work per step.

Inference memory: our AGUNet (``agunet-gate``) in eval mode runs MONAI's ``sliding_window_inference`` on
a full ``--volume`` (default 240×240×155, a BraTS volume; random data) with ``sw_device=--device`` and
``device="cpu"`` (the stitched output stays in host memory). Reported: wall time, the peak resident set
size (Linux ``VmHWM`` after resetting it via ``/proc/self/clear_refs``; CUDA allocator peak as well on
GPU) above the level before the call, and the size of the stitched output for scale.

Results: a Markdown table on stdout, ``<out>/medical_throughput.md`` and ``<out>/medical_throughput.json``.

Run: ``python -m benchmarks.medical_throughput [--patch 64 --channels 16,32,64,128,256 --batch 2 --steps 6
--device cpu --threads 2]``.
"""

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmarks.memory import peak_rss_mib
from core.attention.gates import ConcatAttentionGate
from core.utils import require
from domains.medical.models import AGUNet, UNet

__all__ = ["SlidingWindowResult", "TrainRow", "build_parser", "main", "peak_rss_mib", "run"]

REFERENCE = "monai-attention-unet"
REFERENCE_CL = "monai-attention-unet-cl"
LIKE_FOR_LIKE = "agunet-gate"


@dataclass
class TrainRow:
    """One network's training throughput."""

    name: str
    params: int
    median_step_s: float
    patches_per_s: float
    ratio_vs_monai: float
    note: str = ""


@dataclass
class SlidingWindowResult:
    """Sliding-window inference of one full volume."""

    model: str
    volume: list[int]
    roi: list[int]
    overlap: float
    sw_batch_size: int
    seconds: float
    peak_rss_mib: float | None
    peak_cuda_mib: float | None
    output_mib: float


def _parse_ints(text: str, owner: str) -> list[int]:
    try:
        values = [int(v) for v in text.replace("x", ",").split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{owner}: expected comma-separated ints, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{owner}: expected positive ints, got {text!r}")
    return values


def _networks(args: argparse.Namespace) -> dict[str, nn.Module]:
    from monai.networks.nets import AttentionUnet

    d = len(args.patch)
    channels = tuple(args.channels)
    common = {"in_channels": args.in_channels, "num_classes": args.num_classes, "spatial_dims": d}

    def monai() -> nn.Module:
        return AttentionUnet(
            d, args.in_channels, args.num_classes, channels, strides=(2,) * (len(channels) - 1)
        )

    nets = {REFERENCE: monai()}
    if args.monai_cl:
        nets[REFERENCE_CL] = monai().to(memory_format=_memory_format(d))
    return nets | {
        LIKE_FOR_LIKE: UNet(**common, channels=list(channels), gate=ConcatAttentionGate),
        "agunet": AGUNet(**common, channels=list(channels)),
    }


def _memory_format(spatial_dims: int) -> torch.memory_format:
    return torch.channels_last_3d if spatial_dims == 3 else torch.channels_last


def _loss_fn() -> Callable[[Tensor | list[Tensor], Tensor], Tensor]:
    from monai.losses import DiceCELoss

    base = DiceCELoss(to_onehot_y=True, softmax=True)

    def loss(out: Tensor | list[Tensor], label: Tensor) -> Tensor:
        if isinstance(out, Tensor):
            return base(out, label)
        total = out[0].new_zeros(())
        for k, logits in enumerate(out):
            target = label if logits.shape[2:] == label.shape[2:] else F.interpolate(label, logits.shape[2:])
            total = total + 0.5**k * base(logits, target)
        return total

    return loss


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_training(args: argparse.Namespace) -> list[TrainRow]:
    """Median training-step time of every network, alternating them step by step."""
    device = torch.device(args.device)
    gen = torch.Generator().manual_seed(0)
    shape = (args.batch, args.in_channels, *args.patch)
    x = torch.randn(shape, generator=gen).to(device)
    label = (torch.rand((args.batch, 1, *args.patch), generator=gen) * args.num_classes).floor().to(device)
    loss_fn = _loss_fn()
    nets = _networks(args)
    x_cl = x.contiguous(memory_format=_memory_format(len(args.patch)))
    steps: dict[str, Callable[[], None]] = {}
    for name, net in nets.items():
        net.to(device).train()
        opt = torch.optim.Adam(net.parameters(), lr=1e-4)
        inputs = x_cl if name == REFERENCE_CL else x

        def step(net: nn.Module = net, opt: torch.optim.Optimizer = opt, inputs: Tensor = inputs) -> None:
            opt.zero_grad(set_to_none=True)
            loss_fn(net(inputs), label).backward()
            opt.step()

        steps[name] = step
    times: dict[str, list[float]] = {name: [] for name in nets}
    for i in range(args.warmup + args.steps):
        for name, step in steps.items():
            _sync(device)
            start = time.perf_counter()
            step()
            _sync(device)
            if i >= args.warmup:
                times[name].append(time.perf_counter() - start)
    med = {name: statistics.median(t) for name, t in times.items()}
    notes = {
        REFERENCE: "reference",
        REFERENCE_CL: "MONAI in channels_last (not its default)",
        LIKE_FOR_LIKE: "same channels, gate only (like for like)",
        "agunet": "task defaults: gate + input pyramid + deep supervision",
    }
    return [
        TrainRow(
            name=name,
            params=sum(p.numel() for p in nets[name].parameters()),
            median_step_s=med[name],
            patches_per_s=args.batch / med[name],
            ratio_vs_monai=med[REFERENCE] / med[name],
            note=notes[name],
        )
        for name in nets
    ]


def sliding_window(args: argparse.Namespace) -> SlidingWindowResult:
    """Peak memory and time of sliding-window inference of our AGUNet on one full random volume."""
    from monai.inferers import sliding_window_inference

    device = torch.device(args.device)
    net = _networks(args)[LIKE_FOR_LIKE].to(device).eval()
    volume = torch.randn((1, args.in_channels, *args.volume), generator=torch.Generator().manual_seed(1))

    def infer() -> Tensor:
        with torch.no_grad():
            return sliding_window_inference(
                volume,
                roi_size=args.patch,
                sw_batch_size=args.sw_batch_size,
                predictor=net,
                overlap=args.overlap,
                mode="gaussian",
                sw_device=device,
                device=torch.device("cpu"),
            )

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    out, rss = peak_rss_mib(infer)
    seconds = time.perf_counter() - start
    cuda = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    assert isinstance(out, Tensor)
    return SlidingWindowResult(
        model=LIKE_FOR_LIKE,
        volume=list(args.volume),
        roi=list(args.patch),
        overlap=args.overlap,
        sw_batch_size=args.sw_batch_size,
        seconds=seconds,
        peak_rss_mib=rss,
        peak_cuda_mib=cuda,
        output_mib=out.numel() * out.element_size() / 2**20,
    )


def report(rows: Sequence[TrainRow], sw: SlidingWindowResult | None, args: argparse.Namespace) -> str:
    """The Markdown report: setup, training table with PASS/FAIL, sliding-window line."""
    like = next(r for r in rows if r.name == LIKE_FOR_LIKE)
    verdict = "PASS" if like.ratio_vs_monai >= 1.0 else "FAIL"
    lines = [
        f"device={args.device} threads={torch.get_num_threads()} torch={torch.__version__} "
        f"patch={'x'.join(map(str, args.patch))} channels={','.join(map(str, args.channels))} "
        f"batch={args.batch} steps={args.steps} (+{args.warmup} warm-up)",
        "",
        "| network | params | median step (s) | patches/s | ours/MONAI (steps/s) | note |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.name} | {r.params:,} | {r.median_step_s:.3f} | {r.patches_per_s:.2f} | "
            f"{r.ratio_vs_monai:.2f}x | {r.note} |"
        )
    lines += [
        "",
        f"{verdict}: {LIKE_FOR_LIKE} runs at {like.ratio_vs_monai:.2f}x MONAI's training speed "
        "(goal >= 1.0x)",
    ]
    ref_cl = next((r for r in rows if r.name == REFERENCE_CL), None)
    if ref_cl is not None:
        lines.append(
            f"vs MONAI converted to channels_last: {like.ratio_vs_monai / ref_cl.ratio_vs_monai:.2f}x"
        )
    if sw is not None:
        rss = "n/a" if sw.peak_rss_mib is None else f"{sw.peak_rss_mib:.0f} MiB"
        cuda = "" if sw.peak_cuda_mib is None else f", CUDA peak {sw.peak_cuda_mib:.0f} MiB"
        lines += [
            "",
            f"sliding window ({sw.model}, volume {'x'.join(map(str, sw.volume))}, roi "
            f"{'x'.join(map(str, sw.roi))}, overlap {sw.overlap}, sw_batch_size {sw.sw_batch_size}, "
            f"stitching on cpu): {sw.seconds:.1f} s, peak RSS +{rss}{cuda} "
            f"(stitched output alone: {sw.output_mib:.0f} MiB)",
        ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict[str, object]:
    """Run both measurements and return the JSON-able result."""
    require("monai", "medical")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = time_training(args)
    sw = None if args.skip_sliding_window else sliding_window(args)
    like = next(r for r in rows if r.name == LIKE_FOR_LIKE)
    return {
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "threads": torch.get_num_threads(),
        "training": [asdict(r) for r in rows],
        "verdict": "PASS" if like.ratio_vs_monai >= 1.0 else "FAIL",
        "sliding_window": None if sw is None else asdict(sw),
        "markdown": report(rows, sw, args),
    }


def build_parser() -> argparse.ArgumentParser:
    """The command-line options."""
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.medical_throughput",
        description="Training steps/s of our AGUNet vs MONAI AttentionUnet; sliding-window peak memory.",
    )
    p.add_argument(
        "--patch",
        type=lambda s: _parse_ints(s, "--patch"),
        default=[64, 64, 64],
        help="training patch and sliding-window ROI: one int per axis or one int for a cube (64)",
    )
    p.add_argument(
        "--channels",
        type=lambda s: _parse_ints(s, "--channels"),
        default=[16, 32, 64, 128, 256],
        help="encoder widths shared by every network (16,32,64,128,256)",
    )
    p.add_argument("--batch", type=int, default=2, help="patches per training step (2)")
    p.add_argument("--steps", type=int, default=6, help="timed training steps per network (6)")
    p.add_argument("--warmup", type=int, default=2, help="untimed warm-up steps per network (2)")
    p.add_argument("--device", default="cpu", help="torch device (cpu)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads; 0 keeps the default")
    p.add_argument("--in-channels", type=int, default=1, help="image channels (1)")
    p.add_argument("--num-classes", type=int, default=2, help="classes including background (2)")
    p.add_argument(
        "--no-monai-cl", dest="monai_cl", action="store_false", help="skip the channels_last MONAI row"
    )
    p.add_argument(
        "--volume",
        type=lambda s: _parse_ints(s, "--volume"),
        default=[240, 240, 155],
        help="sliding-window volume size (240,240,155: BraTS)",
    )
    p.add_argument("--overlap", type=float, default=0.25, help="sliding-window overlap (0.25)")
    p.add_argument("--sw-batch-size", type=int, default=1, help="windows per network call (1)")
    p.add_argument("--skip-sliding-window", action="store_true", help="only time training")
    p.add_argument("--out", type=Path, default=Path("runs/bench/medical"), help="output folder")
    return p


def main(argv: Sequence[str] | None = None) -> dict[str, object]:
    """Parse ``argv``, run, print the table and write ``medical_throughput.{md,json}`` under ``--out``."""
    args = build_parser().parse_args(argv)
    if len(args.patch) == 1:
        args.patch = args.patch * 3
    if len(args.patch) not in (2, 3):
        raise SystemExit(f"--patch: expected 1, 2 or 3 sizes, got {args.patch}")
    if len(args.volume) != len(args.patch):
        raise SystemExit(f"--volume {args.volume} must have as many axes as --patch {args.patch}")
    if len(args.channels) < 2:
        raise SystemExit(f"--channels: expected at least 2 widths, got {args.channels}")
    for name in ("batch", "steps", "sw_batch_size"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    result = run(args)
    print(result["markdown"])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "medical_throughput.md").write_text(str(result["markdown"]) + "\n")
    (args.out / "medical_throughput.json").write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out / 'medical_throughput.md'} and medical_throughput.json", file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
