"""A performance model learned on the metabase: (task meta-features, configuration) → rank.

The metabase holds, for every prior task, every trial of its own search. Pooled over the
tasks of one kind, those trials are training data for a regression model that predicts how
a configuration ranks among a task's trials from the task's meta-features and the
configuration's parameters:

- **inputs**: the task's normalised meta-features (the same vector the neighbour distance
  uses, NaN where a quality is undefined), the configuration's family (a categorical
  column) and its parameters on the space's [0, 1] scale (log scale where the space says so;
  categorical parameters as codes; parameters of other families NaN);
- **target**: the trial's percentile rank among the task's trials (1 = the task's best,
  0 = its worst; failed trials count as the worst);
- **model**: scikit-learn's ``HistGradientBoostingRegressor`` (handles the NaNs natively).

The warm-start strategy ``"learned"`` (:mod:`automl_meta.meta.warmstart.learned`) scores
the best configurations of every prior task with it and suggests the highest predicted
first. It learns which meta-features matter for which family and setting (an SVM's ``C``
on wide data, a forest on many rows, ...) from the metabase itself, instead of relying on
one hand-weighted distance.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from automl_meta.meta.metabase import Metabase
from automl_meta.meta.neighbors import fit_normalisation, normalise
from automl_meta.search.space import SearchSpace, task_kind

#: boosting settings (larger models ranked held-out tasks' trials no better in a quick
#: leave-one-task-out check on 30 tasks; that check's script was not kept)
MODEL_PARAMS = {"max_iter": 100, "learning_rate": 0.1, "max_leaf_nodes": 31,
                "min_samples_leaf": 20, "l2_regularization": 1.0}


def _param_columns(space: SearchSpace, kind: str) -> list[tuple[str, str, Any]]:
    """(family, parameter key, Param) for every parameter of the families serving ``kind``."""
    cols = []
    for name, fam in space.families.items():
        if kind not in fam.tasks:
            continue
        for p in fam.params:
            cols.append((name, f"{name}.{p.name}", p))
    return cols


def encode_configs(configs: Sequence[Mapping[str, Any]], space: SearchSpace,
                   kind: str) -> np.ndarray:
    """Configurations as a numeric matrix: family code, then every parameter of the space
    scaled to [0, 1] (categoricals as codes, absent parameters NaN)."""
    families = [n for n, f in space.families.items() if kind in f.tasks]
    fam_code = {n: i for i, n in enumerate(families)}
    cols = _param_columns(space, kind)
    out = np.full((len(configs), 1 + len(cols)), np.nan)
    for i, c in enumerate(configs):
        out[i, 0] = fam_code.get(c.get("family"), np.nan)
        for j, (_, key, p) in enumerate(cols, start=1):
            if key not in c:
                continue
            v = c[key]
            if p.type == "categorical":
                out[i, j] = p.choices.index(v) if v in p.choices else np.nan
                continue
            try:
                x = float(v)
            except (TypeError, ValueError):
                continue
            lo, hi = p.low, p.high
            if p.log:
                lo, hi, x = np.log(lo), np.log(hi), np.log(max(x, 1e-300))
            out[i, j] = (x - lo) / (hi - lo)
    return out


def _categorical_mask(space: SearchSpace, kind: str) -> np.ndarray:
    cols = _param_columns(space, kind)
    return np.array([True] + [p.type == "categorical" for _, _, p in cols])


def trial_ranks(results: pd.DataFrame, greater: Mapping[str, bool]) -> pd.Series:
    """Per-task percentile rank of every trial (1 = best, 0 = worst; failed = 0)."""
    res = results.copy()
    score = pd.to_numeric(res["score"], errors="coerce")
    signed = score.where(np.isfinite(score))
    signed = signed * res["task_id"].map(lambda t: 1.0 if greater.get(t, True) else -1.0)
    signed = signed.where(res["state"] != "FAIL")
    # no score (failed): the lowest rank
    ranks = signed.groupby(res["task_id"]).rank(method="average", na_option="top")
    sizes = res.groupby("task_id")["task_id"].transform("size")
    return ((ranks - 1) / (sizes - 1)).where(sizes > 1, 1.0)


@dataclass
class Surrogate:
    """A fitted performance model for one task kind (see the module docstring)."""

    kind: str
    space: SearchSpace
    normalisation: Mapping[str, Mapping[str, float]]
    model: Any
    task_ids: list[str]
    n_trials: int
    columns: np.ndarray  # the input columns the model was fitted on (all-NaN ones dropped)

    def predict(self, metafeatures: Mapping[str, Any],
                configs: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Predicted percentile rank (higher is better) of each configuration on a task
        with these meta-features."""
        if not configs:
            return np.zeros(0)
        mf = normalise(metafeatures, self.normalisation)[0]
        X = np.hstack([np.tile(mf, (len(configs), 1)),
                       encode_configs(configs, self.space, self.kind)])
        return self.model.predict(X[:, self.columns])


