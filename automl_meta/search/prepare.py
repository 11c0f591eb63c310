"""What a search evaluates on: the encoded target, the search rows and the CV folds.

:func:`prepare_search` is deterministic (same data, metric, seed and row cap give the same
rows and folds), so that every process of a distributed search — the fit that created the
study, a joining ``worker``, a metabase build — evaluates on exactly the same folds;
:func:`study_attributes` is what a study records so that they can check it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from automl_meta.data import Dataset
from automl_meta.search.cv import EvalContext, make_folds, search_rows

__all__ = ["PreparedSearch", "prepare_search", "study_attributes"]


@dataclass
class PreparedSearch:
    """The data a search evaluates on (possibly a subsample) and the data the refit uses."""

    ctx: EvalContext
    full_ctx: EvalContext
    y_codes: np.ndarray
    search_idx: np.ndarray


def prepare_search(dataset: Dataset, metric: str, seed: int, max_search_rows: int,
                   space: Any, folds: list | None = None,
                   n_folds: int | None = None) -> PreparedSearch:
    """Encode the target, choose the search rows and the CV folds — deterministically, so
    that every process of a distributed search evaluates on exactly the same folds.

    ``folds`` (e.g. an OpenML task's own splits) are used when the search takes every row;
    otherwise ``n_folds`` folds are made (default :func:`automl_meta.budget.n_folds_for`).
    """
    classes = dataset.classes
    if classes is not None:
        lookup = {c: i for i, c in enumerate(classes)}
        y_codes = dataset.y.map(lookup).to_numpy(dtype=int)
    else:
        y_codes = dataset.y.to_numpy(dtype=float)
    n_classes = len(classes) if classes else 0
    search_idx = search_rows(y_codes, dataset.task, max_search_rows, seed)
    X_search = dataset.X.iloc[search_idx].reset_index(drop=True)
    y_search = y_codes[search_idx]
    if not folds or len(search_idx) != len(y_codes):
        folds = make_folds(y_search, dataset.task, seed, n_folds)
    ctx = EvalContext(X_search, y_search, dataset.task, dataset.schema, n_classes, metric,
                      folds, space, seed)
    full_ctx = ctx if len(search_idx) == len(y_codes) else EvalContext(
        dataset.X, y_codes, dataset.task, dataset.schema, n_classes, metric, folds, space, seed)
    return PreparedSearch(ctx, full_ctx, y_codes, search_idx)


def study_attributes(dataset: Dataset, metric: str, seed: int, max_search_rows: int,
                     space_version: str, n_folds: int) -> dict[str, Any]:
    """What a study records so that a resumed fit or a joining worker can check it is
    searching the same problem (same data bytes, same space, same CV) and rebuild it."""
    return {"data_sha256": dataset.sha256, "target": dataset.target, "task": dataset.task,
            "metric": metric, "seed": seed, "max_search_rows": max_search_rows,
            "n_folds": n_folds, "search_space_version": space_version}
