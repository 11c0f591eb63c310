"""What a suggestion will cost as one trial on this data, and the suggestions fitted to the
time the search has (:func:`order_by_cost`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from automl_meta.meta.metabase import Metabase
from automl_meta.meta.warmstart.base import Suggestion
from automl_meta.search.families import FAMILIES

#: families whose fit time grows with the number of classes (one tree, or one set of
#: coefficients, per class): ``cost_per_class`` in their family record
PER_CLASS_FAMILIES = tuple(name for name, spec in FAMILIES.items() if spec.cost_per_class)


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
