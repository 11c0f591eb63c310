"""What a suggestion will cost as one trial on this data, and the suggestions fitted to the
time the search has (:func:`order_by_cost`).

The estimate starts from the trial the suggestion comes from in the metabase: its mean fit
seconds per fold and the rest of its duration (predicting, scoring, overhead). The fit part
is scaled to this data's training rows and model inputs by the family's exponents, fitted on
all the metabase's complete trials (:func:`cost_exponents`: fit seconds grow far less than
linearly with the rows on the tables a metabase holds, because a forest or a boosting round
has a fixed cost per tree); the rest is scaled linearly with the rows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from automl_meta.meta.metabase import Metabase
from automl_meta.meta.warmstart.base import Suggestion
from automl_meta.search.families import FAMILIES
from automl_meta.search.space import SearchSpace

#: families whose fit time grows with the number of classes (one tree, or one set of
#: coefficients, per class): ``cost_per_class`` in their family record
PER_CLASS_FAMILIES = tuple(name for name, spec in FAMILIES.items() if spec.cost_per_class)
#: the fitted row exponent of a family's fit time is kept within these bounds (outside the
#: metabase's sizes the fit is an extrapolation)
ROW_EXPONENT_BOUNDS = (0.3, 1.0)
#: the fitted model-input exponent is kept within these bounds
FEATURE_EXPONENT_BOUNDS = (0.0, 1.0)
#: a family with fewer complete trials in the metabase scales linearly with rows and inputs
MIN_TRIALS_FOR_EXPONENTS = 50
#: a configuration is made at most this many times cheaper (fewer trees, fewer boosting
#: rounds with larger steps): beyond that it would be another model than the one that won
MAX_CHEAPER = 4.0


def _number(value: Any) -> float:
    """``value`` as a float; NaN when it is missing or not a number."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def cost_exponents(metabase: Metabase) -> dict[str, tuple[float, float]]:
    """How a family's fit time per fold grows with the training rows and the model inputs.

    For each family, the least-squares slopes of log fit seconds on log training rows and
    log features (and the log of the family's ``cost_param``, when it has one, so that
    larger forests on larger tables do not count as rows) over the metabase's complete
    trials, clipped to :data:`ROW_EXPONENT_BOUNDS` and :data:`FEATURE_EXPONENT_BOUNDS`;
    ``(1.0, 1.0)`` for a family with fewer than :data:`MIN_TRIALS_FOR_EXPONENTS` trials.
    Computed once per metabase (until its tables are replaced).
    """
    res, tasks = metabase.results, metabase.tasks
    cached = getattr(metabase, "_cost_exponents", None)
    if cached is not None and cached[0] is res and cached[1] is tasks:
        return cached[2]
    out: dict[str, tuple[float, float]] = {}
    needed = {"fit_seconds", "state", "config_id", "task_id"}
    if needed <= set(res.columns) and {"search_rows", "n_folds", "n_features"} <= set(
            tasks.columns):
        frame = res[res["state"] == "COMPLETE"].merge(
            tasks[["task_id", "search_rows", "n_folds", "n_features"]], on="task_id")
        fit = pd.to_numeric(frame["fit_seconds"], errors="coerce")
        rows = pd.to_numeric(frame["search_rows"], errors="coerce") * (
            1 - 1 / pd.to_numeric(frame["n_folds"], errors="coerce"))
        feats = pd.to_numeric(frame["n_features"], errors="coerce")
        ids = frame["config_id"]
        family = ids.map({c: cfg.get("family") for c, cfg in metabase.configs.items()})
        ok = (fit > 0) & (rows >= 1) & (feats >= 1)
        for name, spec in FAMILIES.items():
            sel = ok & (family == name)
            if sel.sum() < MIN_TRIALS_FOR_EXPONENTS:
                continue
            columns = [np.log(rows[sel]), np.log(feats[sel])]
            if spec.cost_param:
                param = f"{name}.{spec.cost_param}"
                knob = pd.to_numeric(ids[sel].map(
                    {c: cfg.get(param) for c, cfg in metabase.configs.items()
                     if cfg.get("family") == name}), errors="coerce")
                if knob.notna().all() and (knob > 0).all():
                    columns.append(np.log(knob))
            design = np.column_stack([*columns, np.ones(int(sel.sum()))])
            coef = np.linalg.lstsq(design, np.log(fit[sel]), rcond=None)[0]
            out[name] = (float(np.clip(coef[0], *ROW_EXPONENT_BOUNDS)),
                         float(np.clip(coef[1], *FEATURE_EXPONENT_BOUNDS)))
    metabase._cost_exponents = (res, tasks, out)  # type: ignore[attr-defined]
    return out


def _cost_tables(metabase: Metabase) -> tuple[pd.DataFrame, pd.DataFrame,
                                               dict[str, tuple[float, float]]]:
    """The first stored trial of every configuration (by config id), the tasks (by task
    id) and the families' exponents: what :func:`estimated_trial_seconds` looks up."""
    return (metabase.results.drop_duplicates("config_id").set_index("config_id"),
            metabase.tasks.set_index("task_id"), cost_exponents(metabase))


