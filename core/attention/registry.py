"""A registry of every attention mechanism, with the metadata users and tests need.

Register a mechanism by decorating its class::

    @register_mechanism(paper="Vaswani et al. 2017, Attention Is All You Need", complexity="O(N^2 d)")
    class MultiHeadAttention(TokenMixer): ...

The registry drives ``attnlab attention list``, the registry-wide contract tests and the benchmark, so a
new mechanism is tested and benchmarked as soon as it is registered.
"""

from collections.abc import Callable
from dataclasses import dataclass

from core.attention.base import TokenMixer

__all__ = ["MechanismInfo", "get_mechanism", "list_mechanisms", "mechanism_table", "register_mechanism"]

PATTERNS = ("noncausal_self", "causal_self", "noncausal_cross", "causal_cross")


@dataclass(frozen=True)
class MechanismInfo:
    """What the registry knows about one mechanism.

    Attributes:
        name: Short name, usable on the command line (``--model.attention=<name>``).
        cls: The :class:`TokenMixer` subclass.
        paper: Paper the mechanism comes from.
        complexity: Time complexity in N (tokens) and d (channels).
        example_kwargs: Small constructor kwargs that build a working instance for tests (``dim`` excluded).
    """

    name: str
    cls: type[TokenMixer]
    paper: str
    complexity: str
    example_kwargs: tuple[tuple[str, object], ...] = ()

    @property
    def patterns(self) -> tuple[str, ...]:
        """The CAB attention patterns (self/cross × causal/non-causal) this mechanism supports."""
        cls = self.cls
        out = []
        if not cls.requires_context and not cls.causal_only:
            out.append("noncausal_self")
        if not cls.requires_context and cls.supports_causal:
            out.append("causal_self")
        if cls.supports_context and not cls.causal_only:
            out.append("noncausal_cross")
        if cls.supports_context and cls.supports_causal:
            out.append("causal_cross")
        return tuple(out)

    @property
    def flags(self) -> dict[str, bool]:
        """The capability flags of the class."""
        names = ("supports_mask", "supports_causal", "causal_only", "supports_context", "needs_grid")
        return {n: bool(getattr(self.cls, n)) for n in names}


_REGISTRY: dict[str, MechanismInfo] = {}


def register_mechanism(
    name: str | None = None,
    *,
    paper: str,
    complexity: str,
    example_kwargs: dict[str, object] | None = None,
) -> Callable[[type[TokenMixer]], type[TokenMixer]]:
    """Class decorator that enrols a :class:`TokenMixer` subclass in the registry.

    Args:
        name: Registry name; defaults to the class name.
        paper: Paper the mechanism comes from.
        complexity: Time complexity, e.g. ``"O(N^2 d)"``.
        example_kwargs: Small constructor kwargs for tests and benchmarks.

    Returns:
        The decorator.
    """

    def decorator(cls: type[TokenMixer]) -> type[TokenMixer]:
        if not (isinstance(cls, type) and issubclass(cls, TokenMixer)):
            raise TypeError(f"register_mechanism expects a TokenMixer subclass, got {cls!r}")
        key = name or cls.__name__
        if key in _REGISTRY and _REGISTRY[key].cls is not cls:
            raise ValueError(f"attention mechanism {key!r} is already registered by {_REGISTRY[key].cls}")
        kwargs = tuple(sorted((example_kwargs or {}).items()))
        _REGISTRY[key] = MechanismInfo(key, cls, paper, complexity, kwargs)
        return cls

    return decorator


def get_mechanism(name: str) -> MechanismInfo:
    """Look up a mechanism by name.

    Raises:
        KeyError: Naming the unknown mechanism and listing the registered ones.
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown attention mechanism {name!r}; registered: {sorted(_REGISTRY)}") from None


def list_mechanisms() -> list[MechanismInfo]:
    """All registered mechanisms, sorted by name."""
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def mechanism_table() -> str:
    """A Markdown table of every registered mechanism, for ``attnlab attention list`` and the docs."""
    rows = [
        "| name | paper | complexity | mask | causal | causal only | cross | grid | patterns |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for info in list_mechanisms():
        f = info.flags
        marks = ["✓" if f[k] else "" for k in f]
        rows.append(
            f"| {info.name} | {info.paper} | {info.complexity} | "
            + " | ".join(marks)
            + f" | {', '.join(info.patterns)} |"
        )
    return "\n".join(rows)
