"""The warm-start strategies by name, and the one place a name is validated.

The product's strategies (``learned``, ``local``, ``portfolio``) register themselves when
:mod:`automl_meta.meta.warmstart` is imported; other code (the experiments under
``benchmarks/experiments/``) may register more with :func:`register`.
"""

from __future__ import annotations

from automl_meta.errors import UsageError
from automl_meta.meta.warmstart.base import Strategy

_STRATEGIES: dict[str, type[Strategy]] = {}


def register(cls: type[Strategy]) -> type[Strategy]:
    """Make a strategy class available under its ``name``; usable as a class decorator.

    Parameters
    ----------
    cls : type of Strategy

    Returns
    -------
    type of Strategy
        ``cls`` itself.

    Raises
    ------
    ValueError
        When ``cls`` has no name, or another class is registered under the same name.
    """
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise TypeError(f"{cls!r} is not a Strategy subclass")
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    known = _STRATEGIES.get(cls.name)
    if known is not None and known is not cls:
        raise ValueError(f"warm-start strategy {cls.name!r} is already registered "
                         f"({known.__module__}.{known.__qualname__})")
    _STRATEGIES[cls.name] = cls
    return cls


def available() -> tuple[str, ...]:
    """The names of the registered strategies, in the order they were registered."""
    return tuple(_STRATEGIES)


def get(name: str) -> Strategy:
    """A new instance of the strategy registered as ``name``.

    Parameters
    ----------
    name : str

    Returns
    -------
    Strategy

    Raises
    ------
    UsageError
        (a ValueError) when no strategy is registered under ``name``; the message lists
        the ones that are.
    """
    cls = _STRATEGIES.get(name) if isinstance(name, str) else None
    if cls is None:
        raise UsageError(f"unknown warm-start strategy {name!r}; use one of "
                         + ", ".join(available()))
    return cls()
