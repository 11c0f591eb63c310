"""The input matrix: the files users really point ``fit`` and ``predict`` at, through the CLI.

The contract (CI jobs nobody watches): every case ends either with exit 0, a complete run
directory (``manifest.json``) and a model whose search trial completed, or with exit 2 and
exactly ONE line on stderr naming the problem and the fix. Never a traceback, never exit 3,
and after a failure the ``--output`` directory does not exist.

Every file is written by the test itself. Fits are as small as they get: one trial, no warm
start, and seed 5, whose first TPE draw is the linear family (the fastest to fit). Most cases
evaluate that trial in the test process (``in_process_trials``): the worker processes cost
seconds per fit and have nothing to do with reading input; the wide and high-cardinality
cases, the ``predict`` model and the subprocess cases keep real workers. The 1 000 000-row
case lives in ``benchmarks/large_fit.py``.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from automl_meta.cli import main

N = 40
FAST = ["--n-trials", "1", "--no-warm-start", "--seed", "5", "--no-report"]


# ------------------------------------------------------------------------------- helpers
@pytest.fixture()
def in_process_trials(monkeypatch):
    """Evaluate trials in this process (what ``AutoML(isolation=False)`` does)."""
    from automl_meta.search import workers as worker

    real_init = worker.Worker.__init__

    def init(self, ctx, memory_limit_gb=None, in_process=False, server=None):
        real_init(self, ctx, memory_limit_gb, in_process=True)

    monkeypatch.setattr(worker.Worker, "__init__", init)


@dataclass
class Outcome:
    code: int
    out: str
    err: str
    run: Path
    summary: dict = field(default_factory=dict)


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err.strip()


def _fit(capsys, tmp_path: Path, data: Path, target: str, *extra: str) -> Outcome:
    run = tmp_path / "run"
    code, out, err = _cli(capsys, "fit", data, "--target", target, *FAST, "--output", run,
                          "--json", *extra)
    summary = json.loads(out) if code == 0 else {}
    return Outcome(code, out, err, run, summary)


def _assert_fitted(o: Outcome, trial_completed: bool = True) -> None:
    assert o.code == 0, o.err
    assert "Traceback" not in o.err and "internal error" not in o.err, o.err
    assert (o.run / "manifest.json").is_file(), "exit 0 but no complete run directory"
    if trial_completed:  # the data went through the pipeline: a trial scored every fold
        assert o.summary["best"] is not None, f"no trial completed: {o.summary['trials']}"
        assert np.isfinite(o.summary["best"]["cv_score"])
    assert not list(o.run.parent.glob(f".{o.run.name}.partial*")), "staging left behind"


def _assert_usage_error(o: Outcome, *expected: str) -> str:
    assert o.code == 2, f"exit {o.code}: {o.err}"
    lines = o.err.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got: {o.err!r}"
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in o.err
    for text in expected:
        assert text in lines[0], f"{text!r} not in {lines[0]!r}"
    assert not o.run.exists(), "a failed fit left its --output directory"
    assert not list(o.run.parent.glob(f".{o.run.name}.partial*")), "staging left behind"
    return lines[0]


def _frame(seed: int = 0, n: int = N) -> pd.DataFrame:
    """Two numeric features and a binary label that depends on the first."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n).round(4)
    return pd.DataFrame({"x": x, "z": rng.normal(size=n).round(4),
                         "label": np.where(x > 0, "yes", "no")})


def _csv(path: Path, df: pd.DataFrame, **kw) -> Path:
    df.to_csv(path, index=False, **kw)
    return path


def _predict_roundtrip(capsys, o: Outcome, data: Path, tmp_path: Path) -> pd.DataFrame:
    """``predict`` on the training file itself works and gives one row per input row."""
    pred = tmp_path / "pred.csv"
    code, _, err = _cli(capsys, "predict", o.run, data, "--output", pred)
    assert code == 0, err
    return pd.read_csv(pred)


# ------------------------------------------------------------------- cases that must fail
Builder = Callable[[Path], tuple[Path, str]]


def _write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


ARFF_HEAD = ("@relation r\n@attribute a numeric\n@attribute b numeric\n"
             "@attribute cls {x,y}\n@data\n")


