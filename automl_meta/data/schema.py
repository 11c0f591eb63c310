"""Column typing: the feature schema of a table and the coercion that replays it.

Column kinds: ``numeric``, ``categorical``, ``boolean``, ``datetime``. Columns that cannot
help a model are dropped with a note: constant, entirely missing, ID-like (a distinct value on
every row) and free text. Text columns are typed once, when fitting, and the way they were
read is kept in the schema (``Column.dtype``) so that ``predict`` reads a one-row file exactly
as the training file: numbers with separators (``1,234.5``; ``1.234,5`` / ``12,5`` with a
decimal comma) and one datetime format per column (ISO 8601 or a strftime pattern such as
``%d/%m/%Y``; offsets are converted to UTC).
"""


from __future__ import annotations

import dataclasses
import json
import re
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from automl_meta.data.io import (
    Deadline,
    _all_strings,
    _is_missing,
    _one_line,
    _parse_datetime,
    _per_distinct,
    _stripped,
)
from automl_meta.errors import UsageError

# the features FeaturePreparer derives from a datetime column ``c``: ``c__year`` …
DATETIME_PARTS = ("year", "month", "day", "dayofweek", "hour", "epoch_days")
FEATURE_KINDS = ("numeric", "categorical", "boolean", "datetime")
_TRUE = {"true", "t", "yes", "y"}
_FALSE = {"false", "f", "no", "n"}
_BOOL_VALUES = {**{t: 1.0 for t in _TRUE}, **{f: 0.0 for f in _FALSE}}
_ID_NAME = re.compile(r"((^|[_\W])(id|uuid|guid|key|obs|rownum|counter)\W*$)"
                      r"|^(index|row|unnamed: ?\d+)$", re.IGNORECASE)



@dataclass
class Column:
    """How one input column is used."""

    name: str
    kind: str  # numeric | categorical | boolean | datetime
    # dtype as read, plus how text is parsed: "object|number=1.234,5" (decimal comma),
    # "object|format=%d/%m/%Y" (the datetime format found when fitting)
    dtype: str
    n_unique: int = 0
    categories: list[str] | None = None
    # the name in the data when the model uses another one (``name``): a column renamed
    # because a datetime column's derived features (``when__year`` …) have its name
    source: str | None = None


