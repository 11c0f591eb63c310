"""Evaluating one configuration: fitting on a CV fold and scoring, or fitting on all rows.

These are plain functions of an :class:`EvalContext`; :mod:`automl_meta.search.workers` runs them
in a child process so that a configuration that hangs or eats memory can be stopped.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import KFold, StratifiedKFold

from automl_meta import metrics as metrics_mod
from automl_meta.budget import n_folds_for
from automl_meta.data import Schema
from automl_meta.search.pipeline import build_pipeline
from automl_meta.search.space import SearchSpace


@dataclass
class EvalContext:
    """Everything a worker needs to evaluate configurations on one dataset."""

    X: pd.DataFrame
    y: np.ndarray  # class codes 0..C-1, or floats for regression
    task: str
    schema: Schema
    n_classes: int
    metric: str
    folds: list[tuple[np.ndarray, np.ndarray]]
    space: SearchSpace
    seed: int = 0


def make_folds(y: np.ndarray, task: str, seed: int, n_splits: int | None = None
               ) -> list[tuple[np.ndarray, np.ndarray]]:
    """CV folds: stratified for classification (rare classes spread as far as they go)."""
    n = len(y)
    k = n_splits or n_folds_for(n)
    k = max(2, min(k, n // 2))
    dummy = np.zeros((n, 1))
    if task != "regression":
        counts = np.bincount(y.astype(int))
        if counts[counts > 0].max() >= k:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "least populated class has only N members"
                splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
                return [(tr, te) for tr, te in splitter.split(dummy, y)]
    splitter = KFold(n_splits=k, shuffle=True, random_state=seed)
    return [(tr, te) for tr, te in splitter.split(dummy)]


def _min_class_count(y: np.ndarray, task: str) -> int | None:
    if task == "regression":
        return None
    counts = np.bincount(np.asarray(y, dtype=int))
    return int(counts[counts > 0].min())


def _full_proba(model: Any, X: pd.DataFrame, n_classes: int) -> np.ndarray:
    """predict_proba with one column per class code even if the fold lacked some classes."""
    raw = model.predict_proba(X)
    seen = np.asarray(model.classes_, dtype=int)
    out = np.zeros((len(X), n_classes))
    out[:, seen] = raw
    return out


def _decision_proba(model: Any, X: pd.DataFrame, n_classes: int) -> np.ndarray:
    """Scores usable for ranking (AUC) when the model has no predict_proba (SVC)."""
    if hasattr(model[-1], "predict_proba"):
        return _full_proba(model, X, n_classes)
    dec = model.decision_function(X)
    seen = np.asarray(model.classes_, dtype=int)
    out = np.full((len(X), n_classes), -1e9)
    if dec.ndim == 1:
        dec = np.column_stack([-dec, dec])
    out[:, seen] = dec
    out = np.exp(out - out.max(axis=1, keepdims=True))
    return out / out.sum(axis=1, keepdims=True)


def predict_scores(model: Any, X: pd.DataFrame, task: str, metric: metrics_mod.Metric,
                   n_classes: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Predicted labels / values and, where the metric needs them, class probabilities."""
    y_pred = model.predict(X)
    proba = None
    if task != "regression" and metric.needs_proba:
        proba = _decision_proba(model, X, n_classes) if metric.name == "roc_auc" else \
            _full_proba(model, X, n_classes)
    return y_pred, proba


def _score_rows(pipe: Any, X: pd.DataFrame, y: np.ndarray, ctx: EvalContext,
                metric: metrics_mod.Metric) -> tuple[float, np.ndarray, np.ndarray | None]:
    """The metric of a fitted pipeline on ``X`` against ``y``, its predictions, and for
    classification class probabilities in class-code order (the ensemble selection needs
    them even where the metric does not)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        y_pred, proba = predict_scores(pipe, X, ctx.task, metric, ctx.n_classes)
        if ctx.task != "regression" and proba is None:
            proba = _decision_proba(pipe, X, ctx.n_classes)
    return metrics_mod.compute(metric, y, y_pred, proba, ctx.n_classes), y_pred, proba


def evaluate_fold(ctx: EvalContext, config: Mapping[str, Any], fold: int) -> dict[str, Any]:
    """Fit ``config`` on the training part of fold ``fold`` and score the held-out part."""
    train, test = ctx.folds[fold]
    metric = metrics_mod.METRICS[ctx.metric]
    final = metric.needs_proba and metric.name == "log_loss"
    pipe = build_pipeline(config, ctx.schema, ctx.task, ctx.space, n_rows=len(train),
                          n_classes=ctx.n_classes, random_state=ctx.seed, final=final,
                          min_class_count=_min_class_count(ctx.y[train], ctx.task))
    X_train, y_train = ctx.X.iloc[train], ctx.y[train]
    X_test, y_test = ctx.X.iloc[test], ctx.y[test]
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe.fit(X_train, y_train)
    fit_seconds = time.perf_counter() - t0
    score, y_pred, proba = _score_rows(pipe, X_test, y_test, ctx, metric)
    # out-of-fold predictions (the report's diagnostics) and, for classification, class
    # probabilities in class-code order (the ensemble selection)
    return {"score": score, "fit_seconds": fit_seconds,
            "predict_seconds": time.perf_counter() - t0 - fit_seconds,
            "y_pred": np.asarray(y_pred), "proba": proba}


def fit_full(ctx: EvalContext, config: Mapping[str, Any],
             rows: np.ndarray | None = None) -> dict[str, Any]:
    """Fit ``config`` on every row of the context (the final model), or on ``rows`` only."""
    X, y = (ctx.X, ctx.y) if rows is None else (ctx.X.iloc[rows], ctx.y[rows])
    pipe = build_pipeline(config, ctx.schema, ctx.task, ctx.space, n_rows=len(y),
                          n_classes=ctx.n_classes, random_state=ctx.seed, final=True,
                          min_class_count=_min_class_count(y, ctx.task))
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe.fit(X, y)
    return {"pipeline": pipe, "fit_seconds": time.perf_counter() - t0}


def fit_holdout(ctx: EvalContext, config: Mapping[str, Any], fit_rows: np.ndarray,
                eval_rows: np.ndarray) -> dict[str, Any]:
    """Fit ``config`` on ``fit_rows`` of the context and score it on ``eval_rows``.

    Returns the fitted pipeline, its fit seconds, the score and the predictions on
    ``eval_rows`` (class probabilities in class-code order for classification, values for
    regression), as the ensemble selection takes them.
    """
    out = fit_full(ctx, config, fit_rows)
    score, y_pred, proba = _score_rows(out["pipeline"], ctx.X.iloc[eval_rows],
                                       ctx.y[eval_rows], ctx, metrics_mod.METRICS[ctx.metric])
    pred = np.asarray(y_pred, dtype=float) if ctx.task == "regression" else proba
    return out | {"score": float(score), "pred": pred}


def search_rows(y: np.ndarray, task: str, cap: int, seed: int) -> np.ndarray:
    """Row indices the search uses: all, or a (stratified) subsample of ``cap`` rows."""
    n = len(y)
    if n <= cap:
        return np.arange(n)
    from sklearn.model_selection import train_test_split

    strat = y if task != "regression" and np.bincount(y.astype(int)).min() >= 2 else None
    idx, _ = train_test_split(np.arange(n), train_size=cap, random_state=seed, stratify=strat)
    return np.sort(idx)
