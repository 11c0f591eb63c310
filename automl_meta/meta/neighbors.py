"""Nearest prior tasks: normalised meta-features and a distance that handles missing values.

Normalisation (fitted on the metabase's tasks of one task kind, stored in its manifest):
each meta-feature is optionally put on a signed log scale (counts, sizes, kurtosis), then
robust-scaled: ``z = (t(x) - median) / IQR`` (the standard deviation, then 1, when the IQR
is 0), and clipped to ±5 so one extreme quality cannot dominate.

Distance between two tasks over the meta-feature set F with weights w:

    d = sqrt( sum_f w_f * delta_f**2 / sum_f w_f )

with ``delta_f = z_a - z_b`` when both tasks have the quality, ``MISSING_PENALTY`` when
exactly one has it (e.g. entropy qualities exist only with nominal attributes), and 0 when
neither has it (both undefined is a similarity). A quality that no task of a metabase
layer records (e.g. the moments the ``openml-runs`` layer does not import) is not a
difference: for that layer's tasks it is left out of the sum (``w_f = 0``), when the layer
has at least ``MIN_LAYER_TASKS`` tasks of the kind (fewer: it may just be undefined on all
of them).

Prior tasks are compared within the same task kind: classification (binary and multiclass,
whose configurations are interchangeable; the number of classes is a meta-feature) or
regression.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from automl_meta.data.dataset import task_kind

MISSING_PENALTY = 2.0
CLIP = 5.0
#: a quality missing on every task of a layer of at least this many tasks is one the layer
#: does not record, not one undefined on its tasks
MIN_LAYER_TASKS = 10

#: meta-features the distance uses, per task kind, and whether each is log-scaled
DISTANCE_FEATURES: dict[str, dict[str, bool]] = {
    "common": {
        "NumberOfInstances": True, "NumberOfFeatures": True, "Dimensionality": True,
        "PercentageOfSymbolicFeatures": False, "PercentageOfBinaryFeatures": False,
        "PercentageOfMissingValues": False, "PercentageOfInstancesWithMissingValues": False,
        "MeanNominalAttDistinctValues": True, "MeanSkewnessOfNumericAtts": True,
        "MeanKurtosisOfNumericAtts": True, "MeanAttributeEntropy": False,
    },
    "classification": {
        "NumberOfClasses": True, "MajorityClassPercentage": False,
        "MinorityClassPercentage": False, "ClassEntropy": False,
        "MeanMutualInformation": False, "EquivalentNumberOfAtts": True,
        "DecisionStumpErrRate": False, "NaiveBayesErrRate": False, "kNN1NErrRate": False,
        "LDAErrRate": False,
    },
    "regression": {
        "TargetSkewness": True, "TargetKurtosis": True,
        "MeanAbsFeatureTargetCorrelation": False, "MaxAbsFeatureTargetCorrelation": False,
        "DecisionStumpR2": False, "LinearRegressionR2": False, "kNN1NR2": False,
    },
}


def distance_features(kind: str) -> dict[str, bool]:
    """Meta-feature name → log-scaled?, for a task kind."""
    return DISTANCE_FEATURES["common"] | DISTANCE_FEATURES[kind]


def _signed_log(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


def fit_normalisation(tasks: pd.DataFrame) -> dict[str, dict[str, dict[str, float]]]:
    """Per task kind and meta-feature: ``{"log": bool, "center": float, "scale": float}``.

    Fitted on the successful tasks of ``tasks`` (a metabase's ``tasks.csv``).
    """
    out: dict[str, dict[str, dict[str, float]]] = {}
    ok = tasks[tasks["status"] == "ok"] if "status" in tasks else tasks
    kinds = ok["task"].map(lambda t: task_kind(str(t)))
    for kind in ("classification", "regression"):
        sub = ok[kinds == kind]
        stats: dict[str, dict[str, float]] = {}
        for name, log in distance_features(kind).items():
            values = pd.to_numeric(sub.get(name, pd.Series(dtype=float)), errors="coerce")
            values = values[np.isfinite(values)].to_numpy(dtype=float)
            if log:
                values = _signed_log(values)
            if len(values) == 0:
                center, scale = 0.0, 1.0
            else:
                center = float(np.median(values))
                q1, q3 = np.percentile(values, [25, 75])
                scale = float(q3 - q1)
                if scale <= 1e-12:
                    scale = float(np.std(values)) or 1.0
            stats[name] = {"log": bool(log), "center": center, "scale": scale}
        out[kind] = stats
    return out


def normalise(values: Mapping[str, Any] | pd.DataFrame,
              stats: Mapping[str, Mapping[str, float]]) -> np.ndarray:
    """Normalised meta-features as an array (rows = tasks); NaN marks a missing quality."""
    frame = values if isinstance(values, pd.DataFrame) else pd.DataFrame([dict(values)])
    cols = []
    for name, st in stats.items():
        col = pd.to_numeric(frame.get(name, pd.Series(np.nan, index=frame.index)),
                            errors="coerce").to_numpy(dtype=float)
        col = np.where(np.isfinite(col), col, np.nan)
        if st["log"]:
            col = _signed_log(col)
        cols.append(np.clip((col - st["center"]) / st["scale"], -CLIP, CLIP))
    return np.column_stack(cols) if cols else np.zeros((len(frame), 0))


def distances(query: np.ndarray, prior: np.ndarray,
              weights: np.ndarray | None = None) -> np.ndarray:
    """Distance from one normalised task (1-D) to each row of ``prior`` (see module doc).

    ``weights``: one per meta-feature (1-D), or one per prior task and meta-feature (2-D,
    the shape of ``prior``)."""
    w = np.ones(prior.shape[1]) if weights is None else np.asarray(weights, dtype=float)
    w = np.broadcast_to(w, prior.shape)
    q_missing = np.isnan(query)
    p_missing = np.isnan(prior)
    delta = np.where(q_missing | p_missing, 0.0, np.nan_to_num(prior) - np.nan_to_num(query))
    delta = np.where(q_missing ^ p_missing, MISSING_PENALTY, delta)
    total = w.sum(axis=1)
    return np.sqrt((delta**2 * w).sum(axis=1) / np.where(total > 0, total, 1.0))


def unrecorded_weights(tasks: pd.DataFrame, prior: np.ndarray) -> np.ndarray:
    """Per-task weights of the distance: 0 for a meta-feature that no task of the task's
    layer (:func:`~automl_meta.meta.metabase.task_layer` of its ``source``) records, when
    the layer has at least ``MIN_LAYER_TASKS`` of the tasks given; else 1."""
    from automl_meta.meta.metabase import task_layer

    w = np.ones(prior.shape)
    if "source" not in tasks.columns:
        return w
    layers = tasks["source"].map(task_layer).to_numpy(dtype=str)
    for layer in np.unique(layers):
        rows = layers == layer
        if rows.sum() >= MIN_LAYER_TASKS:
            w[np.ix_(rows, np.isnan(prior[rows]).all(axis=0))] = 0.0
    return w


@dataclass
class Neighbor:
    """A prior task near the user's data."""

    task_id: str
    name: str
    distance: float
    task: str
    n_rows: int
    n_features: int
    best_score: float | None
    metric: str
    best_family: str | None
    best_config_id: str | None
    openml_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def nearest(metabase: Any, metafeatures: Mapping[str, Any], task: str, k: int = 10,
            exclude: set[str] | None = None,
            normalisation: Mapping[str, Any] | None = None) -> list[Neighbor]:
    """The ``k`` prior tasks of the same kind closest to ``metafeatures``.

    Parameters
    ----------
    metabase : Metabase
    metafeatures : mapping
        The user's meta-features (``compute_metafeatures`` output).
    task : str
        The user's task; only prior tasks of the same kind are considered.
    k : int
    exclude : set of str, optional
        Task ids to leave out (leave-one-task-out evaluation).
    normalisation : mapping, optional
        Overrides the metabase's stored normalisation.
    """
    kind = task_kind(task)
    stats_all = normalisation or metabase.manifest.get("normalisation") or \
        fit_normalisation(metabase.tasks)
    stats = stats_all[kind]
    tasks = metabase.ok_tasks()
    tasks = tasks[tasks["task"].map(lambda t: task_kind(str(t))) == kind]
    if exclude:
        tasks = tasks[~tasks["task_id"].isin(exclude)]
    if tasks.empty:
        return []
    prior = normalise(tasks, stats)
    query = normalise(metafeatures, stats)[0]
    d = distances(query, prior, unrecorded_weights(tasks, prior))
    order = np.argsort(d, kind="stable")[:k]
    out = []
    for i in order:
        row = tasks.iloc[i]
        cid = row.get("best_config_id")
        cid = cid if isinstance(cid, str) else None
        family = metabase.configs.get(cid, {}).get("family") if cid else None
        out.append(Neighbor(
            task_id=str(row["task_id"]), name=str(row.get("name", row["task_id"])),
            distance=float(d[i]), task=str(row["task"]), n_rows=int(row.get("n_rows", 0)),
            n_features=int(row.get("n_features", 0)),
            best_score=finite_or_none(row.get("best_score")), metric=str(row.get("metric", "")),
            best_family=family, best_config_id=cid,
            openml_id=int(row["openml_id"]) if pd.notna(row.get("openml_id")) else None))
    return out


def finite_or_none(v: Any) -> float | None:
    """``v`` as a float when it is a finite number, else None."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if np.isfinite(f) else None
