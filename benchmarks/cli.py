"""``attnlab bench``: benchmarks registered as a command (entry point ``attnlab.commands``)."""

import sys
from collections.abc import Sequence

__all__ = ["BENCHES", "main"]

BENCHES = {
    "attention": "attention mechanisms against dense SDPA: a quick representative set, --all for every one",
}
"""The benchmarks ``attnlab bench`` runs, with their one-line descriptions."""


def usage() -> str:
    """The help of ``attnlab bench``: every benchmark and what it measures."""
    lines = ["usage: attnlab bench <benchmark> [options]", "", "benchmarks:"]
    lines += [f"  {name:<10} {text}" for name, text in BENCHES.items()]
    lines += ["", "Each has its own --help, e.g. `attnlab bench attention --help`."]
    return "\n".join(lines)


def main(argv: Sequence[str]) -> int:
    """Run ``attnlab bench <name> [options]``.

    Args:
        argv: The arguments after ``bench``.

    Returns:
        The benchmark's exit status: 0 for ``--help``, 2 for a missing or unknown benchmark.
    """
    if argv and argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    if not argv or argv[0] not in BENCHES:
        given = f"unknown benchmark {argv[0]!r}\n\n" if argv else ""
        print(f"attnlab bench: {given}{usage()}", file=sys.stderr)
        return 2
    from benchmarks import attention

    return attention.main(list(argv[1:]))
