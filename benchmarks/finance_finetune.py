"""Finance fine-tuning across periods: a pre-trained TLOB against one trained from scratch, same budget.

On one LOBSTER session (or several days, via ``--files``) cut as a 3-fold walk-forward with shares
``--split`` (default 0.5 / 0.1 / 0.4), fold 0's training block is the early **source** period and fold 2
the **target**: its training block starts after fold 0's validation block ends, so the two never share
an event, and its test block is the last part of the data. Runs:

* **pre-train**: ``configs/finance/<config>_lobster.yaml`` on fold 0 (best epoch by validation macro-F1);
* **fine-tune**: the same config on fold 2 from the pre-trained checkpoint (``--model.pretrained``; all
  weights train, or the head only with ``--freeze``: :class:`~core.training.FreezeBackbone`);
* **scratch**: the same config on fold 2 from a random initialisation.

Fine-tune and scratch get the same epochs (``--epochs``) and seeds; each is tested on fold 2's test block
with its best epoch by validation macro-F1, and the normalisation and α of each run come from its own
training block. The pre-training epochs are not counted in the budget. Prints test macro-F1 per horizon,
mean ± std over seeds, and writes ``<out>/results.json``.

Run: ``python -m benchmarks.finance_finetune --files ../shared/data/finance/lobster/AMZN_..._message_1.csv``.
"""

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.finance_walkforward import fold_options

SOURCE_FOLD, TARGET_FOLD, FOLDS = 0, 2, 3


def run(
    args: argparse.Namespace, fold: int, seed: int, root: Path, *extra: str
) -> tuple[list[float], float, str]:
    """Fit one fold and seed, test its best checkpoint: (test macro-F1 per horizon, best val, best ckpt)."""
    from core.cli import main as attnlab

    common = fold_options(args.config, args, fold, FOLDS, seed, root)
    fit = attnlab(["fit", *common, *extra])
    checkpoint = fit.trainer.checkpoint_callback
    best, val = str(checkpoint.best_model_path), float(checkpoint.best_model_score)
    metrics = attnlab(["test", *common, "--ckpt_path=best"]).trainer.callback_metrics
    return [float(metrics[f"test_macro_f1_h{h}"]) for h in args.horizons], val, best


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse options (``argv``, default the command line), pre-train, fine-tune and train from scratch."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", nargs="+", required=True, help="LOBSTER message files")
    parser.add_argument("--config", default="tlob", help="configs/finance/<config>_lobster.yaml")
    parser.add_argument("--split", type=float, nargs=3, default=[0.5, 0.1, 0.4])
    parser.add_argument("--seq-len", type=int, default=48)
    parser.add_argument("--horizons", type=int, nargs="+", default=[10, 50, 100])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=3, help="epochs of every run (pre-training included)")
    parser.add_argument("--freeze", action="store_true", help="fine-tune the head only (FreezeBackbone)")
    parser.add_argument("--pretrained", default=None, help="use this checkpoint instead of pre-training")
    parser.add_argument(
        "--runs", nargs="+", default=["fine-tune", "scratch"], choices=["fine-tune", "scratch"]
    )
    parser.add_argument("--out", default="runs/finance/finetune")
    args = parser.parse_args(argv)
    if args.split[2] * (FOLDS - 1) < args.split[0] + args.split[1]:
        parser.error("--split: the target's training block must start after the source's validation block")
    out = Path(args.out)
    scores: dict[str, list[list[float]]] = {name: [] for name in args.runs}
    val: dict[str, list[float]] = {name: [] for name in args.runs}
    source, checkpoint = None, args.pretrained
    if checkpoint is None:
        source, source_val, checkpoint = run(args, SOURCE_FOLD, 0, out / "pretrain")
        val["pre-train"] = [source_val]
    finetune = [f"--model.pretrained={checkpoint}"]
    if args.freeze:
        finetune.append("--trainer.callbacks+=FreezeBackbone")
    for seed in args.seeds:
        for name, extra in (("fine-tune", finetune), ("scratch", [])):
            if name not in args.runs:
                continue
            test, best_val, _ = run(args, TARGET_FOLD, seed, out / f"{name}_seed{seed}", *extra)
            scores[name].append(test)
            val[name].append(best_val)
    result = {"args": vars(args), "source_test": source, "scores": scores, "val_macro_f1": val}
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=1))
    print(table(result, args))
    return result


def table(result: dict[str, Any], args: argparse.Namespace) -> str:
    """Markdown table: test macro-F1 per horizon and mean, mean ± std over seeds; the blocks used."""
    lines = [
        "| target fold, "
        + f"{args.epochs} epochs | "
        + " | ".join(f"h={h}" for h in args.horizons)
        + " | mean |",
        "|---" * (len(args.horizons) + 2) + "|",
    ]
    for name, runs in result["scores"].items():
        values = np.array(runs)  # (seeds, H)
        cells = [f"{values[:, k].mean():.3f} ± {values[:, k].std():.3f}" for k in range(values.shape[1])]
        mean = values.mean(axis=1)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {mean.mean():.3f} ± {mean.std():.3f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
