"""What the report shows about the data and the final model, computed once at fit time.

- target distribution (class counts, or quantiles and a histogram);
- out-of-fold diagnostics of the best trial, from the predictions its CV folds already made
  (no extra fitting): confusion matrix and per-class precision / recall / F1, or
  predicted-vs-true (at most 2 000 points) with R², RMSE and MAE;
- permutation importance of the *original* columns on the final model, on a subsample and
  only while it fits in the allowance (``max(5 s, 5 %)`` of the budget).
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from automl_meta.artifacts.model import TabularModel
from automl_meta.data import Dataset

MAX_POINTS = 2000
IMPORTANCE_ROWS = 1000
IMPORTANCE_REPEATS = 3


def target_distribution(dataset: Dataset) -> dict[str, Any]:
    """Class counts, or quantiles and a 20-bin histogram of a numeric target.

    A numeric target whose range does not fit in a float (values near ±1.7e308) is binned
    after an exact power-of-two rescaling, so its edges are still finite. Non-finite values
    are left out of the quantiles and the histogram and counted in ``non_finite``.
    """
    if dataset.classes is not None:
        counts = dataset.y.value_counts()
        return {"kind": "classes", "counts": {str(c): int(counts.get(c, 0))
                                              for c in dataset.classes}}
    y = dataset.y.to_numpy(dtype=float)
    finite = y[np.isfinite(y)]
    out: dict[str, Any] = {"kind": "numeric"}
    if len(finite) < len(y):
        out["non_finite"] = int(len(y) - len(finite))
    if not len(finite):
        out["quantiles"] = None
        out["histogram"] = None
        return out
    scale = _scale_exponent(finite)
    scaled = np.ldexp(finite, -scale)
    q = np.ldexp(np.percentile(scaled, [0, 25, 50, 75, 100]), scale)
    counts, edges = np.histogram(scaled, bins=20)
    out["quantiles"] = dict(zip(("min", "q1", "median", "q3", "max"), map(float, q),
                                strict=True))
    out["histogram"] = {"edges": np.ldexp(edges, scale).tolist(), "counts": counts.tolist()}
    return out


def _scale_exponent(values: np.ndarray) -> int:
    """0, or the power of two that brings ``values`` to a range whose width is finite."""
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(values.max() - values.min()):
            return 0
    return int(np.frexp(np.abs(values).max())[1])


def oof_diagnostics(y: np.ndarray, oof: np.ndarray, classes: list[Any] | None,
                    seed: int = 0) -> dict[str, Any] | None:
    """Diagnostics from out-of-fold predictions (codes for classification)."""
    mask = ~pd.isna(oof)
    if not mask.any():
        return None
    y, pred = y[mask], oof[mask]
    if classes is not None:
        y, pred = y.astype(int), pred.astype(int)
        labels = np.arange(len(classes))
        p, r, f, s = skm.precision_recall_fscore_support(y, pred, labels=labels,
                                                         zero_division=0)
        return {"kind": "classification", "labels": [str(c) for c in classes],
                "confusion": skm.confusion_matrix(y, pred, labels=labels).tolist(),
                "per_class": [{"label": str(c), "precision": float(p[i]),
                               "recall": float(r[i]), "f1": float(f[i]),
                               "support": int(s[i])} for i, c in enumerate(classes)],
                "score": float(skm.accuracy_score(y, pred))}
    pred = pred.astype(float)
    # a target near the float limit overflows the error sums: the figure is then inf or
    # NaN (written as null), not a warning on the user's terminal
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        out = {"kind": "regression", "r2": float(skm.r2_score(y, pred)),
               "rmse": float(np.sqrt(skm.mean_squared_error(y, pred))),
               "mae": float(skm.mean_absolute_error(y, pred))}
    idx = np.arange(len(y))
    if len(idx) > MAX_POINTS:
        idx = np.sort(np.random.default_rng(seed).choice(idx, MAX_POINTS, replace=False))
    out["y_true"] = y[idx].tolist()
    out["y_pred"] = pred[idx].tolist()
    return out


def permutation_importance(model: TabularModel, dataset: Dataset, y_codes: np.ndarray,
                           allowance: float, seed: int = 0) -> list[dict[str, Any]] | None:
    """Drop in accuracy / R² when each original column is shuffled (None if no time)."""
    start = time.monotonic()
    if allowance <= 0.5:
        return None
    n = len(y_codes)
    idx = np.arange(n) if n <= IMPORTANCE_ROWS else np.sort(
        np.random.default_rng(seed).choice(n, IMPORTANCE_ROWS, replace=False))
    X = dataset.X.iloc[idx].reset_index(drop=True)
    y = y_codes[idx]
    scorer = skm.accuracy_score if model.classes is not None else skm.r2_score

    def score(frame: pd.DataFrame) -> float:
        return float(scorer(y, model.pipeline.predict(frame)))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        base = score(X)
        one = time.monotonic() - start
        columns = list(X.columns)
        if one * len(columns) * IMPORTANCE_REPEATS > allowance - (time.monotonic() - start):
            return None
        rng = np.random.default_rng(seed)
        out = []
        for col in columns:
            drops = []
            if time.monotonic() - start > allowance:  # slower than the first call promised
                return None
            for _ in range(IMPORTANCE_REPEATS):
                shuffled = X.copy()
                shuffled[col] = X[col].to_numpy()[rng.permutation(len(X))]
                drops.append(base - score(shuffled))
            out.append({"column": col, "mean": float(np.mean(drops)),
                        "std": float(np.std(drops))})
    return sorted(out, key=lambda d: -d["mean"])


def compute_diagnostics(model: TabularModel, dataset: Dataset, y_codes: np.ndarray,
                        search_y: np.ndarray, oof: np.ndarray | None, allowance: float,
                        seed: int = 0) -> dict[str, Any]:
    """All of the above, within ``allowance`` seconds for the part that costs time."""
    t0 = time.monotonic()
    out: dict[str, Any] = {"oof": None, "permutation_importance": None}
    if oof is not None:
        out["oof"] = oof_diagnostics(search_y, oof, dataset.classes, seed)
    try:
        out["permutation_importance"] = permutation_importance(
            model, dataset, y_codes, allowance - (time.monotonic() - t0), seed)
    except Exception as exc:  # diagnostics must never break a fit
        out["permutation_importance_error"] = f"{type(exc).__name__}: {exc}"
    out["seconds"] = round(time.monotonic() - t0, 3)
    return out
