"""Warm-start suggestions: the prior tasks' best configurations, topped up from a portfolio.

Strategy ``"learned"`` (the default). A performance model fitted on the metabase
(:mod:`automl_meta.surrogate`: task meta-features + configuration → percentile rank among
the task's trials) scores the five best configurations of every prior task of the same
kind for this dataset; they are suggested highest predicted first, at most
``max(2, n // 3)`` of one family before the other families had their turn (so a list of 10
spans at least four families when the model likes several). In the leave-one-task-out
benchmark (``benchmarks/loo.py``) it beat the neighbour-based strategies below.

Transfer estimate. The metabase holds each task's own trials, never one configuration run
on every task, so how configuration c would do on task t is estimated by the normalised
score on t of t's most similar trial of c's family (per-parameter distance on the space's
[0, 1] scale; normalised per task: 0 = the task's median trial, 1 = its best, clipped at -1;
a family never tried on t counts as -1).

Neighbour configurations, strategy ``"local"``. The candidates are the ten
best configurations of each of the k nearest tasks; they are ordered greedily: each step
takes the candidate that raises ``sum_t w_t * max(best so far on t, estimate of c on t)``
the most, with the similarity weight ``w_t = 1 / (1 + d_t / d_ref)`` (``d_ref`` = the
nearest neighbour's distance, at least 0.25). The first suggestion is thus the configuration
expected to do best across the neighbourhood, not one neighbour's (possibly lucky) best; the
next ones cover the neighbours the earlier ones served poorly.

Strategy ``"rank"`` (kept for comparison, see ``benchmarks/loo.py``). Each neighbour's trials
are ranked by CV score; a configuration of rank r (0 = best) from a neighbour at distance d
gets the priority ``(r + 1) * (1 + d / d_ref)``, lower first.

Portfolio. A greedy portfolio (Feurer et al., auto-sklearn 2.0) over the metabase: the
candidates are the top three configurations of every task, scored on every task by the
transfer estimate; each step adds the candidate that raises
the sum over tasks of the best score so far the most. It fills the list when neighbours are
few or far (nearest distance above ``FAR_DISTANCE``: half the list comes from it).

Configurations the dataset cannot take (a family not offered at this size, e.g. an SVM on
200 000 rows) are skipped; values outside the current space's domain are clipped. Both are
logged with their reason.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .metabase import Metabase, config_id
from .neighbors import Neighbor
from .space import SearchSpace, task_kind
from .surrogate import Surrogate, fit_surrogate

FAR_DISTANCE = 1.5
PORTFOLIO_SIZE = 25
CANDIDATES_PER_TASK = 3
LOCAL_CANDIDATES_PER_TASK = 10


@dataclass
class Suggestion:
    """One warm-start configuration and where it came from."""

    config: dict[str, Any]
    origin: str  # "neighbour:<task_id>" or "portfolio"
    source_score: float | None = None
    rank: int = 0
    source_config_id: str | None = None  # the metabase configuration it was made from


@dataclass
class WarmStart:
    """Ordered suggestions plus the log of what was skipped or adapted."""

    suggestions: list[Suggestion] = field(default_factory=list)
    log: list[str] = field(default_factory=list)


def _complete(results: pd.DataFrame) -> pd.DataFrame:
    res = results[results["state"] == "COMPLETE"].copy()
    res["score"] = pd.to_numeric(res["score"], errors="coerce")
    return res[np.isfinite(res["score"])]


def _ranked_trials(metabase: Metabase, task_id: str, greater_is_better: bool) -> pd.DataFrame:
    res = _complete(metabase.results)
    res = res[res["task_id"] == task_id]
    return res.sort_values(["score", "trial"], ascending=[not greater_is_better, True])


def _greater_is_better(metabase: Metabase, task_id: str) -> bool:
    row = metabase.tasks.loc[metabase.tasks["task_id"] == task_id]
    if row.empty or "greater_is_better" not in row:
        return True
    value = row["greater_is_better"].iloc[0]
    return str(value).lower() in ("true", "1", "1.0")


# ------------------------------------------------------------------------------ portfolio
def _family_matrix(configs: Sequence[Mapping[str, Any]], family: str,
                   space: SearchSpace) -> tuple[np.ndarray, np.ndarray]:
    """Configurations of one family as rows of [0, 1]-scaled numbers (categoricals as codes,
    absent conditional parameters as NaN), and the mask of categorical columns."""
    fam = space.families[family]
    cols, is_cat = [], []
    for p in fam.params:
        key = f"{family}.{p.name}"
        col = np.full(len(configs), np.nan)
        for i, c in enumerate(configs):
            if key not in c:
                continue
            v = c[key]
            if p.type == "categorical":
                col[i] = p.choices.index(v) if v in p.choices else -1
            else:
                lo, hi, x = p.low, p.high, float(v)
                if p.log:
                    lo, hi, x = np.log(lo), np.log(hi), np.log(max(x, 1e-300))
                col[i] = (x - lo) / (hi - lo)
        cols.append(col)
        is_cat.append(p.type == "categorical")
    return np.column_stack(cols) if cols else np.zeros((len(configs), 0)), np.array(is_cat)


def _pairwise(a: np.ndarray, b: np.ndarray, is_cat: np.ndarray) -> np.ndarray:
    """Mean per-parameter distance between rows of ``a`` and rows of ``b``."""
    if a.shape[1] == 0:
        return np.zeros((len(a), len(b)))
    x, y = a[:, None, :], b[None, :, :]
    nan_x, nan_y = np.isnan(x), np.isnan(y)
    diff = np.where(is_cat, (x != y).astype(float), np.abs(x - y))
    diff = np.where(nan_x & nan_y, 0.0, np.where(nan_x | nan_y, 1.0, diff))
    return diff.mean(axis=2)


def normalised_scores(results: pd.DataFrame, greater: Mapping[str, bool]) -> pd.Series:
    """Per-task normalised score of each completed trial: 0 = median trial, 1 = best."""
    res = _complete(results)
    out = pd.Series(np.nan, index=res.index)
    for tid, grp in res.groupby("task_id"):
        s = grp["score"] if greater.get(tid, True) else -grp["score"]
        best, med = s.max(), s.median()
        span = best - med
        out[grp.index] = np.clip((s - med) / span, -1.0, 1.0) if span > 1e-12 else 1.0
    return out


def _normalised_results(metabase: Metabase, space: SearchSpace,
                        task_ids: Sequence[str]) -> pd.DataFrame:
    """Completed trials of ``task_ids`` with their per-task normalised score and family."""
    wanted = set(task_ids)
    info = metabase.tasks[metabase.tasks["task_id"].isin(wanted)]
    greater = {str(t): str(g).lower() in ("true", "1", "1.0") for t, g in
               zip(info["task_id"], info.get("greater_is_better", pd.Series(True, info.index)),
                   strict=True)}
    res = metabase.results
    res = _complete(res[res["task_id"].isin(wanted)])
    family = res["config_id"].map(lambda c: metabase.configs.get(c, {}).get("family"))
    res = res.assign(family=family)
    res = res[res["family"].isin(list(space.families))]
    return res.assign(norm=normalised_scores(res, greater))


def _top_candidates(res: pd.DataFrame, task_ids: Sequence[str], per_task: int) -> list[str]:
    """The ``per_task`` best config ids of each task, in task order, de-duplicated."""
    position = {t: i for i, t in enumerate(task_ids)}
    top = res[res["task_id"].isin(position)].sort_values(["norm", "trial"],
                                                          ascending=[False, True])
    top = top.groupby("task_id", sort=False).head(per_task)
    top = top.assign(pos=top["task_id"].map(position)).sort_values("pos", kind="stable")
    return list(dict.fromkeys(top["config_id"]))


def transfer_matrix(metabase: Metabase, space: SearchSpace, candidates: Sequence[str],
                    res: pd.DataFrame, task_ids: Sequence[str]) -> np.ndarray:
    """Estimated normalised score of each candidate configuration on each task.

    A candidate's estimate on a task is the normalised score there of the task's most similar
    trial of the same family (its own score on the task it came from); a family never tried
    on a task counts as -1 (a poor result).
    """
    cand_family = np.array([metabase.configs[c]["family"] for c in candidates])
    perf = np.full((len(candidates), len(task_ids)), -1.0)
    col = {t: j for j, t in enumerate(task_ids)}
    for family, fam_rows in res.groupby("family"):
        rows_c = np.flatnonzero(cand_family == family)
        if len(rows_c) == 0:
            continue
        cand_m, is_cat = _family_matrix([metabase.configs[candidates[i]] for i in rows_c],
                                        family, space)
        for tid, grp in fam_rows.groupby("task_id"):
            if tid not in col:
                continue
            trial_m, _ = _family_matrix([metabase.configs[c] for c in grp["config_id"]],
                                        family, space)
            nearest = _pairwise(cand_m, trial_m, is_cat).argmin(axis=1)
            perf[rows_c, col[tid]] = grp["norm"].to_numpy()[nearest]
    return perf


def greedy_order(perf: np.ndarray, weights: np.ndarray, size: int) -> list[int]:
    """Greedy portfolio over a candidate × task matrix: each step adds the candidate that
    raises the weighted sum over tasks of the best estimate so far the most."""
    chosen: list[int] = []
    current = np.full(perf.shape[1], -1.0)
    for _ in range(min(size, perf.shape[0])):
        gains = (np.maximum(perf, current) - current) @ weights
        gains[chosen] = -np.inf
        best = int(np.argmax(gains))
        if not np.isfinite(gains[best]):
            break
        chosen.append(best)
        current = np.maximum(current, perf[best])
    return chosen


def compute_portfolio(metabase: Metabase, space: SearchSpace, kind: str,
                      size: int = PORTFOLIO_SIZE, exclude: set[str] | None = None
                      ) -> list[str]:
    """Greedy portfolio (config ids) for a task kind; see the module docstring."""
    tasks = metabase.ok_tasks()
    tasks = tasks[tasks["task"].map(lambda t: task_kind(str(t))) == kind]
    if exclude:
        tasks = tasks[~tasks["task_id"].isin(exclude)]
    task_ids = list(tasks["task_id"])
    if not task_ids:
        return []
    res = _normalised_results(metabase, space, task_ids)
    candidates = _top_candidates(res, task_ids, CANDIDATES_PER_TASK)
    if not candidates:
        return []
    perf = transfer_matrix(metabase, space, candidates, res, task_ids)
    chosen = greedy_order(perf, np.ones(len(task_ids)), size)
    return [candidates[i] for i in chosen]


# ------------------------------------------------------------------------------ suggestions
STRATEGIES = ("local", "blend", "rank", "portfolio", "learned")
#: candidates of the "learned" strategy: the best configurations of every prior task
LEARNED_CANDIDATES_PER_TASK = 5
#: neighbours whose estimates the "blend" strategy weighs (its candidates come from the
#: first ``LOCAL_SOURCES`` of them and from the portfolio)
BLEND_NEIGHBOURS = 30
LOCAL_SOURCES = 10


def _rank_candidates(metabase: Metabase, neighbours: Sequence[Neighbor], n: int
                     ) -> list[Suggestion]:
    """Neighbours' configurations ordered by ``(r + 1) * (1 + d / d_ref)``."""
    candidates: list[tuple[float, int, Suggestion]] = []
    d_ref = max(neighbours[0].distance, 0.25)
    for nb in neighbours:
        ranked = _ranked_trials(metabase, nb.task_id, _greater_is_better(metabase, nb.task_id))
        for r, row in enumerate(ranked.head(n).itertuples()):
            config = metabase.configs.get(row.config_id)
            if config is None:
                continue
            priority = (r + 1) * (1 + nb.distance / d_ref)
            candidates.append((priority, len(candidates), Suggestion(
                dict(config), f"neighbour:{nb.task_id}", float(row.score), r)))
    candidates.sort(key=lambda c: (c[0], c[1]))
    return [c[2] for c in candidates]


