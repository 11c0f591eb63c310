"""Strategy ``learned`` (the default): the prior tasks' best configurations, ranked for this
dataset by a performance model fitted on the metabase.

The model (:mod:`automl_meta.meta.surrogate`: task meta-features + configuration →
percentile rank among the task's trials; the one the metabase stores when it is current,
fitted here otherwise) scores the ``LEARNED_CANDIDATES_PER_TASK`` best configurations of
every prior task of the same kind (the user's history included); they are suggested
highest predicted first, at most ``max(2, n // 3)`` of one family before the other families
had their turn (so a list of 10 spans at least four families when the model likes
several). It does not use the neighbours, and takes no more from the portfolio when they
are far.
"""

from __future__ import annotations

import numpy as np

from automl_meta.meta.surrogate import fit_surrogate, stored_surrogate
from automl_meta.meta.warmstart.base import Context, Strategy, Suggestion, WarmStart
from automl_meta.meta.warmstart.registry import register
from automl_meta.meta.warmstart.transfer import normalised_results, top_candidates
from automl_meta.search.space import task_kind

#: candidates: the best configurations of every prior task
LEARNED_CANDIDATES_PER_TASK = 5


@register
class LearnedStrategy(Strategy):
    """The prior tasks' best configurations ordered by the performance model's prediction
    for this dataset (see the module docstring); needs ``context.metafeatures``."""

    name = "learned"
    summary = ("a performance model fitted on the metabase ranks the prior tasks' best "
               "configurations")
    portfolio_when_far = False

    def candidates(self, context: Context) -> WarmStart:
        """The candidates, highest predicted first with the per-family cap.

        Raises
        ------
        ValueError
            When the context has no meta-features.
        """
        if context.metafeatures is None:
            raise ValueError("the 'learned' warm-start strategy needs the meta-features")
        metabase, space, allowed, n = context.metabase, context.space, context.allowed, \
            context.n
        out = WarmStart()
        surrogate = context.surrogate
        if surrogate is None:
            surrogate, why = stored_surrogate(metabase, space, context.task)
            if surrogate is None:
                out.log.append(f"performance model fitted now: {why}")
                surrogate = fit_surrogate(metabase, space, context.task)
        if surrogate is None:
            out.log.append("no performance model: fewer than 5 prior tasks of this kind")
            return out
        kind = task_kind(context.task)
        tasks = metabase.ok_tasks()
        task_ids = [str(t) for t, k in zip(tasks["task_id"], tasks["task"], strict=True)
                    if task_kind(str(k)) == kind and str(t) not in surrogate.excluded]
        res = normalised_results(metabase, space, task_ids)
        res = res[res["family"].isin(allowed)]
        candidates = top_candidates(res, task_ids, LEARNED_CANDIDATES_PER_TASK)
        candidates += [c for c in context.portfolio if c in metabase.configs
                       and c not in candidates and metabase.configs[c].get("family") in allowed]
        if not candidates:
            return out
        pred = surrogate.predict(context.metafeatures,
                                 [metabase.configs[c] for c in candidates])
        order = np.argsort(-pred, kind="stable")
        source = res.drop_duplicates("config_id").set_index("config_id")
        cap = max(2, n // 3)
        first, rest, per_family = [], [], {}
        for i in order:
            family = metabase.configs[candidates[i]]["family"]
            (first if per_family.get(family, 0) < cap else rest).append(i)
            per_family[family] = per_family.get(family, 0) + 1
        for i in first + rest:
            cid = candidates[i]
            origin = f"learned:{source.loc[cid, 'task_id']}" if cid in source.index \
                else "portfolio"
            out.suggestions.append(Suggestion(dict(metabase.configs[cid]), origin,
                                              float(pred[i])))
        return out