def _arff_rows(bad_row: int, bad: str) -> str:
    rows = [f"{i},{i * 2},{'xy'[i % 2]}" for i in range(N)]
    rows[bad_row] = bad
    return ARFF_HEAD + "\n".join(rows) + "\n"


def _dup_target(p: Path) -> tuple[Path, str]:
    df = _frame()
    df["copy"] = df["label"]
    text = df.to_csv(index=False).replace("x,z,label,copy", "x,z,label,label", 1)
    return _write(p / "dup_target.csv", text), "label"


def _ragged(p: Path) -> tuple[Path, str]:
    lines = _frame().to_csv(index=False).splitlines()
    lines[6] += ",surplus,fields"  # line 7 of the file (the header is line 1)
    return _write(p / "ragged.csv", "\n".join(lines) + "\n"), "label"


FAILING: dict[str, tuple[Builder, tuple[str, ...]]] = {
    "empty file": (lambda p: (_write(p / "empty.csv", ""), "label"), ("the file is empty",)),
    "blank lines only": (lambda p: (_write(p / "blank.csv", "\n  \n\n"), "label"),
                         ("the file is empty",)),
    "header only": (lambda p: (_write(p / "header.csv", "x,z,label\n"), "label"),
                    ("header but no data rows",)),
    "binary garbage": (
        lambda p: (_write(p / "garbage.csv", bytes(np.random.default_rng(0).integers(
            0, 256, 6000, dtype=np.uint8))), "label"), ("binary file",)),
    "binary garbage without NUL bytes": (
        lambda p: (_write(p / "garbage2.csv", bytes(np.random.default_rng(1).integers(
            1, 256, 6000, dtype=np.uint8))), "label"), ("binary file",)),
    "stray NUL byte in a text file": (
        lambda p: (_write(p / "nul.csv", _frame().to_csv(index=False).encode().replace(
            b"\n", b"\x00\n", 5).replace(b"\x00\n", b"\n", 4)), "label"),
        ("1 NUL byte(s), the first on line 5", "remove them")),
    "Excel workbook named .csv": (
        lambda p: (_write(p / "book.csv", b"PK\x03\x04" + bytes(200)), "label"),
        ("Excel", "export the sheet as CSV")),
    "bad gzip": (lambda p: (_write(p / "data.csv.gz", gzip.compress(
        _frame().to_csv(index=False).encode())[:60]), "label"), ("not a valid gzip",)),
    "a directory": (lambda p: ((p / "adir").mkdir() or p / "adir", "label"),
                    ("is a directory",)),
    "missing file": (lambda p: (p / "nope.csv", "label"), ("no such file",)),
    "target all missing": (
        lambda p: (_csv(p / "tam.csv", _frame().assign(label=np.nan)), "label"),
        ("'label' is entirely missing",)),
    "one class": (lambda p: (_csv(p / "one.csv", _frame().assign(label="yes")), "label"),
                  ("single class", "at least two")),
    "unknown target": (lambda p: (_csv(p / "t.csv", _frame()), "lable"),
                       ("not found", "did you mean 'label'")),
    "duplicate target column": (_dup_target, ("'label' appears more than once",)),
    "no header row": (
        lambda p: (_write(p / "nohead.csv", "".join(f"{i},{i * 2},{'ab'[i % 2]}\n"
                                                      for i in range(N))), "label"),
        ("first row looks like data", "add a header row")),
    "ragged row (too many fields)": (
        _ragged, ("line 7 has 5 fields but the header has 3", "quote fields")),
    "every feature dropped": (
        lambda p: (_csv(p / "drop.csv", _frame().assign(x=1.0, z=np.nan)), "label"),
        ("no usable feature column", "x: constant", "z: entirely missing")),
    "only the target column": (
        lambda p: (_write(p / "only.csv", "label\n" + "a\nb\n" * 20), "label"),
        ("no feature columns",)),
    "ARFF line with too many fields": (
        lambda p: (_write(p / "wide_line.arff", _arff_rows(7, "7,14,x,99")), "cls"),
        ("line 13", "7,14,x,99", "needs 3 comma-separated values")),
    "ARFF value outside the nominal declaration": (
        lambda p: (_write(p / "nominal.arff", _arff_rows(9, "9,18,z")), "cls"),
        ("value z not found in nominal declaration", "line 15")),
    "ARFF text in a numeric attribute": (
        lambda p: (_write(p / "text.arff", _arff_rows(5, "5,abc,x")), "cls"),
        ("Invalid numerical value", "line 11")),
    "corrupt Parquet": (lambda p: (_write(p / "bad.parquet", b"PAR1 not really"), "label"),
                        ("cannot read as Parquet",)),
}


