"""benchmarks/gpu_throughput.py on CPU: its options, its refusal without CUDA, and its measuring path.

The script itself needs a GPU; what can break before it reaches one is checked here, since device time
is scarce: option parsing, the refusal, a row's error reporting, each flagship's network, loss and FSDP
units, and one Lightning DDP row end to end on CPU.
"""

import subprocess
import sys

import pytest
import torch

from benchmarks import gpu_throughput
from benchmarks.gpu_throughput import FLAGSHIPS, MODELS, NO_CUDA, build_parser, main, measure
from tests.distributed.processes import REPO, clean_environment


def test_options() -> None:
    args = build_parser().parse_args([])
    assert (args.models, args.strategies) == (list(MODELS), ["ddp", "fsdp2"])
    assert args.modes == ["eager", "compile"]
    args = build_parser().parse_args(
        ["--models", "tlob", "--compile", "eager", "--steps", "5", "--budget", "60"]
    )
    assert (args.models, args.modes, args.steps, args.budget) == (["tlob"], ["eager"], 5, 60)
    for bad in (["--models", "bert"], ["--strategies", "deepspeed"], ["--steps", "0"]):
        with pytest.raises(SystemExit):
            build_parser().parse_args(bad)


def test_refuses_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match="needs CUDA") as refused:
        main(["--models", "tlob"])
    assert refused.value.code == NO_CUDA
    with pytest.raises(SystemExit, match="needs CUDA"):
        main(["--worker", "tlob", "ddp", "eager"])


def test_a_failed_row_is_reported_not_raised() -> None:
    """Here the worker process refuses (no CUDA): the row carries its last line as the error."""
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the worker would run")
    args = build_parser().parse_args(["--steps", "1", "--warmup", "1"])
    row = gpu_throughput._run_row("tlob", "ddp", "eager", args, limit=120)
    assert row.samples_per_s is None and row.error is not None and "needs CUDA" in row.error


@pytest.mark.parametrize("name", MODELS)
def test_flagship_networks_have_their_fsdp_units(name: str) -> None:
    factory, _ = FLAGSHIPS[name]
    if name == "agunet":
        pytest.importorskip("monai")
    net, data, loss_fn, blocks = factory(1 if name == "agunet" else 2)
    units = [m for m in net.modules() if isinstance(m, tuple(blocks))]
    assert units, f"{name}: no {blocks} in the network, FSDP would wrap nothing"
    if name != "agunet":  # a 128³ volume is a GPU's job
        loss = loss_fn(net, data)
        loss.backward()
        assert torch.isfinite(loss) and all(p.grad is not None for p in net.parameters() if p.requires_grad)


@pytest.mark.slow
@pytest.mark.parametrize(("model", "strategy"), [("tlob", "ddp"), ("sasrec", "fsdp2")])
def test_one_row_on_cpu(model: str, strategy: str) -> None:
    """DDP or FSDP2 (gloo, one process), bf16-mixed, the timer: samples/s from a fresh process."""
    code = (
        "from benchmarks.gpu_throughput import measure; "
        f"r = measure({model!r}, {strategy!r}, 'eager', batch=4, steps=2, warmup=1, accelerator='cpu'); "
        "print('RATE', r.samples_per_s, r.peak_mib, r.error)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=clean_environment(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(line for line in proc.stdout.splitlines() if line.startswith("RATE"))
    _, rate, peak, error = line.split()
    assert float(rate) > 0 and peak == "None" and error == "None"
    assert callable(measure)
