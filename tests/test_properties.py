"""Property tests: whatever table users have, reading, typing and meta-features either work
or raise :class:`~automl_meta.errors.UsageError` (exit 2 on the command line) — never another
exception — and meta-features are never NaN or infinite.

Random tables mix ints, floats with NaN / inf, strings (unicode, blank, numbers written with
separators, dates in several formats), booleans, datetimes and None, under random column
names (unicode, empty, whitespace, duplicates), written as CSV with a random delimiter,
encoding, BOM, line ending, header or none, and gzip.
"""

from __future__ import annotations

import datetime as dt
import gzip
import math
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from automl_meta.data import (
    coerce_features,
    infer_task,
    prepare_dataset,
    read_table,
)
from automl_meta.errors import UsageError
from automl_meta.meta.features import compute_metafeatures

# Fixed examples in CI; AUTOML_META_EXPLORE=N runs N fresh random examples per test instead.
_EXPLORE = int(os.environ.get("AUTOML_META_EXPLORE", "0"))
SETTINGS = settings(max_examples=_EXPLORE or 60, deadline=None, derandomize=not _EXPLORE,
                    database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

NAMES = st.one_of(
    st.text(max_size=8),
    st.sampled_from(["", " ", "x", "x ", " x", "label", "id", "Unnamed: 0", "a,b", 'q"uote',
                     "new\nline", "tab\there", "é", "日本語", "😀", "1", "2.5", "x.1"]),
)
FORMATTED_NUMBERS = st.sampled_from(
    ["1,234", "12,345.5", "1.234,5", "12,5", "-0,5", "1 234,5", "3", "-7.25", "abc", "",
     " 4 ", "1e5", "inf", "-Infinity", "nan", "NA", "?", "null", "0x1F", "1_000"])
BOOL_WORDS = st.sampled_from(["yes", "no", "Yes", "NO", "true", "False", "T", "f", "y", "n",
                              "1", "0", "", " yes "])
DATE_FORMATS = ["%Y-%m-%d", "%d/%m/%Y", "%m/%d/%Y", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S%z",
                "%d.%m.%y", "%Y%m%d"]
DATETIMES = st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2100, 1, 1))


@st.composite
def column_values(draw, n: int) -> list:
    """One column of ``n`` values of one (possibly messy) kind."""
    kind = draw(st.sampled_from(["int", "float", "category", "text", "formatted", "bool",
                                 "boolword", "datetime", "datestring", "mixed", "none"]))
    missing = st.none() | st.just(float("nan"))
    if kind == "int":
        value = st.integers(-(10**15), 10**15)
    elif kind == "float":
        value = st.floats(allow_nan=True, allow_infinity=True, width=64)
    elif kind == "category":
        value = st.sampled_from(["a", "b", "c", " a ", "A", "", "red", "blue"])
    elif kind == "text":
        value = st.text(max_size=12)
    elif kind == "formatted":
        value = FORMATTED_NUMBERS
    elif kind == "bool":
        value = st.booleans()
    elif kind == "boolword":
        value = BOOL_WORDS
    elif kind == "datetime":
        value = DATETIMES
    elif kind == "datestring":
        fmt = draw(st.sampled_from(DATE_FORMATS))
        aware = DATETIMES.map(lambda d: d.replace(tzinfo=dt.timezone(dt.timedelta(hours=2))))
        value = (aware if "%z" in fmt else DATETIMES).map(lambda d, f=fmt: d.strftime(f))
    elif kind == "mixed":
        value = st.one_of(st.integers(-100, 100), st.floats(allow_nan=True), st.text(max_size=5),
                          st.booleans(), DATETIMES)
    else:
        value = missing
    share_missing = draw(st.sampled_from([0.0, 0.0, 0.2, 0.9]))
    values = []
    for _ in range(n):
        if share_missing and draw(st.floats(0, 1)) < share_missing:
            values.append(draw(missing))
        else:
            values.append(draw(value))
    return values