@pytest.mark.parametrize("case", list(FAILING))
def test_bad_input_exits_2_with_one_line(case, tmp_path, capsys):
    build, expected = FAILING[case]
    data, target = build(tmp_path)
    o = _fit(capsys, tmp_path, data, target)
    line = _assert_usage_error(o, *expected)
    print(f"\nMATRIX {case} | exit 2 | {line}")  # shown with pytest -s


@pytest.mark.parametrize("args,expected", [
    pytest.param([], "Missing option '--target'",
                 id="missing --target"),
    pytest.param(["--target", "label", "--time-budget", "soon"], "--time-budget",
                 id="non-numeric --time-budget"),
    pytest.param(["--target", "label", "--bogus"], "--bogus",
                 id="unknown option"),
    pytest.param(["--target", "label", "--time-budget", "-5"], "must be a finite positive number",
                 id="negative --time-budget"),
    pytest.param(["--target", "label", "--metric", "awesomeness"], "unknown metric",
                 id="unknown metric"),
    pytest.param(["--target", "label", "--task", "ranking"], "unknown task",
                 id="unknown task"),
])
def test_bad_arguments_exit_2_with_one_line(args, expected, tmp_path, capsys):
    data = _csv(tmp_path / "ok.csv", _frame())
    run = tmp_path / "run"
    code, _, err = _cli(capsys, "fit", data, *args, "--n-trials", "1", "--no-warm-start",
                        "--output", run)
    _assert_usage_error(Outcome(code, "", err, run), expected)


# --------------------------------------------------------------- cases that must fit well
def _semicolon(p):
    return _csv(p / "semi.csv", _frame(), sep=";"), "label"


def _semicolon_decimal_comma(p):  # what Excel writes in most of Europe
    df = _frame()
    df["amount"] = [f"{v:,.2f}".replace(",", " ").replace(".", ",")
                    for v in np.random.default_rng(3).uniform(100, 99999, N)]
    return _csv(p / "eu.csv", df, sep=";", decimal=","), "label"


def _tab_in_csv(p):
    return _csv(p / "tab.csv", _frame(), sep="\t"), "label"


def _pipe(p):
    return _csv(p / "pipe.txt", _frame(), sep="|"), "label"


def _latin1(p):
    df = _frame()
    df["ville"] = ["Orléans", "Besançon", "Zürich", "Gießen"] * (N // 4)
    df = df.rename(columns={"label": "étiquette"})
    path = p / "latin1.csv"
    path.write_bytes(df.to_csv(index=False).encode("latin-1"))
    return path, "étiquette"


def _utf16(p):  # Excel's "Unicode text" export: UTF-16 with BOM, tab-separated
    path = p / "unicode.txt"
    path.write_bytes(_frame().to_csv(index=False, sep="\t").encode("utf-16"))
    return path, "label"


def _bom(p):
    path = p / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + _frame().to_csv(index=False).encode())
    return path, "x"  # the first column: its name must not carry the BOM


def _crlf(p):
    path = p / "crlf.csv"
    path.write_bytes(_frame().to_csv(index=False).replace("\n", "\r\n").encode())
    return path, "label"


def _gzip(p):
    path = p / "data.csv.gz"
    path.write_bytes(gzip.compress(_frame().to_csv(index=False).encode()))
    return path, "label"


def _duplicate_columns(p):
    text = _frame().to_csv(index=False).replace("x,z,label", "x,x,label", 1)
    return _write(p / "dup.csv", text), "label"


def _unicode_names(p):
    df = _frame()
    df.columns = ["  température (°C) ", "日本語 列", "😀 label"]
    return _csv(p / "uni.csv", df), "😀 label"


def _target_with_spaces(p):
    return _csv(p / "sp.csv", _frame().rename(columns={"label": "will churn"})), "will churn"


