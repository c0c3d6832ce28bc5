"""Wall-clock timing shared by the benchmark scripts."""

import statistics
import time
from collections.abc import Callable

import torch


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
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)
