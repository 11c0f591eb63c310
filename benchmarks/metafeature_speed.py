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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/: common.py

from common import measure_metafeatures  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--cols", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--task", default="multiclass",
                        choices=["binary", "multiclass", "regression"])
    args = parser.parse_args()
    cpu: list[float] = []
    times = measure_metafeatures(args.rows, args.cols, args.repeats, args.task, cpu)
    for i, (t, c) in enumerate(zip(times, cpu, strict=True)):
        print(f"call {i + 1}{' (cold)' if i == 0 else ''}: {t:.3f} s wall, {c:.3f} s CPU")
    print(f"{args.rows} rows x {args.cols} columns, task={args.task}: "
          f"worst {max(times):.3f} s, best {min(times):.3f} s, "
          f"median {statistics.median(times):.3f} s (wall clock)")


if __name__ == "__main__":
    main()
