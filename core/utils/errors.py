"""The exception family for a user's bad input.

The CLI prints an :class:`InputError` as one line naming the file, field, shape or option and what was
expected, without a traceback (``ATTNLAB_TRACEBACK=1`` shows it). Everything else is a bug and keeps its
traceback. Both classes subclass the built-in exception a caller would catch anyway (``ValueError``,
``FileNotFoundError``), so ``except ValueError`` still works.
"""

__all__ = ["InputError", "InputFileNotFoundError"]


class InputError(ValueError):
    """A file, field, shape or option that a user gave is not what attnlab expects."""


class InputFileNotFoundError(InputError, FileNotFoundError):
    """A path that a user gave does not exist."""
