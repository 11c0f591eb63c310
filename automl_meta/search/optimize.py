"""The Optuna search: enqueued (warm-start) configurations first, then TPE.

Each trial is a K-fold cross-validation; the running mean after each fold is reported as
an intermediate value, so the percentile pruner can stop hopeless trials early. Evaluations run
in :class:`~automl_meta.search.workers.Worker` child processes with a time-out derived from the
wall-clock deadline, so a slow configuration is stopped (recorded as failed) instead of
breaking the budget. Failing configurations are recorded and the search goes on.
"""

from __future__ import annotations

import json
import math
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna

from automl_meta.budget import FOLD_PACE_MARGIN, REFIT_OVERHEAD_SECONDS
from automl_meta.metrics import METRICS
from automl_meta.search.cv import EvalContext
from automl_meta.search.families import final_fit_seconds
from automl_meta.search.study import (
    WORKER_ID,
    StorageUnreachable,
    _find_cause,
    make_sampler,
    open_study,
    quiet_optuna,
)
from automl_meta.search.workers import EvaluationFailed, EvaluationTimeout, Worker


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
    #: out-of-fold predictions of the best complete trials evaluated in this process, by
    #: trial number, for the ensemble selection: class probabilities (rows × classes, in
    #: class-code order) for classification, predicted values for regression; at most
    #: ``oof_limit`` of them (:func:`oof_capacity`), the worst dropped first
    oof: dict[int, np.ndarray] = field(default_factory=dict)
    #: the targets of those rows (the search data's)
    oof_y: np.ndarray | None = None
    oof_limit: int = 0
    #: how many complete trials of this process offered out-of-fold predictions (kept or
    #: dropped by the bound); the other complete trials ran in other processes
    oof_seen: int = 0

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

    def partial(self) -> list[TrialRecord]:
        """Trials stopped for time or pruned after some of their folds, best first by the
        mean score of the folds they completed: what the final model is chosen from when no
        trial completed. Trials that failed with an error are not among them."""
        sign = -1 if self.greater_is_better else 1
        part = [r for r in self.records if r.fold_scores and r.score is not None and (
            r.state == "PRUNED" or (r.state == "FAIL" and r.error.startswith("stopped")))]
        return sorted(part, key=lambda r: (sign * r.score, r.number))

    def refit_basis(self) -> TrialRecord | None:
        """The trial the final model's fit time is estimated from: the best complete one,
        else the best partially evaluated one (:meth:`partial`)."""
        best = self.best
        if best is not None:
            return best
        part = self.partial()
        return part[0] if part else None

    def keep_oof(self, number: int, score: float, pred: np.ndarray,
                 scores: dict[int, float]) -> None:
        """Keep trial ``number``'s out-of-fold predictions if it is among the
        ``oof_limit`` best kept so far (``scores``: the kept trials' scores, updated),
        dropping the worst kept one when the bound is reached."""
        self.oof_seen += 1
        if self.oof_limit <= 0:
            return
        sign = 1 if self.greater_is_better else -1
        scores[number] = score
        self.oof[number] = pred
        while len(self.oof) > self.oof_limit:
            worst = min(self.oof, key=lambda t: (sign * scores[t], -t))
            del self.oof[worst]
            del scores[worst]


#: the ensemble selection considers at most this many trials...
MAX_OOF_CANDIDATES = 30
#: ...and their kept out-of-fold predictions take at most this many bytes
MAX_OOF_BYTES = 200 * 2**20


