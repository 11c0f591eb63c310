"""Resumable fits and several processes on one study (SQLite, and PostgreSQL for real);
storage URLs: passwords never shown, read from the environment, a database restart survived."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import optuna
import pandas as pd
import pytest

from automl_meta.cli import main

from .conftest import wait_until
from .studies import finished_numbers, wait_for_trials


def _cli(*args, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "automl_meta", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, **kw)


@pytest.mark.slow
def test_killed_fit_resumes_its_study(tmp_path, small_csv, capsys):
    run = tmp_path / "run"
    args = ["fit", small_csv, "--target", "label", "--n-trials", "5",
            "--no-warm-start", "--output", run, "--quiet"]
    proc = _cli(*args)
    done = wait_for_trials(proc, tmp_path / ".run.partial" / "study.journal", 2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not run.exists() and done >= 2
    before = finished_numbers(tmp_path / ".run.partial" / "study.journal")

    capsys.readouterr()
    assert main([str(a) for a in args]) == 2  # the left-over state is not silently replaced
    assert "--resume" in capsys.readouterr().err
    assert main([str(a) for a in args] + ["--resume"]) == 0
    lb = pd.read_csv(run / "leaderboard.csv")
    assert len(lb) >= 5 and lb["trial"].is_unique
    assert before <= set(lb["trial"])  # the trials finished before the kill are kept


@pytest.mark.slow
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


def _study_has_trials(url: str, study: str) -> bool:
    """Whether ``study`` holds a trial yet (the study's attributes are written before its
    first trial), read with plain SQL, read-only: a watcher must not create Optuna's tables,
    racing the process it watches."""
    query = ("SELECT COUNT(*) FROM trials t JOIN studies s ON t.study_id = s.study_id "
             "WHERE s.study_name = ?")
    if url.startswith("sqlite:///"):
        import sqlite3

        try:
            with sqlite3.connect(f"file:{url.removeprefix('sqlite:///')}?mode=ro", uri=True,
                                 timeout=1) as con:
                return con.execute(query, (study,)).fetchone()[0] > 0
        except sqlite3.Error:  # no file or no tables yet, or busy
            return False
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=5) as con:
            return con.execute(query.replace("?", "%s"), (study,)).fetchone()[0] > 0
    except (psycopg.errors.UndefinedTable, psycopg.OperationalError):
        return False


def _wait_for_first_trial(leader: subprocess.Popen, url: str, study: str) -> None:
    """Wait until the ``fit`` process ``leader`` has created ``study`` and started a trial."""
    def started() -> bool:
        if leader.poll() is not None:
            raise AssertionError(f"the leader ended (exit {leader.returncode}): "
                                 f"{leader.stderr.read()[-2000:]}")
        return _study_has_trials(url, study)

    wait_until(started, timeout=120, interval=0.2, what=f"trial in study {study!r}")


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
@pytest.mark.slow
def test_two_workers_share_one_study(backend, tmp_path, small_csv, request):
    url = f"sqlite:///{tmp_path / 'shared.db'}" if backend == "sqlite" else \
        request.getfixturevalue("postgres_url")
    study = f"two-workers-{backend}"
    run = tmp_path / "run"
    # the helper stops well before the leader's search does, so every trial it finishes is
    # in the leader's leaderboard; the budgets leave room for slow process start-ups on a
    # loaded machine (importing scikit-learn and creating the study can take seconds there)
    leader = _cli("fit", small_csv, "--target", "label", "--time-budget", "28",
                  "--no-warm-start", "--no-report", "--storage", url, "--study", study,
                  "--output", run, "--json")
    _wait_for_first_trial(leader, url, study)  # the worker joins an existing study only
    helper = _cli("worker", small_csv, "--storage", url, "--study", study,
                  "--time-budget", "8", "--json")
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


@pytest.mark.slow
def test_killed_worker_trial_is_failed_not_left_running(tmp_path, small_csv, postgres_url):
    """A worker SIGKILLed in the middle of a trial: its heartbeat stops, and the leader marks
    that trial FAIL once the grace period is over; the search and the fit go on."""
    study = "killed-worker"
    run = tmp_path / "run"
    leader = _cli("fit", small_csv, "--target", "label", "--time-budget", "50",
                  "--no-warm-start", "--no-report", "--storage", postgres_url,
                  "--study", study, "--output", run, "--json")
    _wait_for_first_trial(leader, postgres_url, study)
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


# ----------------------------------------------------------------- secrets in storage URLs
SECRET = "S3cr3t-Pw"


@pytest.mark.parametrize("url", [
    f"postgresql://u:{SECRET}@db.internal/automl",
    f"postgresql+psycopg://u:{SECRET}@db.internal:5432/automl?sslmode=require",
    f"postgresql://:{SECRET}@db.internal/automl",
    f"postgresql://u@db.internal/automl?password={SECRET}",
    f"postgresql://u@db.internal/automl?sslmode=require&PassWord={SECRET}&application_name=a",
    f"postgresql://u@db.internal/automl?sslpassword={SECRET}",
    f"postgresql:///automl?user=u&password={SECRET}&password={SECRET}2",
    f"postgresql://u:p%40{SECRET}@db.internal/automl",
    f"postgresql://u:pa@{SECRET}@db.internal/automl",  # a raw '@' in the password
    f"postgresql://u:{SECRET}/x:y@db.internal/automl",  # raw '/' and ':' too
    f"postgresql://u:{SECRET}@/automl?host=/var/run/postgresql",
    f"postgresql://u:{SECRET}@h1:5432,h2:5433/automl",
    f"postgresql://u:{SECRET}@db.internal:notaport/automl",  # SQLAlchemy cannot parse it
    f"mysql+pymysql://u:{SECRET}@db.internal/automl?charset=utf8mb4",
    f"postgresql://u@db.internal/automl?passwd={SECRET}&pwd={SECRET}&token={SECRET}"
    f"&secret={SECRET}&api_key={SECRET}",
    f"automl-meta build-metabase corpus --storage postgresql://u:{SECRET}@db.internal/automl "
    "--output mb",  # a command line
    f"automl-meta worker d.csv --storage postgresql://u@db.internal/a?password={SECRET} -q",
    f"cannot open storage 'postgresql://u:{SECRET}@db.internal/automl': refused",
    f"host=db.internal user=u password={SECRET} dbname=automl",  # libpq key=value
    f"host=db.internal password='{SECRET} with spaces' dbname=automl",
])
def test_redact_hides_every_password_form(url):
    from automl_meta.search.study import redact

    shown = redact(url)
    assert SECRET not in shown and "***" in shown
    assert redact(shown) == shown  # stable: redacting twice changes nothing
    if "db.internal" in url:
        assert "db.internal" in shown  # where it points stays readable


@pytest.mark.parametrize("text", ["sqlite:///runs/study.db", "postgresql://u@db/automl",
                                  "not a url", "", "postgresql://u@db/a?application_name=x"])
def test_redact_keeps_what_is_not_secret(text):
    from automl_meta.search.study import redact

    assert redact(text).replace("%2F", "/") == text


@pytest.mark.slow
def test_redact_never_raises_and_hides_any_password():
    from urllib.parse import quote

    from hypothesis import assume, given, settings
    from hypothesis import strategies as st

    from automl_meta.search.study import redact

    @settings(max_examples=300, deadline=None)
    @given(st.text(), st.text(alphabet=st.characters(blacklist_categories=("Cs", "Z", "Cc")),
                              min_size=8))
    def check(anything: str, password: str) -> None:
        assert isinstance(redact(anything), str)
        encoded = quote(password, safe="")
        forms = ["postgresql://u:{}@db/a", "postgresql://u@db/a?sslmode=require&password={}",
                 "automl-meta fit --storage postgresql://u:{}@db/a --output run"]
        for form in forms:
            assume(password not in form and encoded not in form)
            for secret in (encoded, password):  # percent-encoded, and as users type it
                shown = redact(form.format(secret))
                assert secret not in shown and password not in shown, shown

    check()


# ------------------------------------------------------------------ names the schema refuses
def test_overlong_names_are_refused_before_the_database(tmp_path, small_csv, capsys):
    db = tmp_path / "never.db"
    url = f"sqlite:///{db}"
    long_study = "s" * 513  # Optuna stores study names of up to 512 characters
    assert main(["fit", str(small_csv), "--target", "label", "--n-trials", "1",
                 "--no-warm-start", "--storage", url, "--study", long_study,
                 "--output", str(tmp_path / "run"), "--quiet"]) == 2
    assert "at most 512" in capsys.readouterr().err
    assert main(["worker", str(small_csv), "--storage", url, "--study", long_study]) == 2
    assert "at most 512" in capsys.readouterr().err

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    pd.read_csv(small_csv).to_csv(corpus / "t.csv", index=False)
    build = ["build-metabase", str(corpus), "--storage", url, "--trials-per-task", "1",
             "--output", str(tmp_path / "mb"), "--quiet"]
    assert main([*build, "--build", "b" * 201]) == 2  # the builds table's limit
    assert "1 to 200 characters" in capsys.readouterr().err
    assert main(["metabase", "export", "--storage", url, "--build", "b" * 201,
                 "--output", str(tmp_path / "mb")]) == 2
    capsys.readouterr()
    # a task id that fits its column (500) but not the study name <build>/<task id> (512)
    deep = corpus / ("d" * 200) / ("e" * 200)  # task id: the file's path, 480 characters
    deep.mkdir(parents=True)
    (corpus / "t.csv").rename(deep / ("f" * 78 + ".csv"))
    assert main([*build, "--build", "b" * 40]) == 2
    assert "a task id may have 1 to 471" in capsys.readouterr().err
    assert not db.exists() or _optuna_studies(url) == []


def _optuna_studies(url: str) -> list[str]:
    return [s.study_name for s in optuna.get_all_study_summaries(url)]


# ---------------------------------------------------- the URL from the environment, hidden
def _with_password(url: str, password: str) -> str:
    """The URL with a password (the throwaway cluster trusts 127.0.0.1 and ignores it)."""
    return url.replace("postgres@", f"postgres:{password}@", 1)


@pytest.mark.slow
def test_storage_from_environment_and_password_never_shown(tmp_path, small_csv, postgres_url,
                                                           monkeypatch, capsys):
    password = "Pw-4-env-9f3e"
    monkeypatch.setenv("AUTOML_META_STORAGE", _with_password(postgres_url, password))
    run = tmp_path / "run"
    assert main(["fit", str(small_csv), "--target", "label", "--n-trials", "2",
                 "--no-warm-start", "--no-report", "--study", "from-env", "--output", str(run),
                 "--json"]) == 0
    fit = capsys.readouterr()
    assert json.loads(fit.out)["study"] == "from-env"
    trials = optuna.load_study(study_name="from-env", storage=postgres_url).trials
    assert len(trials) == 2  # the study is in PostgreSQL, not in the run directory
    assert main(["worker", str(small_csv), "--study", "from-env", "--n-trials", "3",
                 "--json"]) == 0
    worker = capsys.readouterr()
    assert json.loads(worker.out)["trials_in_study"] == 3
    shown = [fit.out, fit.err, worker.out, worker.err]
    shown += [p.read_text(errors="replace") for p in run.rglob("*") if p.is_file()
              and p.suffix in (".json", ".csv", ".txt", ".html")]
    assert len(shown) >= 6 and not [s for s in shown if password in s]

    # messages about a storage that cannot be opened do not show the password either, in
    # any of the forms a URL can carry it
    server = postgres_url.split("@", 1)[1].rsplit("/", 1)[0]
    for bad in (f"postgresql://nobody:{password}@{server}/nope",
                f"postgresql://nobody@{server}/nope?password={password}",
                f"postgresql://:{password}@{server}/nope"):
        monkeypatch.setenv("AUTOML_META_STORAGE", bad)
        for argv in (["worker", str(small_csv), "--study", "x"],
                     ["metabase", "export", "--output", str(tmp_path / "mb")]):
            assert main(argv) == 2
            err = capsys.readouterr().err
            assert "cannot open storage" in err and "nope" in err
            assert password not in err, err


# ------------------------------------------------------------- a database restart mid-fit
@pytest.fixture(scope="module")
def pg_cluster():
    """A cluster of this module's own, which a test may stop and start."""
    from .postgres import cluster

    with cluster() as c:
        yield c


