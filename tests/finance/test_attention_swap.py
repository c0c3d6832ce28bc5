"""Every registered mechanism that fits a finance model is usable by name from the command line.

Token mixers that work on plain sequences (no grid, no context) replace TLOB's attention through
``--model.attention=<Name>``; 2-D feature-map mixers slot into DeepLOB through
``--model.spatial_attention=<Name>``. Each runs one training and one validation batch through the CLI
(``fast_dev_run``), with the registry's small example options given on the command line.
"""

import json
from pathlib import Path

import pytest

from core.attention import list_mechanisms
from core.cli import main
from tests.finance.test_cli import _tiny

SEQUENCE_MIXERS = [
    i
    for i in list_mechanisms("token")
    if not (i.cls.needs_grid or i.cls.requires_context or i.cls.causal_only)
]
MAP_MIXERS = [i for i in list_mechanisms("spatial") if 2 in i.cls.supported_dims]


def _options(section: str, info) -> list[str]:
    def value(v: object) -> str:
        return json.dumps(list(v)) if isinstance(v, tuple | list) else str(v)

    return [f"--model.{section}={info.name}"] + [
        f"--model.{section}.{k}={value(v)}" for k, v in info.example_kwargs
    ]


@pytest.mark.parametrize("info", SEQUENCE_MIXERS, ids=lambda i: i.name)
def test_tlob_trains_with_any_sequence_mixer(info, sim_lobster, tmp_path: Path) -> None:
    args = _tiny(sim_lobster, tmp_path, "--trainer.fast_dev_run=true")
    cli = main(["fit", *args, *_options("attention", info)])
    mixers = [m for m in cli.model.modules() if isinstance(m, info.cls)]
    assert len(mixers) == 2  # one dual-attention pair: a temporal and a feature mixer
    assert [m.layer_idx for m in mixers] == [0, 1] and {m.num_layers for m in mixers} == {2}
    assert cli.trainer.callback_metrics["val_macro_f1"] >= 0


@pytest.mark.parametrize("info", MAP_MIXERS, ids=lambda i: i.name)
def test_deeplob_trains_with_any_feature_map_mixer(info, sim_lobster, tmp_path: Path) -> None:
    args = _tiny(sim_lobster, tmp_path, "--trainer.fast_dev_run=true", "--model.model=deeplob")
    cli = main(["fit", *args, *_options("spatial_attention", info)])
    assert sum(isinstance(m, info.cls) for m in cli.model.modules()) == 2
    assert cli.trainer.callback_metrics["val_macro_f1"] >= 0


def test_spatial_attention_is_refused_for_models_without_feature_maps(sim_lobster, tmp_path: Path) -> None:
    if not MAP_MIXERS:
        pytest.skip("no 2-D SpatialMixer registered")
    args = _tiny(sim_lobster, tmp_path, "--trainer.fast_dev_run=true")
    with pytest.raises(ValueError, match="spatial_attention` is for deeplob only"):
        main(["fit", *args, *_options("spatial_attention", MAP_MIXERS[0])])
