"""The ``attnlab`` command.

Usage::

    attnlab fit|validate|test|predict --config configs/<domain>/<model>.yaml [--section.option=value ...]
    attnlab fit --model.help LOBClassifier          # every option of a task, with its docstring
    attnlab fit --config X.yaml --print_config      # the fully resolved config
    attnlab attention list                          # the registered attention mechanisms
    attnlab bench attention [--all]                 # commands registered through entry points

This module only dispatches, so ``attnlab --help`` answers without importing PyTorch. The training
commands are LightningCLI (:mod:`core.cli.lightning`); domains join through entry points
(:mod:`core.plugins`) and are imported only for them.
"""

import os
import re
import sys
from collections.abc import Sequence
from typing import Any

from core.plugins import command_entry_points, domain_entry_points, missing_extra
from core.utils.errors import InputError

__all__ = [
    "EXIT_CODES",
    "EXIT_PREEMPTED",
    "EXIT_USER_ERROR",
    "TRAINER_COMMANDS",
    "console_main",
    "main",
    "user_error",
]

TRAINER_COMMANDS = ("fit", "validate", "test", "predict")
EXIT_USER_ERROR = 2
# EX_TEMPFAIL of sysexits.h: "try again later". A scheduler requeues on it (docs/slurm/train.sbatch).
EXIT_PREEMPTED = 75
EXIT_CODES = {
    0: "success",
    1: "an unexpected error (a bug: the traceback is printed)",
    EXIT_USER_ERROR: "bad input, option or config: one line names the file, field or option",
    EXIT_PREEMPTED: "stopped by SIGTERM or SIGUSR1 after saving last.ckpt: resubmit with --ckpt_path last",
}
_UNION_ERROR = "Does not validate against any of the Union subtypes"
_WORKER_TRACEBACK = "Original Traceback (most recent call last):"


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
    extra_commands = command_entry_points()
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
    for name, entry_point in sorted(extra_commands.items()):
        # Named, not described: a description would mean importing the command's package.
        package = entry_point.dist.name if entry_point.dist is not None else "an installed package"
        module = entry_point.value.split(":")[0]
        lines.append(f"  {name:<10} `attnlab {name} --help` (registered by {package}: {module})")
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
    """The ``attnlab`` console script: run the command and return its exit status (see :data:`EXIT_CODES`).

    A user's mistake (:func:`user_error` finds one in the exception chain) is printed as one line naming
    the file, field or option, without a traceback (``ATTNLAB_TRACEBACK=1`` shows it). A run stopped by
    SIGTERM or SIGUSR1 has saved ``last.ckpt`` and exits :data:`EXIT_PREEMPTED`. A closed output pipe
    (``attnlab attention list | head``) ends the command quietly, with status 0: the reader chose to stop.
    """
    try:
        result = main()
        sys.stdout.flush()
    except BrokenPipeError:
        # Python flushes stdout again at exit; point it at devnull so that flush cannot fail too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except SystemExit as stop:
        if type(stop).__name__ != "SIGTERMException":
            raise
        print(
            "attnlab: stopped by a signal; last.ckpt was saved. Continue with --ckpt_path last "
            f"(exit status {EXIT_PREEMPTED})",
            file=sys.stderr,
        )
        return EXIT_PREEMPTED
    except Exception as err:
        message = user_error(err)
        if message is None or os.environ.get("ATTNLAB_TRACEBACK"):
            raise
        print(f"attnlab: error: {message}", file=sys.stderr)
        print("  (ATTNLAB_TRACEBACK=1 shows the traceback)", file=sys.stderr)
        return EXIT_USER_ERROR
    return result if isinstance(result, int) else 0


def user_error(err: BaseException) -> str | None:
    """The one-line message of a user's mistake in ``err``'s chain, or None when ``err`` is a bug.

    A user's mistake is an :class:`~core.utils.InputError` (a domain's reader or check), a missing file, or
    an error that jsonargparse wrapped while instantiating a config's class: its ``Union subtypes`` message
    buries the real one, which is the innermost exception of the chain.
    """
    chain: list[BaseException] = []
    current: BaseException | None = err
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    for link in chain:
        if isinstance(link, InputError | FileNotFoundError) or type(link).__name__ in _USER_ERROR_NAMES:
            return _one_line(link)
        if _WORKER_TRACEBACK in str(link):
            message = _worker_user_error(str(link))
            if message is not None:
                return message
    if _UNION_ERROR in str(err) and len(chain) > 1:
        return _one_line(chain[-1])
    return None


# Lightning's and jsonargparse's names for a bad option or configuration (matched by name: importing them
# here would load Lightning for `attnlab --help`).
_USER_ERROR_NAMES = ("MisconfigurationException", "ArgumentError")


def _worker_user_error(text: str) -> str | None:
    """The message of a user's mistake raised in a DataLoader worker process.

    PyTorch re-raises a worker's exception in the main process as a new one whose message holds the
    worker's traceback as text, whose ``module.Class: message`` lines name the exceptions of the chain.
    """
    for line in reversed(text.splitlines()):
        match = re.match(r"^([\w.]+): (.*)$", line.strip())
        if match is None:
            continue
        module, _, name = match.group(1).rpartition(".")
        cls = getattr(sys.modules.get(module), name, None) if module else None
        if isinstance(cls, type) and issubclass(cls, InputError | FileNotFoundError):
            return " ".join(match.group(2).split())
    return None


def _one_line(err: BaseException) -> str:
    text = str(err)
    if "Errors:" in text:
        text = _condense_parser_error(text)
    return " ".join(text.split()) or type(err).__name__


def _condense_parser_error(text: str) -> str:
    """Reduce jsonargparse's nested ``Union subtypes`` report to its key and the reasons that matter.

    The report lists, for every type a value might have had, why it is not that type; ``None`` (always
    allowed) and the type and repr of the value add nothing for the user.
    """
    key, reasons = "", []
    for raw in text.splitlines():
        line = raw.strip().lstrip("-").strip()
        if not key and line.startswith("Parser key"):
            key = line
            continue
        noise = ("Does not validate", "Subtypes:", "Errors:", "Given value", "Expected a <class 'NoneType'>")
        if not line or line.startswith(noise) or line.startswith("Parser key"):
            continue
        line = line.split("':", 1)[1].strip() if line.startswith("Problem with given class_path") else line
        if line and line not in reasons:
            reasons.append(line)
    return f"{key} {'; '.join(reasons)}".strip()


if __name__ == "__main__":
    sys.exit(console_main())
