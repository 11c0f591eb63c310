"""Reading tables, typing columns and inferring the task.

Supported formats (by file name, optionally gzipped): CSV (delimiter detected), TSV, Parquet,
ARFF. Column kinds: ``numeric``, ``categorical``, ``boolean``, ``datetime``. Columns that
cannot help a model are dropped with a note: constant, entirely missing, ID-like (a distinct
value on every row) and free text.

Task inference rule (``infer_task``), unless ``task`` is given:

1. a target declared nominal (ARFF), boolean or non-numeric text is classification;
2. a numeric target with 2 distinct values is binary classification;
3. a numeric target whose values are all integers, with at most 10 distinct values and at
   least twice as many rows as values, is multiclass classification;
4. any other numeric target is regression.
Classification with 2 classes is ``binary``, with more ``multiclass``.
"""

from __future__ import annotations

import csv
import difflib
import gzip
import hashlib
import io
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import UsageError

TASKS = ("binary", "multiclass", "regression")
MAX_CLASSES_FOR_INTEGER_TARGET = 10
FEATURE_KINDS = ("numeric", "categorical", "boolean", "datetime")
_TRUE = {"true", "t", "yes", "y"}
_FALSE = {"false", "f", "no", "n"}
_ID_NAME = re.compile(r"((^|[_\W])(id|uuid|guid|key|obs|rownum|counter)\W*$)"
                      r"|^(index|row|unnamed: ?\d+)$", re.IGNORECASE)


# ---------------------------------------------------------------------------------- reading
def _open_text(path: Path) -> bytes:
    raw = path.read_bytes()
    if path.suffix == ".gz" or raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise UsageError(f"{path}: not a valid gzip file ({exc})") from None
    return raw


