"""Every registered causal sequence mechanism replaces SASRec's self-attention by name on the command line.

SASRec needs causal attention over a padded item sequence, so every token mixer that supports
``is_causal`` (or is causal only) and needs neither a grid nor a context is run through the CLI for one
training and one validation batch (``fast_dev_run``) with the registry's small example options. The
next-item loss must be finite and the validation metrics present.
"""

import json
from pathlib import Path

import pytest

from core.attention import list_mechanisms
from core.cli import main
from tests.recsys.conftest import SMOKE_CONFIG

CAUSAL_MIXERS = [
    i
    for i in list_mechanisms("token")
    if (i.cls.supports_causal or i.cls.causal_only) and not (i.cls.needs_grid or i.cls.requires_context)
]


def _options(info) -> list[str]:
    def value(v: object) -> str:
        return json.dumps(list(v)) if isinstance(v, tuple | list) else str(v)

    return [f"--model.attention={info.name}"] + [
        f"--model.attention.{k}={value(v)}" for k, v in info.example_kwargs
    ]


@pytest.mark.slow
@pytest.mark.parametrize("info", CAUSAL_MIXERS, ids=lambda i: i.name)
def test_sasrec_trains_with_any_causal_mixer(info, sim_inter: Path, tmp_path: Path) -> None:
    args = [
        f"--config={SMOKE_CONFIG}",
        f"--data.path={sim_inter}",
        "--model.network.hidden_dim=16",
        "--model.network.num_layers=2",
        f"--trainer.default_root_dir={tmp_path}",
        "--trainer.fast_dev_run=true",
        "--trainer.accelerator=cpu",
        "--trainer.devices=1",
        "--trainer.enable_model_summary=false",
    ]
    cli = main(["fit", *args, *_options(info)])
    mixers = [m for m in cli.model.modules() if isinstance(m, info.cls)]
    assert len(mixers) == len(cli.model.network.blocks) == 2
    assert [m.layer_idx for m in mixers] == list(range(len(mixers)))
    metrics = cli.trainer.callback_metrics
    assert float(metrics["train_loss_step"] if "train_loss_step" in metrics else metrics["train_loss"]) > 0
    assert "val_ndcg@10" in metrics
