"""Resumable fits and several processes on one study (SQLite, and PostgreSQL for real)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import optuna
import pandas as pd
import pytest

from automl_meta.cli import main

from .studies import wait_for_trials


def _cli(*args, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "automl_meta", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, **kw)


def test_killed_fit_resumes_its_study(tmp_path, small_csv, capsys):
    run = tmp_path / "run"
    args = ["fit", small_csv, "--target", "label", "--n-trials", "5",
            "--no-warm-start", "--output", run, "--quiet"]
    proc = _cli(*args)
    done = wait_for_trials(proc, tmp_path / ".run.partial" / "study.db", 2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not run.exists() and done >= 2

    capsys.readouterr()
    assert main([str(a) for a in args]) == 2  # the left-over state is not silently replaced
    assert "--resume" in capsys.readouterr().err
    assert main([str(a) for a in args] + ["--resume"]) == 0
    lb = pd.read_csv(run / "leaderboard.csv")
    assert len(lb) >= 5 and lb["trial"].is_unique
    assert (lb["trial"] < done).sum() >= done  # the trials before the kill are kept


def test_worker_refuses_other_data(tmp_path, small_csv, diabetes_csv, capsys):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    assert main(["fit", str(small_csv), "--target", "label", "--n-trials", "1",
                 "--no-warm-start", "--no-report", "--storage", url, "--study", "s1",
                 "--output", str(tmp_path / "run"), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["worker", str(diabetes_csv), "--storage", url, "--study", "s1",
                 "--n-trials", "2"]) == 2
    assert "not the same data" in capsys.readouterr().err
    assert main(["worker", str(small_csv), "--storage", url, "--study", "nope"]) == 2


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_workers_share_one_study(backend, tmp_path, small_csv, request):
    url = f"sqlite:///{tmp_path / 'shared.db'}" if backend == "sqlite" else \
        request.getfixturevalue("postgres_url")
    study = f"two-workers-{backend}"
    run = tmp_path / "run"
    # the helper stops well before the leader's search does, so every trial it finishes is
    # in the leader's leaderboard; the budgets leave room for slow process start-ups on a
    # loaded machine (importing scikit-learn and creating the study can take seconds there)
    leader = _cli("fit", small_csv, "--target", "label", "--time-budget", "36",
                  "--no-warm-start", "--no-report", "--storage", url, "--study", study,
                  "--output", run, "--json")
    time.sleep(3)  # the leader creates the study first
    helper = _cli("worker", small_csv, "--storage", url, "--study", study,
                  "--time-budget", "10", "--json")
    out_h, err_h = helper.communicate(timeout=120)
    out_l, err_l = leader.communicate(timeout=120)
    assert helper.returncode == 0, err_h
    assert leader.returncode == 0, err_l
    by_worker = json.loads(out_h)["trials_by_this_worker"]
    summary = json.loads(out_l)
    trials = optuna.load_study(study_name=study, storage=url).trials
    finished = [t for t in trials if t.state.is_finished()]
    workers = {t.user_attrs.get("worker") for t in finished}
    assert len(workers) == 2 and by_worker >= 1
    lb = pd.read_csv(run / "leaderboard.csv")
    assert len(lb) == len(finished) and lb["trial"].is_unique  # nothing lost or duplicated
    complete = lb[lb["state"] == "COMPLETE"]
    assert summary["best"]["cv_score"] == pytest.approx(complete["score"].max())


def test_killed_worker_trial_is_failed_not_left_running(tmp_path, small_csv, postgres_url):
    """A worker SIGKILLed in the middle of a trial: its heartbeat stops, and the leader marks
    that trial FAIL once the grace period is over; the search and the fit go on."""
    study = "killed-worker"
    run = tmp_path / "run"
    leader = _cli("fit", small_csv, "--target", "label", "--time-budget", "50",
                  "--no-warm-start", "--no-report", "--storage", postgres_url,
                  "--study", study, "--output", run, "--json")
    time.sleep(3)
    helper = _cli("worker", small_csv, "--storage", postgres_url, "--study", study,
                  "--time-budget", "45", "--json")
    victim = None
    deadline = time.monotonic() + 40
    while victim is None and time.monotonic() < deadline:
        time.sleep(0.2)
        try:
            running = optuna.load_study(study_name=study, storage=postgres_url).get_trials(
                deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        except KeyError:  # the leader has not created the study yet
            continue
        victim = next((t.number for t in running
                       if str(t.user_attrs.get("worker", "")).endswith(f":{helper.pid}")), None)
    os.killpg(helper.pid, signal.SIGKILL)
    helper.wait()
    assert victim is not None, "the worker never ran a trial"
    out, err = leader.communicate(timeout=120)
    assert leader.returncode == 0, err
    trials = {t.number: t for t in optuna.load_study(study_name=study,
                                                     storage=postgres_url).trials}
    assert trials[victim].state == optuna.trial.TrialState.FAIL
    assert not [t for t in trials.values() if t.state == optuna.trial.TrialState.RUNNING]
    lb = pd.read_csv(run / "leaderboard.csv")
    assert victim in set(lb["trial"]) and lb["trial"].is_unique
    assert json.loads(out)["best"] is not None