def _padded_target_name(p):  # header " label ", user types it with the spaces
    text = _frame().to_csv(index=False).replace("x,z,label", "x,z, label ", 1)
    return _write(p / "pad.csv", text), " label "


def _class_with_one_example(p):
    df = _frame()
    df.loc[3, "label"] = "maybe"
    return _csv(p / "rare.csv", df), "label"


def _infinities(p):
    df = _frame()
    df.loc[[1, 5], "x"] = np.inf
    df.loc[7, "z"] = -np.inf
    text = df.to_csv(index=False) + "-Infinity,inf,no\n1e999,-1e999,yes\n"
    return _write(p / "inf.csv", text), "label"


def _one_feature(p):
    return _csv(p / "one.csv", _frame()[["x", "label"]]), "label"


def _all_categorical(p):
    rng = np.random.default_rng(4)
    df = pd.DataFrame({"c1": rng.choice(list("abc"), 60),
                       "c2": rng.choice(["red", "green"], 60),
                       "c3": rng.choice(["u", "v", "w", "q"], 60)})
    df["label"] = np.where(df.c1 == "a", "yes", "no")
    return _csv(p / "cat.csv", df), "label"


def _datetimes(p):
    df = _frame()
    df["when"] = pd.date_range("2020-01-01", periods=N, freq="37h").strftime("%Y-%m-%d %H:%M")
    # offsets change with daylight saving time: read as UTC
    df["stamp"] = pd.date_range("2021-03-20", periods=N, freq="D", tz="Europe/Paris").strftime(
        "%Y-%m-%dT%H:%M:%S%z")
    df["dmy"] = pd.date_range("2019-01-01", periods=N, freq="W").strftime("%d/%m/%Y")
    return _csv(p / "dates.csv", df), "label"


def _mixed_types(p):
    df = _frame()
    df["m"] = (["12", "abc", ""] * N)[:N]
    df["m2"] = ([3, "x", None, 4.5] * N)[:N]
    return _csv(p / "mixed.csv", df), "label"


def _quoted_newlines(p):
    df = _frame()
    df["note"] = [f'line one\nline "two", {i % 3}' for i in range(N)]
    return _csv(p / "quoted.csv", df), "label"


def _thousands(p):
    df = _frame()
    df["amount"] = [f"{v:,.2f}" for v in np.random.default_rng(5).uniform(500, 900000, N)]
    return _csv(p / "thousands.csv", df), "label"


def _thousands_target(p):
    df = _frame().drop(columns="label")
    df["price"] = [f"{v:,.0f}" for v in 1000 + 50000 * (df.x + 3)]
    return _csv(p / "price.csv", df), "price"


def _nan_feature(p):
    return _csv(p / "nanf.csv", _frame().assign(empty=np.nan)), "label"


