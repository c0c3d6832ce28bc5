"""CompileNetwork: the network is compiled in place, checkpoints keep their names, bad uses are refused."""

from pathlib import Path

import pytest
import torch

from core.cli import main
from core.training import CompileNetwork

REPO = Path(__file__).resolve().parents[2]


def test_compiled_network_trains_and_checkpoints_keep_their_names(tmp_path: Path) -> None:
    args = [
        f"--config={REPO / 'configs' / 'finance' / 'smoke.yaml'}",
        f"--trainer.default_root_dir={tmp_path}",
        "--trainer.max_epochs=1",
        "--trainer.limit_train_batches=2",
        "--trainer.enable_progress_bar=false",
        '--trainer.callbacks+={"class_path": "CompileNetwork", "init_args": {"backend": "eager"}}',
    ]
    cli = main(["fit", *args])
    assert cli.trainer.global_step == 2
    assert hasattr(cli.model.network, "_compiled_call_impl") and cli.model.network._compiled_call_impl
    saved = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert set(saved) == set(cli.model.state_dict()) and not any("_orig_mod" in k for k in saved)


def test_compile_refuses_a_missing_network_or_method() -> None:
    class Task(torch.nn.Module):
        network = torch.nn.Linear(2, 2)

    with pytest.raises(ValueError, match="has no method 'encode'"):
        CompileNetwork(backend="eager", methods=["encode"]).setup(None, Task(), "fit")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="has no `network`"):
        CompileNetwork(backend="eager").setup(None, torch.nn.Linear(2, 2), "fit")  # type: ignore[arg-type]
