"""A griffe extension (``mkdocs.yml``) that turns the reST bits of our docstrings into Markdown for the site.

The docstrings are Google style with Sphinx roles (``:class:`TaskCheckpoint```) and literal blocks
introduced by ``::``, which read well in ``help()`` and in the editor; mkdocstrings renders Markdown, where
both would show their punctuation.
"""

from __future__ import annotations

import re
from typing import Any

from griffe import Extension

ROLE = re.compile(r":(?:py:)?(?:class|func|meth|mod|attr|data|exc|obj|const):`~?(?P<target>[^`]+)`")
LITERAL_INTRO = re.compile(r"(?<=\S)::(?=\n\s*\n)")


def rest_to_markdown(text: str) -> str:
    """Roles become inline code of their target; ``Usage::`` before an indented block becomes ``Usage:``.

    The indented block itself is already a Markdown code block.
    """
    text = ROLE.sub(lambda match: f"`{match['target']}`", text)
    return LITERAL_INTRO.sub(":", text)


class RestRoles(Extension):
    """Convert every docstring once the object tree is loaded."""

    def on_object(self, *, obj: Any, **kwargs: Any) -> None:
        """Rewrite ``obj``'s docstring in place."""
        if obj.docstring is not None:
            obj.docstring.value = rest_to_markdown(obj.docstring.value)
