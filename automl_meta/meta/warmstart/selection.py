"""The warm-start list for one dataset: a strategy's candidates, checked against the
dataset, de-duplicated and topped up from the portfolio."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from automl_meta.defaults import WARM_START_DEFAULT_FAMILIES, WARM_START_DEFAULTS_AT
from automl_meta.meta.metabase import Metabase, config_id
from automl_meta.meta.neighbors import Neighbor
from automl_meta.meta.surrogate import Surrogate
from automl_meta.meta.warmstart.base import Context, Suggestion, WarmStart
from automl_meta.meta.warmstart.registry import get
from automl_meta.search.space import SearchSpace, task_kind

#: a nearest-neighbour distance above this means the neighbours are far: half the list
#: comes from the portfolio (strategies with ``portfolio_when_far``)
FAR_DISTANCE = 1.5


def default_suggestions(space: SearchSpace, task: str, allowed: Sequence[str], n: int,
                        families: Sequence[str] = WARM_START_DEFAULT_FAMILIES
                        ) -> list[Suggestion]:
    """The default configuration of each of ``families`` offered here (in ``allowed``),
    origin ``default:<family>``; at most ``n - 1`` (a list of one is the strategy's best
    guess)."""
    return [Suggestion(space.default_config(f, task), f"default:{f}")
            for f in families if f in allowed and f in space.families][:max(0, n - 1)]


def suggest(metabase: Metabase, neighbors: Sequence[Neighbor], task: str, n_rows: int,
            space: SearchSpace, n: int, portfolio: Sequence[str] | None = None,
            strategy: str = "local", metafeatures: Mapping[str, Any] | None = None,
            surrogate: Surrogate | None = None,
            defaults: Sequence[str] = WARM_START_DEFAULT_FAMILIES,
            defaults_at: int = WARM_START_DEFAULTS_AT) -> WarmStart:
    """An ordered, de-duplicated list of at most ``n`` configurations for this dataset.

    Parameters
    ----------
    metabase : Metabase
    neighbors : sequence of Neighbor
        From :func:`automl_meta.meta.neighbors.nearest`, nearest first.
    task : str
        The user's task.
    n_rows : int
        Training rows (families not offered at this size are skipped).
    space : SearchSpace
    n : int
        How many configurations.
    portfolio : sequence of str, optional
        Portfolio config ids (default: the metabase manifest's for this task kind).
    strategy : str
        The name of a registered strategy
        (:func:`automl_meta.meta.warmstart.registry.available`): ``"learned"``,
        ``"local"`` (the default here; the estimator's default is ``"learned"``) or
        ``"portfolio"``, and any registered by other code.
    metafeatures : mapping, optional
        The dataset's meta-features (strategy ``"learned"``).
    surrogate : Surrogate, optional
        A fitted performance model (strategy ``"learned"``; fitted on the whole metabase
        when not given).
    defaults : sequence of str
        Families whose default configuration (origin ``default:<family>``) is in the list
        whatever the strategy proposes, at position ``defaults_at``; the list stays at most
        ``n`` long (its last entries give way), and holds at least one configuration of the
        strategy. Families not offered here are skipped.
    defaults_at : int
        Where the default configurations go (0: first).

    Returns
    -------
    WarmStart
        The suggestions, and the log of what was skipped or adapted and why.

    Raises
    ------
    UsageError
        (a ValueError) for an unknown ``strategy``.

    Notes
    -----
    Configurations the dataset cannot take (a family not offered at this size, e.g. an SVM
    on 200 000 rows) are skipped; values outside the current space's domain are clipped.
    Both are logged with their reason. When the strategy says so
    (:attr:`~automl_meta.meta.warmstart.base.Strategy.portfolio_when_far`) and the nearest
    neighbour is farther than ``FAR_DISTANCE`` (or there is none), half the list comes from
    the portfolio; the portfolio also fills whatever the strategy leaves. A default
    configuration the strategy already proposed keeps its place and origin.
    """
    chosen = get(strategy)
    out = WarmStart()
    if n <= 0:
        return out
    allowed = frozenset(space.family_names(task, n_rows))
    if portfolio is None:
        portfolio = metabase.manifest.get("portfolio", {}).get(task_kind(task), [])
    context = Context(metabase, neighbors, task, n_rows, space, n, allowed, portfolio,
                      metafeatures, surrogate)
    proposed = chosen.candidates(context)
    out.log.extend(proposed.log)
    seen: set[str] = set()

    def admit(config: Mapping[str, Any], origin: str) -> dict[str, Any] | None:
        family = config.get("family")
        if family not in space.families:
            out.log.append(f"skipped {origin} config: family {family!r} not in this space")
            return None
        if family not in allowed:
            out.log.append(f"skipped {origin} {family} config: family not offered for "
                           f"{n_rows} rows / {task}")
            return None
        problem = space.check_config(config, task)
        adapted = space.adapt_config(config, task) if problem else dict(config)
        if problem:
            out.log.append(f"adapted {origin} {family} config: {problem}")
        cid = config_id(adapted)
        if cid in seen:
            return None
        seen.add(cid)
        return adapted

    proposed_ids = {config_id(s.config) for s in proposed.suggestions}
    anchors = [a for a in default_suggestions(space, task, allowed, n, defaults)
               if config_id(a.config) not in proposed_ids]
    n_strategy = n - len(anchors)
    far = chosen.portfolio_when_far and (not neighbors
                                         or neighbors[0].distance > FAR_DISTANCE)
    n_own = n_strategy // 2 if far else n_strategy
    for sug in proposed.suggestions:
        if len(out.suggestions) >= n_own:
            break
        source_id = config_id(sug.config)
        adapted = admit(sug.config, sug.origin)
        if adapted is not None:
            sug.config, sug.source_config_id = adapted, source_id
            out.suggestions.append(sug)
    for cid in portfolio:
        if len(out.suggestions) >= n_strategy:
            break
        config = metabase.configs.get(cid)
        if config is None:
            continue
        adapted = admit(config, "portfolio")
        if adapted is not None:
            out.suggestions.append(Suggestion(adapted, "portfolio", source_config_id=cid))
    at = max(0, min(defaults_at, len(out.suggestions)))
    for anchor in anchors:
        if admit(anchor.config, anchor.origin) is not None:
            out.suggestions.insert(at, anchor)
            at += 1
    return out
