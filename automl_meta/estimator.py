"""``AutoML``: the scikit-learn estimator that runs the whole job.

data → (meta-features → neighbours → warm start) → search → final model → run directory.
The command line calls exactly this code (``AutoML.fit_dataset`` and ``AutoML.save``).
"""

from __future__ import annotations

import math
import numbers
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from automl_meta import metrics as metrics_mod
from automl_meta.artifacts.diagnostics import compute_diagnostics, target_distribution
from automl_meta.artifacts.ensemble import describe, ensemble_for_search
from automl_meta.artifacts.holdout import holdout_candidates, select_on_holdout
from automl_meta.artifacts.model import TabularModel
from automl_meta.artifacts.rundir import DEFAULT_MODEL_FORMAT, write_run_dir
from automl_meta.artifacts.scoring import score_model
from automl_meta.budget import (
    DEFAULT_TIME_BUDGET,
    HISTORY_MAX_TRIAL_SHARE,
    HOLDOUT_REFIT_FACTOR,
    LEARNED_MIN_SECONDS,
    REFIT_GRACE_SHARE,
    budget_search_rows,
    diagnostics_allowance,
    diagnostics_end,
    ensemble_write_allowance,
    grace_seconds,
    holdout_rows,
    n_folds_for,
    resolve_n_jobs,
    trial_timeout,
    warm_trial_seconds,
)
from automl_meta.data import Dataset, prepare_dataset
from automl_meta.defaults import (
    DEFAULT_ENSEMBLE_SIZE,
    DEFAULT_HISTORY_FIRST,
    DEFAULT_HISTORY_OBSERVATIONS,
    DEFAULT_HOLDOUT_CANDIDATES,
    DEFAULT_MAX_SEARCH_ROWS,
    DEFAULT_NEIGHBORS,
    DEFAULT_SEED,
    DEFAULT_STRATEGY,
    DEFAULT_WARM_START,
    FALLBACK_DEFAULT_FAMILIES,
    HOLDOUT_DEFAULT_FAMILIES,
    HOLDOUT_LARGE_ROWS,
    HOLDOUT_LARGE_SETTINGS,
    WARM_START_DEFAULTS_AT,
)
from automl_meta.errors import AutoMLError, UsageError
from automl_meta.progress import Reporter
from automl_meta.search.cv import fit_full, search_rows
from automl_meta.search.families import final_fit_seconds
from automl_meta.search.optimize import SearchResult, TrialRecord, run_search
from automl_meta.search.prepare import prepare_search, study_attributes
from automl_meta.search.space import load_space
from automl_meta.search.workers import EvaluationFailed, EvaluationTimeout, Worker

LAST_RESORT_ROWS = 2000


