"""Faults: Ctrl-C / SIGTERM during the search, a worker killed mid-trial, a memory limit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from automl_meta import AutoML
from automl_meta.search.space import load_space

from .conftest import cpu_seconds
from .studies import wait_for_trials


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process (Linux /proc)."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        ppid = next((int(line.split()[1]) for line in status.splitlines()
                     if line.startswith("PPid:")), None)
        out[int(entry.name)] = (ppid, cmdline)
    return out


def _worker_children() -> list[int]:
    """PIDs of this process's trial workers: children of its multiprocessing fork server
    (or, where there is none, interpreters it spawned)."""
    procs = _processes()
    servers = {pid for pid, (ppid, cmd) in procs.items()
               if ppid == os.getpid() and "multiprocessing.forkserver" in cmd}
    return [pid for pid, (ppid, cmd) in procs.items()
            if ppid in servers or (ppid == os.getpid() and "multiprocessing.spawn" in cmd)]


@pytest.fixture(scope="module")
def wide_data():
    rng = np.random.default_rng(0)
    n, d = 9000, 40
    X = pd.DataFrame(rng.normal(size=(n, d)), columns=[f"f{i}" for i in range(d)])
    y = np.where(X["f0"] + rng.normal(size=n) > 0, "a", "b")
    return X, y


def _svm_hog() -> dict:
    """An RBF SVM on 9 000 rows: seconds per fold, and its kernel cache takes the worker from
    ~200 MB to ~380 MB resident (measured), while a linear model stays near 220 MB."""
    space = load_space()
    return space.default_config("svm", "binary") | {"svm.C": 1000.0, "svm.gamma_scale": 0.01}


def _default_sigint() -> None:
    """In the fit's process before it starts: Ctrl-C's default disposition. A process
    started with SIGINT ignored (a background job of a non-interactive shell, ``nohup``)
    keeps ignoring it, as Unix programs do, and so does ``fit``; the test must not depend on
    how the suite itself was started."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.slow
def test_interrupt_refits_best_and_exits_130(tmp_path, small_csv, sig):
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "automl_meta", "fit", str(small_csv),
                             "--target", "label", "--time-budget", "120", "--output",
                             str(run), "--no-warm-start", "--quiet"],
                            stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint)
    wait_for_trials(proc, tmp_path / ".run.partial" / "study.journal", 1)
    proc.send_signal(sig)
    # generous: a correctness check, not a timing one (60 s ran out once while a benchmark
    # held both cores alongside the two test workers)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "interrupted"
    lb = pd.read_csv(run / "leaderboard.csv")
    assert len(lb) >= 1
    report = json.loads((run / "report.json").read_text())
    if (lb["state"] == "COMPLETE").any():  # the best so far is what was refitted
        assert report["final_model"]["trial"] == report["best"]["trial"]
    assert "interrupted" in err
    pred = subprocess.run([sys.executable, "-m", "automl_meta", "predict", str(run),
                           str(small_csv)], capture_output=True, text=True)
    assert pred.returncode == 0, pred.stderr
    leftovers = [p for p in tmp_path.iterdir() if p.name.startswith(".run.partial")]
    assert not leftovers


@pytest.mark.slow
def test_killed_worker_fails_one_trial_not_the_search(wide_data):
    X, y = wide_data
    space = load_space()
    killer_done = threading.Event()

    def kill_worker_soon():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killer_done.is_set():
            time.sleep(0.1)
            # a worker that has computed for a second is in the SVM trial (the first one)
            pids = [pid for pid in _worker_children() if cpu_seconds(pid) >= 1.0]
            if pids:
                for pid in pids:
                    os.kill(pid, signal.SIGKILL)  # what the OOM killer does
                killer_done.set()

    threading.Thread(target=kill_worker_soon, daemon=True).start()
    model = AutoML(n_trials=2, warm_start=0, seed=0,
                   warm_start_configs=[_svm_hog(), space.default_config("linear", "binary")]
                   ).fit(X, y)
    killer_done.set()
    first, second = model.search_.records[:2]
    assert first.state == "FAIL" and "SIGKILL" in first.error
    assert second.state == "COMPLETE"


def _forest_hog() -> dict:
    """A regression forest of 300 fully grown trees on 2 features per split: every tree has
    about one leaf per training row, ~1 MB per tree on 7 200 rows, fitted in seconds."""
    space = load_space()
    return space.default_config("rf", "regression") | {
        "rf.n_estimators": 300, "rf.bootstrap": False, "rf.max_features": 0.05}


@pytest.mark.slow
def test_memory_limit_fails_a_trial_and_the_fit_goes_on(tmp_path, wide_data):
    """Through the command line: the trial that allocates past --memory-limit fails with
    MemoryError in its worker (RLIMIT_DATA), the leaderboard says why, the search goes on
    with a new worker, and the fit ends with a model."""
    X, _ = wide_data
    rng = np.random.default_rng(1)
    df = X.assign(y=X["f0"] + rng.normal(size=len(X)))
    csv = tmp_path / "wide.csv"
    df.to_csv(csv, index=False)
    db = tmp_path / "study.db"
    import optuna

    # the forest is the first trial: enqueued in the study the fit then opens
    study = optuna.create_study(storage=f"sqlite:///{db}", study_name="mem",
                                direction="maximize")
    study.enqueue_trial(_forest_hog(), user_attrs={"origin": "test"})
    study.enqueue_trial(load_space().default_config("linear", "regression"),
                        user_attrs={"origin": "test"})
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "automl_meta", "fit", str(csv), "--target",
                           "y", "--n-trials", "2", "--memory-limit", "0.3", "--storage",
                           f"sqlite:///{db}", "--study", "mem", "--no-warm-start",
                           "--output", str(run), "--no-report", "--quiet"],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    lb = pd.read_csv(run / "leaderboard.csv")
    forest = lb[lb["trial"] == 0].iloc[0]
    assert forest["state"] == "FAIL"
    assert str(forest["error"]).startswith("memory limit exceeded (--memory-limit 0.30 GiB)")
    assert "MemoryError" in forest["error"]
    assert list(lb["state"]) == ["FAIL", "COMPLETE"]  # the next trial had a new worker
    assert (run / "model.skops").exists()  # the default format
    pred = subprocess.run([sys.executable, "-m", "automl_meta", "predict", str(run),
                           str(csv)], capture_output=True, text=True)
    assert pred.returncode == 0, pred.stderr
