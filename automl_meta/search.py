"""The Optuna search: enqueued (warm-start) configurations first, then TPE.

Each trial is a K-fold cross-validation; the running mean after each fold is reported as
an intermediate value, so the percentile pruner can stop hopeless trials early. Evaluations run
in :class:`~automl_meta.worker.Worker` child processes with a time-out derived from the
wall-clock deadline, so a slow configuration is stopped (recorded as failed) instead of
breaking the budget. Failing configurations are recorded and the search goes on.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import platform
import queue
import re
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import optuna

from .errors import AutoMLError, UsageError
from .evaluate import EvalContext
from .metrics import METRICS
from .worker import EvaluationFailed, EvaluationTimeout, Worker

optuna.logging.set_verbosity(optuna.logging.ERROR)
WORKER_ID = f"{platform.node()}:{os.getpid()}"
HEARTBEAT_SECONDS = 5
HEARTBEAT_GRACE = 20
logging.getLogger("optuna").setLevel(logging.ERROR)


class TrialFailed(Exception):
    """A configuration failed (error, NaN score, time-out)."""


@dataclass
class TrialRecord:
    """One row of the leaderboard."""

    number: int
    state: str  # COMPLETE | PRUNED | FAIL
    score: float | None
    config: dict[str, Any]
    origin: str
    fold_scores: list[float] = field(default_factory=list)
    fit_seconds: float = 0.0
    duration: float = 0.0
    started: float = 0.0  # seconds since the search started
    error: str = ""

    @property
    def family(self) -> str:
        return str(self.config.get("family", ""))

    def to_row(self) -> dict[str, Any]:
        """Flat dict for ``leaderboard.csv``."""
        return {"trial": self.number, "state": self.state, "score": self.score,
                "score_std": float(np.std(self.fold_scores)) if self.fold_scores else None,
                "n_folds": len(self.fold_scores), "family": self.family, "origin": self.origin,
                "fit_seconds": round(self.fit_seconds, 4), "duration": round(self.duration, 4),
                "started": round(self.started, 3), "error": self.error,
                "config": json.dumps(self.config, sort_keys=True)}


@dataclass
class SearchResult:
    """What a search produced."""

    records: list[TrialRecord]
    metric: str
    greater_is_better: bool
    n_folds: int
    stop_reason: str
    #: out-of-fold predictions of the best completed trial (row order of the search data)
    best_oof: np.ndarray | None = None
    study_name: str = ""
    interrupted: bool = False

    @property
    def completed(self) -> list[TrialRecord]:
        return [r for r in self.records if r.state == "COMPLETE"]

    @property
    def best(self) -> TrialRecord | None:
        done = self.completed
        if not done:
            return None
        sign = 1 if self.greater_is_better else -1
        return max(done, key=lambda r: (sign * r.score, -r.number))

    def ranked(self) -> list[TrialRecord]:
        """Completed trials, best first."""
        sign = -1 if self.greater_is_better else 1
        return sorted(self.completed, key=lambda r: (sign * r.score, r.number))


def _record_from_trial(t: optuna.trial.FrozenTrial, t0: float) -> TrialRecord:
    attrs = t.user_attrs
    state = {optuna.trial.TrialState.COMPLETE: "COMPLETE",
             optuna.trial.TrialState.PRUNED: "PRUNED"}.get(t.state, "FAIL")
    score = attrs.get("score")
    config = attrs.get("config") or dict(t.params)
    started = (t.datetime_start.timestamp() - t0) if t.datetime_start else 0.0
    duration = (t.duration.total_seconds() if t.duration else 0.0)
    return TrialRecord(number=t.number, state=state,
                       score=None if score is None or not math.isfinite(score) else score,
                       config=config, origin=attrs.get("origin", "tpe"),
                       fold_scores=list(attrs.get("fold_scores", [])),
                       fit_seconds=float(attrs.get("fit_seconds", 0.0)), duration=duration,
                       started=started, error=attrs.get("error", ""))


@contextmanager
def _stop_on_signals(event: threading.Event) -> Iterator[None]:
    """While the search runs, Ctrl-C (and SIGTERM where a handler turns it into
    KeyboardInterrupt, as the command line's does) only sets ``event``: the running
    evaluations are stopped at their next poll and ``KeyboardInterrupt`` is raised from the
    objective, where Optuna records the trial as failed. A KeyboardInterrupt raised by the
    signal itself could land anywhere, e.g. inside Optuna's bookkeeping of a finished trial,
    and be lost or turned into another error. A second Ctrl-C interrupts at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        if event.is_set():
            raise KeyboardInterrupt
        event.set()

    old = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        current = signal.getsignal(sig)
        if sig == signal.SIGINT and current is signal.default_int_handler or \
                sig == signal.SIGTERM and callable(current):
            old[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


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


def run_search(ctx: EvalContext, *, n_trials: int | None = None,
               deadline: float | None = None, seed: int = 0, n_jobs: int = 1,
               enqueue: Sequence[tuple[dict[str, Any], str]] = (),
               families: Sequence[str] | None = None, storage: Any = None,
               study_name: str | None = None, study_attrs: dict[str, Any] | None = None,
               memory_limit_gb: float | None = None,
               refit_rows: int | None = None, prune: bool = True,
               trial_timeout: float | None = None,
               on_trial: Callable[[TrialRecord, SearchResult], None] | None = None,
               in_process: bool = False,
               search_workers: Sequence[Worker] | None = None) -> SearchResult:
    """Run the Optuna search on ``ctx``.

    Parameters
    ----------
    ctx : EvalContext
        Data, folds, metric and space.
    n_trials : int, optional
        Stop after this many trials (enqueued ones included).
    deadline : float, optional
        ``time.monotonic()`` value by which the search must be over, evaluations included.
    seed : int
        Seeds the TPE sampler (and the models, through ``ctx.seed``).
    n_jobs : int
        Trials evaluated in parallel, each in its own worker process.
    enqueue : sequence of (config, origin)
        Configurations evaluated first, in order (the warm start); ``origin`` is recorded.
    families : sequence of str, optional
        Families offered (default: all the space offers for the task and data size).
    storage : str or optuna storage, optional
        Where the study lives (in memory by default). An existing study of that name is
        resumed: its finished trials count towards ``n_trials``.
    study_attrs : dict, optional
        Recorded on a new study; on an existing one they must match (else UsageError).
    memory_limit_gb : float, optional
        Per-worker memory limit.
    refit_rows : int, optional
        Rows the final model will be fitted on; when given with ``deadline``, the search
        stops early enough to leave time for that refit (estimated from the best trial).
    prune : bool
        Use the percentile pruner on per-fold intermediate values.
    trial_timeout : float, optional
        Seconds one trial (all its folds) may take before it is stopped and failed.
    on_trial : callable, optional
        Called after every trial with its record and the result so far.
    search_workers : sequence of Worker, optional
        Worker processes for ``ctx`` started by the caller ahead of time (so that their
        start-up overlaps with the caller's own work); one per ``n_jobs``. The search
        closes them when it ends. Default: started here.
    in_process : bool
        Evaluate without child processes (no time-outs); for debugging only.
    """
    if n_trials is None and deadline is None:
        raise ValueError("give n_trials, a deadline or both")
    metric = METRICS[ctx.metric]
    families = list(families or ctx.space.family_names(ctx.task, len(ctx.y)))
    # Prune only trials in the bottom quarter after two folds: single folds of small
    # datasets are noisy, and a median rule throws away too many good configurations.
    pruner = (optuna.pruners.PercentilePruner(75.0, n_startup_trials=5, n_warmup_steps=1)
              if prune else optuna.pruners.NopPruner())
    study = open_study(storage, study_name, metric.direction, make_sampler(seed, n_jobs),
                       pruner, study_attrs)
    for config, origin in enqueue:
        study.enqueue_trial(dict(config), user_attrs={"origin": origin}, skip_if_exists=True)

    t0_wall = time.time()
    n_folds = len(ctx.folds)
    train_rows = len(ctx.folds[0][0])
    workers: queue.Queue[Worker] = queue.Queue()
    all_workers = list(search_workers) if search_workers else [
        Worker(ctx, memory_limit_gb, in_process) for _ in range(max(1, n_jobs))]
    for w in all_workers:
        workers.put(w)
    result = SearchResult([], metric.name, metric.greater_is_better, n_folds, "")
    oof_lock = threading.Lock()

    def search_deadline() -> float | None:
        if stop_requested.is_set():  # Ctrl-C / SIGTERM: running evaluations stop now
            return time.monotonic() - 1.0
        if deadline is None:
            return None
        best = result.best
        if refit_rows is None or best is None:
            return deadline
        est = best.fit_seconds * (refit_rows / max(train_rows, 1)) ** 1.2 * 2.0 + 0.5
        window = deadline - start_mono
        return deadline - min(est, 0.4 * window)

    def objective(trial: optuna.Trial) -> float:
        if stop_requested.is_set():
            raise KeyboardInterrupt
        config = ctx.space.suggest(trial, ctx.task, families)
        trial.set_user_attr("config", config)
        trial.set_user_attr("origin", trial.user_attrs.get("origin", "tpe"))
        trial.set_user_attr("worker", WORKER_ID)
        worker = workers.get()
        scores: list[float] = []
        oof = np.full(len(ctx.y), np.nan)
        fit_seconds = 0.0
        trial_end = None if trial_timeout is None else time.monotonic() + trial_timeout
        try:
            for k in range(n_folds):
                limits = [x for x in (search_deadline(), trial_end) if x is not None]
                timeout = min(limits) - time.monotonic() if limits else None
                try:
                    out = worker.run(("fold", config, k), timeout, limit=search_deadline)
                except EvaluationTimeout as exc:
                    if stop_requested.is_set():
                        trial.set_user_attr("error", "stopped: interrupted")
                        raise KeyboardInterrupt from None
                    what = "trial time-out" if trial_end is not None and \
                        time.monotonic() >= trial_end - 0.01 else "time budget"
                    raise TrialFailed(f"stopped: {what} ({exc})") from None
                except EvaluationFailed as exc:
                    raise TrialFailed(str(exc)) from None
                if not math.isfinite(out["score"]):
                    raise TrialFailed("score is not a finite number")
                scores.append(out["score"])
                fit_seconds += out["fit_seconds"]
                oof[ctx.folds[k][1]] = out["y_pred"]
                mean = float(np.mean(scores))
                trial.set_user_attr("fold_scores", scores)
                trial.set_user_attr("score", mean)
                trial.set_user_attr("fit_seconds", fit_seconds / len(scores))
                trial.report(mean, k)
                if k < n_folds - 1 and trial.should_prune():
                    raise optuna.TrialPruned()
            value = float(np.mean(scores))
            with oof_lock:
                best = result.best
                if best is None or metric.better(value, best.score) or (
                        result.best_oof is None):
                    result.best_oof = oof
            return value
        except TrialFailed as exc:
            trial.set_user_attr("error", str(exc))
            raise
        finally:
            workers.put(worker)

    def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        record = _record_from_trial(trial, t0_wall)
        result.records.append(record)
        if on_trial is not None:
            on_trial(record, result)
        limit = search_deadline()
        if stop_requested.is_set():
            study.stop()
        elif limit is not None and limit - time.monotonic() < 0.05:
            result.stop_reason = "time budget"
            study.stop()

    start_mono = time.monotonic()
    done_before = len([t for t in study.trials if t.state.is_finished()])
    result.records.extend(_record_from_trial(t, t0_wall) for t in study.trials
                          if t.state.is_finished())
    remaining = None if n_trials is None else max(0, n_trials - done_before)
    stop_requested = threading.Event()
    try:
        with _stop_on_signals(stop_requested):
            if remaining != 0 and (deadline is None or deadline > time.monotonic()):
                study.optimize(objective, n_trials=remaining,
                               timeout=None if deadline is None else
                               max(0.0, deadline - time.monotonic()),
                               n_jobs=max(1, n_jobs), catch=(TrialFailed,),
                               callbacks=[callback])
        if stop_requested.is_set():  # the signal came between two trials
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        # Ctrl-C / SIGTERM: keep what was found; the caller decides what to do with it
        result.interrupted = True
        result.stop_reason = "interrupted"
    except Exception as exc:
        # an outage longer than the retry window can surface as whatever Optuna raised
        # while it handled it: report the outage
        cause = _find_cause(exc, StorageUnreachable)
        if cause is None or cause is exc:
            raise
        raise cause from None
    finally:
        for w in all_workers:
            w.close()
    # the study is the source of truth (the interrupted trial never reached the callback)
    result.records = [_record_from_trial(t, t0_wall) for t in study.trials
                      if t.state.is_finished()]
    if not result.stop_reason:
        result.stop_reason = "trial count" if n_trials is not None and \
            len(result.records) >= n_trials else "time budget"
    result.records.sort(key=lambda r: r.number)
    result.study_name = study.study_name
    return result
