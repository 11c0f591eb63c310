"""How fast trial workers come up and are replaced.

Two figures, for whichever ``automl_meta`` is importable (run it once per implementation,
e.g. with ``PYTHONPATH`` pointing at a snapshot of another version):

1. ``fit``: a ``--time-budget 10`` fit of a small CSV through the command line, with the
   study in SQLite; seconds from launching the command to the first trial being created and
   to the first trial finishing (its folds ran in a worker, so the worker was up), and the
   number of finished trials within the budget.
2. ``replace``: a worker whose evaluation overruns its time-out is killed; seconds the next
   (cheap) evaluation takes, minus what the same evaluation takes on a warm worker: the
   cost of replacing a killed worker.

Usage::

    python benchmarks/worker_startup.py [--repeat 3] [--json FILE] [--start-method spawn]

``--start-method`` applies to the ``replace`` figure of implementations whose
:class:`~automl_meta.search.workers.Worker` accepts one.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def _small_csv(path: Path) -> Path:
    rng = np.random.default_rng(7)
    n = 400
    X = rng.normal(size=(n, 5))
    colour = rng.choice(["red", "green", "blue"], size=n)
    logit = X[:, 0] - 0.8 * X[:, 1] + (colour == "red") + rng.normal(scale=0.7, size=n)
    df = pd.DataFrame(X, columns=[f"x{i}" for i in range(5)]).round(4)
    df["colour"] = colour
    df["label"] = np.where(logit > 0.3, "yes", "no")
    df.to_csv(path, index=False)
    return path


def _implementation() -> str:
    import automl_meta

    where = Path(automl_meta.__file__).parent
    if (where / "forkserver.py").exists():
        return f"automl_meta.forkserver ({where})"
    return f"multiprocessing forkserver ({where})"


def fit_once(workdir: Path, csv: Path, i: int, budget: float = 10.0,
             extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """One CLI fit; seconds from launch to the first trial created / finished."""
    db = workdir / f"study{i}.db"
    out = workdir / f"run{i}"
    cmd = [sys.executable, "-m", "automl_meta", "fit", str(csv), "--target", "label",
           "--time-budget", str(budget), "--output", str(out), "--storage", f"sqlite:///{db}",
           "--quiet", "--no-report", "--seed", str(i), *extra]
    load = os.getloadavg()[0]
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.time() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"fit failed ({proc.returncode}): {proc.stderr[-2000:]}")
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT datetime_start, datetime_complete, state FROM trials "
                           "ORDER BY trial_id").fetchall()

    def ts(s: str | None) -> float | None:
        return None if s is None else datetime.fromisoformat(s).timestamp()

    starts = [ts(r[0]) for r in rows if r[0]]
    ends = [ts(r[1]) for r in rows if r[1]]
    return {"first_trial_created_s": min(starts) - t0 if starts else None,
            "first_trial_finished_s": min(ends) - t0 if ends else None,
            "finished_trials": len(ends), "wall_s": wall, "load_before": load}


def _bench_ctx():
    from automl_meta.data import prepare_dataset
    from automl_meta.search.cv import EvalContext, make_folds
    from automl_meta.search.space import load_space

    rng = np.random.default_rng(0)
    n, d = 4000, 20
    df = pd.DataFrame(rng.normal(size=(n, d)), columns=[f"f{i}" for i in range(d)])
    df["label"] = np.where(df["f0"] + rng.normal(size=n) > 0, "a", "b")
    ds = prepare_dataset(df, "label")
    y = ds.y.map({c: i for i, c in enumerate(ds.classes)}).to_numpy()
    return EvalContext(ds.X, y, ds.task, ds.schema, 2, "accuracy", make_folds(y, ds.task, 0),
                       load_space(), 0)


def replace_figures(repeat: int, start_method: str | None) -> dict[str, Any]:
    """Seconds to replace a worker killed at a time-out (old and new Worker APIs)."""
    import inspect

    from automl_meta.search import workers as worker_mod
    from automl_meta.search.workers import EvaluationTimeout, Worker

    ctx = _bench_ctx()
    cheap = ctx.space.default_config("linear", "binary")
    slow = ctx.space.default_config("svm", "binary") | {"svm.C": 1000.0}
    server = None
    t0 = time.monotonic()
    if hasattr(worker_mod, "worker_env") and "server" in inspect.signature(Worker).parameters:
        from automl_meta.forkserver import ForkServer

        server = ForkServer(env=worker_mod.worker_env())
        server.start()
        worker = Worker(ctx, server=server)
    elif start_method is not None:
        worker = Worker(ctx, start_method=start_method)
    else:
        worker = Worker(ctx)
    worker.start()
    worker.run(("fold", cheap, 0), timeout=120)
    first = time.monotonic() - t0
    warm = []
    for _ in range(3):
        t = time.monotonic()
        worker.run(("fold", cheap, 0), timeout=60)
        warm.append(time.monotonic() - t)
    warm_s = statistics.median(warm)
    replace, kill = [], []
    for _ in range(repeat):
        t = time.monotonic()
        try:
            worker.run(("fold", slow, 0), timeout=0.5)
        except EvaluationTimeout:
            pass
        else:
            raise RuntimeError("the slow evaluation finished within its time-out")
        kill.append(time.monotonic() - t - 0.5)
        t = time.monotonic()
        worker.run(("fold", cheap, 0), timeout=120)
        replace.append(time.monotonic() - t - warm_s)
    worker.close()
    if server is not None:
        server.close()
    return {"first_evaluation_s": first, "warm_evaluation_s": warm_s,
            "kill_s": kill, "replace_s": replace,
            "replace_median_s": statistics.median(replace)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--start-method", choices=["forkserver", "spawn"])
    ap.add_argument("--skip-fit", action="store_true")
    ap.add_argument("--time-budget", type=float, default=10.0)
    ap.add_argument("--no-warm-start", action="store_true",
                    help="fit without the warm start (the search starts at once)")
    args = ap.parse_args()
    doc: dict[str, Any] = {"implementation": _implementation(), "python": sys.version.split()[0],
                           "cpus": os.cpu_count(), "start_method": args.start_method,
                           "load_average_1min": os.getloadavg()[0],
                           "time_budget": args.time_budget,
                           "warm_start": not args.no_warm_start}
    if not args.skip_fit:
        with tempfile.TemporaryDirectory() as tmp:
            csv = _small_csv(Path(tmp) / "small.csv")
            extra = ("--no-warm-start",) if args.no_warm_start else ()
            fits = [fit_once(Path(tmp), csv, i, args.time_budget, extra)
                    for i in range(args.repeat)]
        doc["fit"] = fits
        for key in ("first_trial_created_s", "first_trial_finished_s", "finished_trials"):
            values = [f[key] for f in fits if f[key] is not None]
            doc[f"fit_median_{key}"] = statistics.median(values) if values else None
    doc["replace"] = replace_figures(max(args.repeat, 3), args.start_method)
    text = json.dumps(doc, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
