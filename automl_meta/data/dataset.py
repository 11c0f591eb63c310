"""The supervised dataset: target resolution, task inference, validation.

Task inference rule (``infer_task``), unless ``task`` is given:

1. a target declared nominal (ARFF), boolean or non-numeric text is classification;
2. a numeric target with 2 distinct values is binary classification;
3. a numeric target whose values are all integers, with at most 10 distinct values and at
   least twice as many rows as values, is multiclass classification;
4. any other numeric target is regression.
Classification with 2 classes is ``binary``, with more ``multiclass``.
"""


from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from automl_meta.data.io import (
    Deadline,
    _all_strings,
    _one_line,
    _stripped,
    file_sha256,
    read_table,
)
from automl_meta.data.schema import (
    Schema,
    _as_numeric,
    _floats,
    _is_textual,
    _plain_numeric_dtype,
    _to_float,
    _unique_feature_names,
    infer_schema,
)
from automl_meta.errors import UsageError

TASKS = ("binary", "multiclass", "regression")
#: what a task is at the level of models and metabase neighbours
TASK_KINDS = ("classification", "regression")
MAX_CLASSES_FOR_INTEGER_TARGET = 10
# the largest regression target magnitude: squared errors summed over many rows stay finite
MAX_REGRESSION_TARGET = 1e150



def task_kind(task: str) -> str:
    """Map a task (``binary``, ``multiclass``, ``regression``) to its kind
    (``classification`` or ``regression``)."""
    return "regression" if task == "regression" else "classification"


def infer_task(y: pd.Series) -> str:
    """Infer ``binary``, ``multiclass`` or ``regression`` from the target (rule in module doc)."""
    present = y.dropna()
    if isinstance(y.dtype, pd.CategoricalDtype) or pd.api.types.is_bool_dtype(y.dtype) or \
            not (_is_textual(y) or _plain_numeric_dtype(y.dtype)):  # dates: labels at best
        return "binary" if present.astype(str).nunique() <= 2 else "multiclass"
    if _is_textual(y):
        num = _as_numeric(y, min_share=1.0)
        if num is None:
            return "binary" if present.astype(str).nunique() <= 2 else "multiclass"
        values = num[0].dropna().to_numpy()
    else:
        values = _floats(present)
        values = values[~np.isnan(values)]
    uniq = len(np.unique(values))
    if uniq <= 2:
        return "binary"
    integral = bool(np.all(np.mod(values, 1) == 0))
    if integral and uniq <= MAX_CLASSES_FOR_INTEGER_TARGET and len(values) >= 2 * uniq:
        return "multiclass"
    return "regression"


def closest_column(name: str, columns: list[str]) -> str | None:
    """The column name most similar to ``name`` (case-insensitive), if any is close."""
    lowered = {str(c).lower(): c for c in columns}
    if str(name).lower() in lowered:
        return lowered[str(name).lower()]
    match = difflib.get_close_matches(str(name).lower(), list(lowered), n=1, cutoff=0.5)
    return lowered[match[0]] if match else None


def _looks_headerless(columns: list[Any]) -> bool:
    """Column names that are all numbers: the first row was data, not a header."""
    def number(c: Any) -> bool:
        text = re.sub(r"\.\d+$", "", str(c)) if isinstance(c, str) else str(c)
        try:
            float(text)
        except ValueError:
            return False
        return True

    return len(columns) > 0 and sum(number(c) for c in columns) >= max(1, len(columns) - 1)


def _resolve_target(df: pd.DataFrame, target: str) -> str:
    """The target's column name (surrounding / repeated whitespace forgiven) or a UsageError."""
    if target in df.columns:
        return target
    wanted = " ".join(str(target).split())
    same = [c for c in df.columns if " ".join(str(c).split()) == wanted]
    if len(same) == 1:
        return same[0]
    columns = list(df.columns)
    hint = closest_column(target, columns)
    if _looks_headerless(columns):
        tail = ("; the first row looks like data, not a header: add a header row with the "
                "column names")
    elif hint is not None:
        tail = f"; did you mean {hint!r}?"
    else:
        shown = ", ".join(repr(c) for c in columns[:20])
        tail = f"; columns are: {shown}" + (f" and {len(columns) - 20} more"
                                            if len(columns) > 20 else "")
    raise UsageError(_one_line(f"target column {target!r} not found{tail}", 500))


