"""The time policy of a fit, in one place.

The promise: a fit with ``time_budget`` seconds ends within ``time_budget +
grace_seconds(time_budget)``, counted from the start of the process for the command line
(interpreter start, reading and writing included) and from the call for the Python API.
The fit aims to end *at* the budget; the grace absorbs estimates that turn out short.

A fit spends its budget in this order (``AutoML.timeline_`` records each step):

1. reading the data (bounded by :class:`automl_meta.data.Deadline`);
2. meta-features and the warm start, while the trial workers start (the workers' fork
   server starts before the data is read; configurations from the user's history run
   while the rest of the warm start is computed);
3. the search, until the *search deadline*: the budget minus what comes after it;
4. the refit of the final model on all rows (:func:`refit_seconds` estimates it); when the
   search saw a subsample of a large table, the final candidates are first compared on
   rows the search did not see (:func:`holdout_rows`), fitted on the rest;
5. diagnostics (:func:`diagnostics_allowance`), writing the run directory and the report
   (:func:`save_reserve`).

The cost model behind the estimates is one line: a fold of a configuration costs its
measured fit seconds per training row, and a fit on ``n`` rows costs that rate times
``n ** REFIT_EXPONENT`` (slightly worse than linear: trees grow deeper), or to the power of
the family's own exponent where it differs (``automl_meta.search.families.fit_exponent``).
Before any trial has run, a typical configuration is assumed to cost
``SECONDS_PER_TRAINING_ROW`` per training row per fold.

This module imports nothing from the rest of the package: every layer may use it.
"""

from __future__ import annotations

import math
import os
import pickle
from pathlib import Path

#: the time budget when neither a budget nor a trial count is given
DEFAULT_TIME_BUDGET = 60.0
#: how far past the budget a fit may end: max(GRACE_MIN_SECONDS, GRACE_SHARE * budget)
GRACE_MIN_SECONDS = 5.0
GRACE_SHARE = 0.1
#: writing the run directory (the model file, manifest, leaderboard, report.json)
WRITE_RESERVE_SECONDS = 0.8
#: writing a fitted model as a skops file: the skops writer stores every array (several per
#: tree of a forest, per boosting iteration and class) as its own entry, so the time goes
#: mostly by their number and a little by their bytes (deflate level 1); both constants err
#: long. The ensemble's refit counts it for each member, beyond what
#: :func:`ensemble_write_allowance` covers
MODEL_WRITE_SECONDS_PER_ARRAY = 0.0006
MODEL_WRITE_SECONDS_PER_MB = 0.012
#: the refit (single model or ensemble) may run this share of the grace past the budget...
REFIT_GRACE_SHARE = 0.3
#: ...and writing the ensemble's model file this share of the grace after that; the rest of
#: the grace is for the report, the process's exit and estimates that err short
WRITE_GRACE_SHARE = 0.4
#: rendering report.html (its plotting stack is imported while the search runs)
REPORT_RESERVE_SECONDS = 0.6
#: a single trial (all its folds) may take this share of the budget, and at least the minimum
TRIAL_TIMEOUT_SHARE = 0.4
TRIAL_TIMEOUT_MIN_SECONDS = 10.0
#: diagnostics of the final model: this share of the budget, and at least the minimum
DIAGNOSTICS_SHARE = 0.05
DIAGNOSTICS_MIN_SECONDS = 5.0
#: the diagnostics may run into this share of the grace (less the save reserve)
DIAGNOSTICS_GRACE_SHARE = 0.3
#: below this many seconds left for the search, the "learned" warm start gives way to the
#: cheaper "local" one when its performance model would have to be fitted first (the
#: metabase stores none that can be used)
LEARNED_MIN_SECONDS = 8.0
#: fixed seconds of the refit besides the fit (sending the task, receiving the model)
REFIT_OVERHEAD_SECONDS = 0.2
#: a configuration from an earlier fit of the same table goes first only if its trial took
#: there (scaled to this fit's rows and folds) at most this share of the time left
HISTORY_MAX_TRIAL_SHARE = 0.4
#: a warm-start configuration estimated to need more than this share of the search's time
#: (each worker's) is made cheaper through its family's cost parameter (trees, boosting
#: rounds) where it has one: a short budget then evaluates the warm start and still searches
WARM_TRIAL_SHARE = 0.125
#: a refit on n rows costs the per-row rate of a fold times n to this power
REFIT_EXPONENT = 1.2
#: seconds one CV fold of a typical configuration takes per training row (before any trial
#: of this search has been measured)
SECONDS_PER_TRAINING_ROW = 1.3e-4
#: a time budget should leave room for at least this many typical trials per worker...
BUDGET_TRIALS = 8
#: ...in this share of the budget (the rest: start-up, meta-features, refit, writing)
SEARCH_SHARE = 0.7
#: never search on fewer rows than this because of the budget
MIN_BUDGET_SEARCH_ROWS = 1_000
#: above this many rows a trial runs 3 CV folds instead of 5
FIVE_FOLD_MAX_ROWS = 10_000
#: fixed seconds of one CV fold besides the fit (sending the task, predicting, scoring)
FOLD_OVERHEAD_SECONDS = 0.15
#: a search on a subsample leaves this many rows at least outside it before the final
#: candidates are compared on held-out rows (fewer: the best CV trial is refitted as is)...
HOLDOUT_MIN_ROWS = 2_000
#: ...and holds out at most this share of the rows and this many
HOLDOUT_SHARE = 0.2
HOLDOUT_MAX_ROWS = 5_000
#: the search keeps this many times the best trial's refit estimate for what follows it
#: when the final candidates are compared on held-out rows (their fits run side by side on
#: the workers, then the winner is refitted on all rows if there is time)
HOLDOUT_REFIT_FACTOR = 1.5
#: a trial is stopped after a fold when its remaining folds, even this many times faster than
#: the folds done, would end past its time-out or the search's end (where it would be
#: stopped anyway, with nothing to show for the worker's time)
FOLD_PACE_MARGIN = 1.25
#: the search's best trial is fitted among the held-out candidates (on the search's rows if
#: no more fit in the time left) unless its estimate there exceeds this many times the time
#: left (estimates err long; beyond that it cannot end)
HOLDOUT_FIRST_MARGIN = 2.0
#: the refit on all rows of a member chosen on held-out rows is estimated from its fit without
#: them (measured on nearly as many rows, side by side as the refits run) with this safety
#: factor; a refit that does not end in time leaves the member's fit as it is
HOLDOUT_REFIT_SAFETY = 1.1
#: a budget that affords fewer typical 5-fold trials than this (all workers together, in
#: ``SEARCH_SHARE`` of it) runs 3 folds per trial: more configurations, each less exactly
FIVE_FOLD_MIN_TRIALS = 24


