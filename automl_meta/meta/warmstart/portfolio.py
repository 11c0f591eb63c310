"""Strategy ``portfolio``: configurations good across the whole metabase, whatever the data.

A greedy portfolio (Feurer et al., auto-sklearn 2.0) over the metabase's tasks of one kind:
the candidates are the top ``CANDIDATES_PER_TASK`` configurations of every task, scored on
every task by the transfer estimate (:mod:`~automl_meta.meta.warmstart.transfer`); each step
adds the candidate that raises the sum over tasks of the best score so far the most.
``build-metabase`` stores the portfolio of each kind in the metabase manifest. It is a
strategy of its own (the same first configurations for every dataset of a kind, a
baseline that does not depend on the meta-features) and it tops up every other strategy's
list.
"""

from __future__ import annotations

import numpy as np

from automl_meta.meta.metabase import Metabase
from automl_meta.meta.warmstart.base import Context, Strategy, WarmStart
from automl_meta.meta.warmstart.registry import register
from automl_meta.meta.warmstart.transfer import (
    greedy_order,
    normalised_results,
    top_candidates,
    transfer_matrix,
)
from automl_meta.search.space import SearchSpace, task_kind

#: configurations in a stored portfolio
PORTFOLIO_SIZE = 25
#: candidates of the portfolio: the best configurations of every task
CANDIDATES_PER_TASK = 3


def compute_portfolio(metabase: Metabase, space: SearchSpace, kind: str,
                      size: int = PORTFOLIO_SIZE, exclude: set[str] | None = None
                      ) -> list[str]:
    """Greedy portfolio (config ids) for a task kind; see the module docstring.

    Parameters
    ----------
    metabase : Metabase
    space : SearchSpace
    kind : str
        ``classification`` or ``regression``.
    size : int
        At most this many configurations.
    exclude : set of str, optional
        Task ids left out (leave-one-task-out evaluation).

    Returns
    -------
    list of str
        Config ids, the most useful first.
    """
    tasks = metabase.ok_tasks()
    tasks = tasks[tasks["task"].map(lambda t: task_kind(str(t))) == kind]
    if exclude:
        tasks = tasks[~tasks["task_id"].isin(exclude)]
    task_ids = list(tasks["task_id"])
    if not task_ids:
        return []
    res = normalised_results(metabase, space, task_ids)
    candidates = top_candidates(res, task_ids, CANDIDATES_PER_TASK)
    if not candidates:
        return []
    perf = transfer_matrix(metabase, space, candidates, res, task_ids)
    chosen = greedy_order(perf, np.ones(len(task_ids)), size)
    return [candidates[i] for i in chosen]


@register
class PortfolioStrategy(Strategy):
    """The metabase's portfolio alone (the list :func:`~automl_meta.meta.warmstart.suggest`
    tops every strategy up with), the same for every dataset of a kind."""

    name = "portfolio"
    summary = "a portfolio of configurations good across the whole metabase"

    def candidates(self, context: Context) -> WarmStart:
        """No candidates of its own: the portfolio fills the whole list."""
        return WarmStart()
