"""Metrics: which exist, which tasks they fit, which way is better, how to compute them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn import metrics as skm

from automl_meta.errors import UsageError


@dataclass(frozen=True)
class Metric:
    """A scoring rule. ``greater_is_better`` decides the Optuna study direction."""

    name: str
    kinds: tuple[str, ...]  # "classification" and/or "regression"
    greater_is_better: bool
    needs_proba: bool
    description: str

    @property
    def direction(self) -> str:
        return "maximize" if self.greater_is_better else "minimize"

    def better(self, a: float, b: float) -> bool:
        """Whether score ``a`` is strictly better than ``b``."""
        return a > b if self.greater_is_better else a < b


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("accuracy", ("classification",), True, False, "share of correct labels"),
    Metric("balanced_accuracy", ("classification",), True, False,
           "mean recall over classes (robust to imbalance)"),
    Metric("roc_auc", ("classification",), True, True,
           "area under the ROC curve (one-vs-rest, weighted, for multiclass)"),
    Metric("log_loss", ("classification",), False, True, "cross-entropy of the probabilities"),
    Metric("f1_macro", ("classification",), True, False, "F1 averaged over classes"),
    Metric("r2", ("regression",), True, False, "coefficient of determination"),
    Metric("rmse", ("regression",), False, False, "root mean squared error"),
    Metric("mae", ("regression",), False, False, "mean absolute error"),
)}

DEFAULT_METRIC = {"binary": "accuracy", "multiclass": "accuracy", "regression": "r2"}


def task_from_metric(name: str | None) -> str | None:
    """The task kind a metric implies when the user gave no ``--task`` (``accuracy`` means
    classification even for a target of integer codes), or None."""
    if name in METRICS and len(METRICS[name].kinds) == 1:
        return METRICS[name].kinds[0]
    return None


def get_metric(name: str | None, task: str) -> Metric:
    """The metric called ``name`` (default for ``task`` when None), checked against the task.

    Raises
    ------
    UsageError
        Unknown metric or a metric that does not fit the task (e.g. ``r2`` on classes).
    """
    if name is None:
        name = DEFAULT_METRIC[task]
    if name not in METRICS:
        raise UsageError(f"unknown metric {name!r}; choose one of {', '.join(METRICS)}")
    metric = METRICS[name]
    kind = "regression" if task == "regression" else "classification"
    if kind not in metric.kinds:
        valid = [m for m, v in METRICS.items() if kind in v.kinds]
        raise UsageError(f"metric {name!r} does not apply to a {task} task; use one of "
                         f"{', '.join(valid)}")
    return metric


def compute(metric: Metric, y_true: np.ndarray, y_pred: np.ndarray | None,
            proba: np.ndarray | None, n_classes: int | None = None) -> float:
    """Score predictions. For classification, labels are integer codes 0..n_classes-1 and
    ``proba`` has one column per class (in code order)."""
    name = metric.name
    if name == "accuracy":
        return float(skm.accuracy_score(y_true, y_pred))
    if name == "balanced_accuracy":
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(skm.balanced_accuracy_score(y_true, y_pred))
    if name == "f1_macro":
        return float(skm.f1_score(y_true, y_pred, average="macro", zero_division=0))
    if name == "roc_auc":
        labels = np.arange(n_classes)
        if n_classes == 2:
            return float(skm.roc_auc_score(y_true, proba[:, 1]))
        present = np.unique(y_true)
        if len(present) < 2:
            return float("nan")
        # classes absent from this fold are left out (their AUC is undefined)
        cols = proba[:, present]
        cols = cols / np.clip(cols.sum(axis=1, keepdims=True), 1e-12, None)
        if len(present) == 2:
            return float(skm.roc_auc_score(y_true == present[1], cols[:, 1]))
        return float(skm.roc_auc_score(y_true, cols, multi_class="ovr", average="weighted",
                                       labels=labels[present]))
    if name == "log_loss":
        return float(skm.log_loss(y_true, np.clip(proba, 1e-15, 1), labels=np.arange(n_classes)))
    if name == "r2":
        return float(skm.r2_score(y_true, y_pred))
    if name == "rmse":
        return float(np.sqrt(skm.mean_squared_error(y_true, y_pred)))
    if name == "mae":
        return float(skm.mean_absolute_error(y_true, y_pred))
    raise UsageError(f"unknown metric {name!r}")  # pragma: no cover
