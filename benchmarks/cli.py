"""``attnlab bench``: benchmarks registered as a command (entry point ``attnlab.commands``)."""

import sys
from collections.abc import Sequence

__all__ = ["main"]

BENCHES = ("attention",)


def main(argv: Sequence[str]) -> int:
    """Run ``attnlab bench <name> [options]``.

    Args:
        argv: The arguments after ``bench``.

    Returns:
        The benchmark's exit status.
    """
    if not argv or argv[0] not in BENCHES:
        print(
            f"usage: attnlab bench {{{','.join(BENCHES)}}} [options]; see `attnlab bench attention -h`",
            file=sys.stderr,
        )
        return 2
    from benchmarks import attention

    return attention.main(list(argv[1:]))
