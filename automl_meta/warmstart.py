"""Warm-start suggestions: the neighbours' best configurations, topped up from a portfolio.

Neighbour configurations. Each neighbour's completed trials are ranked by CV score; a
configuration of rank r (0 = best) from a neighbour at distance d gets the priority
``(r + 1) * (1 + d / d_ref)`` (``d_ref`` = the nearest neighbour's distance, at least 0.25):
lower is earlier, so near neighbours contribute more of their top configurations and every
neighbour's best comes early. Duplicates are dropped.

Portfolio. A greedy portfolio (Feurer et al., auto-sklearn 2.0) over the metabase: the
candidates are the top configurations of every task; a candidate's score on another task is
that task's normalised score of its most similar trial of the same family (normalised per
task: 0 = the task's median trial, 1 = its best); each step adds the candidate that raises
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

FAR_DISTANCE = 1.5
PORTFOLIO_SIZE = 25
CANDIDATES_PER_TASK = 3


@dataclass
class Suggestion:
    """One warm-start configuration and where it came from."""

    config: dict[str, Any]
    origin: str  # "neighbour:<task_id>" or "portfolio"
    source_score: float | None = None
    rank: int = 0


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
    greater = {t: _greater_is_better(metabase, t) for t in task_ids}
    res = _complete(metabase.results)
    res = res[res["task_id"].isin(task_ids) & res["config_id"].isin(metabase.configs)]
    res = res.assign(norm=normalised_scores(res, greater),
                     family=res["config_id"].map(lambda c: metabase.configs[c]["family"]))
    res = res[res["family"].isin(list(space.families))]
    candidates: list[str] = []
    for _, grp in res.groupby("task_id"):
        candidates += list(grp.sort_values("norm", ascending=False)["config_id"]
                           .head(CANDIDATES_PER_TASK))
    candidates = list(dict.fromkeys(candidates))
    cand_family = np.array([metabase.configs[c]["family"] for c in candidates])
    # a family never tried on a task counts as a poor result there
    perf = np.full((len(candidates), len(task_ids)), -1.0)
    col = {t: j for j, t in enumerate(task_ids)}
    for family, fam_rows in res.groupby("family"):
        rows_c = np.flatnonzero(cand_family == family)
        if len(rows_c) == 0:
            continue
        cand_m, is_cat = _family_matrix([metabase.configs[candidates[i]] for i in rows_c],
                                        family, space)
        for tid, grp in fam_rows.groupby("task_id"):
            trial_m, _ = _family_matrix([metabase.configs[c] for c in grp["config_id"]],
                                        family, space)
            nearest = _pairwise(cand_m, trial_m, is_cat).argmin(axis=1)
            perf[rows_c, col[tid]] = grp["norm"].to_numpy()[nearest]
    chosen: list[int] = []
    current = np.full(len(task_ids), -1.0)
    for _ in range(min(size, len(candidates))):
        gains = np.maximum(perf, current).sum(axis=1) - current.sum()
        gains[chosen] = -np.inf
        best = int(np.argmax(gains))
        if not np.isfinite(gains[best]):
            break
        chosen.append(best)
        current = np.maximum(current, perf[best])
    return [candidates[i] for i in chosen]


# ------------------------------------------------------------------------------ suggestions
def suggest(metabase: Metabase, neighbours: Sequence[Neighbor], task: str, n_rows: int,
            space: SearchSpace, n: int, portfolio: Sequence[str] | None = None) -> WarmStart:
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
    """
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

    candidates: list[tuple[float, int, Suggestion]] = []
    if neighbours:
        d_ref = max(neighbours[0].distance, 0.25)
        for nb in neighbours:
            ranked = _ranked_trials(metabase, nb.task_id, _greater_is_better(metabase,
                                                                             nb.task_id))
            for r, row in enumerate(ranked.head(n).itertuples()):
                config = metabase.configs.get(row.config_id)
                if config is None:
                    continue
                priority = (r + 1) * (1 + nb.distance / d_ref)
                candidates.append((priority, len(candidates), Suggestion(
                    dict(config), f"neighbour:{nb.task_id}", float(row.score), r)))
    candidates.sort(key=lambda c: (c[0], c[1]))
    far = not neighbours or neighbours[0].distance > FAR_DISTANCE
    n_neighbour = n if not far else n // 2
    for _, _, sug in candidates:
        if len(out.suggestions) >= n_neighbour:
            break
        adapted = admit(sug.config, sug.origin)
        if adapted is not None:
            sug.config = adapted
            out.suggestions.append(sug)
    if portfolio is None:
        portfolio = metabase.manifest.get("portfolio", {}).get(task_kind(task), [])
    for cid in portfolio:
        if len(out.suggestions) >= n:
            break
        config = metabase.configs.get(cid)
        if config is None:
            continue
        adapted = admit(config, "portfolio")
        if adapted is not None:
            out.suggestions.append(Suggestion(adapted, "portfolio"))
    return out