def oof_capacity(n_rows: int, n_classes: int) -> int:
    """How many trials' out-of-fold predictions a search keeps in memory:
    ``MAX_OOF_CANDIDATES``, fewer when ``rows × max(classes, 1) × 8 bytes`` each would
    exceed ``MAX_OOF_BYTES`` in all (at least one)."""
    per_trial = max(1, n_rows) * max(1, n_classes) * 8
    return max(1, min(MAX_OOF_CANDIDATES, MAX_OOF_BYTES // per_trial))


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


#: user attribute marking a trial told to the sampler, not evaluated by the search
OBSERVED_ATTR = "observed"


def _is_own(t: optuna.trial.FrozenTrial) -> bool:
    """Whether a trial of the study was evaluated by a search (not an observation)."""
    return not t.user_attrs.get(OBSERVED_ATTR)


def add_observations(study: optuna.Study, ctx: EvalContext, families: Sequence[str],
                     observations: Sequence[tuple[dict[str, Any], float, str]]) -> int:
    """Tell the sampler scores measured before as finished trials (marked
    :data:`OBSERVED_ATTR`, with their origin). A configuration outside the space or of a
    family not offered here is left out. Returns how many were added."""
    added = 0
    for config, score, origin in observations:
        if config.get("family") not in families or not math.isfinite(score) or \
                ctx.space.check_config(config, ctx.task) is not None:
            continue
        fixed = optuna.trial.FixedTrial(dict(config))
        ctx.space.suggest(fixed, ctx.task, list(families))
        study.add_trial(optuna.trial.create_trial(
            params=fixed.params, distributions=fixed.distributions, value=float(score),
            user_attrs={OBSERVED_ATTR: True, "origin": origin, "config": dict(config)}))
        added += 1
    return added


def _check_pace(start: float, done: int, n_folds: int, trial_end: float | None,
                search_end: float | None) -> None:
    """Stop a trial whose remaining folds cannot end by its time-out or the search's end.

    At the pace of its ``done`` folds (wall seconds since ``start``), made
    :data:`~automl_meta.budget.FOLD_PACE_MARGIN` times faster, the folds left would still
    end past ``trial_end`` or ``search_end``: the trial would be stopped there, so it is
    stopped now and its worker freed for another configuration. Raises TrialFailed.
    """
    if done >= n_folds:
        return
    now = time.monotonic()
    per_fold = (now - start) / done
    left = per_fold * (n_folds - done)
    for end, what in ((trial_end, "its time-out"), (search_end, "the search's end")):
        if end is not None and now + left / FOLD_PACE_MARGIN > end:
            raise TrialFailed(f"stopped: {n_folds - done} fold(s) left at ~{per_fold:.1f} s "
                              f"a fold would end past {what}, "
                              f"{max(0.0, end - now):.1f} s away")


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


@quiet_optuna()  # Optuna logs a line per trial: errors only while the search runs
def run_search(ctx: EvalContext, *, n_trials: int | None = None,
               deadline: float | None = None, seed: int = 0, n_jobs: int = 1,
               enqueue: Sequence[tuple[dict[str, Any], str]] = (),
               families: Sequence[str] | None = None, storage: Any = None,
               study_name: str | None = None, study_attrs: dict[str, Any] | None = None,
               memory_limit_gb: float | None = None,
               refit_rows: int | None = None, refit_factor: float = 1.0,
               prune: bool = True,
               trial_timeout: float | None = None,
               on_trial: Callable[[TrialRecord, SearchResult], None] | None = None,
               in_process: bool = False,
               search_workers: Sequence[Worker] | None = None,
               pending: Future[Sequence[tuple[dict[str, Any], str]]] | None = None,
               observations: Sequence[tuple[dict[str, Any], float, str]] = ()
               ) -> SearchResult:
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
    refit_factor : float
        The time kept after the search is this many times that estimate (what follows the
        search may fit more than the best configuration), at most 40 % of the search's time.
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
    pending : Future of a sequence of (config, origin), optional
        Configurations that become known while the search runs (the warm start computed
        while the first trials run): enqueued when the future is done, to be evaluated next
        in order; ignored if the search is over by then, or if the future fails (the caller
        reports that). A worker that would start a trial (at the start of the search or
        after one) while they are pending and nothing else is enqueued waits for them
        instead of starting a sampled configuration.
    observations : sequence of (config, score, origin)
        Scores measured before, elsewhere (earlier fits on a table with the same schema),
        told to the sampler as finished trials of a new study (:func:`add_observations`)
        so that its model starts from them; they are not evaluated, are not trials of
        this search (not in its records, not candidates for the final model) and are not
        added to a study that has trials already (``--resume``, a shared study).
    """
    if n_trials is None and deadline is None:
        raise ValueError("give n_trials, a deadline or both")
    metric = METRICS[ctx.metric]
    families = list(families or ctx.space.family_names(ctx.task, len(ctx.y)))
    # Prune only trials in the bottom quarter after two folds: single folds of small
    # datasets are noisy, and a median rule throws away too many good configurations.
    # (n_min_trials: the observations have no per-fold values and do not count)
    pruner = (optuna.pruners.PercentilePruner(75.0, n_startup_trials=5, n_warmup_steps=1,
                                              n_min_trials=5)
              if prune else optuna.pruners.NopPruner())
    t0_wall = time.time()  # trials' start times count from here, opening the study included
    study = open_study(storage, study_name, metric.direction, make_sampler(seed, n_jobs),
                       pruner, study_attrs)
    if observations and not study.get_trials(deepcopy=False):
        add_observations(study, ctx, families, observations)

    def enqueue_trial(config: dict[str, Any], origin: str) -> None:
        # a configuration this search has (enqueued or evaluated) is not enqueued again; an
        # observation of it is no reason to leave it out
        if any(_is_own(t) and t.system_attrs.get("fixed_params", t.params) == config
               for t in study.get_trials(deepcopy=False)):
            return
        study.enqueue_trial(dict(config), user_attrs={"origin": origin})

    for config, origin in enqueue:
        enqueue_trial(config, origin)
    pending_lock = threading.Lock()  # no enqueueing once the search is over
    searching = True
    enqueued = threading.Event()  # the pending configurations are in the study (or failed)

    def enqueue_pending(done: Future) -> None:
        try:
            with pending_lock:
                if searching and done.exception() is None:
                    for config, origin in done.result():
                        enqueue_trial(config, origin)
        except Exception:  # a storage outage: the search's own next call meets it again
            pass  # and reports it
        finally:
            enqueued.set()

    n_folds = len(ctx.folds)
    train_rows = len(ctx.folds[0][0])
    workers: queue.Queue[Worker] = queue.Queue()
    all_workers = list(search_workers) if search_workers else [
        Worker(ctx, memory_limit_gb, in_process) for _ in range(max(1, n_jobs))]
    for w in all_workers:
        workers.put(w)
    result = SearchResult([], metric.name, metric.greater_is_better, n_folds, "",
                          oof_y=ctx.y, oof_limit=oof_capacity(len(ctx.y), ctx.n_classes))
    oof_lock = threading.Lock()
    best_oof_key: tuple[float, int] | None = None  # (signed score, -number) of best_oof
    oof_scores: dict[int, float] = {}

    def search_deadline() -> float | None:
        if stop_requested.is_set():  # Ctrl-C / SIGTERM: running evaluations stop now
            return time.monotonic() - 1.0
        if deadline is None:
            return None
        best = result.refit_basis()
        if refit_rows is None or best is None:
            return deadline
        est = refit_factor * final_fit_seconds(best.family, best.fit_seconds, train_rows,
                                               refit_rows, ctx.task != "regression"
                                               ) + REFIT_OVERHEAD_SECONDS
        window = deadline - start_mono
        return deadline - min(est, 0.4 * window)

    def objective(trial: optuna.Trial) -> float:
        nonlocal best_oof_key
        if stop_requested.is_set():
            raise KeyboardInterrupt
        config = ctx.space.suggest(trial, ctx.task, families)
        trial.set_user_attr("config", config)
        trial.set_user_attr("origin", trial.user_attrs.get("origin", "tpe"))
        trial.set_user_attr("worker", WORKER_ID)
        worker = workers.get()
        # a worker still starting (the fork server importing) is not this trial's slowness
        worker.wait_started(search_deadline())
        scores: list[float] = []
        oof = np.full(len(ctx.y), np.nan)
        oof_proba = None if ctx.task == "regression" else np.zeros((len(ctx.y), ctx.n_classes))
        oof_complete = True
        fit_seconds = 0.0
        trial_start = time.monotonic()
        trial_end = None if trial_timeout is None else trial_start + trial_timeout
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
                if oof_proba is not None:
                    if out.get("proba") is None:
                        oof_complete = False
                    else:
                        oof_proba[ctx.folds[k][1]] = out["proba"]
                mean = float(np.mean(scores))
                trial.set_user_attr("fold_scores", scores)
                trial.set_user_attr("score", mean)
                trial.set_user_attr("fit_seconds", fit_seconds / len(scores))
                trial.report(mean, k)
                if k < n_folds - 1 and trial.should_prune():
                    raise optuna.TrialPruned()
                _check_pace(trial_start, k + 1, n_folds, trial_end, search_deadline())
            value = float(np.mean(scores))
            with oof_lock:
                # ranked as :attr:`SearchResult.best` ranks: score, then the lower number;
                # compared with the trials that returned so far, not with ``result.best``,
                # which the callback updates only after this returns (another worker's trial
                # may return in between)
                key = ((value if result.greater_is_better else -value), -trial.number)
                if best_oof_key is None or key > best_oof_key:
                    best_oof_key = key
                    result.best_oof = oof
                if oof_complete:
                    result.keep_oof(trial.number, value,
                                    oof if oof_proba is None else oof_proba, oof_scores)
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

    def wait_for_pending() -> None:
        # A worker with no enqueued configuration to start waits for the pending ones (a
        # fraction of a second) rather than asking the sampler for a random start-up
        # configuration.
        if pending is None or enqueued.is_set() or study.get_trials(
                deepcopy=False, states=(optuna.trial.TrialState.WAITING,)):
            return
        while not enqueued.is_set() and not stop_requested.is_set():
            limit = search_deadline()
            if limit is not None and limit <= time.monotonic():
                return
            enqueued.wait(0.1)

    if pending is not None:
        # every trial of study.optimize starts with study.ask: gate it, one thread at a
        # time, so that two workers never both find the last enqueued configuration; once
        # the pending configurations are in the study, asks run side by side again (a TPE
        # ask can take a good part of a fast trial)
        ask_lock = threading.Lock()
        study_ask = study.ask

        def gated_ask(*args: Any, **kwargs: Any) -> optuna.Trial:
            if enqueued.is_set():
                return study_ask(*args, **kwargs)
            with ask_lock:
                wait_for_pending()
                return study_ask(*args, **kwargs)

        study.ask = gated_ask  # type: ignore[method-assign]

    start_mono = time.monotonic()
    done_before = len([t for t in study.trials if _is_own(t) and t.state.is_finished()])
    result.records.extend(_record_from_trial(t, t0_wall) for t in study.trials
                          if _is_own(t) and t.state.is_finished())
    remaining = None if n_trials is None else max(0, n_trials - done_before)
    stop_requested = threading.Event()
    if pending is not None:
        pending.add_done_callback(enqueue_pending)  # at once if it is done already
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
        with pending_lock:
            searching = False
        for w in all_workers:
            w.close()
    # the study is the source of truth (the interrupted trial never reached the callback)
    result.records = [_record_from_trial(t, t0_wall) for t in study.trials
                      if _is_own(t) and t.state.is_finished()]
    if not result.stop_reason:
        result.stop_reason = "trial count" if n_trials is not None and \
            len(result.records) >= n_trials else "time budget"
    result.records.sort(key=lambda r: r.number)
    result.study_name = study.study_name
    return result