def neighbour_weights(neighbours: Sequence[Neighbor]) -> np.ndarray:
    """Similarity weights ``1 / (1 + d / d_ref)`` (``d_ref`` = nearest distance, ≥ 0.25)."""
    d_ref = max(neighbours[0].distance, 0.25)
    return np.array([1.0 / (1.0 + nb.distance / d_ref) for nb in neighbours])


def _local_candidates(metabase: Metabase, neighbours: Sequence[Neighbor], space: SearchSpace,
                      allowed: set[str], extra: Sequence[str] = ()
                      ) -> tuple[list[Suggestion], list[str]]:
    """A greedy portfolio over the neighbours, weighted by similarity (see module docstring),
    and the families left out because this dataset cannot take them. Candidates: the best
    configurations of the first ``LOCAL_SOURCES`` neighbours, and the config ids ``extra``."""
    task_ids = [nb.task_id for nb in neighbours]
    res = _normalised_results(metabase, space, task_ids)
    excluded = sorted(set(res.loc[res["norm"] >= 1.0, "family"]) - allowed)
    res = res[res["family"].isin(allowed)]
    candidates = _top_candidates(res, task_ids[:LOCAL_SOURCES], LOCAL_CANDIDATES_PER_TASK)
    candidates += [c for c in extra if c in metabase.configs and c not in candidates
                   and metabase.configs[c].get("family") in allowed]
    if not candidates:
        return [], excluded
    perf = transfer_matrix(metabase, space, candidates, res, task_ids)
    order = greedy_order(perf, neighbour_weights(neighbours), len(candidates))
    res = res.assign(rank=res.groupby("task_id")["norm"].rank(ascending=False,
                                                               method="first") - 1)
    source = res.drop_duplicates("config_id").set_index("config_id")
    out = []
    for i in order:
        cid = candidates[i]
        if cid in source.index:
            row = source.loc[cid]
            out.append(Suggestion(dict(metabase.configs[cid]), f"neighbour:{row['task_id']}",
                                  float(row["score"]), int(row["rank"])))
        else:
            out.append(Suggestion(dict(metabase.configs[cid]), "portfolio"))
    return out, excluded


