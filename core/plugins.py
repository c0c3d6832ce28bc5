"""How domains and extra commands join the ``attnlab`` command: Python entry points.

A domain registers a :class:`Domain` under the ``attnlab.domains`` group of its package metadata, e.g. in
``pyproject.toml``::

    [project.entry-points."attnlab.domains"]
    finance = "domains.finance:DOMAIN"
    medical = "domains.medical:DOMAIN [medical]"   # the extra that installs its dependencies

An outside package registers its domain the same way; nothing in attnlab is edited. A command such as
``attnlab bench`` registers a ``main(argv) -> int`` under ``attnlab.commands``. Nothing here imports a
domain or a command: the CLI loads one only when a command needs it, so ``attnlab --help`` stays fast.
"""

import importlib.metadata as metadata
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "COMMANDS_GROUP",
    "DOMAINS_GROUP",
    "Domain",
    "command_entry_points",
    "domain_entry_points",
    "load_domains",
    "missing_extra",
]

DOMAINS_GROUP = "attnlab.domains"
COMMANDS_GROUP = "attnlab.commands"


@dataclass(frozen=True)
class Domain:
    """What a domain registers: its name and the tiny run the domain contract test makes with it.

    Attributes:
        name: The domain's name, as in ``configs/<name>/`` (the entry point's name).
        smoke_config: A config that trains the domain's default model on its small embedded data in
            seconds; ``tests/domains/test_contract.py`` runs every command through it.
        smoke_args: Command-line options added to ``smoke_config`` in the contract test (e.g. to shrink
            the model further).
    """

    name: str
    smoke_config: Path
    smoke_args: tuple[str, ...] = ()


def domain_entry_points() -> list[metadata.EntryPoint]:
    """The registered domains' entry points, sorted by name (nothing is imported)."""
    return sorted(metadata.entry_points(group=DOMAINS_GROUP), key=lambda ep: ep.name)


def command_entry_points() -> dict[str, metadata.EntryPoint]:
    """The registered extra commands by name (nothing is imported)."""
    return {ep.name: ep for ep in metadata.entry_points(group=COMMANDS_GROUP)}


def missing_extra(entry_point: metadata.EntryPoint) -> str | None:
    """The extra of ``entry_point`` whose requirements are not all installed, or None.

    Read from the installed metadata only, so it costs no import of the domain.
    """
    if entry_point.dist is None:
        return None
    requirements = entry_point.dist.requires or []
    for extra in entry_point.extras:
        pattern = re.compile(rf"extra\s*==\s*['\"]{re.escape(extra)}['\"]")
        for requirement in requirements:
            if not pattern.search(requirement):
                continue
            name = re.split(r"[\s;<>=!~\[(]", requirement, maxsplit=1)[0]
            try:
                metadata.version(name)
            except metadata.PackageNotFoundError:
                return extra
    return None


def load_domains(
    argv: Sequence[str] = (), on_skip: Callable[[str, str], None] | None = None
) -> dict[str, Domain]:
    """Import every registered domain whose extra is installed.

    A domain whose extra is missing is skipped (``on_skip(name, message)`` hears of it), unless the command
    line names it (``configs/<name>/...``, ``domains.<name>``): then an ImportError names the extra to
    install. Any other import error of a domain is a bug and is raised.

    Returns:
        ``{name: Domain}`` of the domains loaded.
    """
    loaded: dict[str, Domain] = {}
    for entry_point in domain_entry_points():
        name = entry_point.name
        extra = missing_extra(entry_point)
        if extra is not None:
            package = entry_point.dist.name if entry_point.dist is not None else "attnlab"
            message = f"the {name} domain needs the {extra!r} extra: pip install '{package}[{extra}]'"
            if any(re.search(rf"(^|[/.=]){re.escape(name)}([/.]|$)", arg) for arg in argv):
                raise ImportError(message)
            if on_skip is not None:
                on_skip(name, message)
            continue
        domain = entry_point.load()
        if not isinstance(domain, Domain):
            raise TypeError(
                f"entry point {name} = {entry_point.value!r} of group {DOMAINS_GROUP} must name a "
                f"core.plugins.Domain, got {type(domain).__name__}"
            )
        loaded[name] = domain
    return loaded