@dataclass
class Dataset:
    """A validated supervised dataset, ready for meta-features and search.

    ``X`` holds the features the model uses, typed by :func:`infer_schema` (constant,
    ID-like and text columns dropped, numbers and dates parsed; the model's preprocessing
    expands each datetime column into its parts), ``y`` the target (class labels, or floats
    for regression); both have the index ``0 … n_rows - 1``.

    ``features_as_read`` holds every feature column as read, on the same rows (those with a
    target) and index: no column dropped, none converted. It is what the meta-features
    describe (:meth:`as_read`), and it shares its memory with the table read (pandas'
    copy-on-write: selecting the rows with a target, dropping the target column and
    resetting the index copy nothing unless a row is left out). ``None`` for a dataset put
    together by hand; :meth:`as_read` then falls back to ``X``.

    ``target_values`` are the declared values of a target read as nominal (an ARFF nominal
    attribute, a pandas ``category`` column), as strings; ``None`` otherwise.
    """

    X: pd.DataFrame
    y: pd.Series
    task: str
    target: str
    schema: Schema
    classes: list[Any] | None = None
    n_rows_read: int = 0
    n_dropped_missing_target: int = 0
    notes: list[str] = field(default_factory=list)
    name: str = ""
    sha256: str = ""
    features_as_read: pd.DataFrame | None = field(default=None, repr=False)
    target_values: list[str] | None = None

    @property
    def n_rows(self) -> int:
        return len(self.y)

    def as_read(self) -> tuple[pd.DataFrame, pd.Series]:
        """The table as OpenML sees it: the inputs of the meta-features.

        Returns
        -------
        (DataFrame, Series)
            Every feature column as read (``features_as_read``, or ``X`` when it is not
            kept), and the target: for classification the class labels of ``y``, as a
            categorical over the declared values when the target was read as nominal (so a
            target declared with three values is not a binary attribute even when two
            occur); for regression ``y``. Nothing is copied but the categorical codes.
        """
        X = self.features_as_read if self.features_as_read is not None else self.X
        y = self.y
        if self.target_values is not None and self.task != "regression":
            y = pd.Series(pd.Categorical(y, categories=self.target_values), index=y.index,
                          name=y.name)
        return X, y


def regression_target(y: pd.Series, target: str) -> pd.Series:
    """A regression target as floats, parsed as numeric features are ("1,234.5", booleans);
    a value that is not a number is a :class:`UsageError` naming it."""
    if isinstance(y.dtype, pd.CategoricalDtype):
        y = y.astype(object)
    if pd.api.types.is_bool_dtype(y.dtype) or (pd.api.types.is_numeric_dtype(y.dtype)
                                               and not pd.api.types.is_complex_dtype(y.dtype)):
        values = pd.Series(_floats(y), index=y.index)
    else:
        num = _as_numeric(y.astype(object), min_share=1.0)
        values = num[0] if num is not None else _to_float(_stripped(y), None)
    bad = values.isna()
    if bad.any():
        example = y[bad].iloc[0]
        raise UsageError(f"target {target!r} has non-numeric values (e.g. {str(example)!r}); "
                         "it cannot be a regression target (use --task classification)")
    values = values.astype(float)
    largest = float(np.abs(values.to_numpy()).max()) if len(values) else 0.0
    if largest > MAX_REGRESSION_TARGET:
        raise UsageError(_one_line(
            f"target {target!r} has values as large as {largest:.3g}: squares and sums of "
            f"such values overflow (the limit is {MAX_REGRESSION_TARGET:.0e} in magnitude); "
            "rescale the target (e.g. divide it by a power of ten, or take a logarithm)"))
    return values


