"""Bad input that used to exhaust memory or time, or end in exit 3 (issue #23).

Every input is generated here. Timeouts are hang guards only; speed figures live in
``benchmarks/reading_limits.py``.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from automl_meta.cli import main
from automl_meta.data import (
    Deadline,
    infer_schema,
    load_dataset,
    max_input_bytes,
    prepare_dataset,
    read_table,
)
from automl_meta.errors import UsageError

FAST = ["--n-trials", "1", "--no-warm-start", "--seed", "5", "--no-report"]
HANG_GUARD = 300


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "automl_meta", *map(str, args)],
                          capture_output=True, text=True, timeout=HANG_GUARD,
                          env={**os.environ, **(env or {})})


def _one_line_exit_2(proc: subprocess.CompletedProcess, *expected: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def _fit(capsys, tmp_path: Path, data: Path, target: str = "y") -> tuple[int, dict, str]:
    run = tmp_path / "run"
    capsys.readouterr()
    code = main(["fit", str(data), "--target", target, *FAST, "--output", str(run), "--json"])
    out = capsys.readouterr()
    return code, (json.loads(out.out) if code == 0 else {}), out.err.strip()


def _frame(n: int = 40, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n).round(4)
    return pd.DataFrame({"x": x, "z": rng.normal(size=n).round(4),
                         "y": np.where(x > 0, "yes", "no")})


# ------------------------------------------------------------------- bounded in memory
def _bomb(path: Path, members: int = 1) -> Path:
    """A gzip file of a few KB that inflates to about 20 MB of CSV."""
    block = b"1,2,3,4,5,6,7,8,9,0\n" * 100_000
    with open(path, "wb") as fh:
        for m in range(members):
            with gzip.GzipFile(fileobj=fh, mode="wb") as gz:
                if m == 0:
                    gz.write(b"a,b,c,d,e,f,g,h,i,y\n")
                for _ in range(10 if m < members - 1 or members == 1 else 0):
                    gz.write(block)
                gz.write(b"1,2,3,4,5,6,7,8,9,1\n")
    return path


@pytest.mark.parametrize("members", [1, 2], ids=["declared size", "streamed size"])
@pytest.mark.slow
def test_gzip_bomb_refused_with_size_and_limit(tmp_path, members):
    # one member: its trailer declares the size; two: the last member's trailer is small,
    # so only counting the decompressed stream finds it
    data = _bomb(tmp_path / "bomb.csv.gz", members)
    assert data.stat().st_size < 200_000
    proc = _run("fit", data, "--target", "y", *FAST, "--output", tmp_path / "run",
                env={"AUTOML_META_MAX_INPUT_BYTES": "5M"})
    line = _one_line_exit_2(proc, "too large", "5.2 MB", "AUTOML_META_MAX_INPUT_BYTES")
    assert "Traceback" not in proc.stderr, line
    assert not (tmp_path / "run").exists()


def test_limit_defaults_to_a_share_of_memory_and_reads_the_override(monkeypatch):
    monkeypatch.delenv("AUTOML_META_MAX_INPUT_BYTES", raising=False)
    assert max_input_bytes() >= 64 * 2**20
    monkeypatch.setenv("AUTOML_META_MAX_INPUT_BYTES", "1500")
    assert max_input_bytes() == 1500
    monkeypatch.setenv("AUTOML_META_MAX_INPUT_BYTES", "lots")
    with pytest.raises(UsageError, match="not a size"):
        max_input_bytes()


def test_plain_file_over_the_limit_is_refused_before_reading(tmp_path):
    path = tmp_path / "a.csv"
    _frame(400).to_csv(path, index=False)
    with pytest.raises(UsageError, match="too large"):
        read_table(path, max_bytes=1000)
    assert len(read_table(path, max_bytes=10**6)) == 400


def _endless_writer(fifo: Path, stop: threading.Event) -> threading.Thread:
    def write() -> None:
        try:
            with open(fifo, "wb") as fh:
                fh.write(b"a,b,y\n")
                while not stop.is_set():
                    fh.write(b"1,2,3\n" * 10_000)
        except (BrokenPipeError, OSError):
            pass

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_endless_fifo_is_read_up_to_the_limit(tmp_path):
    fifo = tmp_path / "endless.csv"
    os.mkfifo(fifo)
    stop = threading.Event()
    writer = _endless_writer(fifo, stop)
    try:
        with pytest.raises(UsageError, match="too large"):
            read_table(fifo, max_bytes=2_000_000)
    finally:
        stop.set()
        writer.join(timeout=60)
    assert not writer.is_alive()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_fifo_with_a_table_is_read_like_a_file(tmp_path):
    # what `automl-meta fit <(zcat data.csv.gz)` passes
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    payload = _frame().to_csv(index=False).encode()

    def write() -> None:
        with open(fifo, "wb") as fh:
            fh.write(payload)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    ds = load_dataset(fifo, "y")
    writer.join(timeout=60)
    assert ds.n_rows == 40 and set(ds.X.columns) == {"x", "z"}
    import hashlib
    assert ds.sha256 == hashlib.sha256(payload).hexdigest()


def test_dash_reads_standard_input(tmp_path, monkeypatch):
    payload = gzip.compress(_frame().to_csv(index=False).encode())
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(payload)))
    df = read_table("-")
    assert list(df.columns) == ["x", "z", "y"] and len(df) == 40


@pytest.mark.slow
def test_dev_zero_exits_2_quickly():
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero")
    proc = _run("fit", "/dev/zero", "--target", "y", *FAST, "--output", "/nonexistent/run")
    _one_line_exit_2(proc, "not a regular file", "character device")


# ------------------------------------------------------------- bounded in time
@pytest.mark.slow
def test_quote_heavy_csv_is_read_or_refused(tmp_path):
    # csv.Sniffer's regular expressions are quadratic on a sample like this one
    path = tmp_path / "quotes.csv"
    path.write_text(("a b\n" + '"x,' * 26_000)[:80_000])
    proc = _run("fit", path, "--target", "a b", *FAST, "--output", tmp_path / "run")
    _one_line_exit_2(proc, "quotes.csv")


def test_delimiter_detection_on_ambiguous_headers(tmp_path):
    path = tmp_path / "eu.csv"
    rows = ["name;price, EUR;qty"] + [f"n{i};{i},5;{i % 3}" for i in range(30)]
    path.write_text("\n".join(rows) + "\n")
    df = read_table(path)
    assert list(df.columns) == ["name", "price, EUR", "qty"]
    path.write_text('"a,1";"b";"c"\n' + "\n".join('"x,y";1;2' for _ in range(20)) + "\n")
    assert read_table(path).shape == (20, 3)


def test_spent_deadline_fails_with_the_budget_named(tmp_path):
    path = tmp_path / "a.csv"
    _frame().to_csv(path, index=False)
    spent = Deadline(time.monotonic() - 5, 1.0)
    with pytest.raises(UsageError, match=r"took \d+\.\d s of the 1 s time budget"):
        load_dataset(path, "y", deadline=spent)
    with pytest.raises(UsageError, match="raise --time-budget"):
        prepare_dataset(pd.read_csv(path), "y", deadline=spent)
    assert load_dataset(path, "y", deadline=Deadline(time.monotonic(), 600)).n_rows == 40


@pytest.mark.slow
def test_fit_exits_2_when_reading_takes_the_whole_budget(tmp_path):
    path = tmp_path / "a.csv"
    _frame().to_csv(path, index=False)
    proc = _run("fit", path, "--target", "y", "--time-budget", "0.000001", "--no-report",
                "--output", tmp_path / "run")
    _one_line_exit_2(proc, "time budget", "raise --time-budget")
    assert not (tmp_path / "run").exists()


def test_vectorised_numeric_typing_matches_the_rules():
    n = 30
    rng = np.random.default_rng(1)
    X = pd.DataFrame({
        "ok": rng.normal(size=n),
        "const": np.ones(n),
        "missing": np.full(n, np.nan),
        "inf": np.where(np.arange(n) % 2, np.inf, np.nan),
        "row_id": np.arange(n, dtype=float),
        "year": np.arange(2000, 2000 + n),
        "ints": pd.array(rng.integers(0, 5, n), dtype="Int64"),
        "with_nan": np.where(np.arange(n) % 3, 1.5, np.nan) + np.arange(n) % 2,
    })
    schema, typed = infer_schema(X)
    assert schema.dropped == {"const": "constant", "missing": "entirely missing",
                              "inf": "entirely missing or infinite",
                              "row_id": "ID-like (a distinct integer on every row)"}
    kept = {c.name: c.n_unique for c in schema.columns}
    assert kept == {"ok": n, "year": n, "ints": len(set(X["ints"])),
                    "with_nan": X["with_nan"].nunique()}
    assert typed.dtypes.map(str).eq("float64").all()


# ------------------------------------------------------- exit 2 or a model, never 3
@pytest.mark.slow
def test_400_digit_integer_in_a_feature_fits(tmp_path, capsys):
    df = _frame()
    big = [str(i) for i in range(len(df))]
    big[3] = "9" * 400
    df.insert(1, "big", big)
    path = tmp_path / "big.csv"
    df.to_csv(path, index=False)
    code, summary, err = _fit(capsys, tmp_path, path)
    assert code == 0, err
    assert summary["best"] is not None and np.isfinite(summary["best"]["cv_score"])


@pytest.mark.slow
def test_non_utf8_bytes_in_a_parquet_binary_column_fit(tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    df = _frame()
    col = pa.array([b"\xff\xfe" + bytes([i % 3]) for i in range(len(df))], pa.binary())
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False).append_column("raw", col),
                   tmp_path / "b.parquet")
    code, summary, err = _fit(capsys, tmp_path, tmp_path / "b.parquet")
    assert code == 0, err
    assert summary["best"] is not None
    read = read_table(tmp_path / "b.parquet")
    assert read["raw"].iloc[1] == "\\xff\\xfe\x01"  # the bytes that are not UTF-8 escaped


@pytest.mark.slow
def test_datetime_parts_colliding_with_a_column_are_renamed(tmp_path, capsys):
    df = _frame()
    df.insert(0, "when", pd.date_range("2020-01-01", periods=len(df), freq="37h")
              .strftime("%Y-%m-%d %H:%M"))
    df.insert(1, "when__year", np.random.default_rng(2).normal(size=len(df)).round(3))
    path = tmp_path / "dt.csv"
    df.to_csv(path, index=False)
    ds = load_dataset(path, "y")
    assert list(ds.X.columns) == ["when", "when__year.1", "x", "z"]
    assert any("'when__year' is named 'when__year.1'" in note for note in ds.notes)
    assert ds.schema.names == ["when", "when__year", "x", "z"]  # as the data names them
    code, summary, err = _fit(capsys, tmp_path, path)
    assert code == 0, err
    assert summary["best"] is not None, summary["trials"]
    pred = tmp_path / "pred.csv"
    assert main(["predict", str(tmp_path / "run"), str(path), "--output", str(pred)]) == 0
    assert len(pd.read_csv(pred)) == len(df)


@pytest.mark.parametrize("scale", [1.7e308, -1.7e308])
@pytest.mark.slow
def test_regression_target_near_the_float_limit_exits_2(tmp_path, scale):
    rng = np.random.default_rng(0)
    n = 40
    df = pd.DataFrame({"x": rng.normal(size=n), "y": rng.uniform(0.1, 1, size=n) * scale})
    path = tmp_path / "huge.csv"
    df.to_csv(path, index=False)
    proc = _run("fit", path, "--target", "y", *FAST, "--output", tmp_path / "run")
    _one_line_exit_2(proc, "rescale the target")