def _booleans(p):
    df = _frame()
    df["flag"] = ["Yes", "no"] * (N // 2)
    df["tf"] = ["TRUE", "FALSE", "", "true"] * (N // 4)
    return _csv(p / "bool.csv", df), "label"


def _blank_and_short_lines(p):
    lines = _frame().to_csv(index=False).splitlines()
    lines.insert(3, "")
    lines.insert(6, ",,")  # a row of nothing: its target is missing
    lines[9] = lines[9].split(",")[0]  # a short row
    return _write(p / "holes.csv", "\n".join(lines) + "\n"), "label"


def _trailing_delimiter(p):  # data lines end with the delimiter, the header does not
    header, *rows = _frame().to_csv(index=False).splitlines()
    return _write(p / "trailing.csv", "\n".join([header] + [r + "," for r in rows]) + "\n"), \
        "label"


def _arff_empty_fields(p):
    head = ("@relation weka\n@attribute a numeric\n@attribute b numeric\n"
            "@attribute c numeric\n@attribute cls {x,y}\n@data\n")
    rows = "".join(f"{i},{'' if i % 4 == 0 else i * 2},{100 + i},{'xy'[i % 3 == 0]}\n"
                   for i in range(N))
    return _write(p / "empty_fields.arff", head + rows), "cls"


def _arff_dates_and_quotes(p):  # DATE attributes, quoted names and values, comments
    head = ("% exported by Weka\n@RELATION 'sales 2020'\n@ATTRIBUTE 'unit price' REAL\n"
            "@ATTRIBUTE sold date 'yyyy-MM-dd HH:mm:ss'\n@ATTRIBUTE shop {'North side', south}\n"
            "@ATTRIBUTE class {low,high}\n@DATA\n")
    shops = ["'North side'", "south"]
    rows = "".join(f"{i * 1.5},'2020-{1 + i % 12:02d}-{1 + i % 28:02d} 10:00:00',"
                   f"{shops[i % 3 == 0]},{'low' if i < N // 2 else 'high'}\n"
                   for i in range(N))
    return _write(p / "weka.arff", head + rows.replace("2020-05-06 10:00:00", "?")), "class"


def _parquet_nested(p):
    df = _frame()
    df["tags"] = [["a", "b"][: i % 3] for i in range(N)]
    df["point"] = [{"lat": float(i), "lon": 2.0} for i in range(N)]
    path = p / "nested.parquet"
    df.to_parquet(path)
    return path, "label"


def _parquet_named_csv(p):
    path = p / "actually_parquet.csv"
    _frame().to_parquet(path)
    return path, "label"


def _regression(p):
    df = _frame()
    df["label"] = 3 * df.x + np.random.default_rng(6).normal(scale=0.1, size=N)
    return _csv(p / "reg.csv", df), "label"


@dataclass
class Expect:
    task: str = "binary"
    columns: dict = field(default_factory=dict)  # kind -> count
    notes: tuple[str, ...] = ()
    kinds: dict = field(default_factory=dict)  # column -> kind


FITTING: dict[str, tuple[Builder, Expect]] = {
    "semicolon-separated": (_semicolon, Expect(columns={"numeric": 2})),
    "semicolon + decimal comma + space thousands": (
        _semicolon_decimal_comma, Expect(columns={"numeric": 3})),
    "tab-separated .csv": (_tab_in_csv, Expect(columns={"numeric": 2})),
    "pipe-separated .txt": (_pipe, Expect(columns={"numeric": 2})),
    "Latin-1 encoded": (_latin1, Expect(kinds={"ville": "categorical"})),
    "UTF-16 with BOM (Excel unicode text)": (_utf16, Expect(columns={"numeric": 2})),
    "UTF-8 BOM": (_bom, Expect(task="regression", kinds={"z": "numeric"})),
    "CRLF line endings": (_crlf, Expect(columns={"numeric": 2})),
    "gzipped CSV": (_gzip, Expect(columns={"numeric": 2})),
    "duplicate column names": (
        _duplicate_columns, Expect(notes=("'x' appears more than once", "'x.1'"))),
    "unicode and whitespace in column names": (
        _unicode_names, Expect(kinds={"température (°C)": "numeric", "日本語 列": "numeric"})),
    "target name with spaces": (_target_with_spaces, Expect()),
    "target name padded with spaces": (_padded_target_name, Expect()),
    "a class with one example": (_class_with_one_example, Expect(task="multiclass")),
    "+-inf values": (_infinities, Expect(columns={"numeric": 2})),
    "one feature": (_one_feature, Expect(columns={"numeric": 1})),
    "all categorical": (_all_categorical, Expect(columns={"categorical": 3, "numeric": 0})),
    "datetime strings (ISO, offsets, day-first)": (
        _datetimes, Expect(kinds={"when": "datetime", "stamp": "datetime", "dmy": "datetime"})),
    "mixed-type columns": (_mixed_types, Expect(kinds={"m": "categorical", "m2": "categorical"})),
    "quoted fields with newlines": (_quoted_newlines, Expect(kinds={"note": "categorical"})),
    "thousands separators": (_thousands, Expect(kinds={"amount": "numeric"})),
    "thousands separators in the target": (_thousands_target, Expect(task="regression")),
    "only-NaN feature column": (_nan_feature, Expect(notes=("'empty': entirely missing",))),
    "boolean spellings": (_booleans, Expect(kinds={"flag": "boolean", "tf": "boolean"})),
    "blank, empty and short lines": (
        _blank_and_short_lines, Expect(notes=("rows with a missing target",))),
    "trailing delimiter on every line": (_trailing_delimiter, Expect(columns={"numeric": 2})),
    "ARFF with empty fields (4,,100)": (_arff_empty_fields, Expect(columns={"numeric": 3})),
    "ARFF with DATE attributes and quoted names": (
        _arff_dates_and_quotes, Expect(kinds={"unit price": "numeric", "sold": "datetime",
                                              "shop": "categorical"})),
    "Parquet with list / struct columns": (
        _parquet_nested, Expect(columns={"numeric": 2}, notes=("'tags': nested values",
                                                               "'point': nested values"))),
    "Parquet file named .csv": (_parquet_named_csv, Expect(columns={"numeric": 2})),
    "regression": (_regression, Expect(task="regression")),
}


@pytest.mark.parametrize("case", list(FITTING))
@pytest.mark.slow
def test_messy_input_fits_and_predicts(case, tmp_path, capsys, in_process_trials):
    build, expect = FITTING[case]
    data, target = build(tmp_path)
    o = _fit(capsys, tmp_path, data, target)
    _assert_fitted(o)
    s = o.summary
    assert s["task"] == expect.task
    for kind, count in expect.columns.items():
        assert s["columns"][kind] == count, (kind, s["columns"], s["dropped_columns"])
    notes = " | ".join(s["notes"])
    for text in expect.notes:
        assert text in notes, notes
    manifest = json.loads((o.run / "manifest.json").read_text())
    kinds = {c["name"]: c["kind"] for c in manifest["feature_schema"]["columns"]}
    for column, kind in expect.kinds.items():
        assert kinds.get(column) == kind, (column, kinds)
    # predict reads the same file the same way (the target column is an extra column there)
    pred = _predict_roundtrip(capsys, o, data, tmp_path)
    assert len(pred) == s["rows"]
    assert pred.columns[0] == s["target"]
    print(f"\nMATRIX {case} | exit 0 | {s['task']}, {s['columns']}, notes: {s['notes']}")


@pytest.mark.slow
def test_5000_columns_fit_within_budget(tmp_path, capsys):
    rng = np.random.default_rng(7)
    X = rng.normal(size=(60, 5000)).round(3)
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(5000)])
    df["label"] = np.where(X[:, 0] + X[:, 1] > 0, "a", "b")
    data = _csv(tmp_path / "wide.csv", df)
    o = _fit(capsys, tmp_path, data, "label", "--time-budget", "12")
    # on a busy machine the one trial may not finish in time: the final model is then a
    # fallback configuration, which is still a complete, usable run
    _assert_fitted(o, trial_completed=False)
    assert o.summary["columns"]["numeric"] == 5000
    pred = _predict_roundtrip(capsys, o, data, tmp_path)
    assert len(pred) == 60
    print(f"\nMATRIX 5000 columns | exit 0 | {o.summary['elapsed_seconds']} s")


