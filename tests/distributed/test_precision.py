"""bf16 mixed precision and ``torch.compile`` for one batch of every flagship's smoke config, on CPU.

Lightning's ``--trainer.precision=bf16-mixed`` runs the steps under CPU autocast; the check is that the
layers really computed in bfloat16 and the loss stayed finite. ``CompileNetwork`` compiles each flagship's
network (dynamo's graph capture with the ``eager`` backend: what fails to trace fails here, in seconds);
TLOB is also compiled with inductor and checked against eager.
"""

import math
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from core.plugins import domain_entry_points
from tests.distributed.processes import REPO
from tests.domains.contract import load_domain, run

FLAGSHIPS = ("finance", "recsys", "medical", "speech", "remote_sensing", "video")
DTYPES = "tests.distributed.probe.OutputDtypes"


def _one_batch(name: str, root: Path, monkeypatch: pytest.MonkeyPatch, *options: str) -> Any:
    """Train one batch of the flagship ``name``'s smoke config on CPU with ``options``; return the CLI."""
    if name not in {entry_point.name for entry_point in domain_entry_points()}:
        pytest.skip(f"the {name} domain is not registered")
    domain = load_domain(name)
    if not domain.smoke_config.is_file():
        pytest.skip(f"the {name} domain has no smoke config {domain.smoke_config}")
    monkeypatch.chdir(REPO)
    cli = run(domain, root, "fit", "--trainer.fast_dev_run=1", "--trainer.accelerator=cpu", *options)
    assert cli.trainer.global_step == 1
    loss = cli.trainer.callback_metrics.get("train_loss")
    assert loss is not None and math.isfinite(float(loss)), f"{name}: train_loss {loss}"
    return cli


@pytest.mark.slow
@pytest.mark.parametrize("name", FLAGSHIPS)
def test_bf16_mixed_one_batch(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cli = _one_batch(
        name, tmp_path, monkeypatch, "--trainer.precision=bf16-mixed", f"--trainer.callbacks+={DTYPES}"
    )
    assert cli.trainer.precision == "bf16-mixed"
    (probe,) = [c for c in cli.trainer.callbacks if type(c).__name__ == "OutputDtypes"]
    assert "bfloat16" in probe.dtypes, f"{name}: no layer computed in bfloat16 ({probe.dtypes})"


@pytest.mark.slow
@pytest.mark.parametrize("name", FLAGSHIPS)
def test_compiled_network_one_batch(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--trainer.callbacks+=CompileNetwork``: dynamo captures the network's graphs and the step trains."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    compile_option = '{"class_path": "CompileNetwork", "init_args": {"backend": "eager"}}'
    cli = _one_batch(name, tmp_path, monkeypatch, f"--trainer.callbacks+={compile_option}")
    assert cli.model.network._compiled_call_impl is not None
    assert counters["stats"]["unique_graphs"] > 0, f"{name}: dynamo captured no graph"


def _c_compiler() -> str | None:
    return next((c for c in ("cc", "gcc", "clang") if shutil.which(c)), None)


@pytest.mark.slow
def test_compiled_finance_network_matches_eager() -> None:
    """TLOB compiled in place (inductor, CPU): same outputs and gradients, same state-dict names."""
    if _c_compiler() is None:
        pytest.skip("torch.compile on CPU (inductor) needs a C compiler: none of cc, gcc, clang found")
    from domains.finance.models import TLOB

    torch.manual_seed(0)
    eager = TLOB(num_features=8, seq_len=20, num_horizons=2, hidden_dim=16, num_layers=1, num_heads=1)
    compiled = TLOB(num_features=8, seq_len=20, num_horizons=2, hidden_dim=16, num_layers=1, num_heads=1)
    compiled.load_state_dict(eager.state_dict())
    compiled.compile(dynamic=False)
    assert compiled.state_dict().keys() == eager.state_dict().keys(), "compiling renamed the parameters"
    x = torch.randn(4, 20, 8)
    for model in (eager, compiled):
        model.train()
        model(x).float().square().mean().backward()
    torch.testing.assert_close(compiled(x), eager(x), rtol=1e-4, atol=1e-5)
    for (name, a), (_, b) in zip(eager.named_parameters(), compiled.named_parameters(), strict=True):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-5, msg=name)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1, "nothing was compiled"
