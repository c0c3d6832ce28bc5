"""GPU training throughput of the flagships with Lightning DDP and FSDP on one GPU, bf16, eager and compiled.

For each flagship (finance TLOB, recsys SASRec, medical AGUNet, at the sizes of their real-data configs)
and each of ``ddp`` / ``fsdp`` × ``eager`` / ``compile``, one Lightning ``Trainer.fit`` on a fixed
synthetic batch with ``precision="bf16-mixed"``, ``devices=1``. Reported: samples/s over ``--steps``
timed steps after ``--warmup`` steps (CUDA-synchronised), and the peak GPU memory
(``torch.cuda.max_memory_allocated``) of the timed steps.

* ``ddp``: Lightning's ``DDPStrategy`` (NCCL, world size 1): the cost of DDP's hooks and buckets.
* ``fsdp2``: attnlab's ``FSDP2Strategy`` (``--trainer.strategy=fsdp2``: FSDP2 ``fully_shard`` per unit)
  with the family's blocks as units (TLOB's ``TransformerLayer``, ``SASRecBlock``, the U-Net's
  ``ConvBlock``/``DecoderLevel``); on one GPU nothing is sharded, so the row measures FSDP's overhead,
  not its memory saving.
* ``fsdp``: Lightning's older ``FSDPStrategy`` (FSDP1) with the same units, on request only.
* ``compile``: the network compiled in place (``nn.Module.compile``, inductor) before the strategy wraps
  it; compile time is spent in the warm-up steps and not timed.

Each row runs in its own subprocess with a time limit (a hang or an error costs that row only, reported
as such), eager rows first; the limits add up to ``--budget`` seconds (default 450), so the whole script
fits one 10-minute device call. Needs CUDA; it refuses to run without it.

Results: a Markdown table on stdout, ``<out>/gpu_throughput.md`` and ``<out>/gpu_throughput.json``.

Run: ``python -m benchmarks.gpu_throughput [--models tlob sasrec agunet] [--strategies ddp fsdp2]
[--compile eager compile] [--steps 30 --warmup 10] [--budget 450] [--out runs/bench/gpu_throughput]``.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.strategies import DDPStrategy, FSDPStrategy
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from core.training.sharding import FSDP2Strategy

__all__ = ["MODELS", "Row", "build_parser", "main", "measure"]

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("tlob", "sasrec", "agunet")
STRATEGIES = ("ddp", "fsdp2", "fsdp")
DEFAULT_STRATEGIES = ["ddp", "fsdp2"]
MODES = ("eager", "compile")
RESULT = "GPU_THROUGHPUT_RESULT "
NO_CUDA = (
    "benchmarks.gpu_throughput measures GPU throughput and peak GPU memory and needs CUDA, but "
    "torch.cuda.is_available() is False here. Run it on a machine with an NVIDIA GPU "
    "(see docs/distributed.md)."
)


@dataclass
class Row:
    """One measured (or failed) configuration."""

    model: str
    strategy: str
    mode: str
    batch: int
    samples_per_s: float | None = None
    peak_mib: float | None = None
    seconds: float | None = None
    error: str | None = None


# ---------------------------------------------------------------------------------------------- flagships


def _tlob(batch: int) -> tuple[nn.Module, dict[str, Tensor], Callable, set[type[nn.Module]]]:
    """TLOB at LOBSTER size (46 features, window 100, hidden 40, 4 layers, 1 horizon)."""
    from domains.finance.models import TLOB
    from domains.finance.models.tlob import TransformerLayer

    net = TLOB(num_features=46, seq_len=100, num_horizons=1, hidden_dim=40, num_layers=4, num_heads=1)
    gen = torch.Generator().manual_seed(0)
    data = {
        "x": torch.randn(batch, 100, 46, generator=gen),
        "y": torch.randint(0, 3, (batch, 1), generator=gen),
    }

    def loss(model: nn.Module, b: dict[str, Tensor]) -> Tensor:
        return F.cross_entropy(model(b["x"]).flatten(0, 1).float(), b["y"].flatten())

    return net, data, loss, {TransformerLayer}


def _sasrec(batch: int) -> tuple[nn.Module, dict[str, Tensor], Callable, set[type[nn.Module]]]:
    """SASRec at Amazon size (12,000 items, window 50, hidden 64, 2 blocks), full-catalogue CE."""
    from domains.recsys.models import SASRec
    from domains.recsys.models.sasrec import SASRecBlock

    num_items, length = 12_000, 50
    net = SASRec(num_items=num_items, max_len=length, hidden_dim=64, num_layers=2, num_heads=1, dropout=0.2)
    gen = torch.Generator().manual_seed(0)
    data = {"items": torch.randint(1, num_items + 1, (batch, length + 1), generator=gen)}

    def loss(model: nn.Module, b: dict[str, Tensor]) -> Tensor:
        hidden = model.encode(b["items"][:, :-1])
        logits = model.scores(hidden).flatten(0, 1).float()
        return F.cross_entropy(logits, b["items"][:, 1:].flatten())

    return net, data, loss, {SASRecBlock}


def _agunet(batch: int) -> tuple[nn.Module, dict[str, Tensor], Callable, set[type[nn.Module]]]:
    """AGUNet at BraTS GPU size (4 channels, 4 classes, 128³ patches, widths 16…256), deep supervision."""
    from core.blocks.unet import ConvBlock, DecoderLevel
    from domains.medical.models import AGUNet

    net = AGUNet(in_channels=4, num_classes=4, spatial_dims=3, channels=[16, 32, 64, 128, 256])
    gen = torch.Generator().manual_seed(0)
    shape = (batch, 4, 128, 128, 128)
    data = {
        "x": torch.randn(shape, generator=gen),
        "y": torch.randint(0, 4, (batch, 128, 128, 128), generator=gen),
    }

    def loss(model: nn.Module, b: dict[str, Tensor]) -> Tensor:
        out = model(b["x"])
        levels = out if isinstance(out, list) else [out]
        total = b["x"].new_zeros((), dtype=torch.float32)
        for k, logits in enumerate(levels):
            target = b["y"]
            if logits.shape[2:] != target.shape[1:]:
                target = F.interpolate(target[:, None].float(), logits.shape[2:], mode="nearest")[:, 0].long()
            total = total + 0.5**k * F.cross_entropy(logits.float(), target)
        return total

    return net, data, loss, {ConvBlock, DecoderLevel}


FLAGSHIPS = {"tlob": (_tlob, 256), "sasrec": (_sasrec, 256), "agunet": (_agunet, 2)}


# ---------------------------------------------------------------------------------------------- one row


def measure(
    model: str,
    strategy: str,
    mode: str,
    *,
    batch: int | None = None,
    steps: int = 30,
    warmup: int = 10,
    accelerator: str = "gpu",
) -> Row:
    """Train ``model`` for ``warmup + steps`` steps with Lightning and time the last ``steps``.

    Args:
        model: One of :data:`MODELS`.
        strategy: ``ddp``, ``fsdp2`` or ``fsdp`` (one device).
        mode: ``eager`` or ``compile``.
        batch: Samples per step (default: the flagship's).
        steps: Timed steps.
        warmup: Untimed steps first (compilation happens here).
        accelerator: ``gpu``; ``cpu`` only for the CPU test of this function (ddp, fsdp2).

    Returns:
        The row with samples/s and peak memory (None on CPU).
    """
    factory, default_batch = FLAGSHIPS[model]
    batch = batch or default_batch
    net, data, loss_fn, blocks = factory(batch)
    if mode == "compile":
        net.compile()
    module = _Task(net, loss_fn)
    timer = _Timer(warmup, cuda=accelerator == "gpu")
    chosen = {
        "ddp": lambda: DDPStrategy(),
        "fsdp2": lambda: FSDP2Strategy(units=[b.__name__ for b in blocks]),
        "fsdp": lambda: FSDPStrategy(auto_wrap_policy=blocks),
    }[strategy]()
    trainer = pl.Trainer(
        accelerator=accelerator,
        devices=1,
        strategy=chosen,
        precision="bf16-mixed",
        max_steps=warmup + steps,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
    )
    trainer.fit(module, train_dataloaders=DataLoader(_Same(data, warmup + steps), batch_size=None))
    seconds = timer.seconds()
    return Row(
        model,
        strategy,
        mode,
        batch,
        samples_per_s=batch * steps / seconds,
        peak_mib=torch.cuda.max_memory_allocated() / 2**20 if accelerator == "gpu" else None,
        seconds=seconds,
    )


class _Task(pl.LightningModule):
    """The network, its loss on a batch, AdamW; nothing logged (no graph breaks, no syncs)."""

    def __init__(self, net: nn.Module, loss_fn: Callable[[nn.Module, dict[str, Tensor]], Tensor]) -> None:
        super().__init__()
        self.network = net
        self.loss_fn = loss_fn

    def configure_model(self) -> None:
        if isinstance(self.trainer.strategy, FSDP2Strategy):
            self.trainer.strategy.shard(self)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        return self.loss_fn(self.network, batch)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=1e-4)


class _Same(Dataset):
    """The same pre-collated batch ``length`` times (a loader with ``batch_size=None`` yields it as is)."""

    def __init__(self, batch: dict[str, Tensor], length: int) -> None:
        self.batch, self.length = batch, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return self.batch


class _Timer(Callback):
    """Wall time from the end of warm-up step ``warmup`` to the end of training, CUDA-synchronised."""

    def __init__(self, warmup: int, cuda: bool) -> None:
        self.warmup, self.cuda = warmup, cuda
        self.start: float | None = None
        self.end: float | None = None

    def _sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.global_step == self.warmup:
            self._sync()
            if self.cuda:
                torch.cuda.reset_peak_memory_stats()
            self.start = time.perf_counter()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._sync()
        self.end = time.perf_counter()

    def seconds(self) -> float:
        if self.start is None or self.end is None:
            raise RuntimeError("the timed steps did not run")
        return self.end - self.start


# ---------------------------------------------------------------------------------------------- driver


def build_parser() -> argparse.ArgumentParser:
    """The script's options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--strategies", nargs="+", choices=STRATEGIES, default=DEFAULT_STRATEGIES)
    parser.add_argument("--compile", nargs="+", choices=MODES, default=list(MODES), dest="modes")
    parser.add_argument("--steps", type=_positive, default=30, help="timed steps per row")
    parser.add_argument("--warmup", type=_positive, default=10, help="untimed steps first (compilation)")
    parser.add_argument("--budget", type=_positive, default=450, help="seconds for all rows together")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/gpu_throughput"))
    parser.add_argument("--worker", nargs=3, metavar=("MODEL", "STRATEGY", "MODE"), help=argparse.SUPPRESS)
    return parser


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _run_row(model: str, strategy: str, mode: str, args: argparse.Namespace, limit: float) -> Row:
    """One row in its own process, so a failure, a hang or a compile cache cannot affect the next."""
    command = [sys.executable, "-m", "benchmarks.gpu_throughput", "--worker", model, strategy, mode]
    command += ["--steps", str(args.steps), "--warmup", str(args.warmup)]
    batch = FLAGSHIPS[model][1]
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path}
    try:
        proc = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired:
        return Row(model, strategy, mode, batch, error=f"no result within {limit:.0f} s")
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT):
            return Row(**json.loads(line.removeprefix(RESULT)))
    lines = [line for line in (proc.stderr or proc.stdout).splitlines() if line.strip()]
    return Row(model, strategy, mode, batch, error=f"exit {proc.returncode}: {lines[-1] if lines else ''}")


