"""Peak resident memory of a piece of CPU work, for the benchmarks (Linux; ``None`` elsewhere).

The kernel's high-water mark ``VmHWM`` is reset by writing ``5`` to ``/proc/self/clear_refs`` (after
``malloc_trim``, so heap pages already freed do not count); the peak of a call is then ``VmHWM`` minus the
resident set before it.
"""

import contextlib
import ctypes
import re
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

__all__ = ["peak_rss_mib", "reset_peak_rss", "status_bytes"]

T = TypeVar("T")


def status_bytes(key: str) -> int | None:
    """A ``/proc/self/status`` memory field (``VmRSS``, ``VmHWM``) in bytes, or None off Linux."""
    try:
        match = re.search(rf"{key}:\s+(\d+) kB", Path("/proc/self/status").read_text())
    except OSError:
        return None
    return int(match.group(1)) * 1024 if match else None


def reset_peak_rss() -> int | None:
    """Reset the peak-RSS watermark; return the current resident set in bytes, or None if unsupported."""
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return None
    return status_bytes("VmRSS")


def peak_rss_mib(fn: Callable[[], T]) -> tuple[T, float | None]:
    """Run ``fn``; return its result and its peak RSS above the starting RSS in MiB (None off Linux)."""
    base = reset_peak_rss()
    out = fn()
    peak = status_bytes("VmHWM")
    if base is None or peak is None:
        return out, None
    return out, max(peak - base, 0) / 2**20