def _trial_seconds(sources: pd.DataFrame, tasks: pd.DataFrame,
                   exponents: dict[str, tuple[float, float]], suggestion: Suggestion,
                   n_rows: int, n_folds: int, n_classes: int,
                   n_features: int | None) -> float | None:
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
    family = suggestion.config.get("family")
    # training rows of one fold here / there
    rows = (n_rows * (n_folds - 1) / n_folds) / (src_rows * (src_folds - 1) / src_folds)
    per_fold = duration / src_folds
    fit = _number(src.get("fit_seconds"))
    fit = min(fit, per_fold) if np.isfinite(fit) and fit >= 0 else per_fold
    rest = (per_fold - fit) * rows
    row_exp, feat_exp = exponents.get(str(family), (1.0, 1.0))
    fit *= rows ** row_exp
    src_feats = _number(task.get("n_features"))
    if n_features and np.isfinite(src_feats) and src_feats >= 1:
        fit *= (n_features / src_feats) ** feat_exp
    if family in PER_CLASS_FAMILIES:
        src_classes = _number(task.get("n_classes"))
        src_classes = src_classes if np.isfinite(src_classes) else 0
        fit *= max(n_classes, 2) / max(src_classes, 2)
    return float(n_folds * (fit + rest) * suggestion.cost_factor)


def estimated_trial_seconds(metabase: Metabase, suggestion: Suggestion, n_rows: int,
                            n_folds: int, n_classes: int,
                            n_features: int | None = None) -> float | None:
    """How long ``suggestion`` will take as one trial on this data (see the module
    docstring): the source trial's fit seconds per fold scaled by the family's exponents of
    the training rows and (``n_features`` given) the model inputs, and for hgb and linear
    models by the number of classes, plus the rest of its duration scaled by the rows;
    times ``n_folds``. None when the metabase does not say how long that trial took."""
    return _trial_seconds(*_cost_tables(metabase), suggestion, n_rows, n_folds, n_classes,
                          n_features)


def cheaper(suggestion: Suggestion, factor: float, space: SearchSpace, task: str
            ) -> tuple[Suggestion, str] | None:
    """``suggestion`` with its family's cost parameter (trees, boosting rounds) multiplied
    by ``factor`` (< 1), within the space's domain, and the compensating parameter (the
    boosting learning rate) divided by the factor actually applied; with a note of what
    changed. None when the family has no cost parameter or it is at its lowest already."""
    family = str(suggestion.config.get("family"))
    spec = FAMILIES.get(family)
    if spec is None or spec.cost_param is None:
        return None
    key = f"{family}.{spec.cost_param}"
    old = _number(suggestion.config.get(key))
    if not np.isfinite(old) or old <= 0:
        return None
    config = dict(suggestion.config)
    config[key] = max(1, int(math.floor(old * factor)))
    config = space.adapt_config(config, task)  # the domain's lower bound
    new = _number(config[key])
    if new >= old:
        return None
    changes = [f"{spec.cost_param} {old:g} → {new:g}"]
    if spec.compensate is not None:
        ckey = f"{family}.{spec.compensate}"
        value = _number(config.get(ckey))
        if np.isfinite(value):
            config[ckey] = value * old / new
            config = space.adapt_config(config, task)  # the domain's upper bound
            changes.append(f"{spec.compensate} {value:.3g} → {config[ckey]:.3g}")
    applied = new / old
    return (replace(suggestion, config=config, cost_factor=suggestion.cost_factor * applied),
            ", ".join(changes))


def order_by_cost(metabase: Metabase, suggestions: Sequence[Suggestion], n_rows: int,
                  n_folds: int, n_classes: int, seconds: float,
                  per_trial: float | None = None, space: SearchSpace | None = None,
                  task: str | None = None, n_features: int | None = None
                  ) -> tuple[list[Suggestion], list[str]]:
    """Fit the suggestions to the time the search has.

    With ``per_trial`` (and the ``space`` and ``task`` to stay within), a suggestion
    estimated (:func:`estimated_trial_seconds`) to need more than ``per_trial`` seconds is
    made cheaper first, through its family's cost parameter (:func:`cheaper`), by the
    factor that would fit it in ``per_trial`` but at most :data:`MAX_CHEAPER` times — unless
    its family stops early on this many training rows
    (:attr:`~automl_meta.search.families.FamilySpec.early_stopping_rows`), where the
    estimate is an upper bound and its rounds a maximum. Then a
    suggestion estimated to need more than ``seconds`` is dropped, and one that needs more
    than a quarter of it moves behind the others (a short budget then spends its first
    trials on configurations that can finish). Returns the suggestions and the log.
    """
    fast, slow, log = [], [], []
    tables = _cost_tables(metabase)  # looked up once for all suggestions
    fold_rows = n_rows * (n_folds - 1) // max(n_folds, 1)
    for sug in suggestions:
        est = _trial_seconds(*tables, sug, n_rows, n_folds, n_classes, n_features)
        family = sug.config.get("family")
        spec = FAMILIES.get(str(family))
        stops_early = (spec is not None and spec.early_stopping_rows is not None
                       and fold_rows > spec.early_stopping_rows)
        if est is not None and per_trial is not None and est > per_trial and stops_early:
            log.append(f"kept {sug.origin} {family} config as it is: on {fold_rows} training "
                       f"rows it stops early, so ~{est:.1f} s a trial is an upper bound")
        elif est is not None and per_trial is not None and est > per_trial \
                and space is not None and task is not None:
            made = cheaper(sug, max(per_trial / est, 1 / MAX_CHEAPER), space, task)
            if made is not None:
                sug, what = made
                new = _trial_seconds(*tables, sug, n_rows, n_folds, n_classes, n_features)
                log.append(f"made {sug.origin} {family} config cheaper for the budget: "
                           f"{what} (a trial needs ~{est:.1f} s on this data, now ~"
                           f"{new:.1f} s; the budget allows ~{per_trial:.1f} s a trial)")
                est = new
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