def _table(rows: list[Row], device: str) -> str:
    lines = [
        f"# Flagship training throughput, bf16-mixed, 1 GPU: {device} (torch {torch.__version__})",
        "",
        "| model | batch | strategy | mode | samples/s | peak GPU MiB | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        rate = f"{r.samples_per_s:.1f}" if r.samples_per_s is not None else "-"
        peak = f"{r.peak_mib:.0f}" if r.peak_mib is not None else "-"
        lines.append(
            f"| {r.model} | {r.batch} | {r.strategy} | {r.mode} | {rate} | {peak} | {r.error or ''} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run every requested row (or, with ``--worker``, one row in this process); print the table."""
    args = build_parser().parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit(NO_CUDA)
    if args.worker:
        model, strategy, mode = args.worker
        row = measure(model, strategy, mode, steps=args.steps, warmup=args.warmup)
        print(RESULT + json.dumps(asdict(row)), flush=True)
        return 0
    device = torch.cuda.get_device_name(0)
    plan = [(m, s, c) for c in args.modes for m in args.models for s in args.strategies]
    deadline = time.monotonic() + args.budget
    rows = []
    for index, (model, strategy, mode) in enumerate(plan):
        left = deadline - time.monotonic()
        if left < 10:
            rows.append(Row(model, strategy, mode, FLAGSHIPS[model][1], error="not run: --budget spent"))
            continue
        # Share what is left among the rows still to run; compiled rows get twice an eager row's share.
        weights = [2 if c == "compile" else 1 for _, _, c in plan[index:]]
        limit = left * weights[0] / sum(weights)
        rows.append(_run_row(model, strategy, mode, args, max(limit, min(left, 60))))
        print(_table(rows[-1:], device).splitlines()[-1], flush=True)
    table = _table(rows, device)
    print("\n" + table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_throughput.md").write_text(table + "\n")
    payload = {"device": device, "torch": torch.__version__, "rows": [asdict(r) for r in rows]}
    (args.out / "gpu_throughput.json").write_text(json.dumps(payload, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
