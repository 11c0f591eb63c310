"""Turn a configuration into a scikit-learn pipeline for a given feature schema.

The pipeline takes the raw feature DataFrame (columns in any order, extra columns ignored):

1. :class:`FeaturePreparer` selects the schema's columns, coerces their dtypes and expands
   datetimes into numeric parts;
2. a ``ColumnTransformer`` prepares numeric and categorical columns the way the family
   needs (imputation, scaling, one-hot / ordinal / target encoding by cardinality);
3. the family's estimator (built by its record in :mod:`automl_meta.search.families`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import sklearn
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import (
    OneHotEncoder,
    OrdinalEncoder,
    QuantileTransformer,
    RobustScaler,
    StandardScaler,
    TargetEncoder,
)

from automl_meta.data import DATETIME_PARTS, Schema, coerce_features
from automl_meta.search.families import KNOWN_FAMILIES, ModelInputs, get_family
from automl_meta.search.space import SearchSpace

__all__ = ["DATETIME_PARTS", "KNOWN_FAMILIES", "MISSING", "FeaturePreparer", "build_pipeline",
           "estimate_n_inputs", "output_columns"]

MISSING = "__missing__"
_SKLEARN_VERSION = tuple(int(p) for p in sklearn.__version__.split(".")[:2])


class FeaturePreparer(TransformerMixin, BaseEstimator):
    """Select the schema's columns, coerce dtypes and expand datetimes.

    Parameters
    ----------
    schema : dict
        ``Schema.to_dict()`` of the training data.

    Output: a DataFrame whose numeric columns (numeric, boolean, datetime parts) are float and
    whose categorical columns are strings with missing values as ``"__missing__"``.
    """

    def __init__(self, schema: dict | None = None):
        self.schema = schema

    def fit(self, X: pd.DataFrame, y: Any = None) -> FeaturePreparer:
        self.schema_ = Schema.from_dict(self.schema)
        self.numeric_out_, self.categorical_out_ = output_columns(self.schema_)
        return self

    def __getstate__(self) -> dict[str, Any]:
        # the fitted schema (one compact node, see Schema.__getstate__) is all a model file
        # needs: the parameter and the output column lists follow from it
        state = super().__getstate__()
        if "schema_" in state:
            for key in ("schema", "numeric_out_", "categorical_out_"):
                state.pop(key, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        if "schema_" in state and "schema" not in state:
            self.schema = self.schema_.to_dict()
            self.numeric_out_, self.categorical_out_ = output_columns(self.schema_)

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        X = coerce_features(X, self.schema_)
        # numeric and boolean columns in one block (a per-column loop costs seconds at
        # thousands of columns); the next step selects columns by name, so order is free
        plain = [c.name for c in self.schema_.columns if c.kind in ("numeric", "boolean")]
        blocks = [pd.DataFrame(X[plain].to_numpy(dtype=float), columns=plain, index=X.index)]
        out: dict[str, Any] = {}
        for col in self.schema_.columns:
            s = X[col.name]
            if col.kind == "datetime":
                dt = s
                out[f"{col.name}__year"] = dt.dt.year.astype(float)
                out[f"{col.name}__month"] = dt.dt.month.astype(float)
                out[f"{col.name}__day"] = dt.dt.day.astype(float)
                out[f"{col.name}__dayofweek"] = dt.dt.day_of_week.astype(float)
                out[f"{col.name}__hour"] = dt.dt.hour.astype(float)
                epoch = (dt - pd.Timestamp("1970-01-01")) / pd.Timedelta(days=1)
                out[f"{col.name}__epoch_days"] = epoch.astype(float)
            elif col.kind == "categorical":
                out[col.name] = s.where(s.notna(), MISSING).astype(object)
        if out:
            blocks.append(pd.DataFrame(out, index=X.index))
        return pd.concat(blocks, axis=1) if len(blocks) > 1 else blocks[0]


def output_columns(schema: Schema) -> tuple[list[str], list[str]]:
    """Numeric and categorical column names that :class:`FeaturePreparer` produces."""
    numeric: list[str] = []
    categorical: list[str] = []
    for col in schema.columns:
        if col.kind == "datetime":
            numeric.extend(f"{col.name}__{part}" for part in DATETIME_PARTS)
        elif col.kind == "categorical":
            categorical.append(col.name)
        else:
            numeric.append(col.name)
    return numeric, categorical


def _target_encoder(task: str, random_state: int) -> TargetEncoder:
    """TargetEncoder with shuffled internal cross-fitting (API changed in scikit-learn 1.9)."""
    if _SKLEARN_VERSION >= (1, 9):
        from sklearn.model_selection import KFold, StratifiedKFold

        splitter = KFold if task == "regression" else StratifiedKFold
        return TargetEncoder(cv=splitter(5, shuffle=True, random_state=random_state))
    return TargetEncoder(random_state=random_state)


def _scaler(name: str, n_rows: int) -> Any:
    if name == "robust":
        return RobustScaler()
    if name == "quantile":
        return QuantileTransformer(n_quantiles=max(10, min(1000, n_rows)),
                                   output_distribution="normal", subsample=100_000)
    return StandardScaler()


def _params(config: Mapping[str, Any]) -> dict[str, Any]:
    family = config["family"]
    prefix = f"{family}."
    return {k[len(prefix):]: v for k, v in config.items() if k.startswith(prefix)}


def estimate_n_inputs(schema: Schema, space: SearchSpace, family: str, n_classes: int) -> int:
    """How many columns the model will see after preprocessing (before fitting)."""
    fam = space.families[family]
    numeric, categorical = output_columns(schema)
    card = {c.name: max(c.n_unique, 1) for c in schema.columns}
    n = len(numeric)
    for c in categorical:
        if fam.categorical == "native":
            n += 1
        elif card[c] <= space.onehot_max_cardinality:
            n += card[c] + 1
        elif fam.categorical == "onehot_target" and n_classes > 2:
            n += n_classes
        else:
            n += 1
    return max(n, 1)


def build_pipeline(config: Mapping[str, Any], schema: Schema, task: str, space: SearchSpace,
                   *, n_rows: int, n_classes: int = 0, random_state: int = 0,
                   final: bool = False, min_class_count: int | None = None) -> Pipeline:
    """Build the (unfitted) pipeline for ``config``.

    Parameters
    ----------
    config : dict
        ``{"family": NAME, "NAME.param": value, ...}``.
    schema : Schema
        The training data's feature schema (column kinds and cardinalities).
    task : {"binary", "multiclass", "regression"}
    space : SearchSpace
    n_rows : int
        Training rows (bounds k for k-NN, sizes quantile scaling).
    n_classes : int
        Number of classes (classification).
    random_state : int
    final : bool
        The final model: SVMs also fit probability estimates so ``predict_proba`` works.
    min_class_count : int, optional
        Rows of the rarest class; the SVM's probability calibration needs folds that hold
        every class (below 2 rows it is skipped and probabilities come from the decision
        function, see :class:`~automl_meta.artifacts.model.TabularModel`).
    """
    family = config["family"]
    fam = space.families[family]
    p = _params(config)
    numeric, categorical = output_columns(schema)
    card = {c.name: max(c.n_unique, 1) for c in schema.columns}
    low = [c for c in categorical if card[c] <= space.onehot_max_cardinality]
    high = [c for c in categorical if card[c] > space.onehot_max_cardinality]
    is_clf = task != "regression"

    transformers: list[tuple[str, Any, list[str]]] = []
    categorical_mask: list[bool] = []
    if fam.categorical == "native":
        if numeric:
            transformers.append(("num", "passthrough", numeric))
            categorical_mask += [False] * len(numeric)
        native = [c for c in categorical if card[c] <= space.native_max_categories]
        too_many = [c for c in categorical if card[c] > space.native_max_categories]
        if native:
            transformers.append(("cat", OrdinalEncoder(
                handle_unknown="use_encoded_value", unknown_value=np.nan,
                encoded_missing_value=np.nan, max_categories=space.native_max_categories),
                native))
            categorical_mask += [True] * len(native)
        if too_many:
            transformers.append(("cat_target", _target_encoder(task, random_state), too_many))
            width = n_classes if (is_clf and n_classes > 2) else 1
            categorical_mask += [False] * (width * len(too_many))
    else:
        num_steps: list[tuple[str, Any]] = []
        if numeric:
            num_steps.append(("impute", SimpleImputer(strategy=p.get("impute", "median"),
                                                      keep_empty_features=True)))
            if fam.scale:
                num_steps.append(("scale", _scaler(p.get("scaler", "standard"), n_rows)))
            transformers.append(("num", Pipeline(num_steps), numeric))
        if low:
            transformers.append(("cat_onehot", OneHotEncoder(
                handle_unknown="ignore", sparse_output=False, dtype=np.float64), low))
        if high:
            if fam.categorical == "onehot_target":
                enc = Pipeline([("target", _target_encoder(task, random_state)),
                                ("scale", StandardScaler())])
            else:
                enc = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1,
                                     encoded_missing_value=-1)
            transformers.append(("cat_high", enc, high))

    prep = ColumnTransformer(transformers, remainder="drop", sparse_threshold=0.0)
    n_inputs = estimate_n_inputs(schema, space, family, n_classes)
    inputs = ModelInputs(n_rows=n_rows, n_inputs=n_inputs, random_state=random_state,
                         final=final, min_class_count=min_class_count,
                         categorical_mask=categorical_mask if any(categorical_mask) else None)
    model = get_family(family).build(p, is_clf, inputs)
    return Pipeline([("prepare", FeaturePreparer(schema.to_dict())), ("preprocess", prep),
                     ("model", model)])

