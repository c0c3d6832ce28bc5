"""Wall-clock timing shared by the benchmark scripts."""

import argparse
import statistics
import time
from collections.abc import Callable, Mapping

import torch
from torch import Tensor, nn


def count_parameters(model: nn.Module) -> int:
    """All parameters of ``model``."""
    return sum(p.numel() for p in model.parameters())


def add_training_options(
    parser: argparse.ArgumentParser, steps: int, warmup: int, steps_help: str = "timed steps per model"
) -> None:
    """The options of the alternating training benchmarks: steps, warm-up, rounds, device, threads."""
    parser.add_argument("--steps", type=int, default=steps, help=steps_help)
    parser.add_argument("--warmup", type=int, default=warmup)
    parser.add_argument("--rounds", type=int, default=2, help="alternate the models this many times")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)


def start_run(args: argparse.Namespace) -> torch.device:
    """Set the thread count and seed 0 from the parsed options; return the device."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    return torch.device(args.device)


def device_label(device: torch.device, *versions: str) -> str:
    """The GPU name, or ``CPU, <n> threads``, with the torch version and any further ``versions``."""
    versions_text = ", ".join((f"torch {torch.__version__}", *versions))
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} ({versions_text})"
    return f"CPU, {torch.get_num_threads()} threads ({versions_text})"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def training_step(
    model: nn.Module, optimizer: torch.optim.Optimizer, loss: Callable[[nn.Module], Tensor]
) -> Callable[[], None]:
    """A full training step of ``model`` (in train mode): zero the grads, ``loss(model).backward()``, step."""
    model.train()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss(model).backward()
        optimizer.step()

    return step


def alternating_steps_per_second(
    steps: Mapping[str, Callable[[], None]], device: torch.device, total: int, warmup: int, rounds: int
) -> dict[str, float]:
    """Steps per second of each named step function, timed alternately so drifts hit all of them alike.

    Every function first runs ``warmup`` untimed steps; then, ``rounds`` times, each runs
    ``max(1, total // rounds)`` timed steps in turn (the device synchronised around each run).
    """
    for step in steps.values():
        for _ in range(warmup):
            step()
    per_round = max(1, total // rounds)
    seconds = dict.fromkeys(steps, 0.0)
    for _ in range(rounds):
        for name, step in steps.items():
            _sync(device)
            start = time.perf_counter()
            for _ in range(per_round):
                step()
            _sync(device)
            seconds[name] += time.perf_counter() - start
    return {name: rounds * per_round / seconds[name] for name in steps}


def median_ms(
    fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 2, min_total_ms: float = 0.0
) -> float:
    """Median milliseconds of ``fn()`` after ``warmup`` untimed calls.

    Runs at least ``repeats`` timed calls, and more (up to 50) until they add up to ``min_total_ms``, so
    very short calls are not judged on two samples. On CUDA the device is synchronised around each call.
    """
    for _ in range(warmup):
        fn()
    times: list[float] = []
    while len(times) < repeats or (sum(times) < min_total_ms and len(times) < 50):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)