@st.composite
def frames(draw, min_rows: int = 0, max_rows: int = 30) -> pd.DataFrame:
    n_rows = draw(st.integers(min_rows, max_rows))
    n_cols = draw(st.integers(1, 6))
    names = [draw(NAMES) for _ in range(n_cols)]
    if draw(st.booleans()):  # a usable target: few classes or a number
        names.append("target")
        label = draw(st.sampled_from(["classes", "numbers", "rare", "messy"]))
        if label == "classes":
            y = [draw(st.sampled_from(["a", "b", "c"])) for _ in range(n_rows)]
        elif label == "numbers":
            y = [draw(st.floats(-1e6, 1e6, allow_nan=False)) for _ in range(n_rows)]
        elif label == "rare":
            y = ["common"] * n_rows
            if n_rows:
                y[draw(st.integers(0, n_rows - 1))] = "rare"
        else:
            y = draw(column_values(n_rows))
        columns = [draw(column_values(n_rows)) for _ in range(n_cols)] + [y]
    else:
        columns = [draw(column_values(n_rows)) for _ in range(n_cols)]
    df = pd.DataFrame({i: pd.Series(c, dtype=object) for i, c in enumerate(columns)})
    df.columns = names
    return df


@st.composite
def written(draw, min_rows: int = 0) -> tuple[bytes, str]:
    """A random table as the bytes of a delimited text file, and the file's suffix."""
    df = draw(frames(min_rows=min_rows))
    sep = draw(st.sampled_from([",", ";", "\t", "|"]))
    text = df.to_csv(index=False, sep=sep, header=draw(st.booleans()),
                     lineterminator=draw(st.sampled_from(["\n", "\r\n"])))
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "latin-1", "utf-16"]))
    try:
        raw = text.encode(encoding)
    except UnicodeEncodeError:
        raw = text.encode("utf-8")
    suffix = draw(st.sampled_from([".csv", ".tsv", ".txt", ".data"]))
    if draw(st.integers(0, 5)) == 0:
        raw, suffix = gzip.compress(raw), suffix + ".gz"
    return raw, suffix


def _finite_or_none(values: dict) -> None:
    for name, v in values.items():
        assert v is None or (isinstance(v, float) and math.isfinite(v)), (name, v)


def _check_dataset(ds, raw_features: pd.DataFrame) -> None:
    """Invariants of a prepared dataset."""
    assert len(ds.X) == len(ds.y) >= 10
    assert list(ds.X.columns) == ds.schema.names and ds.X.columns.is_unique
    for col in ds.schema.columns:
        s = ds.X[col.name]
        if col.kind in ("numeric", "boolean"):
            assert s.dtype == float and not np.isinf(s.to_numpy()).any(), col
        elif col.kind == "datetime":
            assert pd.api.types.is_datetime64_any_dtype(s.dtype), col
        else:
            assert all(isinstance(v, str) or (isinstance(v, float) and np.isnan(v))
                       for v in s), col
    if ds.task == "regression":
        assert ds.classes is None and np.isfinite(ds.y.to_numpy(dtype=float)).all()
    else:
        assert len(ds.classes) >= 2 and set(ds.y) == set(ds.classes)
    # predict types raw columns exactly as fit did
    again = coerce_features(raw_features.reset_index(drop=True), ds.schema)
    pd.testing.assert_frame_equal(again, ds.X, check_dtype=False)


def _has_label(v) -> bool:
    """Whether prepare_dataset keeps the row (a blank, NaN or infinite target is missing)."""
    if v is None or v is pd.NA:
        return False
    if isinstance(v, str):
        return bool(v.strip())
    if isinstance(v, (float, np.floating)):
        return bool(np.isfinite(v))
    return True


def _try_prepare(df: pd.DataFrame, target: str):
    try:
        return prepare_dataset(df, target)
    except UsageError as exc:
        assert "\n" not in str(exc), str(exc)
        return None