@pytest.mark.slow
def test_categorical_with_10000_levels(tmp_path, capsys):
    rng = np.random.default_rng(8)
    n = 12_000
    level = rng.permutation(np.concatenate([np.arange(10_000), rng.integers(0, 10_000,
                                                                            n - 10_000)]))
    x = rng.normal(size=n).round(3)
    df = pd.DataFrame({"code": [f"L{v:05d}" for v in level], "x": x,
                       "label": np.where((level % 2 == 0) ^ (x > 1), "a", "b")})
    data = _csv(tmp_path / "levels.csv", df)
    o = _fit(capsys, tmp_path, data, "label")
    _assert_fitted(o)
    manifest = json.loads((o.run / "manifest.json").read_text())
    code = next(c for c in manifest["feature_schema"]["columns"] if c["name"] == "code")
    assert code["kind"] == "categorical" and code["n_unique"] == 10_000
    print(f"\nMATRIX 10 000 levels | exit 0 | CV {o.summary['best']['cv_score']:.3f}")


# ------------------------------------------------------------------------------ predict
@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """One model over every column kind, fitted through the CLI, and its training file."""
    tmp = tmp_path_factory.mktemp("predict")
    rng = np.random.default_rng(9)
    n = 60
    x = rng.normal(size=n).round(3)
    df = pd.DataFrame({
        "x": x,
        "colour": rng.choice(["red", "green", "blue"], n),
        "member": rng.choice(["yes", "no"], n),
        "joined": pd.Series(pd.date_range("2019-01-01", periods=n, freq="5D")).dt.strftime(
            "%d/%m/%Y"),
        "income": [f"{v:,.0f}" for v in rng.uniform(1000, 200000, n)],
        "label": np.where(x + rng.normal(scale=0.5, size=n) > 0, "up", "down"),
    })
    data = _csv(tmp / "train.csv", df)
    run = tmp / "run"
    code = main(["fit", str(data), "--target", "label", *FAST, "--output", str(run),
                 "--quiet"])
    assert code == 0
    return run, df, tmp


