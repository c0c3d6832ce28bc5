"""The docs site's generated parts (docs/hooks/site.py): registry table, API reference pages, outside links.

``make test`` builds the site itself (``mkdocs build --strict``); these tests pin what the hooks put in.
"""

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[1]


def _load_hooks():
    spec = importlib.util.spec_from_file_location("docs_site_hooks", REPO / "docs" / "hooks" / "site.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hooks = _load_hooks()


def test_rest_roles_and_literal_intros_become_markdown() -> None:
    pytest.importorskip("griffe", reason="the docs extra is not installed")
    spec = importlib.util.spec_from_file_location("griffe_rest", REPO / "docs" / "hooks" / "griffe_rest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = (
        "Uses :class:`~core.training.TaskCheckpoint` and :py:func:`load_domains`, not :foo:`x`.\n"
        "Usage::\n\n    attnlab fit\n\nArgs:\n    a: See ``b::c``.\n"
    )
    assert module.rest_to_markdown(text) == (
        "Uses `core.training.TaskCheckpoint` and `load_domains`, not :foo:`x`.\n"
        "Usage:\n\n    attnlab fit\n\nArgs:\n    a: See ``b::c``.\n"
    )


def test_registry_section_counts_each_kind_and_keeps_the_table() -> None:
    infos = [SimpleNamespace(kind=k) for k in ("token", "token", "spatial", "module", "token")]
    table = "| name |\n|---|\n| A |"
    assert hooks.registry_section(infos, table) == (
        "The registry holds 5 mechanisms: 3 token mixers, 1 feature-map mixers, 1 multi-input modules. "
        "This table is generated from it when the site is built; `attnlab attention list` prints the same "
        "table.\n\n| name |\n|---|\n| A |\n"
    )


def test_attention_page_has_one_registry_marker_and_no_copied_table() -> None:
    text = (REPO / "docs" / "attention.md").read_text(encoding="utf-8")
    assert text.count(hooks.REGISTRY_MARKER) == 1
    # A hand-copied registry table would drift from the code: only the generated one may exist.
    assert "| name | kind | paper |" not in text


def test_reference_modules_are_the_packages_and_modules_of_core_and_domains(tmp_path: Path) -> None:
    for folder in ("core/attention", "core/_private", "domains/finance", "domains/data_only"):
        (tmp_path / folder).mkdir(parents=True)
    for file in ("core/__init__.py", "core/plugins.py", "core/attention/__init__.py", "core/_private/x.py"):
        (tmp_path / file).write_text("")
    (tmp_path / "domains/finance/__init__.py").write_text("")
    (tmp_path / "domains/README.md").write_text("")
    assert hooks.reference_modules(tmp_path) == ["core.attention", "core.plugins", "domains.finance"]
    real = hooks.reference_modules()
    assert {"core.attention", "core.cli", "core.plugins", "domains.finance", "domains.medical"} <= set(real)


def test_reference_page_renders_each_module_once(tmp_path: Path) -> None:
    """A package shows its docstring only; its modules follow, each rendering the objects it defines."""
    for file in (
        "core/cli/__init__.py",
        "core/cli/run.py",
        "core/cli/_hidden.py",
        "core/cli/sub/__init__.py",
    ):
        (tmp_path / file).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / file).write_text("")
    (tmp_path / "core/cli/sub/deep.py").write_text("")
    (tmp_path / "core/plugins.py").write_text("")
    assert hooks.submodules("core.cli", tmp_path) == ["core.cli.run", "core.cli.sub", "core.cli.sub.deep"]
    assert hooks.reference_page("core.cli", tmp_path) == (
        "# `core.cli`\n\n"
        "::: core.cli\n    options:\n      show_root_heading: false\n      members: false\n\n"
        "::: core.cli.run\n\n"
        "::: core.cli.sub\n    options:\n      members: false\n\n"
        "::: core.cli.sub.deep\n"
    )
    assert hooks.reference_page("core.plugins", tmp_path) == (
        "# `core.plugins`\n\n::: core.plugins\n    options:\n      show_root_heading: false\n"
    )


def test_reference_nav() -> None:
    assert hooks.reference_nav(["core.cli", "domains.video"]) == {
        "API reference": [
            {"core": [{"core.cli": "reference/core.cli.md"}]},
            {"domains": [{"domains.video": "reference/domains.video.md"}]},
        ]
    }


@pytest.mark.parametrize(
    ("markdown", "page", "expected", "missing"),
    [
        # An existing repository file outside docs/: its text, plus the path when the text lacks it.
        ("See [`Makefile`](../Makefile).", "cli.md", "See `Makefile`.", []),
        ("See [the targets](../Makefile#L1).", "cli.md", "See the targets (`Makefile`).", []),
        ("From [here](../../Makefile) too.", "medical/data.md", "From here (`Makefile`) too.", []),
        # A missing one is reported (a warning, so the strict build fails) and left as it is.
        ("[gone](../no_such_file.md)", "cli.md", "[gone](../no_such_file.md)", ["../no_such_file.md"]),
        ("[above](../../README.md)", "cli.md", "[above](../../README.md)", ["../../README.md"]),
        # Links inside docs/, images and code blocks are MkDocs' to check.
        ("[up](../cli.md)", "medical/data.md", "[up](../cli.md)", []),
        ("![plot](../Makefile)", "cli.md", "![plot](../Makefile)", []),
        ("```\n[x](../Makefile)\n```", "cli.md", "```\n[x](../Makefile)\n```", []),
    ],
)
def test_links_out_of_docs(markdown: str, page: str, expected: str, missing: list[str]) -> None:
    assert hooks.outside_links(markdown, page) == (expected, missing)