def _class_labels(y: pd.Series) -> pd.Series:
    """Class labels: strings, or integers / floats when every label is a number (so "1" and
    1.0 are one class), or booleans."""
    if isinstance(y.dtype, pd.CategoricalDtype):
        return pd.Series([str(v) for v in y], index=y.index, dtype=object)
    if _is_textual(y):
        num = _as_numeric(y, min_share=1.0)
        if num is None or num[0].isna().any():
            if _all_strings(y):
                return pd.Series(y.astype(object).str.strip(), index=y.index, dtype=object)
            return pd.Series([str(v).strip() for v in y], index=y.index, dtype=object)
        y = num[0]
    if pd.api.types.is_float_dtype(y.dtype):
        v = y.to_numpy(dtype=float)
        if np.all(np.mod(v, 1) == 0) and np.all(np.abs(v) < 2**53):
            return pd.Series(v.astype(np.int64), index=y.index)
    return y


def prepare_dataset(df: pd.DataFrame, target: str, task: str | None = None,
                    name: str = "", sha256: str = "", *,
                    deadline: Deadline | None = None) -> Dataset:
    """Validate ``df``, split off the target, type the features, and infer the task.

    Parameters
    ----------
    df : DataFrame
        The table as read.
    target : str
        Name of the target column (surrounding whitespace is forgiven).
    task : {"binary", "multiclass", "classification", "regression"}, optional
        Override the inferred task. ``classification`` chooses binary / multiclass.
    name, sha256 : str, optional
        The data's name and checksum, kept in the dataset.
    deadline : Deadline, optional
        Typing fails with a :class:`UsageError` once the deadline's budget is spent.

    A feature whose name is one a datetime column's derived features take (``when__year``
    next to a datetime ``when``) is renamed ``when__year.1`` in the model (with a note);
    the model still reads it from the input column ``when__year``.

    Raises
    ------
    UsageError
        Unknown or repeated target (with a suggestion), target entirely missing, one class
        only, no usable feature, too few rows, repeated column names, a regression target
        too large for arithmetic, the deadline passed.
    """
    if not isinstance(df, pd.DataFrame):
        raise UsageError(f"expected a table (DataFrame), got {type(df).__name__}")
    target = _resolve_target(df, target)
    if task is not None and task not in (*TASKS, "classification"):
        raise UsageError(f"unknown task {task!r}; use binary, multiclass, classification or "
                         "regression")
    renamed = dict(df.attrs.get("duplicate_columns") or {})
    if target in renamed.values() or isinstance(df[target], pd.DataFrame):
        raise UsageError(_one_line(
            f"target column {target!r} appears more than once in the header; rename the "
            "copies so the target is unambiguous"))
    repeated = df.columns[df.columns.duplicated()].unique().tolist()
    if repeated:
        shown = ", ".join(repr(c) for c in repeated[:5])
        raise UsageError(_one_line(f"column names repeat ({shown}); rename the copies"))
    y_raw = df[target]
    target_values = (list(dict.fromkeys(str(c) for c in y_raw.cat.categories))
                     if isinstance(y_raw.dtype, pd.CategoricalDtype) else None)
    if pd.api.types.is_datetime64_any_dtype(y_raw.dtype) or \
            pd.api.types.is_timedelta64_dtype(y_raw.dtype):
        raise UsageError(f"target column {target!r} holds dates / durations; automl-meta "
                         "predicts classes or numbers: convert it first (e.g. to a year, or "
                         "to days)")
    if _is_textual(y_raw):
        y_raw = _stripped(y_raw)
    elif pd.api.types.is_numeric_dtype(y_raw.dtype) and not pd.api.types.is_bool_dtype(
            y_raw.dtype) and not pd.api.types.is_complex_dtype(y_raw.dtype):
        y_raw = pd.Series(_floats(y_raw), index=y_raw.index, name=y_raw.name)
    missing = y_raw.isna().to_numpy()
    n_missing = int(missing.sum())
    if n_missing == len(df):
        raise UsageError(f"target column {target!r} is entirely missing")
    notes = []
    for new, old in renamed.items():
        if new in df.columns:
            notes.append(f"column name {old!r} appears more than once; the repeat is read as "
                         f"{new!r}")
    if n_missing:
        notes.append(f"dropped {n_missing} rows with a missing target")
    df = df.loc[~missing]
    y = y_raw.loc[~missing]
    requested = task
    if task is None:
        task = infer_task(y)
    if task == "regression":
        y = regression_target(y, target)
        if y.nunique() <= 1:
            raise UsageError(f"target {target!r} is constant; nothing to learn")
        classes = None
    else:
        y = _class_labels(y)
        counts = y.value_counts()
        if len(counts) < 2:
            raise UsageError(_one_line(
                f"target {target!r} has a single class ({str(counts.index[0])!r}): only one "
                "class found, a classifier needs at least two"))
        if requested == "binary" and len(counts) > 2:
            raise UsageError(f"--task binary but target {target!r} has {len(counts)} classes; "
                             "use --task multiclass")
        task = "binary" if len(counts) == 2 else "multiclass"
        classes = sorted(counts.index.tolist(), key=lambda v: (str(type(v)), v))
    if len(y) < 10:
        raise UsageError(f"only {len(y)} rows with a target; at least 10 are needed to "
                         "cross-validate")
    features = df.drop(columns=[target])
    if features.shape[1] == 0:
        raise UsageError("the table has no feature columns besides the target")
    schema, X = infer_schema(features, deadline)
    for col, reason in schema.dropped.items():
        notes.append(f"dropped column {col!r}: {reason}")
    renamed_features = _unique_feature_names(schema, list(df.columns))
    if renamed_features:
        X = X.rename(columns=renamed_features)
        for old, new in renamed_features.items():
            base = old.rsplit("__", 1)[0]
            notes.append(f"column {old!r} is named {new!r} in the model: the datetime column "
                         f"{base!r} derives a feature named {old!r}")
    if not schema.columns:
        shown = "; ".join(f"{c}: {r}" for c, r in list(schema.dropped.items())[:10])
        more = f"; and {len(schema.dropped) - 10} more" if len(schema.dropped) > 10 else ""
        raise UsageError(_one_line(f"no usable feature column: every column was dropped "
                                   f"({shown}{more})", 600))
    X = X.reset_index(drop=True)
    y = y.reset_index(drop=True)
    y.name = target
    as_read = features.reset_index(drop=True)  # copy-on-write: the columns are not copied
    as_read.attrs = {}  # the reader's notes (checksum, delimiter) describe the file
    if deadline is not None:
        deadline.check()
    return Dataset(X, y, task, target, schema, classes, n_rows_read=len(df) + n_missing,
                   n_dropped_missing_target=n_missing, notes=notes, name=name, sha256=sha256,
                   features_as_read=as_read, target_values=target_values)


def load_dataset(path: str | Path, target: str | None, task: str | None = None,
                 sep: str | None = None, *, deadline: Deadline | None = None,
                 max_bytes: int | None = None) -> Dataset:
    """Read a file and prepare it (see :func:`read_table`, :func:`prepare_dataset`).

    ``target=None`` takes the last column (the ARFF / OpenML convention). ``deadline``
    bounds the time reading and typing take together, ``max_bytes`` the size read.
    """
    df = read_table(path, sep=sep, deadline=deadline, max_bytes=max_bytes)
    if target is None:
        target = str(df.columns[-1])
    sha256 = df.attrs.get("sha256") or file_sha256(path)
    name = "stdin" if str(path) == "-" else Path(path).name
    ds = prepare_dataset(df, target, task, name=name, sha256=sha256, deadline=deadline)
    for col in df.attrs.get("nested_dropped", []):
        ds.notes.append(f"dropped column {col!r}: nested values (lists / structs)")
        ds.schema.dropped[col] = "nested values"
    return ds
