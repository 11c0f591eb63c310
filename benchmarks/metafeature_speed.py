"""Time ``compute_metafeatures`` on a synthetic 100 000 × 100 mixed table.

The table is made here (seeded): 60 float columns (normal, log-normal, uniform, 5 % missing in
some), 15 integer columns, 10 ``category`` columns (2–30 declared values, some missing),
10 string (object) columns (3–200 distinct values, some missing), 3 bool columns and 2
datetime columns; the target is a 4-class label (classification) or a float (regression).

Usage::

    /work/venv/bin/python benchmarks/metafeature_speed.py [--rows 100000] [--cols 100]
        [--repeats 3] [--task multiclass]

Prints the wall-clock (and CPU) seconds of each whole ``compute_metafeatures`` call (landmarkers
on), in one process: the first call is "cold" (first use of every code path); then the worst,
best and median of all calls.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from automl_meta.metafeatures import compute_metafeatures  # noqa: E402


def make_table(rows: int = 100_000, cols: int = 100, task: str = "multiclass",
               seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """A seeded synthetic mixed-type table and a target that depends on a few columns."""
    rng = np.random.default_rng(seed)
    shares = {"float": 0.60, "int": 0.15, "category": 0.10, "string": 0.10, "bool": 0.03}
    counts = {k: int(round(v * cols)) for k, v in shares.items()}
    counts["datetime"] = max(cols - sum(counts.values()), 0)
    data: dict[str, object] = {}
    for j in range(counts["float"]):
        kind = j % 3
        x = (rng.normal(j, 1 + j % 7, rows) if kind == 0
             else rng.lognormal(0, 1, rows) if kind == 1 else rng.uniform(-j, j + 1, rows))
        if j % 4 == 0:
            x[rng.random(rows) < 0.05] = np.nan
        data[f"f{j}"] = x
    for j in range(counts["int"]):
        data[f"i{j}"] = rng.integers(0, 10 + 20 * j, rows)
    for j in range(counts["category"]):
        k = 2 + (j * 3) % 29
        codes = rng.integers(-1 if j % 2 else 0, k, rows)
        data[f"c{j}"] = pd.Categorical.from_codes(codes, [f"v{v}" for v in range(k)])
    for j in range(counts["string"]):
        k = [3, 10, 50, 200][j % 4]
        vocab = np.array([f"s{v}" for v in range(k)], dtype=object)
        s = vocab[rng.integers(0, k, rows)]
        if j % 3 == 0:
            s[rng.random(rows) < 0.02] = None
        data[f"s{j}"] = s
    for j in range(counts["bool"]):
        data[f"b{j}"] = rng.random(rows) < 0.3
    for j in range(counts["datetime"]):
        data[f"d{j}"] = pd.Timestamp("2020-01-01") + pd.to_timedelta(
            rng.integers(0, 10**8, rows), unit="s")
    X = pd.DataFrame(data)
    signal = np.nan_to_num(X["f0"].to_numpy()) + (X["c0"].cat.codes.to_numpy() == 1)
    if task == "regression":
        y = pd.Series(signal + rng.normal(0, 1, rows), name="target")
    else:
        n_classes = 2 if task == "binary" else 4
        edges = np.quantile(signal, np.linspace(0, 1, n_classes + 1)[1:-1])
        y = pd.Series(np.array([f"class{c}" for c in range(n_classes)])[
            np.searchsorted(edges, signal)], name="target")
    return X, y


def measure(rows: int = 100_000, cols: int = 100, repeats: int = 3,
            task: str = "multiclass", cpu: list[float] | None = None) -> list[float]:
    """Wall-clock seconds of ``repeats`` whole ``compute_metafeatures`` calls (first = cold).

    CPU seconds of the calls are appended to ``cpu`` when given.
    """
    X, y = make_table(rows, cols, task)
    times = []
    for r in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        compute_metafeatures(X, y, task, random_state=r)
        times.append(time.perf_counter() - t0)
        if cpu is not None:
            cpu.append(time.process_time() - c0)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--cols", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--task", default="multiclass",
                        choices=["binary", "multiclass", "regression"])
    args = parser.parse_args()
    cpu: list[float] = []
    times = measure(args.rows, args.cols, args.repeats, args.task, cpu)
    for i, (t, c) in enumerate(zip(times, cpu, strict=True)):
        print(f"call {i + 1}{' (cold)' if i == 0 else ''}: {t:.3f} s wall, {c:.3f} s CPU")
    print(f"{args.rows} rows x {args.cols} columns, task={args.task}: "
          f"worst {max(times):.3f} s, best {min(times):.3f} s, "
          f"median {statistics.median(times):.3f} s (wall clock)")


if __name__ == "__main__":
    main()
