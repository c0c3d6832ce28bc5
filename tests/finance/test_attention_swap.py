"""Every registered mechanism that fits a finance network is usable by name from the command line.

Token mixers that work on plain sequences (no grid, no context) replace TLOB's attention through
``--model.attention=<Name>``; 2-D feature-map mixers slot into DeepLOB through
``--model.network=DeepLOB --model.network.spatial_attention=<Name>``. Each runs one training and one
validation batch through the CLI (``fast_dev_run``), with the registry's small example options given on
the command line; then the trained task's loss on a training batch must be finite and reach every
mechanism's parameters.
"""

import json
from argparse import ArgumentError
from pathlib import Path

import pytest
import torch
from torch import nn

from core.attention import list_mechanisms
from core.cli import main
from tests.finance.test_cli import _tiny

SEQUENCE_MIXERS = [
    i
    for i in list_mechanisms("token")
    if not (i.cls.needs_grid or i.cls.requires_context or i.cls.causal_only)
]
MAP_MIXERS = [i for i in list_mechanisms("spatial") if 2 in i.cls.supported_dims]


def _options(prefix: str, info) -> list[str]:
    def value(v: object) -> str:
        return json.dumps(list(v)) if isinstance(v, tuple | list) else str(v)

    return [f"{prefix}={info.name}"] + [f"{prefix}.{k}={value(v)}" for k, v in info.example_kwargs]


def _assert_trains_through(cli, mechanisms: list[nn.Module]) -> None:
    """The validation loss is finite, and a training batch's loss has a finite, non-zero gradient in each."""
    assert torch.isfinite(cli.trainer.callback_metrics["val_loss"])
    task = cli.model.train()
    task.zero_grad()
    batch = next(iter(cli.datamodule.train_dataloader()))
    loss = task.criterion(task(batch["x"]).flatten(0, 1), batch["y"].flatten())
    assert torch.isfinite(loss)
    loss.backward()
    for mechanism in mechanisms:
        grads = [p.grad for p in mechanism.parameters() if p.requires_grad]
        assert grads and all(g is not None and torch.isfinite(g).all() for g in grads), mechanism
        assert any(g.abs().sum() > 0 for g in grads), f"no gradient reaches {type(mechanism).__name__}"


@pytest.mark.slow
@pytest.mark.parametrize("info", SEQUENCE_MIXERS, ids=lambda i: i.name)
def test_tlob_trains_with_any_sequence_mixer(info, sim_lobster, tmp_path: Path) -> None:
    args = _tiny(sim_lobster, tmp_path, "--trainer.fast_dev_run=true")
    cli = main(["fit", *args, *_options("--model.attention", info)])
    mixers = [m for m in cli.model.modules() if isinstance(m, info.cls)]
    assert len(mixers) == 2  # one dual-attention pair: a temporal and a feature mixer
    assert [m.layer_idx for m in mixers] == [0, 1] and {m.num_layers for m in mixers} == {2}
    assert [m.dim for m in mixers] == [16, 20]  # hidden_dim over time, seq_len over features
    _assert_trains_through(cli, mixers)


@pytest.mark.slow
@pytest.mark.parametrize("info", MAP_MIXERS, ids=lambda i: i.name)
def test_deeplob_trains_with_any_feature_map_mixer(info, sim_lobster, tmp_path: Path) -> None:
    args = _tiny(sim_lobster, tmp_path, "--trainer.fast_dev_run=true", network=("--model.network=DeepLOB",))
    cli = main(["fit", *args, *_options("--model.network.spatial_attention", info)])
    mixers = [m for m in cli.model.modules() if isinstance(m, info.cls)]
    assert len(mixers) == 2 and list(cli.model.network.attention) == mixers
    _assert_trains_through(cli, mixers)


def test_spatial_attention_is_an_option_of_deeplob_only(sim_lobster, tmp_path: Path, capsys) -> None:
    if not MAP_MIXERS:
        pytest.skip("no 2-D SpatialMixer registered")
    args = _tiny(sim_lobster, tmp_path, "--trainer.fast_dev_run=true")  # TLOB
    with pytest.raises(ArgumentError, match="spatial_attention"):
        main(["fit", *args, *_options("--model.network.spatial_attention", MAP_MIXERS[0])])
