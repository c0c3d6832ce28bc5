"""``attnlab attention``: the attention library from the command line."""

import argparse
from collections.abc import Sequence

__all__ = ["attention_command"]


def attention_command(argv: Sequence[str]) -> int:
    """Run ``attnlab attention <subcommand>``.

    Args:
        argv: The arguments after ``attention``.

    Returns:
        The exit status.
    """
    parser = argparse.ArgumentParser(prog="attnlab attention", description="The attention library.")
    sub = parser.add_subparsers(dest="command", required=True)
    listing = sub.add_parser("list", help="print every registered mechanism with its paper and capabilities")
    listing.add_argument(
        "--kind",
        choices=("token", "spatial", "gate", "module"),
        default=None,
        help="only mechanisms of this kind",
    )
    args = parser.parse_args(argv)
    if args.command == "list":
        from core.attention import mechanism_table

        print(mechanism_table(args.kind))
    return 0