# ---------------------------------------------------------------------------------- tests
@SETTINGS
@given(written())
@pytest.mark.slow
def test_read_table_only_raises_usage_error(file):
    raw, suffix = file
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"data{suffix}"
        path.write_bytes(raw)
        try:
            df = read_table(path)
        except UsageError as exc:
            assert "\n" not in str(exc), str(exc)
            return
    assert df.shape[0] > 0 and df.shape[1] > 0
    assert df.columns.is_unique
    assert all(isinstance(c, str) and c == c.strip() and c for c in df.columns)


@SETTINGS
@given(written(min_rows=10), st.data())
@pytest.mark.slow
def test_read_then_prepare_then_metafeatures(file, data):
    raw, suffix = file
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"data{suffix}"
        path.write_bytes(raw)
        try:
            df = read_table(path)
        except UsageError:
            return
    target = data.draw(st.sampled_from(list(df.columns)), label="target")
    ds = _try_prepare(df, target)
    if ds is None:
        return
    keep = df[target].map(_has_label).to_numpy(dtype=bool)
    _check_dataset(ds, df.loc[keep].drop(columns=[target]))
    values = compute_metafeatures(*ds.as_read(), ds.task,  # the table as fit describes it
                                  landmarkers=data.draw(st.booleans()))
    _finite_or_none(values)


PANDAS_DTYPES = ["infer", "Int64", "Float64", "boolean", "string", "category",
                 "datetime64[ns, UTC]", "timedelta64[ns]", "float32", "int8"]


def _as_dtype(s: pd.Series, dtype: str) -> pd.Series:
    """``s`` converted to ``dtype`` when pandas can; unchanged otherwise."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if dtype == "infer":
                return s.infer_objects()
            if dtype.startswith("datetime64"):
                return pd.to_datetime(s, utc=True)
            return s.astype(dtype)
    except (TypeError, ValueError, OverflowError, ArithmeticError):
        return s


@SETTINGS
@given(frames(min_rows=8), st.data())
@pytest.mark.slow
def test_prepare_dataset_on_python_objects(df, data):
    """The Python API path: any dtype pandas has, duplicate and non-string names, odd targets."""
    for i in range(df.shape[1]):
        dtype = data.draw(st.sampled_from(PANDAS_DTYPES), label=f"dtype {i}")
        df.isetitem(i, _as_dtype(df.iloc[:, i], dtype))
    if data.draw(st.booleans(), label="integer names"):
        df.columns = list(range(df.shape[1]))
    target = data.draw(st.sampled_from(list(df.columns)), label="target")
    ds = _try_prepare(df, target)
    if ds is None:
        return
    values = compute_metafeatures(*ds.as_read(), ds.task, landmarkers=False)
    _finite_or_none(values)


@SETTINGS
@given(st.lists(st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True),
                          st.integers(-(10**20), 10**20), st.text(max_size=6),
                          st.booleans()), min_size=1, max_size=40))
def test_infer_task_is_total(values):
    task = infer_task(pd.Series(values, dtype=object))
    assert task in ("binary", "multiclass", "regression")


@pytest.mark.parametrize("values", [
    ["1,234", "12,345", "5,000", "100"],         # thousands
    ["1.234,5", "12,5", "-0,25", "3"],           # decimal comma
    ["12 345,5", "1 000,25", "7,5", "0,5"],      # space thousands, decimal comma
])
def test_numbers_with_separators_are_numeric(values):
    df = pd.DataFrame({"v": values * 5, "y": ["a", "b"] * 10})
    ds = prepare_dataset(df, "y")
    assert ds.schema.kinds() == {"v": "numeric"}
    assert ds.X["v"].notna().all()
    one = coerce_features(df.head(1), ds.schema)  # a single row reads the same way
    assert one["v"].iloc[0] == ds.X["v"].iloc[0]
