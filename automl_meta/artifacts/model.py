"""The fitted model: a pipeline plus what is needed to use it on new raw data."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from automl_meta.data import Schema
from automl_meta.errors import UsageError


class TabularModel:
    """A fitted pipeline with its feature schema and class labels.

    ``predict`` and ``predict_proba`` take a raw DataFrame (as read from a file): columns
    in any order, extra columns ignored, missing ones reported by name.
    """

    def __init__(self, pipeline: Any, schema: Schema, task: str, target: str,
                 classes: list[Any] | None, config: dict[str, Any]):
        self.pipeline = pipeline
        self.schema = schema
        self.task = task
        self.target = target
        self.classes = classes
        self.config = config

    def check_columns(self, X: pd.DataFrame) -> None:
        """Raise :class:`UsageError` naming the schema columns ``X`` lacks."""
        missing = [c for c in self.schema.names if c not in X.columns]
        if missing:
            shown = ", ".join(repr(c) for c in missing[:10])
            more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
            raise UsageError(f"the data lacks {len(missing)} column(s) the model needs: "
                             f"{shown}{more}")

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Predicted labels (classification) or values (regression)."""
        self.check_columns(X)
        pred = self.pipeline.predict(X)
        if self.classes is None:
            return np.asarray(pred, dtype=float)
        return np.asarray(self.classes)[np.asarray(pred, dtype=int)]

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Class probabilities, one column per entry of ``classes`` (classification only)."""
        if self.classes is None:
            raise UsageError("probabilities exist only for classification models")
        self.check_columns(X)
        seen = np.asarray(self.pipeline.classes_, dtype=int)
        out = np.zeros((len(X), len(self.classes)))
        # a pipeline's final step, or the estimator itself (an Ensemble, not a Pipeline)
        final = self.pipeline[-1] if hasattr(self.pipeline, "steps") else self.pipeline
        if hasattr(final, "predict_proba"):
            out[:, seen] = self.pipeline.predict_proba(X)
            return out
        # an SVM whose classes were too rare to calibrate: a softmax of its decision values
        dec = np.asarray(self.pipeline.decision_function(X), dtype=float)
        if dec.ndim == 1:
            dec = np.column_stack([-dec, dec])
        dec = np.exp(dec - dec.max(axis=1, keepdims=True))
        out[:, seen] = dec / dec.sum(axis=1, keepdims=True)
        return out

    def encode_labels(self, y: pd.Series) -> np.ndarray:
        """Map labels to class codes; labels never seen in training get -1."""
        lookup = {label_key(c): i for i, c in enumerate(self.classes)}
        return np.array([lookup.get(label_key(v), -1) for v in y], dtype=int)


def label_key(value: Any) -> str:
    """A class label as text, so that ``1``, ``1.0`` and ``"1"`` match."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value).strip()
