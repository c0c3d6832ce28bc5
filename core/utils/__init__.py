"""Small utilities shared across attnlab."""

from core.utils.errors import InputError, InputFileNotFoundError
from core.utils.extras import require

__all__ = ["InputError", "InputFileNotFoundError", "require"]