class AutoML(BaseEstimator):
    """Search scikit-learn pipelines for a tabular dataset and fit the best one.

    Parameters
    ----------
    task : {"binary", "multiclass", "classification", "regression"}, optional
        Inferred from the target when omitted (rule in :mod:`automl_meta.data`).
    metric : str, optional
        accuracy, balanced_accuracy, roc_auc, log_loss, f1_macro (classification);
        r2, rmse, mae (regression). Default: accuracy / r2.
    time_budget : float, optional
        Wall-clock seconds for the whole fit (search, final refit). The fit ends within
        ``time_budget + max(5, 10 %)``. Default 60 s when ``n_trials`` is not given either.
    n_trials : int, optional
        Stop after this many trials.
    seed : int
        Seeds the CV split, the sampler and the models.
    n_jobs : int, optional
        Trials evaluated in parallel, one worker process each. ``None`` (default) or ``-1``:
        every core this process may use (its CPU affinity, within a cgroup CPU quota;
        :func:`automl_meta.budget.available_cores`), and no more than ``n_trials``. With
        more than one, which trial the sampler proposes next depends on which worker is
        free first, so two runs with the same seed may differ (as with Optuna's own
        ``n_jobs``); ``n_jobs=1`` makes a search reproducible.
    warm_start : int
        How many configurations from the nearest prior tasks (and the portfolio) are
        evaluated first; 0 = cold start (plain TPE). Default 10.
    metabase : str, optional
        Metabase folder (default: the bundled one). A metabase that cannot be used (corrupt,
        other search-space version) means a cold start with a warning, never a crash.
    n_neighbors : int
        How many nearest prior tasks the warm start draws on (and the report lists).
    warm_start_strategy : {"learned", "local", "portfolio"}
        How the warm-start configurations are chosen, by the name of a strategy in
        :mod:`automl_meta.meta.warmstart`'s registry: ``"learned"`` (default) ranks the prior
        tasks' best configurations with a performance model fitted on the metabase
        (:mod:`automl_meta.meta.surrogate`); ``"local"`` is a similarity-weighted portfolio
        of the nearest prior tasks; ``"portfolio"`` the configurations good across the whole
        metabase, the same for every dataset. An unknown name is a ``UsageError`` at ``fit``.
    warm_start_configs : list of dict, optional
        Your own configurations, evaluated before the warm start's (each a flat
        configuration, optionally with an ``"_origin"`` key saying where it came from).
    max_search_rows : int
        Above this many rows the search runs on a stratified subsample; the final model is
        fitted on all rows. A short ``time_budget`` lowers it further, to what the budget
        affords (:func:`~automl_meta.search.cv.budget_search_rows`: about 3 400 rows at
        10 s with two workers; the summary's ``search_rows`` and a warning say so). When
        enough rows are left outside the subsample (:func:`~automl_meta.budget.
        holdout_rows`), the final candidates (the best trial of each family and the
        default gradient boosting and linear models) are compared on up to 5 000 of those
        rows, fitted on the others, before the chosen one is refitted on all rows
        (:mod:`automl_meta.artifacts.holdout`).
    memory_limit : float, optional
        Memory limit per worker process in GiB; a trial exceeding it fails.
    storage : str or optuna storage, optional
        Optuna storage URL for the study, or a storage object (in memory by default; the
        command line uses a journal file in the run directory,
        :func:`~automl_meta.search.study.journal_storage`). With a PostgreSQL URL,
        ``automl-meta worker`` processes on other machines can join the search.
    study_name : str, optional
        Name of the study in ``storage`` (a new or an existing one, which is resumed).
    space : str, optional
        Search-space YAML (the shipped ``configs/space.yaml`` by default).
    isolation : bool
        Evaluate trials in worker processes (default), which is what lets a slow trial be
        stopped at the deadline and a memory limit be enforced. ``False`` evaluates in this
        process: no time-outs (the budget is only checked between folds), for environments
        that forbid subprocesses.
    diagnostics : bool
        Compute what the report shows about the final model: out-of-fold diagnostics of the
        best trial (free: its CV predictions) and permutation importance of the original
        columns (within max(5 s, 5 % of the budget)).
    report : bool
        The run will be saved with ``report.html``: the plotting stack is imported while
        the search runs, so that rendering starts at once (the command line sets it).
    verbose : int
        0 silent; 1 progress bar on stderr.
    ensemble_size : int
        Rounds of the ensemble selection (Caruana's greedy forward selection with
        replacement over the out-of-fold predictions of the best complete trials,
        :mod:`automl_meta.artifacts.ensemble`): the final model averages the trials picked,
        weighted by how often each was picked, when that scores better out of fold than
        the best trial alone and its members can be refitted in the time left. Default 10:
        weights in steps of 0.1 and at most 10 refits, few enough not to fit the
        out-of-fold noise of small data. 1 keeps the single best trial.
    history : bool or str, optional
        The user's history of fits (:mod:`automl_meta.meta.history`): ``True`` is the folder
        ``AUTOML_META_HISTORY`` names, else the user data directory; a string is a folder.
        With a history the warm start draws on it too (earlier fits on a table with the
        same schema first, their scores told to the sampler, then the nearest tasks of the
        history and the metabase together), and the fit is recorded in it when it ends
        (meta-features, schema fingerprint, every trial's configuration and score; no
        data). ``None`` (default): no history. The command line uses one unless
        ``--no-history`` is given.

    Attributes
    ----------
    model_ : TabularModel
        The fitted final pipeline.
    search_ : SearchResult
        Every trial of the search.
    leaderboard_ : DataFrame
        One row per trial.
    classes_ : ndarray
        Class labels (classification).
    """

    def __init__(self, task: str | None = None, metric: str | None = None,
                 time_budget: float | None = None, n_trials: int | None = None,
                 seed: int = DEFAULT_SEED,
                 n_jobs: int | None = None, warm_start: int = DEFAULT_WARM_START,
                 metabase: str | None = None, n_neighbors: int = DEFAULT_NEIGHBORS,
                 warm_start_strategy: str = DEFAULT_STRATEGY,
                 warm_start_configs: list[dict] | None = None,
                 max_search_rows: int = DEFAULT_MAX_SEARCH_ROWS,
                 memory_limit: float | None = None, storage: Any = None,
                 study_name: str | None = None,
                 space: str | None = None, isolation: bool = True, diagnostics: bool = True,
                 report: bool = False,
                 verbose: int = 0, ensemble_size: int = DEFAULT_ENSEMBLE_SIZE,
                 history: bool | str | None = None):
        self.task = task
        self.metric = metric
        self.time_budget = time_budget
        self.n_trials = n_trials
        self.seed = seed
        self.n_jobs = n_jobs
        self.warm_start = warm_start
        self.metabase = metabase
        self.n_neighbors = n_neighbors
        self.warm_start_strategy = warm_start_strategy
        self.warm_start_configs = warm_start_configs
        self.max_search_rows = max_search_rows
        self.memory_limit = memory_limit
        self.storage = storage
        self.study_name = study_name
        self.space = space
        self.isolation = isolation
        self.diagnostics = diagnostics
        self.report = report
        self.verbose = verbose
        self.ensemble_size = ensemble_size
        self.history = history

    # ------------------------------------------------------------------ sklearn interface
    def fit(self, X: Any, y: Any) -> AutoML:
        """Search and fit on features ``X`` (DataFrame or array) and target ``y``."""
        started = time.monotonic()
        X = _as_frame(X)
        if X.shape[1] == 0:
            raise ValueError(f"0 feature(s) (shape=({X.shape[0]}, 0)) while a minimum of 1 is "
                             "required.")
        y = pd.Series(np.asarray(y).ravel() if not isinstance(y, pd.Series) else y.to_numpy())
        if len(y) != len(X):
            raise UsageError(f"X has {len(X)} rows but y has {len(y)}")
        target = "target"
        while target in X.columns:
            target = f"_{target}"
        df = X.reset_index(drop=True).copy()
        df[target] = y.to_numpy()
        dataset = prepare_dataset(df, target,
                                  self.task or metrics_mod.task_from_metric(self.metric))
        return self.fit_dataset(dataset, started=started)

    def predict(self, X: Any) -> np.ndarray:
        """Predicted labels or values."""
        X = self._frame_for_predict(X)
        return self.model_.predict(X)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities (columns follow ``classes_``)."""
        X = self._frame_for_predict(X)
        return self.model_.predict_proba(X)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # missing values are imputed / handled natively
        tags.input_tags.string = True  # text columns become categorical features
        tags.input_tags.categorical = True
        tags.non_deterministic = False
        return tags

    def score(self, X: Any, y: Any) -> float:
        """The search metric on ``(X, y)``, sign-flipped for losses so greater is better."""
        X = self._frame_for_predict(X)
        value = score_model(self.model_, X, pd.Series(np.asarray(y).ravel()), self.metric_.name)
        return value if self.metric_.greater_is_better else -value

    def _frame_for_predict(self, X: Any) -> pd.DataFrame:
        if not hasattr(self, "model_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("AutoML is not fitted yet; call fit first")
        X = _as_frame(X)
        if X.shape[1] != self.n_features_in_ and all(str(c).startswith("x") for c in X.columns):
            raise ValueError(f"X has {X.shape[1]} features, but AutoML is expecting "
                             f"{self.n_features_in_} features as input")
        return X

    # ------------------------------------------------------------------ the job
    def fit_dataset(self, dataset: Dataset, *, started: float | None = None,
                    reporter: Reporter | None = None, reserve: float = 0.0) -> AutoML:
        """Run search and final fit on a prepared :class:`~automl_meta.data.Dataset`.

        ``started`` (a ``time.monotonic()`` value) is when the job began, so that time spent
        reading the data counts against ``time_budget``. ``reserve`` seconds of the budget
        are kept for what the caller does after the fit (the command line writes the run
        directory and renders the report: :func:`save_reserve`).
        """
        started = time.monotonic() if started is None else started
        self._started = started
        self._reserve = reserve
        self.timeline_: list[tuple[str, float]] = []
        self._mark("data read")
        reporter = reporter or _default_reporter(self.verbose)
        space = load_space(self.space)
        metric = metrics_mod.get_metric(self.metric, dataset.task)
        budget = self.time_budget
        if budget is None and self.n_trials is None:
            budget = DEFAULT_TIME_BUDGET
        if budget is not None and not (_is_real(budget) and math.isfinite(budget)
                                       and budget > 0):
            raise UsageError(f"time_budget must be a positive finite number (got {budget!r})")
        if self.memory_limit is not None and not (
                _is_real(self.memory_limit) and math.isfinite(self.memory_limit)
                and self.memory_limit > 0):
            raise UsageError("memory_limit must be a positive finite number of GiB "
                             f"(got {self.memory_limit!r})")
        if self.n_trials is not None and self.n_trials < 1:
            raise UsageError(f"n_trials must be at least 1 (got {self.n_trials!r})")
        size = self.ensemble_size
        if not (isinstance(size, numbers.Integral) and not isinstance(size, bool)
                and size >= 1):
            raise UsageError(f"ensemble_size must be an integer of at least 1 (got {size!r})")
        from automl_meta.meta.warmstart import get as get_strategy
        get_strategy(self.warm_start_strategy)  # UsageError for an unknown name
        try:
            n_jobs = resolve_n_jobs(self.n_jobs)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if self.n_trials is not None:  # no idle workers (and one worker: reproducible)
            n_jobs = min(n_jobs, int(self.n_trials))
        self.n_jobs_ = n_jobs
        deadline = started + budget if budget else None
        self.metric_ = metric
        self.dataset_ = dataset
        classes = dataset.classes
        self.warnings_: list[str] = []
        cap = self.max_search_rows
        if self.n_trials is None and budget is not None:
            affordable = budget_search_rows(dataset.n_rows, budget, n_jobs)
            if affordable < min(cap, dataset.n_rows):
                cap = affordable
                self.warnings_.append(
                    f"searching on {cap} of {dataset.n_rows} rows: the {budget:g} s budget "
                    "affords that many for a useful number of trials (a larger "
                    "--time-budget searches on more); the final model is fitted on all rows")
        n_folds = n_folds_for(min(cap, dataset.n_rows),
                              None if self.n_trials is not None else budget, n_jobs)
        prepared = prepare_search(dataset, metric.name, self.seed, cap, space, n_folds=n_folds)
        ctx, full_ctx, y_codes = prepared.ctx, prepared.full_ctx, prepared.y_codes
        self._n_folds = len(ctx.folds)
        search_idx, y_search = prepared.search_idx, ctx.y
        self.search_rows_ = len(search_idx)
        self._search_idx = search_idx
        # rows outside the search held out to compare the final candidates at full scale
        n_hold = holdout_rows(dataset.n_rows, len(search_idx))
        self._holdout_idx = None
        if n_hold:
            outside = np.setdiff1d(np.arange(dataset.n_rows), search_idx)
            rng = np.random.default_rng(self.seed)
            self._holdout_idx = np.sort(rng.choice(outside, n_hold, replace=False))
        # The workers start now (worker.worker_context: the multiprocessing fork server
        # imports scikit-learn once, in parallel with the meta-features and the warm start;
        # the trial workers and the refit worker are forks of it, also when a worker killed
        # at a time-out is replaced).
        refit_worker = Worker(full_ctx, self.memory_limit, in_process=not self.isolation)
        refit_worker.start()
        # the final comparison on held-out rows fits its candidates side by side, and so
        # does the ensemble's refit its members
        extra_workers = [
            Worker(full_ctx, self.memory_limit, in_process=not self.isolation)
            for _ in range(n_jobs - 1 if n_hold or self.ensemble_size > 1 else 0)]
        for w in extra_workers:
            w.start()
        search_workers = [Worker(ctx, self.memory_limit, in_process=not self.isolation)
                          for _ in range(n_jobs)]
        for w in search_workers:
            w.start()
        enqueue = []
        for cfg in self.warm_start_configs or []:
            cfg = dict(cfg)
            origin = str(cfg.pop("_origin", "user"))
            reason = space.check_config(cfg, dataset.task)
            if reason is None:
                enqueue.append((cfg, origin))
            else:
                self.warnings_.append(f"ignored a warm_start_configs entry: {reason}")
        self.metafeatures_, self.neighbors_, self.warm_start_log_ = {}, [], []
        # scores of earlier fits on this schema, for the sampler (_from_history)
        self._observations: list[tuple[dict, float, str]] = []
        self.warm_start_strategy_: str | None = None
        pending: Future | None = None
        if self.warm_start and self.warm_start > 0:
            reporter.phase("warm start")
            try:
                # against the clock, the history's configurations start while the
                # meta-features are computed; with a trial count the order stays reproducible
                first, pending = self._warm_start(
                    dataset, space, len(search_idx), deadline,
                    early=deadline is not None and self.n_trials is None)
                enqueue += first
            except BaseException:  # Ctrl-C or a bug: no worker process is left behind
                for w in [refit_worker, *extra_workers, *search_workers]:
                    w.close()
                raise
        for w in self.warnings_:
            reporter.warn(w)
        shown = len(self.warnings_)
        # import the model writer (and the report's plotting stack) while the search runs,
        # once the warm start's thread is done (both would hold the same interpreter lock)
        preload = threading.Thread(target=_preload_save_modules, args=(self.report,),
                                   daemon=True)
        if pending is None:
            preload.start()
        else:
            pending.add_done_callback(lambda _: preload.start())
        reporter.start(self.n_trials, None if deadline is None else deadline - time.monotonic(),
                       metric.name)
        self._mark("search start")
        search_start = time.monotonic() - started
        try:
            search = run_search(
                ctx, n_trials=self.n_trials,
                deadline=None if deadline is None else
                deadline - reserve,
                seed=self.seed, n_jobs=n_jobs, enqueue=enqueue, storage=self.storage,
                study_name=self.study_name,
                study_attrs=study_attributes(dataset, metric.name, self.seed,
                                             cap, space.version, len(ctx.folds)),
                memory_limit_gb=self.memory_limit, refit_rows=len(y_codes),
                refit_factor=HOLDOUT_REFIT_FACTOR if n_hold else 1.0,
                trial_timeout=trial_timeout(budget),
                on_trial=reporter.trial, in_process=not self.isolation,
                search_workers=search_workers, pending=pending,
                observations=self._observations)
            self._mark("search end")
            if pending is not None:
                if pending.exception() is not None:  # waits for the thread (a fraction of
                    # a second at most: it runs while the first trials do)
                    self.warnings_.append("the warm start failed and the search went on "
                                          f"without it: {pending.exception()!r}")
                for w in self.warnings_[shown:]:
                    reporter.warn(w)
            if search.records:
                first = search_start + min(r.started for r in search.records)
                self.timeline_.append(("first trial started", round(first, 3)))
            reporter.phase("refit")
            grace = grace_seconds(budget) if budget else None
            model, refit_info = self._refit(search, [refit_worker, *extra_workers], dataset,
                                            space, deadline, grace)
            if self._holdout_info is not None and "holdout" not in refit_info:
                refit_info["holdout"] = self._holdout_info  # the comparison that failed
            self._mark("refit end")
            self.diagnostics_ = None
            if self.diagnostics:
                reporter.phase("diagnostics")
                allowance = diagnostics_allowance(budget)
                if deadline is not None:
                    allowance = min(allowance, diagnostics_end(deadline, grace, reserve)
                                    - time.monotonic())
                self.diagnostics_ = compute_diagnostics(model, dataset, y_codes, y_search,
                                                        search.best_oof, allowance, self.seed)
                self._mark("diagnostics end")
        finally:
            # the search closed its own already
            for w in [refit_worker, *extra_workers, *search_workers]:
                w.close()
            reporter.stop()
        self.search_ = search
        self.interrupted_ = search.interrupted
        self.model_ = model
        self.refit_ = refit_info
        self.leaderboard_ = pd.DataFrame([r.to_row() for r in search.records])
        self.classes_ = np.asarray(classes, dtype=object) if classes is not None else None
        self.n_features_in_ = dataset.X.shape[1] + len(dataset.schema.dropped)
        self.search_rows_ = len(search_idx)
        self.time_budget_ = budget
        self.fit_seconds_ = time.monotonic() - started
        self.history_run_: str | None = None
        if search.records:
            self._record_history(space)
        return self

    def _history(self) -> Any:
        """The :class:`~automl_meta.meta.history.History` this fit uses, or None."""
        from automl_meta.meta.history import History, resolve_history_dir

        folder = resolve_history_dir(self.history)
        return None if folder is None else History(folder)

    def _record_history(self, space: Any) -> None:
        """Append this fit to the history (never fatal: a failure becomes a warning)."""
        import sqlite3

        from automl_meta.errors import HistoryError
        from automl_meta.meta.history import RunRecord

        history = self._history()
        if history is None:
            return
        ds, search, best = self.dataset_, self.search_, self.search_.best
        record = RunRecord(
            run_id=RunRecord.new_id(ds.sha256), name=ds.name, fingerprint=_fingerprint(ds),
            task=ds.task, target=ds.target, metric=self.metric_.name,
            greater_is_better=self.metric_.greater_is_better, n_rows=ds.n_rows,
            n_features=ds.X.shape[1], n_classes=len(ds.classes or []), n_folds=search.n_folds,
            best_score=None if best is None else best.score,
            best_config=None if best is None else best.config,
            final_config=self.refit_.get("config"), metafeatures=dict(self.metafeatures_),
            search_space_version=space.version, n_trials=len(search.records),
            trials=[{"trial": r.number, "state": r.state, "score": r.score,
                     "fit_seconds": r.fit_seconds, "duration": r.duration,
                     "origin": r.origin, "config": r.config} for r in search.records])
        try:
            history.append(record)
        except (HistoryError, OSError, sqlite3.Error) as exc:
            self.warnings_.append(f"this fit was not recorded in the history: {exc}")
            return
        self.history_run_ = record.run_id

    def _mark(self, event: str) -> None:
        """Record when ``event`` happened, in seconds since the fit (or process) started."""
        self.timeline_.append((event, round(time.monotonic() - self._started, 3)))

    def _warm_start(self, dataset: Dataset, space: Any, n_rows: int,
                    deadline: float | None = None, early: bool = False
                    ) -> tuple[list[tuple[dict, str]], Future | None]:
        """The warm start: the configurations to evaluate first, and (``early``) a future of
        the rest, which the search enqueues when it is ready (None: nothing to wait for).

        The history's best configuration for this table's schema, the family defaults
        (:data:`~automl_meta.defaults.WARM_START_DEFAULT_FAMILIES`, which a fit without
        history starts with), the history's next ones, then the strategy's list for
        this dataset: meta-features → nearest prior tasks → ordered configurations
        (:meth:`_warm_start_metabase`, :meth:`_warm_start_learned`). With ``early``, the
        history's configurations start at once and the rest (reading the metabase
        included) is computed in a thread while they run; without any, and with more than
        one worker, the family defaults
        (:data:`~automl_meta.defaults.WARM_START_DEFAULT_FAMILIES`), which depend on neither
        the metabase nor the history, start at once instead, on one worker, while the
        others wait for the strategy's list. With one worker everything is computed first:
        an early trial would only compete with that thread for the core, and the strategy's
        first configurations would start later.
        """
        first, prior = self._from_history(dataset, space, n_rows, deadline)
        if first and self.warm_start > 1:
            # the defaults a fit without history starts with, at their usual place among
            # the history's configurations: a guard against an earlier best that does not
            # carry over to these rows
            from automl_meta.meta.metabase import config_id

            taken = {config_id(c) for c, _ in first}
            anchors = [(c, o) for c, o in self._family_defaults(dataset, space, n_rows)
                       if config_id(c) not in taken]
            at = WARM_START_DEFAULTS_AT
            first = first[:at] + anchors + first[at:]
        defaults_early = False
        if early and not first and self.n_jobs_ > 1 and self.warm_start > 1:
            # a core is free while the rest is computed: the family defaults, which do not
            # depend on it, start on it
            first = self._family_defaults(dataset, space, n_rows)
            defaults_early = bool(first)
        if not (early and first):
            mb = self._warm_start_metabase(space, prior)
            if mb is None:
                self._mark("warm start ready")
                return first, None
            return self._warm_start_learned(dataset, space, n_rows, deadline, mb, first), None
        future: Future = Future()

        def work() -> None:
            try:
                mb = self._warm_start_metabase(space, prior, defaults_started=defaults_early)
                if mb is None:
                    self._mark("warm start ready")
                    future.set_result([])
                    return
                rest = self._warm_start_learned(dataset, space, n_rows, deadline, mb, first,
                                                early=True)
                future.set_result(rest[len(first):])
            except BaseException as exc:  # reported by the fit, which goes on without it
                future.set_exception(exc)

        threading.Thread(target=work, name="automl-meta-warm-start", daemon=True).start()
        return first, future

    def _warm_start_metabase(self, space: Any, history: tuple[Any, str | None] | None,
                             defaults_started: bool = False) -> Any:
        """The metabase with the history's runs added as prior tasks (``history``: what
        :meth:`_from_history` returned for :meth:`_history_metabase`, or None); None when
        there is neither to use. ``defaults_started``: the family defaults are running
        already (a metabase that cannot be read then leaves them as the whole warm
        start)."""
        from automl_meta.errors import MetabaseError
        from automl_meta.meta.history import merge_metabases
        from automl_meta.meta.metabase import load_metabase

        try:
            mb, problem = load_metabase(self.metabase, space_version=space.version), None
        except MetabaseError as exc:
            mb, problem = None, exc
        hmb = None if history is None else self._history_metabase(space, *history)
        if hmb is not None:
            mb = hmb if mb is None else merge_metabases(mb, hmb)
        if problem is not None:
            self.warnings_.append(
                (f"cold start: {problem}" + (" (the family defaults, which do not need it, "
                                             "were evaluated)" if defaults_started else ""))
                if mb is None else f"the metabase is not used ({problem}); the warm start "
                "draws on your history alone")
        if mb is not None:
            self.metabase_path_ = mb.path
        return mb

    def _warm_start_learned(self, dataset: Dataset, space: Any, n_rows: int,
                            deadline: float | None, mb: Any, first: list[tuple[dict, str]],
                            early: bool = False) -> list[tuple[dict, str]]:
        """``first``, then the strategy's configurations for this dataset: meta-features →
        nearest prior tasks → ordered configurations; at most ``warm_start`` in all (more
        only when ``first`` is longer). ``early``: ``first`` is running already.

        The ``"learned"`` strategy uses the performance model the metabase stores; when it
        has none that can be used, the model is fitted first (one to two seconds), and with
        less than ``LEARNED_MIN_SECONDS`` of the budget left the strategy gives way to
        ``"local"``, which needs a fraction of a second, and the log says so.
        """
        from automl_meta.meta.features import compute_metafeatures
        from automl_meta.meta.metabase import config_id
        from automl_meta.meta.neighbors import nearest
        from automl_meta.meta.surrogate import stored_surrogate
        from automl_meta.meta.warmstart import order_by_cost, suggest

        metafeatures = compute_metafeatures(*dataset.as_read(), dataset.task,
                                            random_state=self.seed)
        self._mark("meta-features")
        neighbors = nearest(mb, metafeatures, dataset.task, k=self.n_neighbors)
        if not neighbors:
            self.warnings_.append("the metabase holds no prior task of this kind; the "
                                  "portfolio alone seeds the search")
        strategy, log, surrogate = self.warm_start_strategy, [], None
        if strategy == "learned":
            surrogate, why = stored_surrogate(mb, space, dataset.task)
            if surrogate is not None:
                log.append("performance model: the one stored in the metabase")
            elif deadline is not None and \
                    deadline - time.monotonic() < LEARNED_MIN_SECONDS:
                strategy = "local"
                log.append(f"strategy 'local' instead of 'learned': {why}, and fitting one "
                           f"needs {LEARNED_MIN_SECONDS:g} s of the budget left")
        ws = suggest(mb, neighbors, dataset.task, n_rows, space, self.warm_start,
                     strategy=strategy, metafeatures=metafeatures, surrogate=surrogate)
        suggestions, cost_log = ws.suggestions, []
        if deadline is not None:  # short budgets: cheaper configurations, and first those
            # that can finish
            left = max(0.0, deadline - time.monotonic())
            suggestions, cost_log = order_by_cost(
                mb, suggestions, n_rows, self._n_folds,
                len(dataset.classes) if dataset.classes else 0, left,
                per_trial=warm_trial_seconds(left), space=space, task=dataset.task,
                n_features=dataset.X.shape[1])
        taken = {config_id(c) for c, _ in first}
        rest = [(s.config, s.origin) for s in suggestions if config_id(s.config) not in taken]
        history_first = [o for _, o in first if o.startswith("history:")]
        if history_first:
            defaults = [o for _, o in first if o.startswith("default:")]
            log.append(f"{len(history_first)} configuration(s) from earlier fits on a table "
                       "with the same schema come first" + (
                           f" ({', '.join(defaults)} second)" if defaults else "") + (
                           ", started while the meta-features were computed"
                           if early else ""))
        elif early and first:
            log.append(", ".join(o for _, o in first) + " started at once, while the "
                       "meta-features and the rest of the warm start were computed")
        if self._observations:
            log.append(f"the sampler starts from {len(self._observations)} scores of earlier "
                       "fits on a table with the same schema")
        self.metafeatures_, self.neighbors_ = metafeatures, neighbors
        self.warm_start_strategy_ = strategy
        self.warm_start_log_ = log + ws.log + cost_log
        self._mark("warm start ready")
        return (first + rest)[:max(self.warm_start, len(first))]

    def _family_defaults(self, dataset: Dataset, space: Any, n_rows: int
                         ) -> list[tuple[dict, str]]:
        """The default configuration of each family of ``WARM_START_DEFAULT_FAMILIES``
        offered for this table, with its origin ``default:<family>``."""
        from automl_meta.meta.warmstart.selection import default_suggestions

        allowed = space.family_names(dataset.task, n_rows)
        return [(s.config, s.origin) for s in
                default_suggestions(space, dataset.task, allowed, self.warm_start)]

    def _from_history(self, dataset: Dataset, space: Any, n_rows: int,
                      deadline: float | None = None
                      ) -> tuple[list[tuple[dict, str]], tuple[Any, str | None] | None]:
        """The history's part of the warm start: the best configurations of earlier fits on
        a table with this schema (to be evaluated first), and what
        :meth:`_history_metabase` needs to make the history's runs prior tasks (None
        without a history): the history, and the schema fingerprint whose runs are left
        out of them. The scored configurations of this schema (same metric) go to
        ``self._observations``, for the search's sampler. A configuration whose trial took
        there more than ``HISTORY_MAX_TRIAL_SHARE`` of the time now left (scaled to these
        rows and folds) is not put first. A history that cannot be read is a warning."""
        from automl_meta.errors import HistoryError

        history = self._history()
        if history is None or not history.exists():
            return [], None
        n_first = min(DEFAULT_HISTORY_FIRST, max(1, self.warm_start // 2))
        allowed = set(space.family_names(dataset.task, n_rows))
        fingerprint = _fingerprint(dataset)
        try:
            same = history.same_schema(fingerprint, dataset.task, space.version, 4 * n_first)
            scored = history.same_schema(fingerprint, dataset.task, space.version,
                                         DEFAULT_HISTORY_OBSERVATIONS, metric=self.metric_.name)
        except HistoryError as exc:
            self.warnings_.append(f"the history is not used: {exc}")
            return [], None
        self._observations = [(p.config, p.score, p.origin) for p in scored
                              if p.config.get("family") in allowed]
        left = None if deadline is None else deadline - time.monotonic()
        first = [(p.config, p.origin) for p in same
                 if p.config.get("family") in allowed
                 and space.check_config(p.config, dataset.task) is None
                 and (left is None or p.seconds_for(n_rows, self._n_folds)
                      <= HISTORY_MAX_TRIAL_SHARE * left)][:n_first]
        return first, (history, fingerprint if first else None)

    def _history_metabase(self, space: Any, history: Any, exclude: str | None) -> Any:
        """The history's runs as a metabase of prior tasks, without the runs of schema
        fingerprint ``exclude`` (earlier fits of this table have had their say first: as
        prior tasks at distance about 0 they would crowd the metabase's neighbours out of
        the rest of the list); None when it cannot be read (a warning) or holds none."""
        from automl_meta.errors import HistoryError
        from automl_meta.meta.history import as_metabase

        try:
            hmb = as_metabase(history, space.version)
        except HistoryError as exc:
            self.warnings_.append(f"the history's runs are not used as prior tasks: {exc}")
            return None
        if exclude is not None and "fingerprint" in hmb.tasks:
            hmb.tasks = hmb.tasks[hmb.tasks["fingerprint"] != exclude]
            hmb.results = hmb.results[hmb.results["task_id"].isin(hmb.tasks["task_id"])]
        return hmb if len(hmb.tasks) else None

    @staticmethod
    def _refit_model(out: dict, config: dict, why: str, record: TrialRecord | None,
                     errors: list[str], dataset: Dataset, ensemble_info: dict | None
                     ) -> tuple[TabularModel, dict]:
        """The final model from a refit's output, and what the report says of it."""
        model = TabularModel(out["pipeline"], dataset.schema, dataset.task, dataset.target,
                             dataset.classes, config)
        info = {"config": config, "reason": why, "fit_seconds": out["fit_seconds"],
                "trial": record.number if record else None,
                "cv_score": record.score if record else None, "skipped": errors}
        if ensemble_info is not None:
            info["ensemble"] = ensemble_info
        return model, info

    def _refit(self, search: SearchResult, workers: list[Worker], dataset: Dataset,
               space: Any, deadline: float | None, grace: float | None
               ) -> tuple[TabularModel, dict]:
        """Fit the ensemble's members (``ensemble_size`` > 1) or the best configuration on all
        rows; fall back to the best trial, then to faster ones, if time runs out. On a
        large table searched on a subsample, the final candidates are compared on held-out
        rows first (:mod:`automl_meta.artifacts.holdout`). ``workers[0]`` is the refit
        worker; the others (if any) fit held-out candidates beside it."""
        worker = workers[0]
        # Order: the best trial; faster top-5 trials (only if their estimated refit fits
        # the time left; with no complete trial, the best partially evaluated one too); the
        # defaults of FALLBACK_DEFAULT_FAMILIES on all rows; last, whatever time is left, a
        # linear model with default settings
        # on at most LAST_RESORT_ROWS rows, so that a fit always ends with a model (the
        # report says which and why). The last resort is fitted by the worker too (under
        # the same --memory-limit); in this process only if that fails without a limit.
        candidates: list[tuple[dict, str, TrialRecord | None, np.ndarray | None]] = []
        ranked = search.ranked()
        n = dataset.n_rows
        # rows each CV fit saw (the fit times in the leaderboard were measured on them)
        train_rows = max(self.search_rows_ * (search.n_folds - 1) // max(search.n_folds, 1), 1)
        # The ensemble (ensemble_size > 1): selected from the kept out-of-fold predictions,
        # its members refitted in the best trial's window; when that falls back, the best
        # trial's pipeline is reused if the ensemble refit fitted it already.
        size = self.ensemble_size
        ensemble_info: dict[str, Any] | None = None
        prefitted: dict[int, tuple[Any, float]] = {}
        self._holdout_info: dict[str, Any] | None = None
        if self._holdout_idx is not None and ranked:
            hold = self._holdout_idx
            fit_rows = np.setdiff1d(np.arange(n), hold)
            outcome = select_on_holdout(
                holdout_candidates(ranked, space, dataset.task,
                                   max_candidates=DEFAULT_HOLDOUT_CANDIDATES,
                                   default_families=HOLDOUT_DEFAULT_FAMILIES,
                                   fit_rows=len(fit_rows),
                                   large_settings=HOLDOUT_LARGE_SETTINGS
                                   if n >= HOLDOUT_LARGE_ROWS else None),
                workers, y=worker.ctx.y, fit_rows=fit_rows, eval_rows=hold,
                metric=search.metric, task=dataset.task,
                n_classes=len(dataset.classes or []), size=int(size), train_rows=train_rows,
                window_end=None if deadline is None else deadline + REFIT_GRACE_SHARE * grace,
                refit_end=None if deadline is None else deadline - self._reserve,
                offered=space.family_names(dataset.task, n),
                search_rows=self._search_idx, seed=self.seed)
            self._holdout_info = outcome.info
            if outcome.interrupted:
                search.interrupted = True
            if outcome.model is not None:
                model = TabularModel(outcome.model, dataset.schema, dataset.task,
                                     dataset.target, dataset.classes, outcome.config)
                record = next((r for r in ranked if r.number == outcome.trial), None)
                return model, {"config": outcome.config, "reason": outcome.reason,
                               "fit_seconds": round(outcome.fit_seconds, 3),
                               "trial": outcome.trial,
                               "cv_score": None if record is None else record.score,
                               "skipped": [], "holdout": outcome.info}
        if size > 1 and self._holdout_info is None:
            outcome = ensemble_for_search(
                search, worker, size=int(size), task=dataset.task,
                n_classes=len(dataset.classes or []), train_rows=train_rows, fit_rows=n,
                window_end=None if deadline is None else deadline + REFIT_GRACE_SHARE * grace,
                write_allowance=ensemble_write_allowance(grace), extra_workers=workers[1:])
            ensemble_info, prefitted = outcome.info, outcome.fitted
            if outcome.interrupted:  # the run is saved as interrupted, with what was fitted
                search.interrupted = True
            if outcome.ensemble is not None:
                members = ensemble_info["members"]
                by_number = {r.number: r for r in ranked}
                config = {"family": "ensemble",
                          "members": [{"trial": m["trial"], "weight": m["weight"],
                                       "config": by_number[m["trial"]].config}
                                      for m in members]}
                model = TabularModel(outcome.ensemble, dataset.schema, dataset.task,
                                     dataset.target, dataset.classes, config)
                dropped = [f"trial #{d['trial']} ({d['family']}): {d['why']}"
                           for d in ensemble_info["dropped"]]
                return model, {"config": config,
                               "reason": describe([m["family"] for m in members]),
                               "fit_seconds": ensemble_info["refit_seconds"],
                               "trial": ranked[0].number, "cv_score": ranked[0].score,
                               "skipped": dropped, "ensemble": ensemble_info}
        # with no complete trial, the trials stopped for time have scores on some folds
        pool = ranked or search.partial()
        for i, r in enumerate(pool[:1] + sorted(pool[1:5], key=lambda r: r.fit_seconds)):
            if ranked:
                why = "best trial" if i == 0 else "fallback: faster top-5 trial"
            else:
                why = (f"{'best' if i == 0 else 'fallback: faster'} partially evaluated trial "
                       f"({len(r.fold_scores)} of {search.n_folds} folds; no trial completed)")
            candidates.append((r.config, why, r, None))
        if ranked and self.search_rows_ < n:  # the best on the rows it was chosen on: seconds
            candidates.append((ranked[0].config, f"fallback: best trial on the "
                               f"{self.search_rows_} search rows (no time left for all "
                               f"{n})", ranked[0], self._search_idx))
        offered = space.family_names(dataset.task, n)
        for family in FALLBACK_DEFAULT_FAMILIES:
            if family in offered:
                candidates.append((space.default_config(family, dataset.task),
                                   f"fallback: {family} defaults" + (
                                       "" if ranked else " (no trial completed)"), None, None))
        errors = []
        tried: list[tuple[dict, bool]] = []  # a configuration is fitted on all rows once
        for i, (config, why, record, rows) in enumerate(candidates):
            if (config, rows is None) in tried:
                continue
            if rows is None and record is not None and record.number in prefitted:
                pipeline, seconds = prefitted[record.number]  # fitted by the ensemble refit
                out = {"pipeline": pipeline, "fit_seconds": seconds}
                return self._refit_model(out, config, why, record, errors, dataset,
                                         ensemble_info)
            if deadline is None:
                timeout = None
            else:
                # the best gets part of the grace period, later candidates what is left; the
                # rest is for the last resort, diagnostics, writing and the report
                timeout = (deadline + (REFIT_GRACE_SHARE if i == 0 else 0.45) * grace
                           - time.monotonic())
                if timeout <= 0.2:
                    errors.append(f"{config['family']}: no time left")
                    continue
                # skip a fallback (or a partially evaluated best) that cannot make it
                if (i > 0 or not ranked) and record is not None:
                    fit_rows = n if rows is None else len(rows)
                    est = final_fit_seconds(record.family, record.fit_seconds, train_rows,
                                            fit_rows, dataset.task != "regression")
                    if est > timeout:
                        errors.append(f"{config['family']}: needs ~{est:.0f} s, "
                                      f"{timeout:.0f} s left")
                        continue
            tried.append((config, rows is None))
            try:
                out = worker.run(("fit", config) if rows is None else
                                 ("fit", config, rows), timeout)
            except (EvaluationTimeout, EvaluationFailed) as exc:
                errors.append(f"{config['family']}: {exc}")
                continue
            return self._refit_model(out, config, why, record, errors, dataset, ensemble_info)
        config = space.default_config("linear", dataset.task)
        rows = None
        why = "fallback: linear defaults" + (" (no trial succeeded)" if not ranked else "")
        if n > LAST_RESORT_ROWS:
            rows = search_rows(worker.ctx.y, dataset.task, LAST_RESORT_ROWS, self.seed)
            why += f" on {LAST_RESORT_ROWS} of {n} rows (no time left for more)"
        try:
            out = worker.run(("fit", config, rows), None)
        except (EvaluationTimeout, EvaluationFailed) as exc:
            errors.append(f"linear: {exc}")
            if self.memory_limit:
                raise AutoMLError("no configuration could be fitted within --memory-limit "
                                  f"{self.memory_limit:g} GiB: " + "; ".join(errors)) from None
            try:
                out = fit_full(worker.ctx, config, rows)
            except Exception as exc2:
                errors.append(f"linear (in this process): {type(exc2).__name__}: {exc2}")
                raise AutoMLError("no configuration could be fitted: " + "; ".join(errors)
                                  ) from exc2
        model = TabularModel(out["pipeline"], dataset.schema, dataset.task, dataset.target,
                             dataset.classes, config)
        info = {"config": config, "reason": why, "fit_seconds": out["fit_seconds"],
                "trial": None, "cv_score": None, "skipped": errors}
        if ensemble_info is not None:
            info["ensemble"] = ensemble_info
        return model, info

    # ------------------------------------------------------------------ outputs
    def summary(self) -> dict[str, Any]:
        """A JSON-able summary of the fit (what ``fit --json`` prints)."""
        ds, search = self.dataset_, self.search_
        best = search.best
        states = pd.Series([r.state for r in search.records]).value_counts().to_dict()
        origins = pd.Series([r.origin for r in search.records]).value_counts().to_dict()
        return {
            "task": ds.task, "target": ds.target, "metric": self.metric_.name,
            "greater_is_better": self.metric_.greater_is_better,
            "rows": ds.n_rows_read, "rows_used": ds.n_rows,
            "rows_dropped_missing_target": ds.n_dropped_missing_target,
            "search_rows": self.search_rows_, "n_folds": search.n_folds,
            "columns": {k: len(ds.schema.of_kind(k)) for k in
                        ("numeric", "categorical", "boolean", "datetime")},
            "dropped_columns": ds.schema.dropped, "notes": ds.notes,
            "classes": [str(c) for c in ds.classes] if ds.classes else None,
            "trials": {"total": len(search.records), "by_state": states, "by_origin": origins},
            "stop_reason": search.stop_reason, "interrupted": self.interrupted_,
            "best": None if best is None else {
                "trial": best.number, "family": best.family, "cv_score": best.score,
                "cv_std": float(np.std(best.fold_scores)), "config": best.config,
                "origin": best.origin},
            "final_model": {k: v for k, v in self.refit_.items() if k != "skipped"}
            | {"skipped": self.refit_["skipped"]},
            "time_budget": self.time_budget_, "elapsed_seconds": round(self.fit_seconds_, 2),
            "warm_start": {"requested": self.warm_start,
                           "strategy": self.warm_start_strategy_,
                           "metabase": getattr(self, "metabase_path_", None),
                           "neighbors": [n.to_dict() for n in self.neighbors_],
                           "log": self.warm_start_log_},
            "warnings": self.warnings_,
            "n_jobs": self.n_jobs_,
            "timeline": [{"event": e, "seconds": t} for e, t in self.timeline_],
        }

    def manifest(self, data_file: str | None = None) -> dict[str, Any]:
        """The run directory's manifest (without the model checksum, added when saving)."""
        ds = self.dataset_
        return {
            "format": 1, "status": "interrupted" if self.interrupted_ else "complete",
            "created": pd.Timestamp.now("UTC").isoformat(),
            "target": ds.target, "task": ds.task, "metric": self.metric_.name,
            "greater_is_better": self.metric_.greater_is_better,
            "classes": [c if isinstance(c, (int, str)) else str(c) for c in ds.classes]
            if ds.classes else None,
            "feature_schema": ds.schema.to_dict(), "seed": self.seed,
            "time_budget": self.time_budget_, "n_trials": self.n_trials,
            "search_space_version": load_space(self.space).version,
            "data": {"file": data_file or ds.name, "sha256": ds.sha256, "rows": ds.n_rows},
            "final_config": self.model_.config,
        }

    def save(self, path: str | Path, *, overwrite: bool = False,
             data_file: str | None = None, model_format: str = DEFAULT_MODEL_FORMAT,
             staging: Any = None, report: bool = True) -> Path:
        """Write the run directory (model, manifest, leaderboard, report).

        ``model_format="skops"`` (the default) stores the model with skops.io, whose loader
        builds only an allow-list of types; ``"joblib"`` stores a pickle, which
        :func:`~automl_meta.artifacts.rundir.load_run` loads only when pickles are allowed.
        ``overwrite`` replaces only an empty directory or a previous run directory.
        ``report`` renders ``report.html`` too; when that fails, a warning goes to stderr,
        ``report_error`` into ``report.json`` and ``manifest.json``, and the run directory is
        saved all the same.
        Non-finite numbers are written as JSON ``null``.
        """
        from automl_meta.artifacts.report import finalize_report, json_safe

        self._mark("saving")
        summary = self.summary()
        summary["leaderboard_top"] = [r.to_row() for r in self.search_.ranked()[:10]]
        summary["target_distribution"] = target_distribution(self.dataset_)
        summary["diagnostics"] = self.diagnostics_
        return write_run_dir(path, self.model_, json_safe(self.manifest(data_file)),
                             self.leaderboard_, json_safe(summary), overwrite=overwrite,
                             model_format=model_format, staging=staging,
                             finalize=finalize_report if report else None)


def _fingerprint(dataset: Dataset) -> str:
    """The schema fingerprint the history matches earlier fits of the same table by."""
    from automl_meta.meta.history import schema_fingerprint

    columns = {c.source or c.name: c.kind for c in dataset.schema.columns}
    columns.update({name: "dropped" for name in dataset.schema.dropped})
    return schema_fingerprint(columns, dataset.target, dataset.task)


def _as_frame(X: Any) -> pd.DataFrame:
    if isinstance(X, pd.DataFrame):
        return X
    import scipy.sparse

    if scipy.sparse.issparse(X):
        raise TypeError("Sparse data is not supported: pass a dense array or a DataFrame")
    arr = np.asarray(X)
    if np.iscomplexobj(arr):
        raise ValueError("Complex data not supported")
    if arr.ndim != 2:
        raise ValueError(f"Expected 2D array, got {arr.ndim}D array instead. Reshape your data "
                         "either using array.reshape(-1, 1) if your data has a single feature "
                         "or array.reshape(1, -1) if it contains a single sample.")
    return pd.DataFrame(arr, columns=[f"x{i}" for i in range(arr.shape[1])])


def _is_real(value: Any) -> bool:
    """A real number (Python or numpy), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _preload_save_modules(report: bool) -> None:
    try:
        import skops.io  # noqa: F401  (the default model format)
    except Exception:  # saving says what is missing when it writes
        pass
    if not report:
        return
    try:
        import matplotlib.backends.backend_svg  # noqa: F401
        import matplotlib.figure  # noqa: F401
    except Exception:  # the report says what is missing when it renders
        pass


def _default_reporter(verbose: int) -> Reporter:
    if verbose:
        from automl_meta.progress import RichReporter

        return RichReporter()
    return Reporter()
