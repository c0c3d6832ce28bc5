"""Build a task's network from an injected factory and the sizes the data gives.

A task takes its network the way models take attention: as a factory (``--model.network=TLOB
--model.network.num_layers=2``), so a network's own options live on its class, whose typed ``__init__``
is their schema and ``--help``. The task then calls the factory with the data-derived sizes
(``num_features``, ``num_classes``, ...) and the task's ``attention`` factory.

A network receives, by name, only the sizes its ``__init__`` declares: a popularity baseline takes
``num_items`` and ignores ``max_len``, and a new size offered by a datamodule never breaks older networks.
Each domain lists the sizes it offers in a ``Protocol`` (its network type), which is also what tells the
CLI to leave them out of ``--model.network.*``.
"""

import inspect
from collections.abc import Callable
from functools import partial
from typing import Any

from torch import nn

__all__ = ["factory_target", "instantiate_network"]


def factory_target(factory: Callable[..., Any]) -> tuple[Callable[..., Any], set[str]]:
    """The class (or function) a factory builds, and the keyword arguments the factory already binds.

    Unwraps ``functools.partial`` layers, including the ``partial(instantiator, cls, **init_args)`` that
    jsonargparse returns for a class given as a callable.
    """
    bound: set[str] = set()
    target: Any = factory
    while isinstance(target, partial):
        bound |= set(target.keywords)
        classes = [a for a in target.args if inspect.isclass(a)]
        target = classes[0] if classes else target.func
    return target, bound


def instantiate_network(
    factory: Callable[..., nn.Module], *, attention: Callable[..., Any] | None = None, **sizes: Any
) -> nn.Module:
    """Call ``factory`` with the sizes it declares and, when given, the attention factory.

    Args:
        factory: A network class, or a factory of one (a ``functools.partial``).
        attention: The task's attention factory; None leaves the network's own default.
        **sizes: Data-derived sizes on offer; None values are not passed.

    Returns:
        The network.

    Raises:
        ValueError: If ``attention`` is given to a network without an ``attention`` argument.
    """
    target, bound = factory_target(factory)
    params = inspect.signature(target).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    accepted = {name for name in params if name not in bound}
    kwargs = {k: v for k, v in sizes.items() if v is not None and (takes_any or k in accepted)}
    if attention is not None:
        if not (takes_any or "attention" in accepted):
            name = getattr(target, "__name__", repr(target))
            raise ValueError(
                f"{name} has no attention to replace (its __init__ takes no `attention`); "
                "remove --model.attention or choose a network with attention"
            )
        kwargs["attention"] = attention
    return factory(**kwargs)
