"""Where and how a search keeps its trials: Optuna storage, studies and the sampler.

- :func:`make_storage` opens an Optuna storage (in memory, or a database through
  :class:`RetryingRDBStorage`, whose operations ride out a database restart and whose
  heartbeats let another process fail the trials of a process that died);
- :func:`journal_storage` opens the one-file study a command-line fit keeps in its staging
  directory (Optuna's journal: no database engine to start), and
  :func:`fail_abandoned_trials` fails what a killed fit left running there;
- :func:`open_study` creates or resumes a study and checks that a resumed one was made for
  the same problem;
- :func:`make_sampler` is the TPE sampler every search uses;
- :func:`redact` masks the passwords of storage URLs in messages and files;
- :func:`quiet_optuna` silences Optuna's per-trial log lines while a search runs, and
  restores the host's setting afterwards (importing this package configures no logging).
"""

from __future__ import annotations

import functools
import os
import platform
import re
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import optuna

from automl_meta.errors import AutoMLError, UsageError

#: names the process in a trial's ``worker`` attribute
WORKER_ID = f"{platform.node()}:{os.getpid()}"
#: seconds between the heartbeats of a running trial stored in a database
HEARTBEAT_SECONDS = 5
#: a running trial whose last heartbeat is older than this is failed by the next process
HEARTBEAT_GRACE = 20
#: the level Optuna's logger has while :func:`quiet_optuna` is active
QUIET_LEVEL = optuna.logging.ERROR

_QUIET_LOCK = threading.Lock()
_QUIET_DEPTH = 0
_QUIET_SAVED: int | None = None


@contextmanager
def quiet_optuna() -> Iterator[None]:
    """While the block runs, Optuna logs errors only (not a line per trial); afterwards its
    logger has the level it had before. Nested and concurrent uses (searches in several
    threads) share one setting: the first one in lowers the verbosity, the last one out
    restores it. A logger already quieter than :data:`QUIET_LEVEL` is left alone.

    Examples
    --------
    >>> with quiet_optuna():
    ...     study.optimize(objective, n_trials=10)  # doctest: +SKIP
    """
    global _QUIET_DEPTH, _QUIET_SAVED
    with _QUIET_LOCK:
        if _QUIET_DEPTH == 0:
            _QUIET_SAVED = optuna.logging.get_verbosity()
            if _QUIET_SAVED < QUIET_LEVEL:
                optuna.logging.set_verbosity(QUIET_LEVEL)
        _QUIET_DEPTH += 1
    try:
        yield
    finally:
        with _QUIET_LOCK:
            _QUIET_DEPTH -= 1
            if _QUIET_DEPTH == 0 and _QUIET_SAVED is not None:
                optuna.logging.set_verbosity(_QUIET_SAVED)
                _QUIET_SAVED = None


#: how long a storage operation is retried while the database is unreachable
STORAGE_RETRY_SECONDS = 30.0
#: the same for the operations of a running study: shorter, so that the heartbeat of its
#: running trial is not older than HEARTBEAT_GRACE when the database is back (another
#: process would then fail that trial, and Optuna cannot tell its result any more)
STUDY_RETRY_SECONDS = float(HEARTBEAT_GRACE - 2 * HEARTBEAT_SECONDS)
#: the longest study name Optuna's RDB schema stores
MAX_STUDY_NAME = 512

# a query parameter or key=value whose name says it holds a secret
_SECRET_NAME = (r"(?:[\w.\-]*(?:password|passwd|pwd|secret|token|api[_\-]?key|credential)"
                r"[\w.\-]*|pass|key|auth)")
_SECRET_PARAM = re.compile(
    r"(?<![\w.\-])(?P<key>" + _SECRET_NAME + r")(?P<eq>\s*=\s*)"
    r"(?P<value>\"[^\"]*\"|'[^']*'|[^\s&]*)", re.IGNORECASE)
# scheme://user:password@ (the password may hold '@', ':' or '/': up to the last '@' of
# the whitespace-free run)
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/?#@]*):\S*@")


