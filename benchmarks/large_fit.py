"""The 1 000 000-row case of the input matrix: ``automl-meta fit`` on 1M rows × 20 columns.

Too slow for the test suite, so it is a script. It writes a seeded CSV (14 float columns,
some with missing values, 2 integer columns, 2 string categoricals, 1 yes/no flag and 1 date
column, plus a binary target that depends on several of them), then runs the real command
line in a fresh process::

    automl-meta fit DATA --target label --time-budget 60 --output RUN --json

and prints the wall time, the exit code and the promise it is held to (the whole command
ends within budget + max(5 s, 10 %), i.e. 66 s for 60 s). Exit code 0 plus a complete run
directory (``manifest.json``) is the pass; the script's own exit code is that of ``fit``.

Usage::

    /work/venv/bin/python benchmarks/large_fit.py [--rows 1000000] [--budget 60]
        [--workdir DIR] [--keep] [-- extra fit options]

The CSV (~250 MB) is written to ``--workdir`` (a temporary directory by default) and
reused on the next run if it is already there with the same row count.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def make_csv(path: Path, rows: int, seed: int = 0) -> None:
    """Write the seeded table in chunks (bounded memory)."""
    rng = np.random.default_rng(seed)
    chunk = 200_000
    header = True
    with open(path, "w", newline="") as fh:
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            floats = rng.normal(size=(n, 14)).round(4)
            df = pd.DataFrame(floats, columns=[f"f{i}" for i in range(14)])
            for i in (3, 7):
                df.loc[rng.random(n) < 0.05, f"f{i}"] = np.nan
            df["count"] = rng.poisson(3, n)
            df["year"] = rng.integers(1990, 2024, n)
            df["city"] = rng.choice([f"city_{i}" for i in range(40)], n)
            df["segment"] = rng.choice(["a", "b", "c", "d"], n, p=[0.4, 0.3, 0.2, 0.1])
            df["member"] = rng.choice(["yes", "no"], n)
            days = rng.integers(0, 3650, n)
            df["joined"] = (pd.Timestamp("2010-01-01") + pd.to_timedelta(days, unit="D")
                            ).strftime("%Y-%m-%d")
            score = (floats[:, 0] + 0.5 * floats[:, 1] - 0.3 * df["count"].to_numpy()
                     + (df["segment"] == "a").to_numpy() + rng.normal(scale=1.0, size=n))
            df["label"] = np.where(score > 0, "positive", "negative")
            df.to_csv(fh, index=False, header=header)
            header = False


def count_rows(path: Path) -> int:
    with open(path, "rb") as fh:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 24), b"")) - 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--budget", type=float, default=60.0)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--keep", action="store_true", help="keep the run directory")
    parser.add_argument("extra", nargs="*", help="more fit options (after --)")
    args = parser.parse_args(argv)

    workdir = args.workdir or Path(tempfile.gettempdir()) / "automl-meta-large-fit"
    workdir.mkdir(parents=True, exist_ok=True)
    data = workdir / f"large_{args.rows}.csv"
    if not data.exists() or count_rows(data) != args.rows:
        t0 = time.perf_counter()
        make_csv(data, args.rows)
        print(f"wrote {data} ({data.stat().st_size / 1e6:.0f} MB, {args.rows} rows × 20 "
              f"columns + target) in {time.perf_counter() - t0:.1f} s", flush=True)
    run = workdir / "run"
    shutil.rmtree(run, ignore_errors=True)
    cmd = [sys.executable, "-m", "automl_meta", "fit", str(data), "--target", "label",
           "--time-budget", f"{args.budget:g}", "--output", str(run), "--json", *args.extra]
    print("$ " + " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    limit = args.budget + max(5.0, 0.1 * args.budget)
    complete = (run / "manifest.json").is_file()
    print(f"exit code     {proc.returncode}")
    print(f"wall time     {wall:.1f} s (promise: within {limit:g} s → "
          f"{'kept' if wall <= limit else 'BROKEN'})")
    print(f"run directory {'complete' if complete else 'absent / incomplete'}: {run}")
    if proc.returncode == 0:
        try:
            s = json.loads(proc.stdout)
            best = s.get("best") or {}
            print(f"rows          {s.get('rows')} read, {s.get('search_rows')} searched")
            print(f"trials        {s.get('trials', {}).get('by_state')} "
                  f"(stopped by {s.get('stop_reason')})")
            print(f"best          {best.get('family')} CV {s.get('metric')} "
                  f"{best.get('cv_score')}")
            print(f"final model   {s.get('final_model', {}).get('reason')}")
        except json.JSONDecodeError:
            print("stdout was not one JSON document:", proc.stdout[:500])
    stderr = proc.stderr.strip()
    if stderr:
        print("stderr (last lines):")
        print("\n".join("  " + line for line in stderr.splitlines()[-5:]))
    if not args.keep:
        shutil.rmtree(run, ignore_errors=True)
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