def grace_seconds(time_budget: float) -> float:
    """How far past the budget a fit may end: max(5 s, 10 % of the budget)."""
    return max(GRACE_MIN_SECONDS, GRACE_SHARE * time_budget)


def save_reserve(report: bool) -> float:
    """Seconds of the budget kept for writing the run directory (and rendering the report)."""
    return WRITE_RESERVE_SECONDS + (REPORT_RESERVE_SECONDS if report else 0.0)


def ensemble_write_allowance(grace: float | None) -> float:
    """Seconds of writing an ensemble's model file may take after its refit window ends
    before they count against that window: ``WRITE_GRACE_SHARE`` of the grace (the window
    ends ``REFIT_GRACE_SHARE`` of it past the budget), at least ``WRITE_RESERVE_SECONDS``."""
    if grace is None:
        return WRITE_RESERVE_SECONDS
    return max(WRITE_RESERVE_SECONDS, WRITE_GRACE_SHARE * grace)


def model_write_seconds(model: object) -> float:
    """Estimated seconds to write the fitted ``model`` to the run directory, by the number
    and bytes of its arrays (:data:`MODEL_WRITE_SECONDS_PER_ARRAY`,
    :data:`MODEL_WRITE_SECONDS_PER_MB`): a pickle pass that hands the arrays over out of
    band, without copying them, counts them. 0 for a model that cannot be pickled."""
    arrays: list[pickle.PickleBuffer] = []
    try:
        pickle.dumps(model, protocol=5, buffer_callback=arrays.append)
    except Exception:
        return 0.0
    nbytes = sum(a.raw().nbytes for a in arrays)
    return MODEL_WRITE_SECONDS_PER_ARRAY * len(arrays) + MODEL_WRITE_SECONDS_PER_MB * nbytes / 1e6


def trial_timeout(time_budget: float | None) -> float | None:
    """Seconds one trial may take before it is stopped and failed (None: no budget)."""
    if time_budget is None:
        return None
    return max(TRIAL_TIMEOUT_MIN_SECONDS, TRIAL_TIMEOUT_SHARE * time_budget)


def diagnostics_allowance(time_budget: float | None) -> float:
    """Seconds the diagnostics of the final model may take."""
    if time_budget is None:
        return 30.0
    return max(DIAGNOSTICS_MIN_SECONDS, DIAGNOSTICS_SHARE * time_budget)


def diagnostics_end(deadline: float, grace: float, reserve: float) -> float:
    """When the diagnostics must be over: the budget's end plus ``DIAGNOSTICS_GRACE_SHARE``
    of the grace, minus what the caller keeps for writing (``reserve``), so that writing an
    ensemble's model file and the report still ends well inside the grace."""
    return deadline + DIAGNOSTICS_GRACE_SHARE * grace - reserve


