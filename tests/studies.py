"""Watching a running fit's Optuna study from a test, without disturbing it."""

from __future__ import annotations

import sqlite3
import subprocess
import time
from pathlib import Path


def finished_trials(db: Path) -> int:
    """Finished trials in an Optuna SQLite study file, read-only (0 while it is being
    created): a test must not create Optuna's tables itself, racing the process it watches."""
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            (n,) = con.execute("SELECT COUNT(*) FROM trials WHERE state IN "
                               "('COMPLETE', 'PRUNED', 'FAIL')").fetchone()
        return int(n)
    except sqlite3.Error:  # no tables yet, or busy
        return 0


def finished_numbers(db: Path) -> set[int]:
    """Numbers of the finished trials in an Optuna SQLite study file (read-only)."""
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
        rows = con.execute("SELECT number FROM trials WHERE state IN "
                           "('COMPLETE', 'PRUNED', 'FAIL')").fetchall()
    return {int(n) for (n,) in rows}


def wait_for_trials(proc: subprocess.Popen, db: Path, n: int, timeout: float = 120) -> int:
    """Wait until ``db`` holds ``n`` finished trials; fail early if ``proc`` has ended."""
    deadline = time.monotonic() + timeout
    done = 0
    while time.monotonic() < deadline:
        done = finished_trials(db)
        if done >= n:
            return done
        if proc.poll() is not None:
            err = proc.stderr.read() if proc.stderr else ""
            raise AssertionError(f"the fit ended (exit {proc.returncode}) before {n} "
                                 f"finished trials: {err[-2000:]}")
        time.sleep(0.3)
    raise AssertionError(f"only {done} finished trials after {timeout:.0f} s")
