"""A registry of every attention mechanism, with the metadata users and tests need.

Register a mechanism by decorating its class::

    @register_mechanism(paper="Vaswani et al. 2017, Attention Is All You Need", complexity="O(N^2 d)")
    class MultiHeadAttention(TokenMixer): ...

The registry drives ``attnlab attention list``, the registry-wide contract tests and the benchmark, so a
new mechanism is tested and benchmarked as soon as it is registered.

Four kinds of module can be registered; the kind follows from the base class:

* ``token``: a :class:`TokenMixer`, ``(B, N, C) -> (B, N, C)``; ``example_kwargs`` exclude ``dim``.
* ``spatial``: a :class:`SpatialMixer`, ``(B, C, *S) -> (B, C, *S)``; ``example_kwargs`` exclude
  ``channels`` and ``spatial_dims`` (tests build every entry of ``supported_dims``).
* ``gate``: an :class:`AttentionGate`, ``forward(x, g)``; ``example_kwargs`` exclude ``channels``,
  ``gating_channels`` and ``spatial_dims``.
* ``module``: any other attention module with several inputs or outputs (bidirectional cross-attention,
  layer attention). ``example_kwargs`` are its full constructor kwargs and the class provides
  ``example_inputs(batch, dtype) -> tuple[Tensor, ...]`` so the registry tests can run it.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from torch import nn

from core.attention.base import AttentionGate, SpatialMixer, TokenMixer

Kind = Literal["token", "spatial", "gate", "module"]

__all__ = ["MechanismInfo", "get_mechanism", "list_mechanisms", "mechanism_table", "register_mechanism"]

PATTERNS = ("noncausal_self", "causal_self", "noncausal_cross", "causal_cross")
DEFAULT_PATHS = "PyTorch / SDPA (CPU + GPU)"
"""What ``attnlab attention list`` shows for a class without a ``paths`` attribute (its execution paths)."""


@dataclass(frozen=True)
class MechanismInfo:
    """What the registry knows about one mechanism.

    Attributes:
        name: Short name, usable on the command line (``--model.attention=<name>``).
        cls: The registered class (see the module docstring for the four kinds).
        paper: Paper the mechanism comes from.
        complexity: Time complexity in N (tokens) and d (channels).
        example_kwargs: Small constructor kwargs that build a working instance for tests (``dim`` excluded).
    """

    name: str
    cls: type[nn.Module]
    paper: str
    complexity: str
    example_kwargs: tuple[tuple[str, object], ...] = ()

    @property
    def kind(self) -> Kind:
        """``token``, ``spatial``, ``gate`` or ``module``, from the base class."""
        return _kind_of(self.cls)

    @property
    def patterns(self) -> tuple[str, ...]:
        """The CAB patterns (self/cross × causal/non-causal) of a token mixer; the kind for the others."""
        cls = self.cls
        if not issubclass(cls, TokenMixer):
            return (self.kind,)
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
        """The capability flags of a token mixer (all False for the other kinds)."""
        names = ("supports_mask", "supports_causal", "causal_only", "supports_context", "needs_grid")
        return {n: bool(getattr(self.cls, n, False)) for n in names}


_REGISTRY: dict[str, MechanismInfo] = {}


def _kind_of(cls: type) -> Kind:
    if issubclass(cls, TokenMixer):
        return "token"
    if issubclass(cls, SpatialMixer):
        return "spatial"
    if issubclass(cls, AttentionGate):
        return "gate"
    return "module"


def register_mechanism(
    name: str | None = None,
    *,
    paper: str,
    complexity: str,
    example_kwargs: dict[str, object] | None = None,
) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator that enrols an attention module in the registry.

    Args:
        name: Registry name; defaults to the class name.
        paper: Paper the mechanism comes from.
        complexity: Time complexity, e.g. ``"O(N^2 d)"``.
        example_kwargs: Small constructor kwargs for tests and benchmarks.

    Returns:
        The decorator.
    """

    def decorator(cls: type[nn.Module]) -> type[nn.Module]:
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
            raise TypeError(f"register_mechanism expects an nn.Module subclass, got {cls!r}")
        if _kind_of(cls) == "module" and not callable(getattr(cls, "example_inputs", None)):
            raise TypeError(
                f"{cls.__name__} is neither a TokenMixer, a SpatialMixer nor an AttentionGate, so it must "
                "define a classmethod example_inputs(batch, dtype) for the registry tests"
            )
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


def list_mechanisms(kind: Kind | None = None) -> list[MechanismInfo]:
    """Registered mechanisms sorted by name, optionally only those of one kind."""
    return [_REGISTRY[k] for k in sorted(_REGISTRY) if kind is None or _REGISTRY[k].kind == kind]


def mechanism_table(kind: Kind | None = None) -> str:
    """A Markdown table of the registered mechanisms, for ``attnlab attention list`` and the docs."""
    rows = [
        "| name | kind | paper | complexity | mask | causal | causal only | cross | grid | patterns "
        "| CPU/GPU paths |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for info in list_mechanisms(kind):
        f = info.flags
        marks = ["✓" if f[k] else "" for k in f]
        rows.append(
            f"| {info.name} | {info.kind} | {info.paper} | {info.complexity} | "
            + " | ".join(marks)
            + f" | {', '.join(info.patterns)} | {getattr(info.cls, 'paths', DEFAULT_PATHS)} |"
        )
    return "\n".join(rows)
