"""Warm-start suggestions: configurations from the metabase to evaluate before the search.

:func:`suggest` asks a *strategy* for candidate configurations, checks each against the
dataset (a family not offered at this size is skipped, values outside the space's domain
are clipped, both logged), removes duplicates and tops the list up from the metabase's
portfolio. Strategies are small classes (:class:`Strategy`: a ``name`` and one method,
``candidates(context)``) kept by name in a registry (:func:`register`, :func:`get`,
:func:`available`); :func:`get` is where an unknown name is refused, for the Python API and
the command line alike. The strategies shipped here, one module each:

- ``learned`` (:mod:`~automl_meta.meta.warmstart.learned`, the estimator's default): the
  prior tasks' best configurations, ranked for this dataset by a performance model fitted
  on the metabase (:mod:`automl_meta.meta.surrogate`);
- ``local`` (:mod:`~automl_meta.meta.warmstart.local`): a similarity-weighted greedy
  portfolio of the nearest prior tasks; needs no model, so the estimator falls back to it
  when the budget is short;
- ``portfolio`` (:mod:`~automl_meta.meta.warmstart.portfolio`): the metabase's greedy
  portfolio alone, the same for every dataset of a kind.

The transfer estimate and greedy ordering they share are in
:mod:`~automl_meta.meta.warmstart.transfer`; :func:`order_by_cost`
(:mod:`~automl_meta.meta.warmstart.cost`) fits the list to the time the search has: dear
configurations made cheaper (:func:`cheaper`), moved behind or dropped.
Strategies studied in the benchmarks only live under ``benchmarks/experiments/``
(``strategies.py``) and register themselves when imported.
"""

from __future__ import annotations

# the product's strategies register themselves on import, in the order ``available()``
# lists them
from automl_meta.meta.warmstart import learned as _learned  # noqa: F401
from automl_meta.meta.warmstart import local as _local  # noqa: F401
from automl_meta.meta.warmstart import portfolio as _portfolio  # noqa: F401
from automl_meta.meta.warmstart.base import Context, Strategy, Suggestion, WarmStart
from automl_meta.meta.warmstart.cost import (
    MAX_CHEAPER,
    PER_CLASS_FAMILIES,
    cheaper,
    cost_exponents,
    estimated_trial_seconds,
    order_by_cost,
)
from automl_meta.meta.warmstart.learned import LEARNED_CANDIDATES_PER_TASK, LearnedStrategy
from automl_meta.meta.warmstart.local import (
    LOCAL_CANDIDATES_PER_TASK,
    LOCAL_SOURCES,
    LocalStrategy,
    local_candidates,
)
from automl_meta.meta.warmstart.portfolio import (
    CANDIDATES_PER_TASK,
    PORTFOLIO_SIZE,
    PortfolioStrategy,
    compute_portfolio,
)
from automl_meta.meta.warmstart.registry import available, get, register
from automl_meta.meta.warmstart.selection import FAR_DISTANCE, suggest
from automl_meta.meta.warmstart.transfer import (
    greedy_order,
    neighbor_weights,
    normalised_scores,
    transfer_matrix,
)

__all__ = [
    "CANDIDATES_PER_TASK",
    "FAR_DISTANCE",
    "LEARNED_CANDIDATES_PER_TASK",
    "LOCAL_CANDIDATES_PER_TASK",
    "LOCAL_SOURCES",
    "MAX_CHEAPER",
    "PER_CLASS_FAMILIES",
    "PORTFOLIO_SIZE",
    "Context",
    "LearnedStrategy",
    "LocalStrategy",
    "PortfolioStrategy",
    "Strategy",
    "Suggestion",
    "WarmStart",
    "available",
    "cheaper",
    "compute_portfolio",
    "cost_exponents",
    "estimated_trial_seconds",
    "get",
    "greedy_order",
    "local_candidates",
    "neighbor_weights",
    "normalised_scores",
    "order_by_cost",
    "register",
    "suggest",
    "transfer_matrix",
]
