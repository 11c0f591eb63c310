"""Scoring a fitted model on labelled rows, and the quality gate (``automl-meta evaluate``)."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import pandas as pd

from automl_meta import metrics as metrics_mod
from automl_meta.artifacts.model import TabularModel
from automl_meta.data import closest_column, regression_target
from automl_meta.errors import UsageError


def score_model(model: TabularModel, X: pd.DataFrame, y: pd.Series, metric_name: str) -> float:
    """Score a fitted model on labelled data with the named metric.

    Labels the model never saw count as wrong predictions; a metric that needs a
    probability for every true class refuses them.
    """
    metric = metrics_mod.get_metric(metric_name, model.task)
    if model.task == "regression":  # parsed as fit parses it (e.g. "1,234.5")
        y_true = regression_target(y, model.target).to_numpy(dtype=float)
        return metrics_mod.compute(metric, y_true, model.predict(X), None)
    codes = model.encode_labels(y)
    if (codes < 0).any() and metric.needs_proba:
        unseen = sorted({str(v) for v, c in zip(y, codes, strict=False) if c < 0})[:5]
        raise UsageError(f"the target has labels the model never saw ({', '.join(unseen)}); "
                         f"{metric.name} needs a probability for every true class")
    # labels never seen in training stay as code -1: they count as wrong predictions
    pred = model.encode_labels(pd.Series(model.predict(X)))
    proba = model.predict_proba(X) if metric.needs_proba else None
    return metrics_mod.compute(metric, codes, pred, proba, len(model.classes))


@dataclass
class Evaluation:
    """A model's score on labelled rows, and the verdict of a threshold."""

    metric: str
    #: NaN when the metric is undefined on these rows (e.g. roc_auc on one class)
    score: float
    rows: int
    greater_is_better: bool
    threshold: float | None
    #: None without a threshold
    passed: bool | None

    @property
    def defined(self) -> bool:
        """Whether the score is a number."""
        return math.isfinite(self.score)


def evaluate_table(model: TabularModel, df: pd.DataFrame, target: str, metric: str, *,
                   threshold: float | None = None, source: str = "the data") -> Evaluation:
    """Score ``model`` on the rows of ``df`` that have a ``target`` value.

    Parameters
    ----------
    model : TabularModel
        The fitted model.
    df : DataFrame
        Labelled rows (any column order; extra columns are ignored).
    target : str
        The target column of ``df``.
    metric : str
        Metric name (see :mod:`automl_meta.metrics`).
    threshold : float, optional
        Quality gate: the score passes when it is at least this (at most, for errors).
        An undefined score does not pass.
    source : str
        How error messages name ``df`` (e.g. its file name).

    Returns
    -------
    Evaluation

    Raises
    ------
    UsageError
        When the target column is missing, no row has a target value, or the metric does
        not fit the model's task.
    """
    if target not in df.columns:
        hint = closest_column(target, list(df.columns))
        raise UsageError(f"target column {target!r} not found in {source}"
                         + (f"; did you mean {hint!r}?" if hint else ""))
    df = df[df[target].notna()]
    if df.empty:
        raise UsageError(f"{source}: no rows with a target value")
    m = metrics_mod.get_metric(metric, model.task)
    from sklearn.exceptions import UndefinedMetricWarning

    with warnings.catch_warnings():  # an undefined score is reported as such, not warned
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        score = score_model(model, df, df[target], m.name)
    passed = None
    if threshold is not None:
        passed = score >= threshold if m.greater_is_better else score <= threshold
    return Evaluation(metric=m.name, score=score, rows=len(df),
                      greater_is_better=m.greater_is_better, threshold=threshold,
                      passed=passed)
