"""Small utilities shared across attnlab."""

from core.utils.extras import require

__all__ = ["require"]