def n_folds_for(n_rows: int, time_budget: float | None = None, n_jobs: int = 1) -> int:
    """Number of CV folds of a trial on ``n_rows`` search rows.

    3 above ``FIVE_FOLD_MAX_ROWS`` rows, and when the time budget affords fewer than
    ``FIVE_FOLD_MIN_TRIALS`` typical 5-fold trials (:func:`fold_seconds` each fold) on
    ``n_jobs`` workers in ``SEARCH_SHARE`` of it; 5 otherwise.
    """
    if n_rows > FIVE_FOLD_MAX_ROWS:
        return 3
    if time_budget is not None:
        trial = 5 * fold_seconds(n_rows * 4 // 5)
        if SEARCH_SHARE * time_budget * max(1, n_jobs) / trial < FIVE_FOLD_MIN_TRIALS:
            return 3
    return 5


def warm_trial_seconds(search_seconds: float) -> float:
    """Seconds one warm-start trial may be estimated to take before its configuration is
    made cheaper (:data:`WARM_TRIAL_SHARE` of the time the search has)."""
    return WARM_TRIAL_SHARE * search_seconds


def fold_seconds(train_rows: int) -> float:
    """Seconds one CV fold of a typical configuration takes on ``train_rows`` rows."""
    return FOLD_OVERHEAD_SECONDS + SECONDS_PER_TRAINING_ROW * train_rows


def refit_seconds(fold_fit_seconds: float, train_rows: int, fit_rows: int,
                  safety: float = 1.5, exponent: float = REFIT_EXPONENT) -> float:
    """Estimated seconds to fit a configuration on ``fit_rows`` rows.

    Parameters
    ----------
    fold_fit_seconds : float
        Its measured fit time on one CV fold.
    train_rows : int
        Training rows of that fold.
    fit_rows : int
        Rows of the fit to estimate.
    safety : float
        Factor for what the estimate leaves out (a busier machine, a deeper tree).
    exponent : float
        How the fit time grows with the rows (the family's: ``REFIT_EXPONENT`` for most,
        more for a kernel SVM; :func:`automl_meta.search.families.fit_exponent`).
    """
    ratio = fit_rows / max(train_rows, 1)
    return fold_fit_seconds * ratio ** exponent * safety


def budget_search_rows(n_rows: int, time_budget: float | None, n_jobs: int = 1) -> int:
    """How many rows a search with this time budget can afford.

    The largest number for which ``BUDGET_TRIALS`` typical trials per worker fit in
    ``SEARCH_SHARE`` of the budget (a typical trial: ``n_folds_for`` folds at
    ``SECONDS_PER_TRAINING_ROW``); ``n_rows`` when there is no budget or it affords every
    row; never below ``MIN_BUDGET_SEARCH_ROWS``.
    """
    if time_budget is None or n_rows <= MIN_BUDGET_SEARCH_ROWS:
        return n_rows
    per_trial = SEARCH_SHARE * time_budget * max(1, n_jobs) / BUDGET_TRIALS
    # a trial of k folds fits k - 1 folds' worth of rows k times: (k - 1) * rows row-fits
    rows = int(per_trial / (SECONDS_PER_TRAINING_ROW * (n_folds_for(FIVE_FOLD_MAX_ROWS) - 1)))
    if rows > FIVE_FOLD_MAX_ROWS:
        rows = max(FIVE_FOLD_MAX_ROWS, int(per_trial / (
            SECONDS_PER_TRAINING_ROW * (n_folds_for(FIVE_FOLD_MAX_ROWS + 1) - 1))))
    return max(MIN_BUDGET_SEARCH_ROWS, min(n_rows, rows))


def holdout_rows(n_rows: int, search_rows: int) -> int:
    """Rows held out to compare the final candidates at full scale (0: no comparison).

    A search on ``search_rows`` of ``n_rows`` rows ranks configurations by how they do on
    a subsample; some (gradient boosting, linear models) gain more from the other rows than
    others (forests of deep trees). When at least ``HOLDOUT_MIN_ROWS`` rows are outside the
    search and ``HOLDOUT_SHARE`` of the table is that many, the smaller of that share and
    ``HOLDOUT_MAX_ROWS`` is held out from those rows.
    """
    outside = n_rows - search_rows
    rows = min(int(HOLDOUT_SHARE * n_rows), HOLDOUT_MAX_ROWS, outside)
    return rows if rows >= HOLDOUT_MIN_ROWS else 0


def available_cores() -> int:
    """CPU cores this process may use: its affinity mask, bounded by a cgroup CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    if quota is not None:
        cores = min(cores, max(1, math.floor(quota)))
    return max(1, cores)


def _cgroup_cpu_quota() -> float | None:
    """The cgroup v2 (``cpu.max``) or v1 (``cfs_quota_us / cfs_period_us``) CPU limit."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        return None if quota <= 0 or period <= 0 else quota / period
    except (OSError, ValueError):
        return None


def resolve_n_jobs(n_jobs: int | None) -> int:
    """Trials evaluated in parallel: ``None`` or ``-1`` means every available core."""
    if n_jobs is None or n_jobs == -1:
        return available_cores()
    if n_jobs < 1:
        raise ValueError(f"n_jobs must be a positive number or -1 (got {n_jobs})")
    return int(n_jobs)


def process_age() -> float:
    """Seconds since this process started (0 where the system does not say)."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        start_ticks = int(fields[19])  # field 22 of proc(5), counted after the name
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0
