"""Every ``attnlab`` and ``make`` command shown in README.md and docs/ still works as documented.

The commands are read from the fenced code blocks marked ``bash``, ``sh``, ``shell`` or ``console``, or
unmarked. A training command (``attnlab fit|validate|test|predict ...``) is parsed in-process with
``--print_config`` appended, from the repository root: its config files must exist, its options must be
real and its class names must resolve, but no data is read and nothing trains, so commands for GPUs,
clusters or data that is absent here are checked too. Help and ``attnlab attention`` commands are run;
a benchmark is asked for its ``--help`` and must list every option the doc passes it; a ``make`` target
must be a rule of the Makefile.

Not checked (reported as skipped): commands with a placeholder (``...``, ``<domain>``, ``X.yaml``) or a
shell variable that the page does not assign, and the blocks preceded by
``<!-- docs-test: skip (reason) -->``, for commands that cannot be parsed here.
"""

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from core.cli import TRAINER_COMMANDS, main, user_error

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
SHELL_FENCES = {"", "bash", "sh", "shell", "console"}
SKIP_MARKER = re.compile(r"<!--\s*docs-test:\s*skip\s*\((?P<reason>[^)]*)\)\s*-->")
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>```+|~~~+)\s*(?P<lang>[\w+-]*)")
# A placeholder for the reader to fill in: `<domain>`, `<free port>`, `<false|true>`, `...`, `X.yaml`.
PLACEHOLDER = re.compile(r"<[A-Za-z][\w .:|-]*>|\.\.\.|…|\bX\.yaml\b")
PLACEHOLDER_TOKEN = "__placeholder__"
VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")
ASSIGNMENT = re.compile(r"^[A-Za-z_]\w*=")
SEPARATORS = {"&&", "||", ";", "|", "&", ";;", "(", ")"}
HELP_FLAGS = {"-h", "--help"}


@dataclass(frozen=True)
class DocCommand:
    """One command of a doc: where it is, what it runs, and why it is not checked (``skip``)."""

    place: str
    kind: str  # "attnlab", "make", or "shell error: ..." for a line the shell cannot split
    args: tuple[str, ...]
    text: str
    skip: str | None = None


def _logical_lines(lines: list[tuple[int, str]], console: bool) -> list[tuple[int, str]]:
    """Join backslash continuations; in a ``console`` block keep only the ``$ `` prompt lines."""
    joined: list[tuple[int, str]] = []
    start, parts = 0, []
    for number, line in lines:
        if not parts:
            start = number
            stripped = line.lstrip()
            if stripped.startswith("$ "):
                line = stripped[2:]
            elif console:
                continue
        if line.rstrip().endswith("\\"):
            parts.append(line.rstrip()[:-1])
            continue
        parts.append(line)
        joined.append((start, " ".join(part.strip() for part in parts)))
        parts = []
    if parts:
        joined.append((start, " ".join(part.strip() for part in parts)))
    return joined


def _tokens(line: str) -> list[str]:
    """The shell words of ``line`` with ``&&``, ``;``, ``|`` as words of their own; comments dropped."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|()")
    lexer.whitespace_split = True
    lexer.commenters = "#"
    return list(lexer)


def _segments(tokens: list[str]) -> list[list[str]]:
    """Split a line's words into simple commands at ``&&``, ``||``, ``;``, ``|`` and ``&``."""
    segments: list[list[str]] = [[]]
    for token in tokens:
        if token in SEPARATORS:
            segments.append([])
        else:
            segments[-1].append(token)
    return [segment for segment in segments if segment]


def _substitute(line: str, env: dict[str, str]) -> tuple[str, set[str]]:
    """Expand the variables the block assigned; return the line and the names left unassigned."""
    unknown: set[str] = set()

    def expand(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name in env:
            return env[name]
        unknown.add(name)
        return match.group(0)

    return VARIABLE.sub(expand, line), unknown


def _command(place: str, segment: list[str], text: str, skip: str | None) -> DocCommand | None:
    """The ``attnlab`` or ``make`` command that ``segment`` runs (after env prefixes, torchrun), if any."""
    for index, token in enumerate(segment):
        rest = segment[index + 1 :]
        if token == "attnlab" or token.endswith("/attnlab"):
            kind, args = "attnlab", rest
        elif re.fullmatch(r"(.*/)?python3?", token) and rest[:2] == ["-m", "core.cli"]:
            kind, args = "attnlab", rest[2:]
        elif token == "make" and all(ASSIGNMENT.match(t) for t in segment[:index]):
            kind, args = "make", [t for t in rest if not t.startswith("-") and not ASSIGNMENT.match(t)]
        else:
            continue
        # Output redirection ends the command's own arguments.
        args = list(_until_redirect(args))
        if skip is None and any(PLACEHOLDER_TOKEN in t for t in args):
            skip = "placeholder"
        return DocCommand(place, kind, tuple(args), text, skip)
    return None


def _until_redirect(args: list[str]) -> Iterator[str]:
    """The words before the first redirection (``> log``, ``2>&1``, ``< input``)."""
    for arg in args:
        if re.match(r"^\d*>", arg) or arg.startswith("<"):
            return
        yield arg


def _block_commands(
    path: str, lines: list[tuple[int, str]], lang: str, skip: str | None, env: dict[str, str]
) -> list[DocCommand]:
    """The commands of one fenced block, with ``for`` loops unrolled and assigned variables expanded.

    ``env`` holds the variables assigned so far on the page (a reader runs its blocks in one shell); the
    block's own assignments are added to it.
    """
    commands: list[DocCommand] = []
    logical = _logical_lines(lines, console=lang == "console")

    def handle(number: int, line: str, label: str) -> None:
        placeholder_free = PLACEHOLDER.sub(PLACEHOLDER_TOKEN, line)
        expanded, unknown = _substitute(placeholder_free, env)
        place = f"{path}:{number}{label}"
        try:
            tokens = _tokens(expanded)
        except ValueError as err:  # unbalanced quotes: a reader's shell would refuse the line too
            if re.search(r"\b(attnlab|make)\b", line):
                commands.append(DocCommand(place, f"shell error: {err}", (), line.strip(), skip))
            return
        for segment in _segments(tokens):
            if all(ASSIGNMENT.match(t) for t in segment):
                for assignment in segment:
                    name, _, value = assignment.partition("=")
                    env[name] = value
                continue
            command = _command(place, segment, line.strip(), skip)
            if command is None:
                continue
            if command.skip is None and unknown:
                command = DocCommand(place, command.kind, command.args, command.text, "shell variable")
            commands.append(command)

    index = 0
    while index < len(logical):
        number, line = logical[index]
        loop = re.match(r"^\s*for\s+(\w+)\s+in\s+([^;]*);\s*do\b(.*)$", line)
        if loop is None:
            handle(number, line, "")
            index += 1
            continue
        body: list[tuple[int, str]] = [(number, loop.group(3))] if loop.group(3).strip() else []
        index += 1
        while index < len(logical) and not re.match(r"^\s*done\b", logical[index][1]):
            body.append(logical[index])
            index += 1
        index += 1
        for value in loop.group(2).split():
            env[loop.group(1)] = value
            for body_number, body_line in body:
                handle(body_number, body_line, f"[{loop.group(1)}={value}]")
    return commands


def doc_commands(path: Path, name: str | None = None) -> list[DocCommand]:
    """Every ``attnlab`` and ``make`` command in the shell code blocks of the Markdown file ``path``.

    Args:
        path: The Markdown file.
        name: How places name it (default: its path relative to the repository).
    """
    relative = name or path.relative_to(REPO).as_posix()
    lines = path.read_text(encoding="utf-8").splitlines()
    commands: list[DocCommand] = []
    env: dict[str, str] = {}
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        fence, lang = opening.group("fence"), opening.group("lang").lower()
        before = next((line for line in reversed(lines[:index]) if line.strip()), "")
        marker = SKIP_MARKER.search(before)
        block: list[tuple[int, str]] = []
        index += 1
        while index < len(lines) and not lines[index].strip().startswith(fence):
            block.append((index + 1, lines[index]))
            index += 1
        index += 1
        if lang in SHELL_FENCES:
            skip = f"marked: {marker.group('reason')}" if marker else None
            commands += _block_commands(relative, block, lang, skip, env)
    return commands


def all_commands() -> list[DocCommand]:
    """The commands of README.md and every Markdown file under docs/."""
    return [command for path in DOCS for command in doc_commands(path)]


COMMANDS = all_commands()


def makefile_targets() -> set[str]:
    """The targets of the repository's Makefile (rules, not variable assignments)."""
    targets: set[str] = set()
    for line in (REPO / "Makefile").read_text().splitlines():
        rule = re.match(r"^([^\s:=#][^:=#]*?)\s*::?(?!=)", line)
        if rule and not line.startswith("\t"):
            targets.update(rule.group(1).split())
    return targets


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``attnlab <args>`` in-process: its exit status and everything it printed."""
    capsys.readouterr()
    error = ""
    try:
        result = main(args)
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except Exception as err:  # what `attnlab` prints as its one-line error, exit status 2
        code, error = 2, f"{type(err).__name__}: {user_error(err) or err}"
    else:
        code = result if isinstance(result, int) else 0
    captured = capsys.readouterr()
    return code, captured.out + captured.err + error


def check_attnlab(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """Parse a training command, run a help or attention command, check a benchmark's options."""
    shown = "attnlab " + " ".join(args)
    if args and args[0] in TRAINER_COMMANDS:
        asks_help = any(a in HELP_FLAGS or a.split("=")[0].endswith(".help") for a in args)
        run = args if asks_help or "--print_config" in args else [*args, "--print_config"]
        code, output = _run(run, capsys)
        assert code == 0, f"`{shown}` does not parse:\n{output[-3000:]}"
        if not asks_help:
            config = yaml.safe_load(output)
            assert isinstance(config, dict) and {"model", "data", "trainer"} <= set(config), (
                f"`{shown} --print_config` printed no config:\n{output[-3000:]}"
            )
        else:
            assert output.strip(), f"`{shown}` printed no help"
        return
    if args and args[0] == "bench" and len(args) > 1 and not HELP_FLAGS & set(args):
        # A benchmark takes minutes: its --help must exist and list every option the doc passes.
        code, output = _run([*args[:2], "--help"], capsys)
        assert code == 0, f"`attnlab {' '.join(args[:2])} --help` failed:\n{output[-3000:]}"
        for option in (a.split("=")[0] for a in args[2:] if a.startswith("--")):
            assert re.search(rf"{re.escape(option)}\b", output), f"`{shown}`: the benchmark has no {option}"
        return
    code, output = _run(args, capsys)
    assert code == 0, f"`{shown}` exited {code}:\n{output[-3000:]}"
    assert output.strip(), f"`{shown}` printed nothing"


def check_make(targets: list[str]) -> None:
    """Each of ``targets`` is a rule of the Makefile (it is not run: the demos train for minutes)."""
    assert targets, "`make` without a target"
    missing = set(targets) - makefile_targets()
    assert not missing, f"the Makefile has no target {sorted(missing)}"


@pytest.fixture(autouse=True)
def _as_a_user(monkeypatch: pytest.MonkeyPatch) -> None:
    """From the repository root (configs name data relative to it), with pytest's own options hidden."""
    monkeypatch.chdir(REPO)
    monkeypatch.setattr("sys.argv", ["attnlab"])


@pytest.mark.parametrize("command", COMMANDS, ids=[c.place for c in COMMANDS])
def test_documented_command(command: DocCommand, capsys: pytest.CaptureFixture[str]) -> None:
    """The documented command parses (training), runs (help, attention) or names a Makefile target."""
    if command.skip is not None:
        pytest.skip(f"{command.skip}: {command.text}")
    assert not command.kind.startswith("shell error"), f"`{command.text}`: {command.kind}"
    if command.kind == "make":
        check_make(list(command.args))
    else:
        check_attnlab(list(command.args), capsys)


@pytest.mark.parametrize(
    ("kind", "args", "reason"),
    [
        ("attnlab", ["fit", "--config", "configs/finance/no_such.yaml"], "no_such.yaml"),
        ("attnlab", ["fit", "--config", "configs/finance/smoke.yaml", "--model.no_such_option=1"], "no_such"),
        (
            "attnlab",
            ["test", "--config", "configs/finance/smoke.yaml", "--model.network=NoSuchNet"],
            "NoSuch",
        ),
        ("attnlab", ["fit", "--model.help", "NoSuchTask"], "NoSuchTask"),
        ("attnlab", ["bench", "attention", "--no-such-flag"], "--no-such-flag"),
        ("attnlab", ["no_such_command"], "no_such_command"),
        ("make", ["demo", "no-such-target"], "no-such-target"),
    ],
)
def test_a_wrong_command_fails(
    kind: str, args: list[str], reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The checks catch a missing config, an unknown option, class, command or Makefile target."""
    with pytest.raises(AssertionError) as failure:
        check_make(args) if kind == "make" else check_attnlab(args, capsys)
    assert reason in str(failure.value)


def test_commands_are_found() -> None:
    """The extraction sees the commands it must check, so a parsing slip cannot empty the test."""
    texts = {(c.place.split(":")[0], c.kind, c.args) for c in COMMANDS}
    assert ("README.md", "make", ("demo",)) in texts
    assert ("docs/cli.md", "attnlab", ("attention", "list")) in texts
    checked = [c for c in COMMANDS if c.skip is None]
    assert len(checked) >= 50, f"only {len(checked)} documented commands are checked"


def test_extraction_rules(tmp_path: Path) -> None:
    """Continuations, prompts, comments, env prefixes, loops, variables, placeholders and skip markers."""
    text = "\n".join(
        [
            "```console",
            "$ OMP_NUM_THREADS=1 .venv/bin/attnlab fit --config a.yaml \\",
            "    --trainer.max_epochs=2   # two epochs",
            "output line attnlab fit --ignored",
            "```",
            "<!-- docs-test: skip (needs a cluster) -->",
            "```bash",
            "make demo-x",
            "```",
            "```",
            'B="--config b.yaml"',
            "for m in one two; do",
            "  python -m core.cli test $B --model.network=${m} && attnlab predict <file>",
            "done",
            "attnlab fit --config $UNSET",
            "attnlab fit --data.files='[a.csv]",
            "```",
            "```python",
            "attnlab fit --config not_shell.yaml",
            "```",
        ]
    )
    path = tmp_path / "case.md"
    path.write_text(text)
    name = "case.md"
    found = doc_commands(path, name)
    assert [(c.place, c.kind, c.args, c.skip) for c in found] == [
        (f"{name}:2", "attnlab", ("fit", "--config", "a.yaml", "--trainer.max_epochs=2"), None),
        (f"{name}:8", "make", ("demo-x",), "marked: needs a cluster"),
        (f"{name}:13[m=one]", "attnlab", ("test", "--config", "b.yaml", "--model.network=one"), None),
        (f"{name}:13[m=one]", "attnlab", ("predict", PLACEHOLDER_TOKEN), "placeholder"),
        (f"{name}:13[m=two]", "attnlab", ("test", "--config", "b.yaml", "--model.network=two"), None),
        (f"{name}:13[m=two]", "attnlab", ("predict", PLACEHOLDER_TOKEN), "placeholder"),
        (f"{name}:15", "attnlab", ("fit", "--config", "$UNSET"), "shell variable"),
        (f"{name}:16", "shell error: No closing quotation", (), None),
    ]
