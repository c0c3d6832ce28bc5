"""Optional dependencies: import them lazily and say which extra installs them."""

import importlib
from types import ModuleType

__all__ = ["require"]


def require(module: str, extra: str) -> ModuleType:
    """Import an optional dependency or explain how to install it.

    Args:
        module: Importable module name, e.g. ``"pandas"``.
        extra: The ``attnlab`` extra that provides it, e.g. ``"finance"``.

    Returns:
        The imported module.

    Raises:
        ImportError: Naming the missing module and the ``pip install 'attnlab[extra]'`` command.
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"{module!r} is needed here but is not installed. Install the {extra!r} extra: "
            f"pip install 'attnlab[{extra}]'  (or, from a clone: pip install -e '.[{extra}]')"
        ) from err
