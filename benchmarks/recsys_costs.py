"""What reading, preparing and scoring recsys data costs, on the real files of ``../shared/data/recsys``.

Three figures of the recsys docs, measured in one run:

* **Readers**: ``read_sequence_file`` on Amazon Sports (296k interactions), alone and with the datamodule's
  preprocessing (``SeqRecDataModule.setup``).
* **Datamodule**: ``setup("fit")`` + ``setup("test")`` and one pass over the train, validation and test
  loaders, for ml-100k and Toys (full ranking, and ``pop100`` candidate sampling).
* **Catalogue cross-entropy**: forward + backward of ``core.training.linear_cross_entropy`` (row chunks)
  against ``F.cross_entropy`` on the full logits, at a Toys SASRec step's shape (positions × items × hidden),
  as a ratio measured in the same run.

Run::

    python -m benchmarks.recsys_costs --data ../shared/data/recsys --threads 1
"""

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.timing import device_label
from core.training.losses import linear_cross_entropy
from domains.recsys import SeqRecDataModule
from domains.recsys.readers import read_sequence_file


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Wall time of the first of ``repeats`` calls (cold: nothing read yet) and the fastest, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times[0], min(times)


def prepare(path: Path, ranking: str) -> None:
    """Set up a datamodule on ``path`` for fit and test, and iterate each loader once."""
    data = SeqRecDataModule(path=str(path), ranking=ranking)  # type: ignore[arg-type]
    data.setup("fit")
    data.setup("test")
    for loader in (data.train_dataloader(), data.val_dataloader(), data.test_dataloader()):
        for _ in loader:
            pass


def loss_inputs(rows: int, items: int, hidden: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random hidden states, item table (row 0: padding) and targets of one step, seeded."""
    generator = torch.Generator().manual_seed(0)
    h = torch.randn(rows, hidden, generator=generator, requires_grad=True)
    weight = torch.randn(items + 1, hidden, generator=generator, requires_grad=True)
    target = torch.randint(1, items + 1, (rows,), generator=generator)
    return h, weight, target


def catalogue_loss(
    h: torch.Tensor, weight: torch.Tensor, target: torch.Tensor, chunked: bool
) -> torch.Tensor:
    """Cross-entropy over every item but the padding: in row chunks, or on the full logits."""
    if chunked:
        return linear_cross_entropy(h, weight, target, excluded_class=0)
    logits = h @ weight.T
    logits[:, 0] = float("-inf")
    return F.cross_entropy(logits, target)


def main() -> None:
    """Print the three tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/recsys"), help="recsys data folder")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="best of this many runs per figure")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sports = args.data / "amazon" / "Sports_and_Outdoors.txt"
    toys = args.data / "amazon" / "Toys_and_Games.txt"
    ml100k = args.data / "ml-100k" / "ml-100k.inter"
    print(f"device: {device_label(torch.device('cpu'))}")

    data_rows = [
        ("read_sequence_file, Amazon Sports", lambda: read_sequence_file(sports)),
        (
            "read + preprocess (datamodule setup), Amazon Sports",
            lambda: SeqRecDataModule(path=str(sports)).setup("fit"),
        ),
    ]
    data_rows += [
        (
            f"setup + one pass over the train/val/test loaders, {name}, {ranking}",
            lambda p=path, r=ranking: prepare(p, r),
        )
        for name, path, ranking in (
            ("ml-100k", ml100k, "full"),
            ("Toys", toys, "full"),
            ("Toys", toys, "pop100"),
        )
    ]
    print("\n| data | first call (s) | fastest of the repeats (s) |\n|---|---|---|")
    for label, fn in data_rows:
        first, fastest = timed(fn, args.repeats)
        print(f"| {label} | {first:.2f} | {fastest:.2f} |")

    rows, items, hidden = 1700, 11924, 64
    inputs = loss_inputs(rows, items, hidden)
    _, chunked = timed(lambda: catalogue_loss(*inputs, chunked=True).backward(), args.repeats + 2)
    _, full = timed(lambda: catalogue_loss(*inputs, chunked=False).backward(), args.repeats + 2)
    print(
        f"\n| catalogue cross-entropy, {rows} positions × {items} items × {hidden}, fwd+bwd | ms |\n|---|---|"
    )
    print(
        f"| full logits (F.cross_entropy) | {1000 * full:.1f} |\n| row chunks (linear_cross_entropy) | "
        f"{1000 * chunked:.1f} |\n| full / chunks | {full / chunked:.2f}× |"
    )


if __name__ == "__main__":
    main()
