"""MkDocs hooks that generate the pages which must follow the code (``mkdocs.yml`` loads this file).

* An API reference page per package of ``core/`` and ``domains/`` (mkdocstrings renders the docstrings),
  appended to the nav as "API reference": a new package gets its page without editing ``mkdocs.yml``.
* The attention registry table in ``attention.md``: the marker :data:`REGISTRY_MARKER` is replaced by
  the counts and the table of ``attnlab attention list``, read from the registry at build time, so the
  page cannot drift from the code (the Markdown file itself names the command instead of a copy).
* Links from a page to repository files outside ``docs/`` (``../data/speech/README.md``) work on GitHub
  but have no target in the site: an existing one is rendered as its text, a missing one is a warning,
  which fails ``mkdocs build --strict`` like any other broken link.
"""

from __future__ import annotations

import logging
import posixpath
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
REFERENCE_ROOTS = ("core", "domains")
REGISTRY_PAGE = "attention.md"
REGISTRY_MARKER = "<!-- attention-registry -->"
LINK = re.compile(r"(?<!!)\[(?P<text>[^\]]*)\]\((?P<href>\.\./[^)\s#]+)(?P<anchor>#[^)\s]*)?\)")
FENCE = re.compile(r"^\s*(```|~~~)")
log = logging.getLogger("mkdocs.hooks.site")
KIND_NAMES = {
    "token": "token mixers",
    "spatial": "feature-map mixers",
    "gate": "attention gates",
    "module": "multi-input modules",
}


def reference_modules(repo: Path = REPO) -> list[str]:
    """Dotted names of the packages and top-level modules that get a reference page, sorted.

    Read from the file tree (no import): ``core.<x>`` and ``domains.<x>`` for each package ``<x>`` (a
    folder with ``__init__.py``) or module ``<x>.py``.
    """
    names = []
    for root in REFERENCE_ROOTS:
        for path in sorted((repo / root).iterdir()):
            if path.name.startswith("_"):
                continue
            if (path / "__init__.py").is_file() or (path.suffix == ".py" and path.is_file()):
                names.append(f"{root}.{path.stem}")
    return sorted(names)


def submodules(module: str, repo: Path = REPO) -> list[str]:
    """The public modules inside package ``module`` (none for a plain module), depth first, from the files."""
    folder = repo.joinpath(*module.split("."))
    if not (folder / "__init__.py").is_file():
        return []
    names = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith("_"):
            continue
        if (path / "__init__.py").is_file():
            names += [f"{module}.{path.name}", *submodules(f"{module}.{path.name}", repo)]
        elif path.suffix == ".py":
            names.append(f"{module}.{path.stem}")
    return names


def reference_page(module: str, repo: Path = REPO) -> str:
    """The Markdown of ``module``'s reference page: its docstring, then each of its modules in full.

    Each object is rendered once, in the module that defines it: a package shows only its docstring, since
    its members would repeat every class it re-exports (and double the build time).
    """
    lines = [f"# `{module}`", ""]
    for index, name in enumerate([module, *submodules(module, repo)]):
        options = ["show_root_heading: false"] if index == 0 else []
        if (repo.joinpath(*name.split(".")) / "__init__.py").is_file():
            options.append("members: false")
        lines += [
            f"::: {name}",
            *([("    options:")] if options else []),
            *(f"      {o}" for o in options),
            "",
        ]
    return "\n".join(lines)


def reference_nav(modules: Iterable[str]) -> dict[str, list[dict[str, str]]]:
    """The nav section of the reference pages, grouped as ``core`` then ``domains``."""
    modules = list(modules)
    return {
        "API reference": [
            {root: [{m: f"reference/{m}.md"} for m in modules if m.split(".")[0] == root]}
            for root in REFERENCE_ROOTS
        ]
    }


def registry_section(infos: Iterable[Any], table: str) -> str:
    """The counts of each kind of registered mechanism, then the registry's table.

    Args:
        infos: The registry's records (:class:`core.attention.registry.MechanismInfo`; only ``kind`` is
            read).
        table: The registry's Markdown table (:func:`core.attention.registry.mechanism_table`).
    """
    counts = Counter(info.kind for info in infos)
    parts = [f"{counts[kind]} {label}" for kind, label in KIND_NAMES.items() if counts[kind]]
    total = sum(counts.values())
    return (
        f"The registry holds {total} mechanisms: {', '.join(parts)}. This table is generated from it when "
        "the site is built; `attnlab attention list` prints the same table.\n\n" + table + "\n"
    )


def outside_links(markdown: str, page_uri: str, repo: Path = REPO) -> tuple[str, list[str]]:
    """Render links that leave ``docs/`` as text; return the Markdown and the links whose file is missing.

    Args:
        markdown: A page's Markdown.
        page_uri: The page's path under ``docs/`` (``speech.md``, ``medical/data.md``).
        repo: The repository root.
    """
    missing: list[str] = []

    def replace(match: re.Match[str]) -> str:
        target = posixpath.normpath(posixpath.join(posixpath.dirname(page_uri), match["href"]))
        if not target.startswith("../"):
            return match.group(0)  # inside docs/: MkDocs validates it
        in_repo = target.removeprefix("../")
        if target.startswith("../../") or not (repo / in_repo).exists():
            missing.append(match["href"])
            return match.group(0)
        text = match["text"]
        return text if in_repo in text else f"{text} (`{in_repo}`)"

    lines, in_fence = [], False
    for line in markdown.split("\n"):
        if FENCE.match(line):
            in_fence = not in_fence
        lines.append(line if in_fence else LINK.sub(replace, line))
    return "\n".join(lines), missing


def on_config(config: Any) -> Any:
    """Append the API reference section to the nav."""
    config.nav = [*(config.nav or []), reference_nav(reference_modules())]
    return config


def on_files(files: Any, config: Any) -> Any:
    """Add a generated reference page for every module of :func:`reference_modules`."""
    from mkdocs.structure.files import File

    for module in reference_modules():
        files.append(File.generated(config, f"reference/{module}.md", content=reference_page(module)))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Check links out of ``docs/``; put the registry table into ``attention.md``."""
    markdown, missing = outside_links(markdown, page.file.src_uri)
    for href in missing:
        log.warning(
            "Doc file '%s' links to '%s', which is not a file of the repository", page.file.src_uri, href
        )
    if page.file.src_uri != REGISTRY_PAGE:
        return markdown
    if markdown.count(REGISTRY_MARKER) != 1:
        raise ValueError(f"docs/{REGISTRY_PAGE} must hold the line {REGISTRY_MARKER} exactly once")
    from core.attention import list_mechanisms, mechanism_table

    return markdown.replace(REGISTRY_MARKER, registry_section(list_mechanisms(), mechanism_table()))