def redact(url: Any) -> str:
    """``url`` (or any text holding URLs) without passwords, for messages and files.

    A URL that SQLAlchemy parses is rendered with its password hidden; then, in any text,
    the part between ``user:`` and the last ``@`` of ``scheme://user:…@`` and the value of
    every query parameter or ``key=value`` whose name says it is a secret (``password``,
    ``passwd``, ``pwd``, ``sslpassword``, ``secret``, ``token``, ``api_key``, …) become
    ``***``. Never raises.

    Parameters
    ----------
    url : str
        A storage URL, or a text (message, command line) that may contain some.

    Returns
    -------
    str
        The same text with the secrets masked.
    """
    try:
        text = url if isinstance(url, str) else str(url)
        if "://" in text and not any(ch.isspace() for ch in text):
            try:
                from sqlalchemy.engine import make_url

                text = make_url(text).render_as_string(hide_password=True)
            except Exception:  # noqa: S110 - not a URL SQLAlchemy parses: the patterns below
                pass
        text = _USERINFO.sub(r"\g<head>:***@", text)
        return _SECRET_PARAM.sub(r"\g<key>\g<eq>***", text)
    except Exception:
        return "***"


def describe_error(exc: BaseException, url: str | None = None) -> str:
    """``Type: first line`` of an exception (of its root cause), secrets masked."""
    root = exc
    while root.__cause__ is not None:
        root = root.__cause__
    first = (str(root).strip().splitlines() or [""])[0]
    if url:
        first = first.replace(url, redact(url))
    return redact(f"{type(root).__name__}: {first[:200]}")


