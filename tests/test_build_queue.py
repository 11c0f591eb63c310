"""One metabase built by many workers through a database (PostgreSQL for real; the queue's
rules also on SQLite): every task built exactly once, even when a worker is killed."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest

from automl_meta.cli import main
from automl_meta.errors import UsageError
from automl_meta.meta.builder.queue import BuildQueue, Claim
from automl_meta.meta.metabase import DATA_FILES, load_metabase

BASE = {"search_space_version": "v1", "build": {"trials_per_task": 2, "seed": 0}}


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory) -> Path:
    """Four 60-row tasks (two classification, two regression) with a manifest."""
    folder = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    rows = []
    for i, kind in enumerate(["classification", "regression"] * 2):
        X = rng.normal(size=(60, 3))
        df = pd.DataFrame(X, columns=["a", "b", "c"])
        noise = rng.normal(scale=0.5, size=60)
        df["y"] = np.where(X[:, 0] + noise > 0, "p", "n") if kind == "classification" \
            else X[:, 0] * 2 + noise
        df.to_csv(folder / f"t{i}.csv", index=False)
        rows.append({"name": f"t{i}", "file": f"t{i}.csv", "task": kind, "target": "y"})
    pd.DataFrame(rows).to_csv(folder / "manifest.csv", index=False)
    return folder


def _url(backend: str, tmp_path: Path, request) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'queue.db'}"
    return request.getfixturevalue("postgres_url")


def _studies(storage, build: str) -> dict[str, list[optuna.trial.FrozenTrial]]:
    if isinstance(storage, str):
        storage = optuna.storages.RDBStorage(storage)
    return {s.study_name.split("/", 1)[1]: optuna.load_study(
        study_name=s.study_name, storage=storage).trials
        for s in optuna.get_all_study_summaries(storage) if s.study_name.startswith(build + "/")}


def _sha(folder: Path) -> dict[str, str]:
    return {n: hashlib.sha256((folder / n).read_bytes()).hexdigest() for n in DATA_FILES}


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_queue_claims_once_and_discards_late_results(backend, tmp_path, request):
    url = _url(backend, tmp_path, request)
    q = BuildQueue(url, f"unit-{backend}", grace=1.0)
    ids = [f"task{i}" for i in range(12)]
    assert q.register(BASE, ids) == [] and q.register(BASE, ids) == []  # idempotent
    with pytest.raises(UsageError, match="trials_per_task=2, not 5"):
        q.register({**BASE, "build": {"trials_per_task": 5, "seed": 0}}, ids)

    claims: list = []  # eight threads race for the tasks: each is claimed once

    def grab(k: int) -> None:
        for i in range(12):
            if len(claims) >= 10 or (c := q.claim(f"w{k}.{i}")) is None:
                return
            claims.append(c)
    threads = [threading.Thread(target=grab, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    claimed = [c.task_id for c in claims]
    assert len(claimed) == len(set(claimed)) >= 10
    assert q.claim("late", among=["task0", "task1"]) is None  # all running, fresh

    first, stale = claims[0], claims[1]
    assert q.complete(first, {"row": {"task_id": first.task_id}}, ok=True)
    time.sleep(0.6)
    for c in claims[2:]:  # these keep beating; `stale` does not
        assert q.heartbeat(c)
    time.sleep(0.6)
    again = q.claim("rescuer", among=[first.task_id, stale.task_id] + [c.task_id
                                                                         for c in claims[2:]])
    assert again.task_id == stale.task_id and again.previous_worker == stale.worker
    assert again.attempt == 2
    assert not q.heartbeat(stale)  # the presumed-dead worker learns it lost the claim
    assert not q.complete(stale, {"row": {}}, ok=True)  # and its late result is discarded
    assert q.complete(again, {"row": {"task_id": stale.task_id}}, ok=False, error="boom")
    assert q.release([claims[2].worker]) == 1
    counts = q.counts()
    assert counts == {"pending": 12 - len(claims) + 1, "running": len(claims) - 3,
                      "done": 1, "failed": 1}
    assert [o["task_id"] for o in q.outcomes()] == sorted([first.task_id, stale.task_id],
                                                          key=ids.index)
    assert q.register({**BASE, "command": "lead"}, ids, leader=True) == [stale.task_id]
    assert q.base()[0]["command"] == "lead"
    assert BuildQueue.list_builds(url)[f"unit-{backend}"]["pending"] == 12 - len(claims) + 2
    q.close()


@pytest.mark.slow
def test_two_workers_build_each_task_once(postgres_url, tiny_corpus, tmp_path, capsys):
    out = tmp_path / "mb"
    # a password in the URL (the throwaway cluster trusts 127.0.0.1 and ignores it) is shown
    # and recorded nowhere
    with_password = postgres_url.replace("postgres@", "postgres:Pw-in-url-77@", 1)
    common = ["build-metabase", str(tiny_corpus), "--storage", with_password, "--build", "two"]
    args = [*common, "--n-workers", "2", "--trials-per-task", "2", "--output", str(out)]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "build two in postgresql://postgres:***@" in err and "[4/4]" in err
    assert "Pw-in-url-77" not in err + (out / "manifest.json").read_text()

    q = BuildQueue(postgres_url, "two")
    claims = q.tasks()
    assert [(c["task_id"], c["state"], c["attempts"]) for c in claims] == [
        (f"t{i}", "done", 1) for i in range(4)]
    assert len({c["worker"] for c in claims}) == 2  # both workers built tasks
    trials = _studies(postgres_url, "two")
    assert sorted(trials) == ["t0", "t1", "t2", "t3"]
    assert all(len(ts) == 2 and all(t.state.is_finished() for t in ts)
               for ts in trials.values())

    mb = load_metabase(out)
    assert mb.manifest["status"] == "complete" and (mb.tasks["status"] == "ok").all()
    assert sorted(mb.tasks["task_id"]) == ["t0", "t1", "t2", "t3"]
    assert not mb.results.duplicated(["task_id", "trial"]).any()
    assert mb.results.groupby("task_id").size().to_dict() == {f"t{i}": 2 for i in range(4)}
    assert mb.manifest["distributed"]["build"] == "two"
    assert main(["metabase", "info", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["checksums_ok"]

    # re-running joins the finished build (nothing rebuilt); other settings are refused
    assert main(args + ["--quiet"]) == 0 and q.tasks() == claims
    assert main([*common, "--trials-per-task", "3", "--worker"]) == 2
    assert "trials_per_task=2, not 3" in capsys.readouterr().err
    # a later export writes the very same files
    assert main(["metabase", "export", "--storage", postgres_url, "--build", "two",
                 "--output", str(tmp_path / "again")]) == 0
    assert _sha(tmp_path / "again") == _sha(out)
    q.close()


def _mid_task(queue: BuildQueue, storage) -> tuple[dict, int] | None:
    """A running claim whose study has a finished trial and a RUNNING one (its number) that
    is being evaluated (its configuration and worker recorded, not just created)."""
    trials = _studies(storage, queue.name)
    for claim in queue.tasks():
        mine = trials.get(claim["task_id"], [])
        finished = [t for t in mine if t.state.is_finished()]
        running = [t.number for t in mine if t.state == optuna.trial.TrialState.RUNNING
                   and "worker" in t.user_attrs]
        if claim["state"] == "running" and running and finished:
            return claim, running[0]
    return None


@pytest.mark.slow
def test_killed_worker_task_is_claimed_again(postgres_url, tiny_corpus, tmp_path):
    common = ["build-metabase", str(tiny_corpus), "--storage", postgres_url, "--build", "kill",
              "--only", "t0,t1", "--trials-per-task", "3", "--heartbeat-grace", "5"]
    queue = BuildQueue(postgres_url, "kill")
    storage = optuna.storages.RDBStorage(postgres_url)  # both schemas exist before the race
    proc = subprocess.Popen([sys.executable, "-m", "automl_meta", *common, "--worker"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    found = None
    deadline = time.monotonic() + 120
    try:  # kill the worker in the middle of a task: a trial finished, the next one running
        while found is None and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
            if _mid_task(queue, storage) is None:
                continue
            os.killpg(proc.pid, signal.SIGSTOP)  # frozen: the state cannot move on
            found = _mid_task(queue, storage)
            if found is None:
                os.killpg(proc.pid, signal.SIGCONT)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert found is not None, proc.stderr.read()
    claim, running_trial = found
    victim, victim_task = claim["worker"], claim["task_id"]
    assert victim.startswith(f"{os.uname().nodename}:{proc.pid}/")

    out = tmp_path / "mb"
    assert main([*common, "--n-workers", "2", "--output", str(out), "--quiet"]) == 0
    claims = {c["task_id"]: c for c in queue.tasks()}
    assert {t: c["state"] for t, c in claims.items()} == {"t0": "done", "t1": "done"}
    assert claims[victim_task]["attempts"] == 2 and claims[victim_task]["worker"] != victim
    assert all(c["attempts"] == 1 for t, c in claims.items() if t != victim_task)

    trials = _studies(storage, "kill")[victim_task]
    assert all(t.state.is_finished() for t in trials)  # nothing left RUNNING
    orphan = trials[running_trial]
    assert orphan.state.name == "FAIL" and "presumed dead" in orphan.user_attrs["error"]
    dead = [t for t in trials if t.user_attrs.get("worker") == victim.split("/")[0]]
    assert len(dead) >= 2 and len(trials) == 3  # its finished trials are kept and count

    mb = load_metabase(out)
    assert mb.manifest["status"] == "complete" and (mb.tasks["status"] == "ok").all()
    assert not mb.results.duplicated(["task_id", "trial"]).any()
    assert mb.results.groupby("task_id").size().to_dict() == {"t0": 3, "t1": 3}
    mine = mb.results[mb.results["task_id"] == victim_task].set_index("trial")
    assert mine.loc[running_trial, "state"] == "FAIL"
    assert mb.manifest["distributed"]["tasks_claimed_more_than_once"] == [victim_task]
    queue.close()


@pytest.fixture(scope="module")
def pg_cluster():
    """A cluster of this module's own, which a test may stop and start."""
    from .postgres import cluster

    with cluster() as c:
        yield c


