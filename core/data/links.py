"""Names of data-derived sizes that flow from the datamodule into the model.

A domain registers the attribute names its datamodules expose (``num_features``, ``seq_len``, ...).
The CLI links ``data.<name>`` to ``model.init_args.<name>`` for every registered name, at instantiation
time, for whichever datamodule/model pair the config chooses; a pair that lacks a name simply skips that
link. A value the user configured explicitly is never overridden silently: the CLI fails if it
disagrees with the data (see :class:`core.cli.AttnLabCLI`).
"""

__all__ = ["data_links", "register_data_links"]

_LINKS: list[str] = []


def register_data_links(*names: str) -> None:
    """Declare datamodule attributes that models receive as init args of the same name."""
    for name in names:
        if not name.isidentifier():
            raise ValueError(f"data link name must be an identifier, got {name!r}")
        if name not in _LINKS:
            _LINKS.append(name)


def data_links() -> tuple[str, ...]:
    """All registered data-link names, in registration order."""
    return tuple(_LINKS)
