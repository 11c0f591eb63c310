"""How a configuration would do on a prior task it was never run on: the transfer estimate,
and the greedy ordering built on it (shared by the ``local`` and ``portfolio`` strategies).

The metabase holds each task's own trials, never one configuration run on every task, so
how configuration c would do on task t is estimated by the normalised score on t of t's most
similar trial of c's family (per-parameter distance on the space's [0, 1] scale; normalised
per task: 0 = the task's median trial, 1 = its best, clipped at -1; a family never tried on
t counts as -1).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from automl_meta.meta.metabase import Metabase
from automl_meta.meta.neighbors import Neighbor
from automl_meta.search.space import SearchSpace


def complete_trials(results: pd.DataFrame) -> pd.DataFrame:
    """The completed trials of ``results`` with a finite numeric score."""
    res = results[results["state"] == "COMPLETE"].copy()
    res["score"] = pd.to_numeric(res["score"], errors="coerce")
    return res[np.isfinite(res["score"])]


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
    res = complete_trials(results)
    sign = res["task_id"].map(lambda t: 1.0 if greater.get(t, True) else -1.0)
    s = res["score"] * sign
    by_task = s.groupby(res["task_id"])
    best, med = by_task.transform("max"), by_task.transform("median")
    span = best - med
    with np.errstate(divide="ignore", invalid="ignore"):
        norm = np.clip((s - med) / span, -1.0, 1.0)
    return norm.where(span > 1e-12, 1.0).astype(float)


def normalised_results(metabase: Metabase, space: SearchSpace,
                       task_ids: Sequence[str]) -> pd.DataFrame:
    """Completed trials of ``task_ids`` with their per-task normalised score (``norm``) and
    family (``family``; trials of families outside ``space`` are left out)."""
    wanted = set(task_ids)
    info = metabase.tasks[metabase.tasks["task_id"].isin(wanted)]
    greater = {str(t): str(g).lower() in ("true", "1", "1.0") for t, g in
               zip(info["task_id"], info.get("greater_is_better", pd.Series(True, info.index)),
                   strict=True)}
    res = metabase.results
    res = complete_trials(res[res["task_id"].isin(wanted)])
    family = res["config_id"].map(lambda c: metabase.configs.get(c, {}).get("family"))
    res = res.assign(family=family)
    res = res[res["family"].isin(list(space.families))]
    return res.assign(norm=normalised_scores(res, greater))


def top_candidates(res: pd.DataFrame, task_ids: Sequence[str], per_task: int) -> list[str]:
    """The ``per_task`` best config ids of each task of ``res`` (from
    :func:`normalised_results`), in the order of ``task_ids``, de-duplicated."""
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


def neighbor_weights(neighbors: Sequence[Neighbor]) -> np.ndarray:
    """Similarity weights ``1 / (1 + d / d_ref)`` (``d_ref`` = nearest distance, ≥ 0.25)."""
    d_ref = max(neighbors[0].distance, 0.25)
    return np.array([1.0 / (1.0 + nb.distance / d_ref) for nb in neighbors])