def _finished_trials(url: str, study: str) -> dict[int, str]:
    """Trial number → state of the finished trials of ``study``, read with plain SQL (a
    watcher must not create Optuna's tables, racing the process it watches)."""
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=5) as con:
            rows = con.execute(
                "SELECT t.number, t.state FROM trials t JOIN studies s USING (study_id) "
                "WHERE s.study_name = %s", (study,)).fetchall()
    except (psycopg.errors.UndefinedTable, psycopg.OperationalError):
        return {}
    return {int(n): str(state) for n, state in rows if str(state) != "RUNNING"}


def _wait(condition, what: str, timeout: float, proc: subprocess.Popen | None = None,
          errors: list[str] | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the process ended (exit {proc.returncode}) before "
                                 f"{what}: {''.join(errors or [])[-2000:]}")
        time.sleep(0.2)
    raise AssertionError(f"no {what} after {timeout:.0f} s: {''.join(errors or [])[-2000:]}")


@pytest.mark.slow
def test_fit_survives_a_postgres_restart(tmp_path, small_csv, pg_cluster):
    """PostgreSQL stopped (fast: connections closed) in the middle of a fit and started again:
    the fit waits, says so on stderr, goes on with the same study and exits 0."""
    url, study, run = pg_cluster.url, "restart", tmp_path / "run"
    proc = _cli("fit", small_csv, "--target", "label", "--time-budget", "34",
                "--no-warm-start", "--no-report", "--storage", url, "--study", study,
                "--output", run, "--json")
    errors: list[str] = []
    reader = threading.Thread(target=lambda: errors.extend(proc.stderr), daemon=True)
    reader.start()
    try:
        before = _wait(lambda: _finished_trials(url, study), "finished trial", 120, proc,
                       errors)
        pg_cluster.stop("fast")
        down = time.monotonic()
        try:  # an outage of 3 s at least, and until the fit has noticed it (a trial's
            # attributes or its heartbeat could not be written)
            _wait(lambda: time.monotonic() - down >= 3 and any(
                "unreachable" in line for line in errors),
                "'storage unreachable' on the fit's stderr", 30, proc, errors)
        finally:
            pg_cluster.start()
        out = proc.stdout.read()
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    reader.join(timeout=10)
    err = "".join(errors)
    assert proc.returncode == 0, err
    assert "retrying for up to 10 s" in err and "reachable again after" in err
    assert "internal error" not in err
    summary = json.loads(out)
    assert summary["study"] == study and [p for p in run.iterdir() if p.stem == "model"]
    after = _finished_trials(url, study)
    assert {n: after.get(n) for n in before} == before  # kept, as they were
    assert len(after) > len(before)  # and the search went on in the same study
    lb = pd.read_csv(run / "leaderboard.csv")
    assert set(lb["trial"]) == set(after) and lb["trial"].is_unique
    trials = optuna.load_study(study_name=study, storage=url).trials
    assert all(t.state.is_finished() for t in trials)  # nothing left RUNNING


