"""Watching a running fit's Optuna study from a test, without disturbing it."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

_FINISHED = ("COMPLETE", "PRUNED", "FAIL")


def _journal_states(path: Path) -> dict[int, str]:
    """Trial number → state name, read from an Optuna journal file without opening it
    through Optuna (which would create the file, and take its lock, racing the process that
    writes it). A line still being written is skipped."""
    import optuna
    from optuna.storages.journal._storage import JournalOperation

    numbers: dict[int, int] = {}  # trial id → number (one study per file here)
    states: dict[int, str] = {}
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return {}
    for line in lines:
        try:
            op = json.loads(line)
        except json.JSONDecodeError:
            continue
        code = op.get("op_code")
        if code == JournalOperation.CREATE_TRIAL:
            tid = len(numbers)
            numbers[tid] = tid
            state = op.get("state")
            states[tid] = optuna.trial.TrialState(state).name if state is not None \
                else "RUNNING"
        elif code == JournalOperation.SET_TRIAL_STATE_VALUES:
            states[op["trial_id"]] = optuna.trial.TrialState(op["state"]).name
    return {numbers[t]: st for t, st in states.items() if t in numbers}


def finished_trials(study_file: Path) -> int:
    """Finished trials in a fit's study file (``study.journal``), read-only."""
    return sum(st in _FINISHED for st in _journal_states(study_file).values())


def finished_numbers(study_file: Path) -> set[int]:
    """Numbers of the finished trials in a fit's study file (read-only)."""
    return {n for n, st in _journal_states(study_file).items() if st in _FINISHED}


def wait_for_trials(proc: subprocess.Popen, db: Path, n: int, timeout: float = 120) -> int:
    """Wait until the study file ``db`` holds ``n`` finished trials; fail early if ``proc``
    has ended."""
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