class StorageUnreachable(AutoMLError):
    """The database stayed unreachable for longer than the retry window (exit 3)."""


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` (or the error that caused it) is a lost or refused database connection,
    or a conflict the database asks to retry: worth trying again."""
    from sqlalchemy import exc as sa_exc

    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, (sa_exc.OperationalError, sa_exc.InterfaceError,
                            sa_exc.DisconnectionError)):
            return True
        if isinstance(cur, sa_exc.PendingRollbackError):  # a connection lost mid-transaction
            return True
        if isinstance(cur, sa_exc.DBAPIError) and cur.connection_invalidated:
            return True
        if not isinstance(cur, sa_exc.SQLAlchemyError) and type(cur).__name__ in (
                "OperationalError", "InterfaceError"):  # the driver's own (psycopg, sqlite3)
            return True
        cur = cur.__cause__
    return False


class _Outage:
    """Says once on stderr that the storage is unreachable, and once that it is back;
    ``given_up`` is set when a retry window ran out, until the storage is back (later
    operations then fail at their first error instead of waiting again)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.since: float | None = None
        self.given_up = False

    def failed(self, what: str, exc: BaseException, seconds: float) -> None:
        with self.lock:
            if self.since is None:
                self.since = time.monotonic()
                print(f"warning: {what} unreachable ({describe_error(exc)}); retrying for up to "
                      f"{seconds:.0f} s", file=sys.stderr, flush=True)

    def recovered(self, what: str) -> None:
        if self.since is None:
            return
        with self.lock:
            if self.since is not None:
                print(f"{what} reachable again after {time.monotonic() - self.since:.1f} s",
                      file=sys.stderr, flush=True)
                self.since = None
                self.given_up = False


_OUTAGE = _Outage()
_RETRYING = threading.local()  # set while a retried storage call runs in this thread
_T = TypeVar("_T")


def retry_storage(fn: Callable[[], _T], *, what: str = "storage",
                  seconds: float = STORAGE_RETRY_SECONDS) -> _T:
    """Call ``fn``; while it fails because the database is unreachable (see
    :func:`is_transient`), say so once on stderr and try again with a growing pause
    (0.25 s … 4 s) for up to ``seconds``.

    Parameters
    ----------
    fn : callable
        The operation (safe to repeat).
    what : str
        How the messages name the storage (no password in it).
    seconds : float
        The retry window.

    Raises
    ------
    StorageUnreachable
        Still failing when the window is over.
    """
    if getattr(_RETRYING, "active", False):  # an outer call retries the whole operation
        return fn()
    deadline = time.monotonic() + seconds
    pause = 0.25
    _RETRYING.active = True
    try:
        while True:
            try:
                result = fn()
            except Exception as exc:
                left = deadline - time.monotonic()
                if not is_transient(exc):
                    raise
                if left <= 0 or _OUTAGE.given_up:
                    _OUTAGE.given_up = True
                    raise StorageUnreachable(
                        f"{what} unreachable for {seconds:.0f} s ({describe_error(exc)}); what "
                        "was stored before is kept there") from exc
                _OUTAGE.failed(what, exc, seconds)
                time.sleep(min(pause, left))
                pause = min(2 * pause, 4.0)
                continue
            _OUTAGE.recovered(what)
            return result
    finally:
        _RETRYING.active = False


_CLAIM_LOCK = threading.Lock()


class RetryingRDBStorage(optuna.storages.RDBStorage):
    """Optuna's RDB storage whose operations ride out a database restart.

    Every storage call the study makes (ask, tell, enqueue, parameters, attributes, reading
    trials) is retried by :func:`retry_storage` while the database is unreachable, with
    ``pool_pre_ping`` replacing the connections the restart broke. A heartbeat that cannot
    be recorded is skipped (the next one, ``heartbeat_interval`` later, tries again). A
    ``tell`` whose first attempt reached the database although its answer was lost is not
    an error when retried. Not covered: a trial created by an attempt whose answer was lost
    stays RUNNING without a heartbeat.

    Parameters
    ----------
    url : str
        SQLAlchemy URL.
    retry_seconds : float
        The retry window (default :data:`STUDY_RETRY_SECONDS`).
    **kwargs
        As for :class:`optuna.storages.RDBStorage`.
    """

    def __init__(self, url: str, *, retry_seconds: float = STUDY_RETRY_SECONDS,
                 **kwargs: Any) -> None:
        self.retry_seconds = retry_seconds
        super().__init__(url, **kwargs)

    def _retry(self, fn: Callable[[], _T]) -> _T:
        return retry_storage(fn, what=f"storage {redact(self.url)}",
                             seconds=self.retry_seconds)

    def record_heartbeat(self, trial_id: int) -> None:
        try:
            super().record_heartbeat(trial_id)
        except Exception as exc:
            if not is_transient(exc):
                raise
            _OUTAGE.failed(f"storage {redact(self.url)}", exc, self.retry_seconds)

    def set_trial_state_values(self, trial_id: int, state: optuna.trial.TrialState,
                               values: Sequence[float] | None = None) -> bool:
        attempts = 0

        def tell() -> bool:
            nonlocal attempts
            attempts += 1
            try:
                return super(RetryingRDBStorage, self).set_trial_state_values(
                    trial_id, state, values)
            except optuna.exceptions.UpdateFinishedTrialError:
                # a retry after an attempt that was applied but whose answer was lost
                if attempts > 1 and super(RetryingRDBStorage, self).get_trial(
                        trial_id).state == state:
                    return True
                raise

        if state != optuna.trial.TrialState.RUNNING:
            return self._retry(tell)
        # Claiming a WAITING (enqueued) trial: Optuna reads the state and writes RUNNING
        # under SELECT ... FOR UPDATE, which SQLite ignores, so two threads of one search
        # could both claim the same trial. Claims from this process go one at a time;
        # other processes share PostgreSQL, where the row lock holds.
        with _CLAIM_LOCK:
            return self._retry(tell)


def _retried(name: str) -> Callable[..., Any]:
    method = getattr(optuna.storages.RDBStorage, name)

    @functools.wraps(method)
    def call(self: RetryingRDBStorage, *args: Any, **kwargs: Any) -> Any:
        return self._retry(lambda: method(self, *args, **kwargs))

    return call


for _name in ("create_new_study", "delete_study", "set_study_user_attr",
              "set_study_system_attr", "get_study_id_from_name", "get_study_name_from_id",
              "get_study_directions", "get_study_user_attrs", "get_study_system_attrs",
              "get_trial_user_attrs", "get_trial_system_attrs", "get_all_studies",
              "create_new_trial", "_create_new_trial", "set_trial_param", "_set_trial_param",
              "get_trial_param", "set_trial_intermediate_value", "set_trial_user_attr",
              "set_trial_system_attr", "get_trial_id_from_study_id_trial_number",
              "get_trial", "get_all_trials", "_get_trials", "get_best_trial",
              "_get_best_trial_id", "get_n_trials", "_get_stale_trial_ids"):
    setattr(RetryingRDBStorage, _name, _retried(_name))


def make_storage(url: str | None, *, wait: float = 0.0) -> Any:
    """An Optuna storage for ``url``: in memory for None; for databases, a
    :class:`RetryingRDBStorage` with heartbeats, so that trials of a process that died are
    marked failed, not left RUNNING.

    Parameters
    ----------
    url : str, optional
        SQLAlchemy URL (a storage object is returned as it is).
    wait : float
        Seconds to keep trying while the database is unreachable (0: fail at once).

    Raises
    ------
    UsageError
        Bad URL, missing driver, bad credentials, unreachable server.
    """
    if url is None:
        return None
    if not isinstance(url, str):
        return url
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    backend = url.split(":", 1)[0].split("+", 1)[0].lower()
    if backend == "sqlite":
        engine_kwargs["connect_args"] = {"timeout": 60}
    elif backend == "postgresql" and "connect_timeout" not in url:
        engine_kwargs["connect_args"] = {"connect_timeout": 10}  # an unreachable host
    deadline = time.monotonic() + wait
    while True:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # heartbeat_interval is flagged experimental
                return RetryingRDBStorage(url, engine_kwargs=engine_kwargs,
                                          heartbeat_interval=HEARTBEAT_SECONDS,
                                          grace_period=HEARTBEAT_GRACE)
        except Exception as exc:  # bad URL, missing driver, unreachable server
            if is_transient(exc) and time.monotonic() < deadline:
                _OUTAGE.failed(f"storage {redact(url)}", exc, wait)
                time.sleep(1.0)
                continue
            raise UsageError(f"cannot open storage {redact(url)}: {describe_error(exc, url)}"
                             ) from None


def journal_storage(path: str | os.PathLike[str]) -> Any:
    """Optuna's journal storage in one file (created if missing).

    A command-line fit keeps its study in such a file in its staging directory: opening it
    costs about a millisecond, where an SQLite storage costs over half a second (SQLAlchemy
    and the schema), time a short budget would otherwise not search. It is safe for the
    threads of one search (Optuna locks the file for every write); several processes
    sharing a study use a database (:func:`make_storage`), whose heartbeats a journal does
    not have.

    Parameters
    ----------
    path : str or path-like
        The journal file.

    Returns
    -------
    optuna.storages.JournalStorage
    """
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return JournalStorage(JournalFileBackend(os.fspath(path)))


def fail_abandoned_trials(storage: Any) -> int:
    """Mark every RUNNING trial of every study in ``storage`` as failed.

    Only for a storage no live process uses (a killed fit's journal, about to be resumed
    under its lock): a journal has no heartbeats to tell a dead trial from a live one.

    Returns
    -------
    int
        How many trials were failed.
    """
    failed = 0
    for study in storage.get_all_studies():
        study_id = storage.get_study_id_from_name(study.study_name)
        for trial in storage.get_all_trials(study_id, deepcopy=False,
                                            states=(optuna.trial.TrialState.RUNNING,)):
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
            storage.set_trial_state_values(trial_id, optuna.trial.TrialState.FAIL)
            failed += 1
    return failed


def _find_cause(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    """The first exception of type ``kind`` among ``exc`` and its causes and contexts."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        cur = todo.pop(0)
        if cur is None or id(cur) in seen:
            continue
        if isinstance(cur, kind):
            return cur
        seen.add(id(cur))
        todo += [cur.__cause__, cur.__context__]
    return None


def check_study_name(name: str | None) -> None:
    """Refuse a study name longer than Optuna's schema stores (UsageError, exit 2)."""
    if name is not None and len(name) > MAX_STUDY_NAME:
        raise UsageError(f"the study name is {len(name)} characters long; the storage "
                         f"holds at most {MAX_STUDY_NAME}")


def open_study(storage: Any, study_name: str | None, direction: str, sampler: Any, pruner: Any,
               attrs: dict[str, Any] | None = None) -> optuna.Study:
    """Create or load a study; a loaded one must have been made for the same problem."""
    check_study_name(study_name)
    storage = make_storage(storage)
    with quiet_optuna():  # not Optuna's "A new study created" line
        study = optuna.create_study(storage=storage, sampler=sampler, pruner=pruner,
                                    study_name=study_name, direction=direction,
                                    load_if_exists=True)
    if study.direction.name.lower() != direction:
        raise UsageError(f"study {study.study_name!r} optimises in the other direction")
    existing = study.user_attrs
    for key, value in (attrs or {}).items():
        if key in existing and existing[key] != value:
            raise UsageError(f"study {study.study_name!r} was created with {key}="
                             f"{existing[key]!r}, not {value!r}: it is another problem "
                             "(use another --study / --output, or the same data and options)")
        if key not in existing:
            study.set_user_attr(key, value)
    return study


def make_sampler(seed: int, n_jobs: int = 1) -> optuna.samplers.BaseSampler:
    """The TPE sampler used everywhere (multivariate, grouped for the conditional space)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # multivariate / group are flagged experimental
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True,
                                          constant_liar=n_jobs > 1, n_startup_trials=10,
                                          warn_independent_sampling=False)