def _predict(capsys, run: Path, df: pd.DataFrame, path: Path, *extra: str):
    _csv(path, df)
    out = path.with_suffix(".pred.csv")
    code, _, err = _cli(capsys, "predict", run, path, "--output", out, *extra)
    return code, err, (pd.read_csv(out) if code == 0 else None)


@pytest.mark.slow
def test_predict_missing_column_exits_2_naming_it(fitted, capsys, tmp_path):
    run, df, _ = fitted
    code, err, _ = _predict(capsys, run, df.drop(columns=["colour", "label"]),
                            tmp_path / "lacking.csv")
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert "lacks 1 column(s) the model needs: 'colour'" in err
    print(f"\nMATRIX predict, missing column | exit {code} | {err}")


@pytest.mark.slow
def test_predict_extra_columns_and_unseen_categories(fitted, capsys, tmp_path):
    run, df, _ = fitted
    new = df.drop(columns="label").head(12).copy()
    new["unexpected"] = "ignored"
    new["colour"] = ["purple", "red", None, "GREEN"] * 3  # unseen, known, missing, unseen
    new["member"] = ["maybe", "yes", "", "no"] * 3
    new = new[new.columns[::-1]]  # any column order
    code, err, pred = _predict(capsys, run, new, tmp_path / "new.csv", "--proba")
    assert code == 0, err
    assert len(pred) == 12 and set(pred["label"]) <= {"up", "down"}
    assert np.allclose(pred[["proba_down", "proba_up"]].sum(axis=1), 1)
    print(f"\nMATRIX predict, extra columns + unseen categories | exit {code} | {len(pred)} rows")


@pytest.mark.slow
def test_predict_reads_a_subset_like_the_training_file(fitted, capsys, tmp_path):
    """Row by row, predictions do not depend on which other rows the file holds.

    Typing decided on the whole training file (day-first dates, thousands separators, yes /
    no booleans) must be applied to a one-row file too, where it cannot be re-inferred.
    """
    run, df, _ = fitted
    features = df.drop(columns="label")
    code, err, full = _predict(capsys, run, features, tmp_path / "all.csv", "--proba")
    assert code == 0, err
    for i in (0, 3, 7):  # 07/01/2019 is day-first; a lone "yes" cannot look boolean alone
        code, err, one = _predict(capsys, run, features.iloc[[i]], tmp_path / f"r{i}.csv",
                                  "--proba")
        assert code == 0, err
        assert np.allclose(one[["proba_down", "proba_up"]].to_numpy(),
                           full[["proba_down", "proba_up"]].iloc[[i]].to_numpy()), i


@pytest.mark.slow
def test_evaluate_reads_messy_labels(fitted, capsys, tmp_path):
    run, df, _ = fitted
    messy = df.copy()
    messy["label"] = messy["label"].map(lambda v: f"  {v} ")
    path = _csv(tmp_path / "eval.csv", messy)
    code, out, err = _cli(capsys, "evaluate", run, path, "--json")
    assert code == 0, err
    assert json.loads(out)["rows"] == len(df)


# ------------------------------------------------------------------- a real process or two
def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "automl_meta", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_subprocess_bad_file_one_line_exit_2(tmp_path):
    data = _write(tmp_path / "g.csv", bytes(range(256)) * 30)
    r = _run("fit", data, "--target", "label", *FAST, "--output", tmp_path / "run")
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: "), r.stderr
    assert r.stdout == "" and not (tmp_path / "run").exists()


@pytest.mark.slow
def test_subprocess_european_csv_fits_with_json_only_on_stdout(tmp_path):
    data, target = _semicolon_decimal_comma(tmp_path)
    r = _run("fit", data, "--target", target, *FAST, "--output", tmp_path / "run", "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)  # exactly one JSON document
    assert summary["columns"]["numeric"] == 3
    assert "Traceback" not in r.stderr