def _learned_candidates(metabase: Metabase, surrogate: Surrogate,
                        metafeatures: Mapping[str, Any], space: SearchSpace, allowed: set[str],
                        n: int, extra: Sequence[str] = ()) -> list[Suggestion]:
    """The prior tasks' best configurations ordered by the surrogate's prediction for this
    dataset, at most ``max(2, n // 3)`` of one family before every family had its turn."""
    res = _normalised_results(metabase, space, surrogate.task_ids)
    res = res[res["family"].isin(allowed)]
    candidates = _top_candidates(res, surrogate.task_ids, LEARNED_CANDIDATES_PER_TASK)
    candidates += [c for c in extra if c in metabase.configs and c not in candidates
                   and metabase.configs[c].get("family") in allowed]
    if not candidates:
        return []
    pred = surrogate.predict(metafeatures, [metabase.configs[c] for c in candidates])
    order = np.argsort(-pred, kind="stable")
    source = res.drop_duplicates("config_id").set_index("config_id")
    cap = max(2, n // 3)
    first, rest, per_family = [], [], {}
    for i in order:
        family = metabase.configs[candidates[i]]["family"]
        (first if per_family.get(family, 0) < cap else rest).append(i)
        per_family[family] = per_family.get(family, 0) + 1
    out = []
    for i in first + rest:
        cid = candidates[i]
        origin = f"learned:{source.loc[cid, 'task_id']}" if cid in source.index \
            else "portfolio"
        out.append(Suggestion(dict(metabase.configs[cid]), origin, float(pred[i])))
    return out


def suggest(metabase: Metabase, neighbours: Sequence[Neighbor], task: str, n_rows: int,
            space: SearchSpace, n: int, portfolio: Sequence[str] | None = None,
            strategy: str = "local", metafeatures: Mapping[str, Any] | None = None,
            surrogate: Surrogate | None = None) -> WarmStart:
    """An ordered, de-duplicated list of at most ``n`` configurations for this dataset.

    Parameters
    ----------
    metabase : Metabase
    neighbours : sequence of Neighbor
        From :func:`automl_meta.neighbors.nearest`, nearest first.
    task : str
        The user's task.
    n_rows : int
        Training rows (families not offered at this size are skipped).
    space : SearchSpace
    n : int
        How many configurations.
    portfolio : sequence of str, optional
        Portfolio config ids (default: the metabase manifest's for this task kind).
    strategy : {"local", "blend", "rank", "portfolio"}
        How configurations are chosen and ordered (see the module docstring): ``"local"``
        a greedy portfolio over the (first ``LOCAL_SOURCES``) neighbours weighted by
        similarity; ``"blend"`` the same over all ``neighbours`` given (pass
        ``BLEND_NEIGHBOURS``), with the global portfolio's configurations as candidates too;
        ``"rank"`` by each configuration's rank on its own neighbour and that neighbour's
        distance; ``"portfolio"`` the global portfolio alone; ``"learned"`` the prior
        tasks' best configurations ranked by a performance model learned on the metabase
        (:mod:`automl_meta.surrogate`; needs ``metafeatures``).
    metafeatures : mapping, optional
        The dataset's meta-features (strategy ``"learned"``).
    surrogate : Surrogate, optional
        A fitted performance model (strategy ``"learned"``; fitted on the whole metabase
        when not given).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown warm-start strategy {strategy!r}; use one of {STRATEGIES}")
    out = WarmStart()
    if n <= 0:
        return out
    allowed = set(space.family_names(task, n_rows))
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

    candidates: list[Suggestion] = []
    if portfolio is None:
        portfolio = metabase.manifest.get("portfolio", {}).get(task_kind(task), [])
    if neighbours and strategy in ("local", "blend"):
        pool = neighbours[:LOCAL_SOURCES] if strategy == "local" else neighbours
        candidates, excluded = _local_candidates(
            metabase, pool, space, allowed, portfolio if strategy == "blend" else ())
        for family in excluded:  # left out of the local portfolio: say so
            out.log.append(f"skipped neighbours' {family} configs: family not offered "
                           f"for {n_rows} rows / {task}")
    elif neighbours and strategy == "rank":
        candidates = _rank_candidates(metabase, neighbours, n)
    elif strategy == "learned":
        if metafeatures is None:
            raise ValueError("the 'learned' warm-start strategy needs the meta-features")
        if surrogate is None:
            surrogate = fit_surrogate(metabase, space, task)
        if surrogate is None:
            out.log.append("no performance model: fewer than 5 prior tasks of this kind")
        else:
            candidates = _learned_candidates(metabase, surrogate, metafeatures, space,
                                             allowed, n, portfolio)
    far = strategy != "learned" and (not neighbours or neighbours[0].distance > FAR_DISTANCE)
    n_neighbour = n if not far else n // 2
    for sug in candidates:
        if len(out.suggestions) >= n_neighbour:
            break
        source_id = config_id(sug.config)
        adapted = admit(sug.config, sug.origin)
        if adapted is not None:
            sug.config, sug.source_config_id = adapted, source_id
            out.suggestions.append(sug)
    for cid in portfolio:
        if len(out.suggestions) >= n:
            break
        config = metabase.configs.get(cid)
        if config is None:
            continue
        adapted = admit(config, "portfolio")
        if adapted is not None:
            out.suggestions.append(Suggestion(adapted, "portfolio", source_config_id=cid))
    return out


#: families whose fit time grows with the number of classes (one tree, or one set of
#: coefficients, per class)
PER_CLASS_FAMILIES = ("hgb", "linear")


def _number(value: Any) -> float:
    """``value`` as a float; NaN when it is missing or not a number."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _cost_tables(metabase: Metabase) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The first stored trial of every configuration (by config id) and the tasks (by task
    id): what :func:`estimated_trial_seconds` looks up."""
    return (metabase.results.drop_duplicates("config_id").set_index("config_id"),
            metabase.tasks.set_index("task_id"))


def _trial_seconds(sources: pd.DataFrame, tasks: pd.DataFrame, suggestion: Suggestion,
                   n_rows: int, n_folds: int, n_classes: int) -> float | None:
    cid = suggestion.source_config_id
    if cid is None or cid not in sources.index or "duration" not in sources.columns:
        return None
    src = sources.loc[cid]
    duration = _number(src["duration"])
    if not np.isfinite(duration) or src["task_id"] not in tasks.index:
        return None
    task = tasks.loc[src["task_id"]]
    src_rows = _number(task.get("search_rows", task.get("n_rows")))
    src_folds = _number(task.get("n_folds"))
    if not (np.isfinite(src_rows) and np.isfinite(src_folds)) or src_rows < 1 or src_folds < 2:
        return None
    scale = (max(n_folds - 1, 1) * n_rows) / ((src_folds - 1) * src_rows)
    if suggestion.config.get("family") in PER_CLASS_FAMILIES:
        src_classes = _number(task.get("n_classes"))
        src_classes = src_classes if np.isfinite(src_classes) else 0
        scale *= max(n_classes, 2) / max(src_classes, 2)
    return float(duration * scale)


def estimated_trial_seconds(metabase: Metabase, suggestion: Suggestion, n_rows: int,
                            n_folds: int, n_classes: int) -> float | None:
    """How long ``suggestion`` will take as one trial on this data, from the duration of the
    trial it comes from in the metabase, scaled by the row-fits a CV trial makes
    (``(n_folds - 1) * n_rows``) and, for hgb and linear models, by the number of classes.
    None when the metabase does not say how long that trial took."""
    return _trial_seconds(*_cost_tables(metabase), suggestion, n_rows, n_folds, n_classes)


def order_by_cost(metabase: Metabase, suggestions: Sequence[Suggestion], n_rows: int,
                  n_folds: int, n_classes: int, seconds: float
                  ) -> tuple[list[Suggestion], list[str]]:
    """Fit the suggestions to the time the search has: a suggestion estimated
    (:func:`estimated_trial_seconds`) to need more than ``seconds`` is dropped, one that
    needs more than a quarter of it moves behind the others (a short budget then spends its
    first trials on configurations that can finish). Returns the suggestions and the log."""
    fast, slow, log = [], [], []
    tables = _cost_tables(metabase)  # looked up once for all suggestions
    for sug in suggestions:
        est = _trial_seconds(*tables, sug, n_rows, n_folds, n_classes)
        family = sug.config.get("family")
        if est is not None and est > seconds:
            log.append(f"skipped {sug.origin} {family} config: a trial needs ~{est:.1f} s on "
                       f"this data, the search has {seconds:.1f} s")
        elif est is not None and est > seconds / 4:
            log.append(f"moved {sug.origin} {family} config behind the others: a trial needs "
                       f"~{est:.1f} s of the search's {seconds:.1f} s")
            slow.append(sug)
        else:
            fast.append(sug)
    return fast + slow, log