@pytest.mark.slow
def test_queue_rides_out_a_restart(pg_cluster, capsys):
    """Counts, heartbeat, completion and release wait while the database restarts; past the
    retry window the error says what happened (and no password)."""
    from automl_meta.meta.builder.queue import retry_transient
    from automl_meta.search.study import StorageUnreachable

    q = BuildQueue(pg_cluster.url, "restart", grace=30.0)
    q.register(BASE, ["a", "b", "c"])
    claim = q.claim("w1")
    # a claim retried after an attempt whose answer was lost: the task already held
    assert q._claim("w1", None, retrying=True) == Claim("a", "w1", 1, None)
    results: dict = {}

    def work() -> None:
        results["counts"] = q.counts()
        results["beat"] = q.heartbeat(claim)
        results["stored"] = q.complete(claim, {"row": {"task_id": "a"}}, ok=True)
        results["released"] = q.release(["w1"])

    pg_cluster.stop("fast")
    down = time.monotonic()
    thread = threading.Thread(target=work)
    thread.start()
    err = ""
    deadline = time.monotonic() + 30
    try:  # an outage of 2 s at least, and until the queue has said it is retrying
        while not (time.monotonic() - down >= 2 and "retrying for up to" in err):
            assert time.monotonic() < deadline and thread.is_alive(), (err, results)
            time.sleep(0.2)
            err += capsys.readouterr().err
    finally:
        pg_cluster.start()
    thread.join(timeout=60)
    err += capsys.readouterr().err
    assert results == {"counts": {"pending": 2, "running": 1, "done": 0, "failed": 0},
                       "beat": True, "stored": True, "released": 0}, err
    assert "reachable again after" in err
    assert [o["task_id"] for o in q.outcomes()] == ["a"]

    pg_cluster.stop("fast")  # down for longer than the window (1 s here)
    try:
        started = time.monotonic()
        with pytest.raises(StorageUnreachable, match=r"unreachable for 1 s") as caught:
            retry_transient(q.counts, q.url.replace("postgres@", "postgres:Pw-9x@"), 1.0)
        assert time.monotonic() - started < 10
        assert "postgres:***@" in str(caught.value) and "Pw-9x" not in str(caught.value)
    finally:
        pg_cluster.start()
    assert q.counts()["done"] == 1  # and afterwards all is well again
    q.close()
