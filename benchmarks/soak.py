"""Soak: many consecutive small fits through the Python API in one process.

Checks that nothing accumulates: resident memory of this process, temporary directories,
open file descriptors and child processes. Each fit is a real search (worker processes,
Optuna study, final refit) on a small dataset made here; every 10th fit is also saved to a
run directory and loaded back.

    python benchmarks/soak.py --fits 200        # prints a table every 20 fits and a verdict

Bound: after the first 20 fits (warm-up: imports, caches), resident memory may grow by at
most 50 MB over the remaining fits; temporary directories, file descriptors and children
must come back to their warm-up values.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from automl_meta import AutoML  # noqa: E402
from automl_meta.artifacts.rundir import load_run  # noqa: E402

MEMORY_BOUND_MB = 50.0


def rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def open_fds() -> int:
    return len(os.listdir(f"/proc/{os.getpid()}/fd"))


def children() -> int:
    n = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                status = (entry / "status").read_text()
            except OSError:
                continue
            if f"\nPPid:\t{os.getpid()}\n" in status:
                n += 1
    return n


def temp_entries() -> int:
    return len(os.listdir(tempfile.gettempdir()))


def main() -> None:
    ap = argparse.ArgumentParser(description="soak test of the Python API")
    ap.add_argument("--fits", type=int, default=200)
    args = ap.parse_args()
    # a private temporary folder, so that other programs' files do not blur the count
    private = tempfile.mkdtemp(prefix="automl-meta-soak-tmp-")
    os.environ["TMPDIR"] = private
    tempfile.tempdir = private
    rng = np.random.default_rng(0)
    rows = []
    base = None
    workdir = Path(tempfile.mkdtemp(prefix="automl-meta-soak-"))
    t0 = time.monotonic()
    for i in range(args.fits):
        n = 120
        X = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n),
                          "c": rng.choice(["x", "y", "z"], size=n)})
        y = np.where(X["a"] + (X["c"] == "x") > 0.3, "p", "q") if i % 2 else \
            X["a"] * 2 + rng.normal(size=n)
        model = AutoML(n_trials=2, warm_start=2 if i % 3 == 0 else 0, seed=i).fit(X, y)
        model.predict(X.head(5))
        if i % 10 == 0:
            run = workdir / f"run{i}"
            model.save(run, report=i % 20 == 0)
            load_run(run)[1].predict(X.head(5))
        del model
        if (i + 1) % 20 == 0 or i == 0:
            snap = {"fits": i + 1, "rss_mb": round(rss_mb(), 1), "fds": open_fds(),
                    "children": children(), "tmp_entries": temp_entries(),
                    "seconds": round(time.monotonic() - t0, 1)}
            if i + 1 == 20:
                base = snap
            rows.append(snap)
            print(snap, flush=True)
    df = pd.DataFrame(rows)
    print(df.to_string(index=False))
    if base is not None:
        last = rows[-1]
        growth = last["rss_mb"] - base["rss_mb"]
        ok = (growth <= MEMORY_BOUND_MB and last["fds"] <= base["fds"]
              and last["children"] <= base["children"]
              and last["tmp_entries"] <= base["tmp_entries"])
        print(f"\nRSS growth after warm-up: {growth:+.1f} MB (bound {MEMORY_BOUND_MB} MB); "
              f"fds {base['fds']} -> {last['fds']}; children {base['children']} -> "
              f"{last['children']}; temp entries {base['tmp_entries']} -> "
              f"{last['tmp_entries']}: {'OK' if ok else 'FAILED'}")


if __name__ == "__main__":
    main()
