"""Options of the finance benchmark scripts that change what is trained (no training here)."""

import json

import pytest

from benchmarks.finance_finetune import main as finetune_main
from benchmarks.finance_walkforward import ema_override


def test_ema_override_replaces_the_configs_callbacks() -> None:
    assert ema_override("config") == []
    assert ema_override("none") == ["--trainer.callbacks=[]"]
    (option,) = ema_override("0.99,warmup")
    assert option.startswith("--trainer.callbacks=")
    assert json.loads(option.split("=", 1)[1]) == [
        {"class_path": "core.training.EMA", "init_args": {"decay": 0.99, "warmup": True}}
    ]
    (option,) = ema_override("0.9")
    assert json.loads(option.split("=", 1)[1])[0]["init_args"] == {"decay": 0.9, "warmup": False}
    for bad in ("1.5", "0.9,cosine"):
        with pytest.raises(ValueError, match="--ema"):
            ema_override(bad)


def test_finetune_blocks_must_not_overlap() -> None:
    # Target fold 2 starts 2 · 0.2 = 0.4 blocks in; the source's train + val end at 0.8: they would overlap.
    with pytest.raises(SystemExit):
        finetune_main(["--files", "x_message_1.csv", "--split", "0.7", "0.1", "0.2"])
