"""Strategy ``local``: a similarity-weighted portfolio of the nearest prior tasks.

The candidates are the ``LOCAL_CANDIDATES_PER_TASK`` best configurations of each of the
first ``LOCAL_SOURCES`` neighbours; they are ordered greedily: each step takes the candidate
that raises ``sum_t w_t * max(best so far on t, estimate of c on t)`` the most, with the
similarity weight ``w_t = 1 / (1 + d_t / d_ref)`` (``d_ref`` = the nearest neighbour's
distance, at least 0.25) and the transfer estimate of
:mod:`~automl_meta.meta.warmstart.transfer`. The first suggestion is thus the configuration
expected to do best across the neighbourhood, not one neighbour's (possibly lucky) best; the
next ones cover the neighbours the earlier ones served poorly.

It needs no model fitted first, so it is what the estimator uses when the budget leaves too
little time for ``learned``.
"""

from __future__ import annotations

from collections.abc import Sequence

from automl_meta.meta.neighbors import Neighbor
from automl_meta.meta.warmstart.base import Context, Strategy, Suggestion, WarmStart
from automl_meta.meta.warmstart.registry import register
from automl_meta.meta.warmstart.transfer import (
    greedy_order,
    neighbor_weights,
    normalised_results,
    top_candidates,
    transfer_matrix,
)

#: neighbours whose best configurations are the candidates (and, for ``local``, the
#: neighbours weighed at all)
LOCAL_SOURCES = 10
#: candidates taken from each of those neighbors
LOCAL_CANDIDATES_PER_TASK = 10


def local_candidates(context: Context, neighbors: Sequence[Neighbor],
                     extra: Sequence[str] = ()) -> WarmStart:
    """A greedy portfolio over ``neighbors`` weighted by similarity (see the module
    docstring).

    Parameters
    ----------
    context : Context
    neighbors : sequence of Neighbor
        The tasks weighed, nearest first (not empty); the candidates come from the first
        ``LOCAL_SOURCES`` of them.
    extra : sequence of str
        Further candidate config ids (those of families the dataset cannot take are left
        out).

    Returns
    -------
    WarmStart
        The candidates in greedy order, and a log line for each family that was among a
        neighbour's best but is not offered for this dataset.
    """
    metabase, space, allowed = context.metabase, context.space, context.allowed
    out = WarmStart()
    task_ids = [nb.task_id for nb in neighbors]
    res = normalised_results(metabase, space, task_ids)
    excluded = sorted(set(res.loc[res["norm"] >= 1.0, "family"]) - allowed)
    for family in excluded:  # left out of the local portfolio: say so
        out.log.append(f"skipped neighbours' {family} configs: family not offered "
                       f"for {context.n_rows} rows / {context.task}")
    res = res[res["family"].isin(allowed)]
    candidates = top_candidates(res, task_ids[:LOCAL_SOURCES], LOCAL_CANDIDATES_PER_TASK)
    candidates += [c for c in extra if c in metabase.configs and c not in candidates
                   and metabase.configs[c].get("family") in allowed]
    if not candidates:
        return out
    perf = transfer_matrix(metabase, space, candidates, res, task_ids)
    order = greedy_order(perf, neighbor_weights(neighbors), len(candidates))
    res = res.assign(rank=res.groupby("task_id")["norm"].rank(ascending=False,
                                                               method="first") - 1)
    source = res.drop_duplicates("config_id").set_index("config_id")
    for i in order:
        cid = candidates[i]
        if cid in source.index:
            row = source.loc[cid]
            out.suggestions.append(Suggestion(dict(metabase.configs[cid]),
                                              f"neighbour:{row['task_id']}",
                                              float(row["score"]), int(row["rank"])))
        else:
            out.suggestions.append(Suggestion(dict(metabase.configs[cid]), "portfolio"))
    return out


@register
class LocalStrategy(Strategy):
    """A greedy portfolio over the nearest ``LOCAL_SOURCES`` neighbors, weighted by
    similarity (see the module docstring)."""

    name = "local"
    summary = "a similarity-weighted portfolio of the nearest tasks"

    def candidates(self, context: Context) -> WarmStart:
        """The nearest neighbours' best configurations in greedy order."""
        if not context.neighbors:
            return WarmStart()
        return local_candidates(context, context.neighbors[:LOCAL_SOURCES])
