"""The records of a warm start and the interface every strategy implements.

A strategy is a small class with a ``name`` and one method, :meth:`Strategy.candidates`:
given the :class:`Context` of one dataset it returns its candidate configurations, best
first. :func:`automl_meta.meta.warmstart.suggest` does the rest for every strategy alike:
it skips the families this dataset cannot take, adapts values to the space, removes
duplicates, and tops the list up from the portfolio.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from automl_meta.meta.metabase import Metabase
from automl_meta.meta.neighbors import Neighbor
from automl_meta.meta.surrogate import Surrogate
from automl_meta.search.space import SearchSpace


@dataclass
class Suggestion:
    """One warm-start configuration and where it came from."""

    config: dict[str, Any]
    origin: str  # "neighbour:<task_id>", "learned:<task_id>" or "portfolio"
    source_score: float | None = None
    rank: int = 0
    source_config_id: str | None = None  # the metabase configuration it was made from
    #: the source configuration's cost parameter was multiplied by this to fit the budget
    cost_factor: float = 1.0


@dataclass
class WarmStart:
    """Ordered suggestions plus the log of what was skipped or adapted."""

    suggestions: list[Suggestion] = field(default_factory=list)
    log: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Context:
    """What a strategy knows about the dataset it suggests configurations for.

    Attributes
    ----------
    metabase : Metabase
    neighbors : sequence of Neighbor
        The nearest prior tasks of the same kind, nearest first (may be empty).
    task : str
        The user's task (``binary``, ``multiclass`` or ``regression``).
    n_rows : int
        Training rows.
    space : SearchSpace
    n : int
        How many configurations are wanted.
    allowed : frozenset of str
        The families this dataset can take (``space.family_names(task, n_rows)``).
    portfolio : sequence of str
        Portfolio config ids for this task kind.
    metafeatures : mapping, optional
        The dataset's meta-features.
    surrogate : Surrogate, optional
        A fitted performance model, when the caller has one.
    """

    metabase: Metabase
    neighbors: Sequence[Neighbor]
    task: str
    n_rows: int
    space: SearchSpace
    n: int
    allowed: frozenset[str]
    portfolio: Sequence[str] = ()
    metafeatures: Mapping[str, Any] | None = None
    surrogate: Surrogate | None = None


class Strategy:
    """A way of choosing and ordering warm-start configurations.

    Subclasses set :attr:`name` (the value of ``warm_start_strategy`` /
    ``--warm-start-strategy``) and :attr:`summary` (one line for help texts), implement
    :meth:`candidates`, and are made available by
    :func:`automl_meta.meta.warmstart.registry.register`.
    """

    #: the strategy's name in the registry
    name: ClassVar[str] = ""
    #: one line saying how the strategy chooses
    summary: ClassVar[str] = ""
    #: when the nearest prior task is far (or there is none), only half the list comes
    #: from :meth:`candidates` and the portfolio fills the rest
    portfolio_when_far: ClassVar[bool] = True

    def candidates(self, context: Context) -> WarmStart:
        """Candidate configurations for ``context``'s dataset, best first.

        Parameters
        ----------
        context : Context

        Returns
        -------
        WarmStart
            The candidates (not yet checked against the dataset or de-duplicated; the
            caller does that) and the log lines the strategy has to add.
        """
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"
