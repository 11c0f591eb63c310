"""Warm-start strategies kept for the experiments only, registered on import.

Importing this module adds ``blend`` and ``rank`` to the registry of
:mod:`automl_meta.meta.warmstart`, so ``suggest(..., strategy="blend")`` works in the
experiment scripts (``loo.py``, ``zero_shot.py``). Neither is offered by ``fit``: in the
leave-one-task-out and zero-shot studies (``NOTES.md``) neither beat ``learned``, the
default, and ``local`` covers the neighbour-based approach for short budgets.

- ``blend``: the ``local`` greedy portfolio weighted over *all* the neighbours given (pass
  ``BLEND_NEIGHBOURS`` of them), with the global portfolio's configurations as candidates
  too.
- ``rank``: each neighbour's trials ranked by CV score; a configuration of rank r (0 = best)
  from a neighbour at distance d gets the priority ``(r + 1) * (1 + d / d_ref)`` (``d_ref``
  = the nearest neighbour's distance, at least 0.25), lower first.
"""

from __future__ import annotations

import pandas as pd

from automl_meta.meta.metabase import Metabase
from automl_meta.meta.warmstart import (
    Context,
    Strategy,
    Suggestion,
    WarmStart,
    local_candidates,
    register,
)
from automl_meta.meta.warmstart.transfer import complete_trials

#: neighbours the ``blend`` strategy weighs (its candidates come from the first
#: ``LOCAL_SOURCES`` of them and from the portfolio)
BLEND_NEIGHBOURS = 30


@register
class BlendStrategy(Strategy):
    """``local`` over every neighbour given, with the portfolio among the candidates."""

    name = "blend"
    summary = "local over all the neighbours given, the portfolio among the candidates"

    def candidates(self, context: Context) -> WarmStart:
        """The neighbours' and the portfolio's configurations in greedy order."""
        if not context.neighbors:
            return WarmStart()
        return local_candidates(context, context.neighbors, context.portfolio)


def _greater_is_better(metabase: Metabase, task_id: str) -> bool:
    row = metabase.tasks.loc[metabase.tasks["task_id"] == task_id]
    if row.empty or "greater_is_better" not in row:
        return True
    value = row["greater_is_better"].iloc[0]
    return str(value).lower() in ("true", "1", "1.0")


def _ranked_trials(metabase: Metabase, task_id: str, greater_is_better: bool) -> pd.DataFrame:
    res = complete_trials(metabase.results)
    res = res[res["task_id"] == task_id]
    return res.sort_values(["score", "trial"], ascending=[not greater_is_better, True])


@register
class RankStrategy(Strategy):
    """Neighbours' configurations ordered by ``(r + 1) * (1 + d / d_ref)``."""

    name = "rank"
    summary = "each neighbour's best configurations by rank and distance"

    def candidates(self, context: Context) -> WarmStart:
        """The ``context.n`` best configurations of every neighbour, by priority."""
        neighbors, metabase = context.neighbors, context.metabase
        if not neighbors:
            return WarmStart()
        candidates: list[tuple[float, int, Suggestion]] = []
        d_ref = max(neighbors[0].distance, 0.25)
        for nb in neighbors:
            ranked = _ranked_trials(metabase, nb.task_id,
                                    _greater_is_better(metabase, nb.task_id))
            for r, row in enumerate(ranked.head(context.n).itertuples()):
                config = metabase.configs.get(row.config_id)
                if config is None:
                    continue
                priority = (r + 1) * (1 + nb.distance / d_ref)
                candidates.append((priority, len(candidates), Suggestion(
                    dict(config), f"neighbour:{nb.task_id}", float(row.score), r)))
        candidates.sort(key=lambda c: (c[0], c[1]))
        return WarmStart([c[2] for c in candidates])