def _decode(raw: bytes, path: Path) -> str:
    if b"\x00" in raw[:8192]:
        raise UsageError(f"{path}: looks like a binary file, not a text table "
                         "(expected CSV, TSV, Parquet or ARFF)")
    for encoding in ("utf-8-sig", "cp1252", "latin-1"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise UsageError(f"{path}: cannot decode the file as text")  # pragma: no cover


def _file_format(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    for fmt, suffixes in (("parquet", (".parquet", ".pq")), ("arff", (".arff",)),
                          ("tsv", (".tsv", ".tab")), ("csv", (".csv", ".txt", ".data"))):
        if name.endswith(suffixes):
            return fmt
    return "csv"


def _sniff_delimiter(text: str, default: str = ",") -> str:
    sample = text[:65536]
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        first = sample.splitlines()[0] if sample.strip() else ""
        counts = {d: first.count(d) for d in ",;\t|"}
        best = max(counts, key=counts.get)
        return best if counts[best] else default


def _read_delimited(path: Path, sep: str | None) -> pd.DataFrame:
    text = _decode(_open_text(path), path)
    if not text.strip():
        raise UsageError(f"{path}: the file is empty")
    sep = sep or _sniff_delimiter(text)
    try:
        df = pd.read_csv(io.StringIO(text), sep=sep, low_memory=False,
                         skipinitialspace=True, na_values=["?", "NA", "N/A", "na", "n/a",
                                                            "NaN", "nan", "null", "NULL", ""])
    except pd.errors.EmptyDataError:
        raise UsageError(f"{path}: the file is empty") from None
    except pd.errors.ParserError as exc:
        msg = str(exc).strip().splitlines()[-1]
        raise UsageError(f"{path}: cannot parse as delimited text ({msg})") from None
    return df


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        df = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises many types
        raise UsageError(f"{path}: cannot read as Parquet ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    nested = [c for c in df.columns
              if df[c].dtype == object and df[c].map(lambda v: isinstance(
                  v, (list, dict, np.ndarray))).any()]
    if nested:
        df = df.drop(columns=nested)
        df.attrs["nested_dropped"] = nested
    return df


def read_arff_text(text: str, name: str = "<arff>") -> pd.DataFrame:
    """Parse ARFF text into a DataFrame; nominal attributes become ordered categoricals.

    The declared nominal values are kept as the categories (in declaration order), which is
    what OpenML's qualities count. Dense and sparse ARFF are both read (liac-arff).
    """
    import arff  # liac-arff, the parser openml-python uses

    try:
        decoded = arff.loads(text)
    except Exception as exc:  # liac-arff raises its own hierarchy plus ValueError
        raise UsageError(f"{name}: malformed ARFF ({type(exc).__name__}: {exc})") from None
    columns = [a[0] for a in decoded["attributes"]]
    df = pd.DataFrame(decoded["data"], columns=columns)
    for attr_name, attr_type in decoded["attributes"]:
        col = df[attr_name]
        if isinstance(attr_type, list):
            values = [str(v) for v in attr_type]
            cats = list(dict.fromkeys(values))
            labels = [None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)
                      for v in col.tolist()]
            df[attr_name] = pd.Categorical(labels, categories=cats)
        elif isinstance(attr_type, str) and attr_type.upper() in ("NUMERIC", "REAL", "INTEGER"):
            df[attr_name] = pd.to_numeric(col, errors="coerce").astype(float)
        elif isinstance(attr_type, str) and attr_type.upper().startswith("DATE"):
            df[attr_name] = pd.to_datetime(col, errors="coerce")
        else:
            df[attr_name] = col.astype(object)
    df.attrs["arff_relation"] = decoded.get("relation", "")
    return df


def read_table(path: str | Path, sep: str | None = None) -> pd.DataFrame:
    """Read a CSV, TSV, Parquet or ARFF file (optionally gzipped) into a DataFrame.

    Parameters
    ----------
    path : str or Path
        The file. The format is chosen by its name (``.csv``, ``.tsv``, ``.parquet``,
        ``.arff``, each optionally ``.gz``); unknown names are read as delimited text.
    sep : str, optional
        Delimiter for delimited text; detected when omitted.

    Raises
    ------
    UsageError
        When the file is missing, unreadable, empty or malformed.
    """
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{path}: no such file")
    if path.is_dir():
        raise UsageError(f"{path}: is a directory, expected a data file")
    try:
        fmt = _file_format(path)
        if fmt == "parquet":
            df = _read_parquet(path)
        elif fmt == "arff":
            df = read_arff_text(_decode(_open_text(path), path), str(path))
        else:
            df = _read_delimited(path, "\t" if fmt == "tsv" and sep is None else sep)
    except PermissionError:
        raise UsageError(f"{path}: permission denied") from None
    if df.shape[1] == 0:
        raise UsageError(f"{path}: no columns found")
    if df.shape[0] == 0:
        raise UsageError(f"{path}: the file has a header but no data rows")
    df.columns = _clean_column_names(df.columns)
    return df


def _clean_column_names(columns: pd.Index) -> list[str]:
    names: list[str] = []
    seen: dict[str, int] = {}
    for i, c in enumerate(columns):
        name = str(c).strip()
        if not name:
            name = f"column_{i}"
        base = name
        if name in seen:
            seen[base] += 1
            name = f"{base}.{seen[base]}"
        seen.setdefault(name, 0)
        names.append(name)
    return names


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------------------------- typing
@dataclass
class Column:
    """How one input column is used."""

    name: str
    kind: str  # numeric | categorical | boolean | datetime
    dtype: str
    n_unique: int = 0
    categories: list[str] | None = None


@dataclass
class Schema:
    """The feature schema of a dataset: kept columns with their kinds, and dropped ones."""

    columns: list[Column]
    dropped: dict[str, str] = field(default_factory=dict)  # column -> reason

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def kinds(self) -> dict[str, str]:
        return {c.name: c.kind for c in self.columns}

    def of_kind(self, kind: str) -> list[str]:
        return [c.name for c in self.columns if c.kind == kind]

    def to_dict(self) -> dict[str, Any]:
        return {"columns": [{"name": c.name, "kind": c.kind, "dtype": c.dtype,
                             "n_unique": c.n_unique} for c in self.columns],
                "dropped": dict(self.dropped)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Schema:
        return cls([Column(c["name"], c["kind"], c.get("dtype", ""), c.get("n_unique", 0))
                    for c in d["columns"]], dict(d.get("dropped", {})))


def _is_textual(s: pd.Series) -> bool:
    return (s.dtype == object or pd.api.types.is_string_dtype(s.dtype)) and not isinstance(
        s.dtype, pd.CategoricalDtype)


def _as_bool(s: pd.Series) -> pd.Series | None:
    if pd.api.types.is_bool_dtype(s.dtype):
        return s.astype(float)
    if not _is_textual(s):
        return None
    values = s.dropna().astype(str).str.strip().str.lower()
    uniq = set(values.unique())
    if not uniq or not uniq <= (_TRUE | _FALSE) or not (uniq & _TRUE and uniq & _FALSE):
        return None
    return s.astype(str).str.strip().str.lower().map(
        lambda v: 1.0 if v in _TRUE else (0.0 if v in _FALSE else np.nan)).where(s.notna())


def _as_numeric(s: pd.Series, min_share: float = 0.95) -> pd.Series | None:
    if not _is_textual(s):
        return None
    present = s.dropna()
    if present.empty:
        return None
    num = pd.to_numeric(present.astype(str).str.strip(), errors="coerce")
    if num.notna().mean() >= min_share:
        return pd.to_numeric(s.astype(object).where(s.notna(), None).map(
            lambda v: v.strip() if isinstance(v, str) else v), errors="coerce").astype(float)
    return None


_DATE_HINT = re.compile(r"\d{1,4}[-/.:]\d{1,2}([-/.:]\d{1,4})?")


def _as_datetime(s: pd.Series, min_share: float = 0.95) -> pd.Series | None:
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        return s
    if not _is_textual(s):
        return None
    present = s.dropna().astype(str)
    if present.empty:
        return None
    sample = present.iloc[:200]
    if sample.map(lambda v: bool(_DATE_HINT.search(v))).mean() < min_share:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            parsed = pd.to_datetime(s, errors="coerce", format="mixed")
        except (ValueError, TypeError):
            return None
    if parsed.notna().sum() >= min_share * len(present):
        if getattr(parsed.dt, "tz", None) is not None:
            parsed = parsed.dt.tz_convert(None)
        return parsed
    return None


def coerce_features(df: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """Bring raw input columns to the dtypes the schema declares (used by fit and predict)."""
    out = {}
    for col in schema.columns:
        s = df[col.name]
        if col.kind == "numeric":
            if not pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype):
                conv = _as_bool(s) if col.dtype == "bool" else None
                s = conv if conv is not None else pd.to_numeric(
                    s.astype(object).map(lambda v: v.strip() if isinstance(v, str) else v),
                    errors="coerce")
            s = s.astype(float).replace([np.inf, -np.inf], np.nan)
        elif col.kind == "boolean":
            conv = _as_bool(s)
            s = conv if conv is not None else pd.to_numeric(s, errors="coerce").astype(float)
        elif col.kind == "datetime":
            if not pd.api.types.is_datetime64_any_dtype(s.dtype):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    s = pd.to_datetime(s, errors="coerce", format="mixed")
            if getattr(s.dt, "tz", None) is not None:
                s = s.dt.tz_convert(None)
        else:  # categorical: plain strings, missing as NaN
            s = s.astype(object).where(s.notna(), np.nan).map(
                lambda v: v if isinstance(v, float) and np.isnan(v) else str(v).strip())
            s = s.astype(object)
        out[col.name] = s
    return pd.DataFrame(out, index=df.index)


def infer_schema(X: pd.DataFrame) -> tuple[Schema, pd.DataFrame]:
    """Type every feature column; return the schema and the typed frame of kept columns."""
    n = len(X)
    kept: list[Column] = []
    dropped: dict[str, str] = {}
    typed: dict[str, pd.Series] = {}
    for name in X.columns:
        s = X[name]
        if isinstance(s, pd.DataFrame):  # pragma: no cover - names are made unique on read
            s = s.iloc[:, 0]
        present = s.dropna()
        if present.empty:
            dropped[name] = "entirely missing"
            continue
        if isinstance(s.dtype, pd.CategoricalDtype):
            uniq = present.astype(str).nunique()
            if uniq <= 1:
                dropped[name] = "constant"
                continue
            kept.append(Column(name, "categorical", "category", int(uniq),
                               [str(c) for c in s.cat.categories]))
            typed[name] = s
            continue
        if pd.api.types.is_bool_dtype(s.dtype) or _as_bool(s) is not None:
            conv = _as_bool(s)
            if conv.dropna().nunique() <= 1:
                dropped[name] = "constant"
                continue
            kept.append(Column(name, "boolean", "bool", 2))
            typed[name] = conv
            continue
        if pd.api.types.is_numeric_dtype(s.dtype):
            vals = s.astype(float).replace([np.inf, -np.inf], np.nan)
            uniq = int(vals.nunique())
            if uniq <= 1:
                dropped[name] = "constant"
                continue
            if (uniq == len(present) and n >= 20 and _looks_like_row_id(vals, name)):
                dropped[name] = "ID-like (a distinct integer on every row)"
                continue
            kept.append(Column(name, "numeric", str(s.dtype), uniq))
            typed[name] = vals
            continue
        if pd.api.types.is_datetime64_any_dtype(s.dtype):
            conv = _as_datetime(s)
            kept.append(Column(name, "datetime", "datetime64", int(present.nunique())))
            typed[name] = conv
            continue
        num = _as_numeric(s)
        if num is not None:
            uniq = int(num.nunique())
            if uniq <= 1:
                dropped[name] = "constant"
                continue
            kept.append(Column(name, "numeric", "object", uniq))
            typed[name] = num
            continue
        dt = _as_datetime(s)
        if dt is not None:
            if dt.nunique() <= 1:
                dropped[name] = "constant"
                continue
            kept.append(Column(name, "datetime", "object", int(dt.nunique())))
            typed[name] = dt
            continue
        strings = present.astype(str).str.strip()
        uniq = int(strings.nunique())
        if uniq <= 1:
            dropped[name] = "constant"
            continue
        if n >= 20 and uniq == len(present) and len(present) >= 0.5 * n:
            dropped[name] = "ID-like (a distinct value on every row)"
            continue
        if n >= 20 and uniq > 0.5 * len(present) and strings.str.len().mean() > 30 and \
                strings.str.contains(r"\s").mean() > 0.5:
            dropped[name] = "free text (mostly distinct multi-word values)"
            continue
        kept.append(Column(name, "categorical", "object", uniq))
        typed[name] = s
    schema = Schema(kept, dropped)
    frame = pd.DataFrame(typed, index=X.index)
    return schema, coerce_features(frame, schema) if kept else frame


def _looks_like_row_id(vals: pd.Series, name: str) -> bool:
    v = vals.dropna().to_numpy()
    if not np.all(np.mod(v, 1) == 0):
        return False
    # Consecutive integers alone are not enough: a year or a time index is a real feature
    # of a time series. The column's name must also say it is an identifier.
    return bool(_ID_NAME.search(name))


# ---------------------------------------------------------------------------------- target
def infer_task(y: pd.Series) -> str:
    """Infer ``binary``, ``multiclass`` or ``regression`` from the target (rule in module doc)."""
    present = y.dropna()
    if isinstance(y.dtype, pd.CategoricalDtype) or pd.api.types.is_bool_dtype(y.dtype):
        return "binary" if present.nunique() <= 2 else "multiclass"
    if _is_textual(y) and _as_numeric(y, min_share=1.0) is None:
        return "binary" if present.nunique() <= 2 else "multiclass"
    values = pd.to_numeric(present, errors="coerce") if _is_textual(y) else present
    values = values.astype(float)
    uniq = values.nunique()
    if uniq <= 2:
        return "binary"
    integral = bool(np.all(np.mod(values.to_numpy(), 1) == 0))
    if integral and uniq <= MAX_CLASSES_FOR_INTEGER_TARGET and len(values) >= 2 * uniq:
        return "multiclass"
    return "regression"


def closest_column(name: str, columns: list[str]) -> str | None:
    """The column name most similar to ``name`` (case-insensitive), if any is close."""
    lowered = {c.lower(): c for c in columns}
    if name.lower() in lowered:
        return lowered[name.lower()]
    match = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.5)
    return lowered[match[0]] if match else None


@dataclass
class Dataset:
    """A validated supervised dataset, ready for meta-features and search."""

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

    @property
    def n_rows(self) -> int:
        return len(self.y)


def prepare_dataset(df: pd.DataFrame, target: str, task: str | None = None,
                    name: str = "", sha256: str = "") -> Dataset:
    """Validate ``df``, split off the target, type the features, and infer the task.

    Parameters
    ----------
    df : DataFrame
        The table as read.
    target : str
        Name of the target column.
    task : {"binary", "multiclass", "classification", "regression"}, optional
        Override the inferred task. ``classification`` chooses binary / multiclass.

    Raises
    ------
    UsageError
        Unknown target (with a suggestion), target entirely missing, one class only, no
        usable feature, too few rows.
    """
    if target not in df.columns:
        hint = closest_column(target, list(df.columns))
        tail = f"; did you mean {hint!r}?" if hint else \
            f"; columns are: {', '.join(map(str, list(df.columns)[:20]))}"
        raise UsageError(f"target column {target!r} not found{tail}")
    if task is not None and task not in (*TASKS, "classification"):
        raise UsageError(f"unknown task {task!r}; use binary, multiclass, classification or "
                         "regression")
    y_raw = df[target]
    if isinstance(y_raw, pd.DataFrame):
        raise UsageError(f"target column {target!r} appears more than once")
    if _is_textual(y_raw):
        y_raw = y_raw.map(lambda v: v.strip() if isinstance(v, str) else v).replace("", np.nan)
    if pd.api.types.is_numeric_dtype(y_raw.dtype):
        y_raw = y_raw.replace([np.inf, -np.inf], np.nan)
    missing = y_raw.isna()
    n_missing = int(missing.sum())
    if n_missing == len(df):
        raise UsageError(f"target column {target!r} is entirely missing")
    notes = []
    if n_missing:
        notes.append(f"dropped {n_missing} rows with a missing target")
    df = df.loc[~missing]
    y = y_raw.loc[~missing]
    inferred = infer_task(y)
    if task is None:
        task = inferred
    elif task == "classification":
        task = "binary" if y.nunique() <= 2 else "multiclass"
    if task == "regression":
        y_num = pd.to_numeric(y.astype(object) if isinstance(y.dtype, pd.CategoricalDtype)
                              else y, errors="coerce")
        if y_num.isna().any():
            raise UsageError(f"target {target!r} has non-numeric values; it cannot be a "
                             "regression target (use --task classification)")
        y = y_num.astype(float)
        if y.nunique() <= 1:
            raise UsageError(f"target {target!r} is constant; nothing to learn")
        classes = None
    else:
        if isinstance(y.dtype, pd.CategoricalDtype):
            y = y.astype(str)
        elif _is_textual(y):
            y = y.astype(str)
        elif pd.api.types.is_float_dtype(y.dtype) and np.all(np.mod(y.to_numpy(), 1) == 0):
            y = y.astype(np.int64)
        counts = y.value_counts()
        if len(counts) < 2:
            raise UsageError(f"target {target!r} has a single class ({counts.index[0]!r}): "
                             "only one class found, a classifier needs at least two")
        if task == "binary" and len(counts) > 2:
            raise UsageError(f"--task binary but target {target!r} has {len(counts)} classes; "
                             "use --task multiclass")
        if task == "multiclass" and len(counts) == 2:
            task = "binary"
        classes = sorted(counts.index.tolist(), key=lambda v: (str(type(v)), v))
    if len(y) < 10:
        raise UsageError(f"only {len(y)} rows with a target; at least 10 are needed to "
                         "cross-validate")
    features = df.drop(columns=[target])
    if features.shape[1] == 0:
        raise UsageError("the table has no feature columns besides the target")
    schema, X = infer_schema(features)
    for col, reason in schema.dropped.items():
        notes.append(f"dropped column {col!r}: {reason}")
    if not schema.columns:
        raise UsageError("no usable feature column: every column was dropped ("
                         + "; ".join(f"{c}: {r}" for c, r in schema.dropped.items()) + ")")
    X = X.reset_index(drop=True)
    y = y.reset_index(drop=True)
    y.name = target
    return Dataset(X, y, task, target, schema, classes, n_rows_read=len(df) + n_missing,
                   n_dropped_missing_target=n_missing, notes=notes, name=name, sha256=sha256)


def load_dataset(path: str | Path, target: str | None, task: str | None = None,
                 sep: str | None = None) -> Dataset:
    """Read a file and prepare it (see :func:`read_table`, :func:`prepare_dataset`).

    ``target=None`` takes the last column (the ARFF / OpenML convention).
    """
    df = read_table(path, sep=sep)
    if target is None:
        target = str(df.columns[-1])
    ds = prepare_dataset(df, target, task, name=Path(path).name, sha256=file_sha256(path))
    for col in df.attrs.get("nested_dropped", []):
        ds.notes.append(f"dropped column {col!r}: nested values (lists / structs)")
        ds.schema.dropped[col] = "nested values"
    return ds