@pytest.mark.slow
def test_password_from_pgpassword_or_pgpass(pg_cluster, tmp_path, monkeypatch):
    """The URL needs no password: libpq reads PGPASSWORD, or the password file (~/.pgpass,
    or PGPASSFILE), as docs/scaling-out.md says."""
    from automl_meta.errors import UsageError
    from automl_meta.search.study import make_storage

    password = "Pw-libpq-31"
    url = pg_cluster.add_password_user("secured", password)
    for var in ("PGPASSWORD", "PGPASSFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "none"))
    with pytest.raises(UsageError, match="cannot open storage postgresql://secured@"):
        make_storage(url)  # the server does ask for the password
    with pytest.raises(UsageError) as wrong:
        make_storage(url.replace("secured@", "secured:not-it@"))
    assert "password authentication failed" in str(wrong.value)
    assert "not-it" not in str(wrong.value)

    monkeypatch.setenv("PGPASSWORD", password)
    make_storage(url).engine.dispose()
    monkeypatch.delenv("PGPASSWORD")
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"127.0.0.1:{pg_cluster.port}:secured:secured:{password}\n")
    passfile.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(passfile))
    storage = make_storage(url)
    optuna.create_study(study_name="pgpass", storage=storage)
    assert _optuna_studies(url) == ["pgpass"]
    storage.engine.dispose()