def fit_surrogate(metabase: Metabase, space: SearchSpace, task: str,
                  exclude: set[str] | None = None,
                  normalisation: Mapping[str, Any] | None = None,
                  seed: int = 0) -> Surrogate | None:
    """Fit the performance model on the metabase's tasks of ``task``'s kind.

    Parameters
    ----------
    metabase : Metabase
    space : SearchSpace
    task : str
        The user's task (``binary``, ``multiclass`` or ``regression``).
    exclude : set of str, optional
        Task ids to leave out (leave-one-task-out evaluation).
    normalisation : mapping, optional
        Meta-feature normalisation (default: the metabase's stored one).
    seed : int

    Returns
    -------
    Surrogate or None
        None when the metabase has fewer than 5 tasks of this kind.
    """
    from sklearn.ensemble import HistGradientBoostingRegressor
    from threadpoolctl import threadpool_limits

    kind = task_kind(task)
    tasks = metabase.ok_tasks()
    tasks = tasks[tasks["task"].map(lambda t: task_kind(str(t))) == kind]
    if exclude:
        tasks = tasks[~tasks["task_id"].isin(exclude)]
    if len(tasks) < 5:
        return None
    stats_all = normalisation or metabase.manifest.get("normalisation") or \
        fit_normalisation(metabase.tasks)
    stats = stats_all[kind]
    greater = {str(t): str(g).lower() in ("true", "1", "1.0") for t, g in
               zip(tasks["task_id"], tasks.get("greater_is_better",
                                               pd.Series(True, tasks.index)), strict=True)}
    res = metabase.results[metabase.results["task_id"].isin(set(tasks["task_id"]))]
    res = res[res["config_id"].isin(metabase.configs.keys())]
    res = res.assign(family=res["config_id"].map(lambda c: metabase.configs[c].get("family")))
    res = res[res["family"].isin([n for n, f in space.families.items() if kind in f.tasks])]
    if res.empty:
        return None
    y = trial_ranks(res, greater).to_numpy()
    mf = normalise(tasks.set_index("task_id"), stats)
    row_of = {t: i for i, t in enumerate(tasks["task_id"])}
    X_task = mf[res["task_id"].map(row_of).to_numpy()]
    X_cfg = encode_configs([metabase.configs[c] for c in res["config_id"]], space, kind)
    X = np.hstack([X_task, X_cfg])
    cat = np.concatenate([np.zeros(X_task.shape[1], bool), _categorical_mask(space, kind)])
    keep = ~np.isnan(X).all(axis=0)  # e.g. a parameter no trial of this kind has
    model = HistGradientBoostingRegressor(categorical_features=cat[keep], random_state=seed,
                                          **MODEL_PARAMS)
    # one thread: as fast here as OpenMP's, and far faster when other work holds the cores
    with threadpool_limits(1):
        model.fit(X[:, keep], y)
    return Surrogate(kind, space, stats, model, [str(t) for t in tasks["task_id"]], len(res),
                     keep)