@dataclass
class Schema:
    """The feature schema of a dataset: kept columns with their kinds, and dropped ones."""

    columns: list[Column]
    dropped: dict[str, str] = field(default_factory=dict)  # column -> reason

    @property
    def names(self) -> list[str]:
        """The columns the model needs in its input data (as named there)."""
        return [c.source or c.name for c in self.columns]

    def kinds(self) -> dict[str, str]:
        return {c.name: c.kind for c in self.columns}

    def of_kind(self, kind: str) -> list[str]:
        return [c.name for c in self.columns if c.kind == kind]

    def to_dict(self) -> dict[str, Any]:
        return {"columns": [{"name": c.name, "kind": c.kind, "dtype": c.dtype,
                             "n_unique": c.n_unique}
                            | ({"source": c.source} if c.source is not None else {})
                            for c in self.columns],
                "dropped": dict(self.dropped)}

    def __getstate__(self) -> dict[str, Any]:
        # One JSON string instead of an object per column: a model file of a table with
        # thousands of columns stays small and fast to write and to audit (skops stores
        # every object as a node of its schema).
        return {"encoded": json.dumps(
            {"columns": [dataclasses.asdict(c) for c in self.columns],
             "dropped": self.dropped}, ensure_ascii=False, allow_nan=False)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "encoded" not in state:  # written by 0.1.0: the dataclass fields themselves
            self.__dict__.update(state)
            return
        d = json.loads(state["encoded"])
        self.columns = [Column(**c) for c in d["columns"]]
        self.dropped = dict(d["dropped"])

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Schema:
        return cls([Column(c["name"], c["kind"], c.get("dtype", ""), c.get("n_unique", 0),
                           source=c.get("source")) for c in d["columns"]],
                   dict(d.get("dropped", {})))


def _is_textual(s: pd.Series) -> bool:
    return (s.dtype == object or pd.api.types.is_string_dtype(s.dtype)) and not isinstance(
        s.dtype, pd.CategoricalDtype)


def _dtype_option(dtype: str, key: str) -> str | None:
    """``Column.dtype`` may carry parse options: ``"object|number=1,234.5"``."""
    for part in str(dtype).split("|")[1:]:
        k, _, v = part.partition("=")
        if k == key:
            return v
    return None


def _floats(s: pd.Series) -> np.ndarray:
    """A numeric Series as a float array; infinities become NaN."""
    vals = np.array(s.to_numpy(dtype=float, na_value=np.nan), dtype=float, copy=True)
    vals[~np.isfinite(vals)] = np.nan
    return vals


def _bool_values(s: pd.Series) -> pd.Series:
    """Map true / false spellings to 1.0 / 0.0 (anything else missing)."""
    if pd.api.types.is_bool_dtype(s.dtype):
        return pd.Series(s.to_numpy(dtype=float, na_value=np.nan), index=s.index, name=s.name)
    if pd.api.types.is_numeric_dtype(s.dtype):
        vals = _floats(s)
        vals[(vals != 0) & (vals != 1)] = np.nan
        return pd.Series(vals, index=s.index, name=s.name)

    if _all_strings(s):
        return _per_distinct(s, lambda u: u.str.strip().str.lower().map(_BOOL_VALUES),
                             np.nan, float)

    def one(v: Any) -> float:
        if v is None:
            return np.nan
        if isinstance(v, (bool, np.bool_)):
            return float(v)
        return _BOOL_VALUES.get(str(v).lower(), np.nan)

    return pd.Series([one(v) for v in _stripped(s)], index=s.index, name=s.name, dtype=float)


def _as_bool(s: pd.Series) -> pd.Series | None:
    """The column as 0 / 1 floats when it is boolean (both values occur), else None."""
    if pd.api.types.is_bool_dtype(s.dtype):
        return _bool_values(s)
    if not _is_textual(s):
        return None
    present = s.dropna()
    if present.empty:
        return None
    uniq = pd.unique(present.astype(str).str.strip().str.lower())
    if len(uniq) > len(_TRUE | _FALSE):
        return None
    uniq = set(uniq)
    if not uniq <= (_TRUE | _FALSE) or not (uniq & _TRUE and uniq & _FALSE):
        return None
    return _bool_values(s)


# Numbers written with separators. "1,234.5": comma thousands; "1.234,5" / "12,5": decimal
# comma (Excel in most of Europe), optionally with "." or space thousands.
_NUM_THOUSANDS = "1,234.5"
_NUM_DECIMAL_COMMA = "1.234,5"
_THOUSANDS_RE = r"^[+-]?[1-9]\d{0,2}(,\d{3})+(\.\d*)?$"
_DECIMAL_COMMA_RE = r"^[+-]?(\d{1,3}([.\u00a0\u202f' ]\d{3})+|\d*),\d+$"
_DOT_THOUSANDS = re.compile(r"^[+-]?[1-9]\d{0,2}(\.\d{3})+$")
_THOUSANDS_CHARS = re.compile(r"[.\u00a0\u202f' ]")


def _to_float(strings: pd.Series, fmt: str | None) -> pd.Series:
    """Parse an object Series of stripped strings / numbers / None as floats (NaN if not)."""
    if _all_strings(strings) and len(strings) > 1:
        return _per_distinct(strings, lambda u: _to_float_values(u, fmt), np.nan, float)
    return pd.Series(_to_float_values(strings, fmt), index=strings.index, name=strings.name)


def _to_float_values(strings: pd.Series, fmt: str | None, keep_inf: bool = False
                     ) -> np.ndarray:
    if fmt in (_NUM_THOUSANDS, _NUM_DECIMAL_COMMA):
        text = strings.str  # non-strings give NaN below and are kept as they are
        if fmt == _NUM_THOUSANDS:
            rewrite = text.contains(",", regex=False)
            new = text.replace(",", "", regex=False)
        else:
            rewrite = text.contains(",", regex=False) | text.match(_DOT_THOUSANDS.pattern)
            new = text.replace(_THOUSANDS_CHARS.pattern, "", regex=True).str.replace(
                ",", ".", regex=False)
        rewrite = rewrite.astype(object).fillna(False).astype(bool)
        strings = strings.where(~rewrite, new)
    num = _to_numeric(strings)
    if not pd.api.types.is_numeric_dtype(num.dtype) or pd.api.types.is_complex_dtype(num.dtype):
        return np.full(len(strings), np.nan)
    if keep_inf:
        return np.array(num.to_numpy(dtype=float, na_value=np.nan), dtype=float, copy=True)
    return _floats(num)


def _to_numeric(values: pd.Series) -> pd.Series:
    """``pd.to_numeric(errors="coerce")``, with integers too large for a float (Python
    ints of hundreds of digits) read as infinities instead of an OverflowError."""
    try:
        return pd.to_numeric(values, errors="coerce")
    except OverflowError:
        def one(v: Any) -> Any:
            if isinstance(v, int) and not isinstance(v, bool):
                try:
                    return float(v)
                except OverflowError:
                    return np.inf if v > 0 else -np.inf
            return v

        return pd.to_numeric(values.map(one), errors="coerce")


def _number_format(failed: pd.Series, delimiter: str | None = None) -> str | None:
    """Which separator convention explains values that plain parsing could not read."""
    if failed.empty:
        return None
    text = failed.astype(str)
    n_thousands = int(text.str.match(_THOUSANDS_RE).sum())
    n_decimal = int(text.str.match(_DECIMAL_COMMA_RE).sum())
    if not n_thousands and not n_decimal:
        return None
    if n_decimal > n_thousands or (n_decimal == n_thousands and delimiter == ";"):
        return _NUM_DECIMAL_COMMA
    return _NUM_THOUSANDS


def _as_numeric(s: pd.Series, min_share: float = 0.95,
                delimiter: str | None = None) -> tuple[pd.Series, str | None] | None:
    """Text that is numbers (``min_share`` of the present values): (floats, number format)."""
    if not _is_textual(s):
        return None
    strings = _stripped(s)
    if _all_strings(strings):  # decide on the distinct values, weighted by their counts
        codes, uniques = pd.factorize(strings, use_na_sentinel=True)
        if not len(uniques):
            return None
        counts = np.bincount(codes[codes >= 0], minlength=len(uniques))
        distinct = pd.Series(uniques, dtype=object)
        values = _to_float_values(distinct, None, keep_inf=True)
        fmt = None
        if counts[~np.isnan(values)].sum() < min_share * counts.sum():
            fmt = _number_format(distinct[np.isnan(values)].iloc[:5000], delimiter)
            if fmt is None:
                return None
            values = _to_float_values(distinct, fmt, keep_inf=True)
            if counts[~np.isnan(values)].sum() < min_share * counts.sum():
                return None
        values[np.isinf(values)] = np.nan  # an infinity counts as a number, and is missing
        return pd.Series(np.append(values, np.nan)[codes], index=s.index, name=s.name), fmt
    present = strings.dropna()  # mixed Python objects (the Python API): value by value
    if present.empty:
        return None
    plain = _to_numeric(present)
    if not pd.api.types.is_numeric_dtype(plain.dtype):  # pragma: no cover - defensive
        return None
    if plain.notna().mean() >= min_share:
        return _to_float(strings, None), None
    return None


_DATE_HINT = re.compile(r"\d{1,4}[-/.:]\d{1,2}([-/.:]\d{1,4})?")


def _datetime_format(present: pd.Series, min_share: float) -> str | None:
    """The one format (ISO 8601 or a guessed strftime pattern) that reads the most values.

    One format for the whole column, so "01/02/2019" and "13/02/2019" are read the same way
    (day first here), never one value month-first and the next day-first.
    """
    from pandas.tseries.api import guess_datetime_format

    sample = present.drop_duplicates().iloc[:200]
    candidates = ["ISO8601"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for v in sample.iloc[:20]:
            for dayfirst in (False, True):
                try:
                    f = guess_datetime_format(v, dayfirst=dayfirst)
                except (ValueError, TypeError):  # pragma: no cover
                    f = None
                if f and ("%Y" in f or "%y" in f) and f not in candidates:
                    candidates.append(f)
    best, best_n = None, 0
    for f in candidates:
        n = int(_parse_datetime(sample, f).notna().sum())
        if n > best_n:
            best, best_n = f, n
    return best if best_n >= min_share * len(sample) else None


def _as_datetime(s: pd.Series, min_share: float = 0.95) -> tuple[pd.Series, str] | None:
    """Text that is dates / times (``min_share`` of the present values): (datetimes, format)."""
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        return (s.dt.tz_convert(None) if getattr(s.dt, "tz", None) is not None else s), ""
    if not _is_textual(s):
        return None
    strings = _stripped(s)
    present = strings.dropna()
    if not _all_strings(present):
        present = present[present.map(lambda v: isinstance(v, str))]
    if present.empty or len(present) < min_share * strings.notna().sum():
        return None
    if present.iloc[:200].map(lambda v: bool(_DATE_HINT.search(v))).mean() < min_share:
        return None
    fmt = _datetime_format(present, min_share)
    if fmt is None:
        return None
    parsed = _parse_datetime(strings, fmt)
    if parsed.notna().sum() >= min_share * len(present):
        return parsed, fmt
    return None


def _category_label(v: Any) -> Any:
    if v is None or _is_missing(v):
        return np.nan
    if isinstance(v, str):
        return v.strip() or np.nan
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    return str(v).strip() or np.nan


def _categorical_values(s: pd.Series) -> pd.Series:
    """Category labels as stripped strings (``1.0`` read as a number → ``"1"``), missing NaN."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        labels = np.array([_category_label(c) for c in s.cat.categories] + [np.nan],
                          dtype=object)
        return pd.Series(labels[s.cat.codes.to_numpy()], index=s.index, name=s.name,
                         dtype=object)
    if _all_strings(s):
        st = _stripped(s)
        return pd.Series(st.where(st.notna(), np.nan), index=s.index, name=s.name,
                         dtype=object)
    if s.dtype != object:  # numbers, booleans, dates: few distinct values, label each once
        codes, uniques = pd.factorize(s, use_na_sentinel=True)
        labels = np.array([_category_label(u) for u in uniques] + [np.nan], dtype=object)
        return pd.Series(labels[codes], index=s.index, name=s.name, dtype=object)
    out = np.empty(len(s), dtype=object)
    for i, v in enumerate(s.to_numpy(dtype=object)):
        out[i] = _category_label(v)
    return pd.Series(out, index=s.index, name=s.name, dtype=object)


def coerce_features(df: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """Bring raw input columns to the dtypes the schema declares (used by fit and predict).

    Numeric columns become float (infinities missing; numbers written with separators are
    read the way the training column was), booleans 0 / 1, datetimes naive ``datetime64``
    (offsets converted to UTC), categoricals stripped strings with NaN for missing.
    """
    if df.attrs:  # pandas deep-copies attrs into every column taken out: drop them once
        df = df.copy(deep=False)
        df.attrs = {}
    source = {c.name: _input_name(c, df.columns) for c in schema.columns}
    absent = [c.source or c.name for c in schema.columns if source[c.name] not in df.columns]
    if absent:
        shown = ", ".join(repr(c) for c in absent[:10])
        more = f" and {len(absent) - 10} more" if len(absent) > 10 else ""
        raise UsageError(_one_line(f"the data lacks {len(absent)} column(s) the model needs: "
                                   f"{shown}{more}", 600))
    # numeric columns that already hold numbers are converted in one block (wide tables)
    block_names: list[str] = []
    if df.columns.is_unique:
        dtypes = df.dtypes
        block_names = [c.name for c in schema.columns if c.kind == "numeric"
                       and _plain_numeric_dtype(dtypes[source[c.name]])]
    block_set = set(block_names) if len(block_names) > 1 else set()
    out = {}
    for col in schema.columns:
        if col.name in block_set:
            continue
        s = df[source[col.name]]
        if isinstance(s, pd.DataFrame):
            raise UsageError(f"column {source[col.name]!r} appears more than once in the data")
        if col.kind == "numeric":
            if pd.api.types.is_bool_dtype(s.dtype) or col.dtype == "bool":
                s = _bool_values(s)
            elif not _plain_numeric_dtype(s.dtype):
                s = _to_float(_stripped(s), _dtype_option(col.dtype, "number"))
            vals = _floats(s)
        elif col.kind == "boolean":
            vals = _bool_values(s).to_numpy(dtype=float)
        elif col.kind == "datetime":
            if pd.api.types.is_datetime64_any_dtype(s.dtype):
                vals = s.dt.tz_convert(None) if getattr(s.dt, "tz", None) is not None else s
            else:
                vals = _parse_datetime(_stripped(s), _dtype_option(col.dtype, "format")
                                       or "mixed")
            vals = vals.to_numpy(dtype="datetime64[us]")
        else:  # categorical: plain strings, missing as NaN
            vals = _categorical_values(s).to_numpy(dtype=object)
        out[col.name] = vals
    if not block_set:
        return pd.DataFrame(out, index=df.index)
    block = np.array(df[[source[c] for c in block_names]].to_numpy(dtype=float,
                                                                    na_value=np.nan),
                     dtype=float, copy=True)
    block[~np.isfinite(block)] = np.nan
    parts = [pd.DataFrame(block, index=df.index, columns=block_names)]
    if out:
        parts.append(pd.DataFrame(out, index=df.index))
    return pd.concat(parts, axis=1)[[c.name for c in schema.columns]]


def _input_name(col: Column, columns: pd.Index) -> str:
    """The input column that feeds ``col``: its ``source`` (the name in the data file)
    when the data has it, else its own name (a frame that was typed already)."""
    return col.source if col.source is not None and col.source in columns else col.name


def _plain_numeric_dtype(dtype: Any) -> bool:
    return (pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
            and not pd.api.types.is_complex_dtype(dtype))


def _numeric_summary(X: pd.DataFrame, deadline: Deadline | None = None
                     ) -> dict[int, tuple[int, int, int]]:
    """``{position: (present, finite, distinct finite)}`` for the columns of plain numeric
    dtype, computed on blocks of columns at once (no per-column pandas work)."""
    positions = [i for i, dtype in enumerate(X.dtypes) if _plain_numeric_dtype(dtype)]
    out: dict[int, tuple[int, int, int]] = {}
    step = max(1, (1 << 24) // max(len(X), 1))  # blocks of about 128 MB of floats
    for start in range(0, len(positions), step):
        if deadline is not None:
            deadline.check()
        chunk = positions[start:start + step]
        block = np.array(X.iloc[:, chunk].to_numpy(dtype=float, na_value=np.nan),
                         dtype=float, copy=True)
        present = (~np.isnan(block)).sum(axis=0)
        block[~np.isfinite(block)] = np.nan
        finite = (~np.isnan(block)).sum(axis=0)
        block.sort(axis=0)  # NaN last
        new = (block[1:] != block[:-1]) & ~np.isnan(block[1:])
        distinct = (finite > 0).astype(int) + new.sum(axis=0)
        for j, i in enumerate(chunk):
            out[i] = (int(present[j]), int(finite[j]), int(distinct[j]))
    return out


def infer_schema(X: pd.DataFrame, deadline: Deadline | None = None
                 ) -> tuple[Schema, pd.DataFrame]:
    """Type every feature column; return the schema and the typed frame of kept columns.

    Columns of a numeric dtype are summarised in blocks; the others one by one. With a
    ``deadline``, a :class:`UsageError` once its budget is spent.
    """
    n = len(X)
    kept: list[Column] = []
    dropped: dict[str, str] = {}
    delimiter = X.attrs.get("delimiter")
    if X.attrs:  # pandas deep-copies attrs into every column taken out: drop them once
        X = X.copy(deep=False)
        X.attrs = {}
    summary = _numeric_summary(X, deadline)
    dtypes = X.dtypes
    for i, name in enumerate(X.columns):
        if deadline is not None and i % 64 == 0:
            deadline.check()
        if i in summary:
            present_n, finite_n, uniq = summary[i]
            if not present_n:
                dropped[name] = "entirely missing"
            elif not finite_n:
                dropped[name] = "entirely missing or infinite"
            elif uniq <= 1:
                dropped[name] = "constant"
            elif uniq == present_n and n >= 20 and _ID_NAME.search(str(name)) and \
                    _looks_like_row_id(_floats(X.iloc[:, i]), name):
                dropped[name] = "ID-like (a distinct integer on every row)"
            else:
                kept.append(Column(name, "numeric", str(dtypes.iloc[i]), uniq))
            continue
        s = X.iloc[:, i]
        present = s.dropna()
        if present.empty:
            dropped[name] = "entirely missing"
            continue
        if isinstance(s.dtype, pd.CategoricalDtype):
            uniq = present.astype(str).str.strip().nunique()
            if uniq <= 1:
                dropped[name] = "constant"
                continue
            kept.append(Column(name, "categorical", "category", int(uniq),
                               [str(c) for c in s.cat.categories]))
            continue
        conv = _as_bool(s)
        if conv is not None:
            if conv.dropna().nunique() <= 1:
                dropped[name] = "constant"
                continue
            kept.append(Column(name, "boolean", "bool", 2))
            continue
        if pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_complex_dtype(s.dtype):
            vals = _floats(s)
            finite = vals[~np.isnan(vals)]
            if finite.size == 0:
                dropped[name] = "entirely missing or infinite"
                continue
            uniq = int(np.unique(finite).size)
            if uniq <= 1:
                dropped[name] = "constant"
                continue
            if uniq == len(present) and n >= 20 and _looks_like_row_id(finite, name):
                dropped[name] = "ID-like (a distinct integer on every row)"
                continue
            kept.append(Column(name, "numeric", str(s.dtype), uniq))
            continue
        if pd.api.types.is_datetime64_any_dtype(s.dtype):
            uniq = int(present.nunique())
            if uniq <= 1:
                dropped[name] = "constant"
                continue
            kept.append(Column(name, "datetime", "datetime64", uniq))
            continue
        num = _as_numeric(s, delimiter=delimiter)
        if num is not None:
            vals, fmt = num
            uniq = int(vals.nunique())
            if uniq <= 1:
                dropped[name] = "constant" if uniq else "entirely missing or infinite"
                continue
            kept.append(Column(name, "numeric", "object" + (f"|number={fmt}" if fmt else ""),
                               uniq))
            continue
        dt = _as_datetime(s)
        if dt is not None:
            parsed, fmt = dt
            uniq = int(parsed.nunique())
            if uniq <= 1:
                dropped[name] = "constant"
                continue
            kept.append(Column(name, "datetime", f"object|format={fmt}", uniq))
            continue
        strings = _categorical_values(s).dropna()
        uniq = int(strings.nunique())
        if uniq <= 1:
            dropped[name] = "constant" if uniq else "entirely missing"
            continue
        if n >= 20 and uniq == len(strings) and len(strings) >= 0.5 * n:
            dropped[name] = "ID-like (a distinct value on every row)"
            continue
        if n >= 20 and uniq > 0.5 * len(strings) and strings.str.len().mean() > 30 and \
                strings.str.contains(r"\s").mean() > 0.5:
            dropped[name] = "free text (mostly distinct multi-word values)"
            continue
        kept.append(Column(name, "categorical", "object", uniq))
    schema = Schema(kept, dropped)
    if not kept:
        return schema, pd.DataFrame(index=X.index)
    frame = X.loc[:, [c.name for c in kept]]
    return schema, coerce_features(frame, schema)


def _unique_feature_names(schema: Schema, input_names: list[str]) -> dict[str, str]:
    """Rename kept columns whose name a datetime column's derived features take.

    ``when__year`` next to a datetime column ``when`` becomes ``when__year.1`` (the first
    suffix no column, input or derived, has); the column keeps its input name in
    ``Column.source``. Returns ``{input name: new name}``.
    """
    derived = {f"{c.name}__{part}" for c in schema.columns if c.kind == "datetime"
               for part in DATETIME_PARTS}
    taken = derived | {str(c) for c in input_names} | set(schema.names)
    renamed: dict[str, str] = {}
    for col in schema.columns:
        if col.kind == "datetime" or col.name not in derived:
            continue
        k = 1
        while f"{col.name}.{k}" in taken:
            k += 1
        new = f"{col.name}.{k}"
        taken.add(new)
        renamed[col.name] = new
        col.source, col.name = col.name, new
    return renamed


def _looks_like_row_id(vals: np.ndarray, name: str) -> bool:
    v = np.asarray(vals, dtype=float)
    v = v[np.isfinite(v)]
    if not np.all(np.mod(v, 1) == 0):
        return False
    # Consecutive integers alone are not enough: a year or a time index is a real feature
    # of a time series. The column's name must also say it is an identifier.
    return bool(_ID_NAME.search(str(name)))


# ---------------------------------------------------------------------------------- target
