"""The ``attnlab`` command.

Usage::

    attnlab fit|validate|test|predict --config configs/<domain>/<model>.yaml [--section.option=value ...]
    attnlab fit --model.help LOBClassifier          # every option of a task, with its docstring
    attnlab fit --config X.yaml --print_config      # the fully resolved config
    attnlab attention list                          # the registered attention mechanisms
    attnlab bench attention [--lengths ...]         # commands registered by other packages

This module only dispatches, so ``attnlab --help`` answers without importing PyTorch. The training
commands are LightningCLI (:mod:`core.cli.lightning`); domains join through entry points
(:mod:`core.plugins`) and are imported only for them.
"""

import os
import sys
from collections.abc import Sequence
from typing import Any

from core.plugins import command_entry_points, domain_entry_points, missing_extra

__all__ = ["TRAINER_COMMANDS", "console_main", "main"]

TRAINER_COMMANDS = ("fit", "validate", "test", "predict")


def main(args: Sequence[str] | None = None) -> Any:
    """Run one ``attnlab`` command.

    Args:
        args: Command-line arguments (defaults to ``sys.argv[1:]``); tests pass a list.

    Returns:
        The LightningCLI object for ``fit``/``validate``/``test``/``predict`` (tests read its trainer and
        model), otherwise the command's exit status.
    """
    argv = list(sys.argv[1:] if args is None else args)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command in TRAINER_COMMANDS or command.startswith("-"):
        from core.cli.lightning import run_trainer_command

        return run_trainer_command(argv)
    if command == "attention":
        from core.cli.attention import attention_command

        return attention_command(rest)
    commands = command_entry_points()
    if command in commands:
        return commands[command].load()(rest)
    print(f"attnlab: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
    return 2


def usage() -> str:
    """The top-level help: every command, and the registered domains with what they need."""
    extra_commands = sorted(command_entry_points())
    lines = [
        "usage: attnlab <command> [options]",
        "",
        "Train, evaluate and predict with any domain's task and datamodule (LightningCLI; docs/cli.md).",
        "",
        "commands:",
        "  fit        train a task (--config configs/<domain>/<model>.yaml)",
        "  validate   evaluate a checkpoint on the validation split",
        "  test       evaluate a checkpoint on the test split (--ckpt_path best|last|<file>)",
        "  predict    write predictions of a checkpoint (--prediction_writer.output_dir)",
        "  attention  the attention library: `attnlab attention list`",
    ]
    for name in extra_commands:
        lines.append(f"  {name:<10} registered by another package (`attnlab {name} --help`)")
    lines += [
        "",
        "Each training command has its own --help, e.g. `attnlab fit --help`, `attnlab fit --model.help X`.",
        "",
    ]
    domains = []
    for entry_point in domain_entry_points():
        extra = missing_extra(entry_point)
        package = entry_point.dist.name if entry_point.dist is not None else "attnlab"
        note = f" (not installed: pip install '{package}[{extra}]')" if extra else ""
        domains.append(f"{entry_point.name}{note}")
    lines.append("domains: " + (", ".join(domains) or "none registered (pip install -e . registers them)"))
    return "\n".join(lines)


def console_main() -> int:
    """The ``attnlab`` console script: run the command and return its exit status.

    A closed output pipe (``attnlab attention list | head``) ends the command quietly, with status 0: the
    reader chose to stop reading.
    """
    try:
        result = main()
        sys.stdout.flush()
    except BrokenPipeError:
        # Python flushes stdout again at exit; point it at devnull so that flush cannot fail too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(console_main())
