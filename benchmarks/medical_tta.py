"""Cost of mirroring TTA and fold ensembles in the medical task's sliding window, against plain inference.

The task's own :meth:`~domains.medical.module.SegmentationTask.sliding_window` runs on one random volume
(``--volume``, default a cropped BraTS brain) with AGUNet at the BraTS config's channels, four ways: plain,
``tta`` (8 flips in 3-D), an ``ensemble`` of ``--folds`` networks, and both. Each is timed (median of
``--repeats``) and its peak resident memory above the level before the call is read (Linux ``VmHWM``,
``benchmarks.memory``). Ratios are against the plain row of the same run, so a busy machine slows every
row alike.

Run: ``python -m benchmarks.medical_tta [--volume 144,176,136 --roi 64 --folds 4 --repeats 1]``.
"""

import argparse
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from benchmarks.memory import peak_rss_mib
from domains.medical import AGUNet, SegmentationTask

__all__ = ["build_parser", "main", "run"]


def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints, got {text!r}") from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive ints, got {text!r}")
    return values


def _task(args: argparse.Namespace, folder: Path, tta: bool, folds: int) -> SegmentationTask:
    """A task with AGUNet; with ``folds``, an ensemble of that many saved random networks."""
    sizes = {"in_channels": 2, "num_classes": 2, "spatial_dims": 3, "patch_size": [args.roi] * 3}

    def factory(in_channels: int, num_classes: int, spatial_dims: int) -> AGUNet:
        return AGUNet(in_channels, num_classes, spatial_dims=spatial_dims, channels=args.channels)

    paths = []
    for k in range(folds):
        torch.manual_seed(k)
        net = factory(2, 2, 3)
        path = folder / f"fold{k}.ckpt"
        torch.save({"state_dict": {f"network.{n}": v for n, v in net.state_dict().items()}}, path)
        paths.append(str(path))
    return SegmentationTask(
        network=factory,
        roi_size=[args.roi] * 3,
        overlap=args.overlap,
        sw_batch_size=args.sw_batch_size,
        tta=tta,
        ensemble=paths or None,
        log_images=False,
        **sizes,
    ).eval()


def run(args: argparse.Namespace) -> list[dict[str, float | str | None]]:
    """Time and peak memory of each variant; ratios against plain inference."""
    volume = torch.randn((1, 2, *args.volume), generator=torch.Generator().manual_seed(0))
    rows: list[dict[str, float | str | None]] = []
    with tempfile.TemporaryDirectory() as tmp:
        variants = [("plain", False, 0), ("tta", True, 0), (f"ensemble{args.folds}", False, args.folds)]
        variants.append((f"ensemble{args.folds}+tta", True, args.folds))
        for name, tta, folds in variants:
            task = _task(args, Path(tmp), tta, folds)
            augment = tta or folds > 0
            with torch.no_grad():
                task.sliding_window(volume[..., : args.roi], augment=augment)  # warm-up, builds the ensemble
            times, peaks = [], []
            for _ in range(args.repeats):
                start = time.perf_counter()
                with torch.no_grad():
                    _, peak = peak_rss_mib(
                        lambda task=task, a=augment: task.sliding_window(volume, augment=a)
                    )
                times.append(time.perf_counter() - start)
                peaks.append(peak)
            rows.append(
                {"variant": name, "seconds": statistics.median(times), "peak_mib": max(p or 0 for p in peaks)}
            )
    base = rows[0]
    for row in rows:
        row["time_ratio"] = float(row["seconds"]) / float(base["seconds"])
    return rows


def build_parser() -> argparse.ArgumentParser:
    """The command-line options."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.medical_tta", description=__doc__.splitlines()[0])
    p.add_argument("--volume", type=_ints, default=[144, 176, 136], help="volume H,W,D (144,176,136)")
    p.add_argument("--roi", type=int, default=64, help="sliding-window ROI edge (64)")
    p.add_argument("--channels", type=_ints, default=[8, 16, 32, 64], help="AGUNet widths (8,16,32,64)")
    p.add_argument("--overlap", type=float, default=0.25, help="window overlap (0.25)")
    p.add_argument("--sw-batch-size", type=int, default=2, help="windows per network call (2)")
    p.add_argument("--folds", type=int, default=4, help="networks in the ensemble (4)")
    p.add_argument("--repeats", type=int, default=1, help="timed runs per variant (1)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads; 0 keeps the default")
    return p


def main(argv: Sequence[str] | None = None) -> list[dict[str, float | str | None]]:
    """Print a Markdown table of the variants."""
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = run(args)
    print(f"volume {args.volume}, roi {args.roi}, overlap {args.overlap}, AGUNet channels {args.channels}")
    print("| variant | seconds | × plain | peak RSS above start (MiB) |\n|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['variant']} | {row['seconds']:.1f} | {row['time_ratio']:.2f} | {row['peak_mib']:.0f} |"
        )
    return rows


if __name__ == "__main__":
    main()
