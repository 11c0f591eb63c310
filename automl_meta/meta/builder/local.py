"""``build-metabase``: run a search on every prior task and store every trial.

Per task: load → meta-features → its own Optuna search over the shipped space (on at most
``max_rows`` rows, stratified) → every trial stored (configuration, state, CV score, fit
seconds). Tasks run in parallel threads (joblib); each search evaluates in its own worker
process, so the threads only coordinate.

The output folder *is* the build state: after every finished task all files are rewritten
atomically with ``status: partial`` in the manifest. ``resume=True`` skips tasks already
built successfully (failed ones are tried again), so a killed build continues where it
stopped, without duplicate rows; each task's search is seeded from the task id, so a resumed
build equals an uninterrupted one (up to timings).

With a database (``storage``, see :func:`build_metabase_distributed`) the database is the
build state instead: the tasks are claimed through :mod:`automl_meta.meta.builder.queue` by any
number of worker threads and processes on any number of machines, each task's search runs
in an Optuna study of that database, and :func:`export_build` writes the usual metabase
files from it (through the same :class:`BuildState` as a local build).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from joblib import Parallel, delayed

from automl_meta._version import __version__
from automl_meta.defaults import (
    DEFAULT_BUILD_JOBS,
    DEFAULT_SEED,
    DEFAULT_TRIAL_TIMEOUT,
    DEFAULT_TRIALS_PER_TASK,
)
from automl_meta.defaults import DEFAULT_BUILD_MAX_ROWS as DEFAULT_MAX_ROWS
from automl_meta.errors import MetabaseError, UsageError
from automl_meta.meta.builder.sources import LoadedTask, TaskSpec
from automl_meta.meta.features import COMPUTED_ON
from automl_meta.meta.metabase import (
    MANIFEST_FILE,
    RESULT_COLUMNS,
    TASK_COLUMNS,
    as_stored,
    config_id,
    load_metabase,
    write_metabase,
)
from automl_meta.metrics import DEFAULT_METRIC, METRICS
from automl_meta.search.optimize import TrialRecord, run_search
from automl_meta.search.prepare import prepare_search, study_attributes
from automl_meta.search.space import SearchSpace, load_space


@dataclass
class TaskOutcome:
    """What building one task produced."""

    row: dict[str, Any]
    trials: list[tuple[dict[str, Any], dict[str, Any]]]  # (config, result row)


def task_seed(seed: int, task_id: str) -> int:
    """Per-task seed, stable across runs and resumes."""
    return (seed + int(hashlib.sha1(task_id.encode()).hexdigest()[:8], 16)) % (2**31 - 1)


def _metafeatures(loaded: LoadedTask, seed: int) -> tuple[dict[str, Any], str]:
    """The task's meta-features, computed as fit computes them (on the table as read,
    :meth:`~automl_meta.data.Dataset.as_read`), and an error message ("" when none)."""
    from automl_meta.meta.features import compute_metafeatures

    ds = loaded.dataset
    try:
        return compute_metafeatures(*ds.as_read(), ds.task, random_state=seed), ""
    except Exception as exc:  # a meta-feature bug must not waste the search
        return {}, f"meta-features failed: {type(exc).__name__}: {exc}"


def build_task(spec: TaskSpec, space: SearchSpace, *, trials_per_task: int,
               time_per_task: float | None, trial_timeout: float | None, max_rows: int,
               seed: int, storage: Any = None, study_name: str | None = None,
               on_trial: Callable[[TrialRecord, Any], None] | None = None) -> TaskOutcome:
    """Load one task, compute its meta-features and run its search. Never raises.

    Parameters
    ----------
    spec : TaskSpec
        The task.
    space : SearchSpace
        The search space.
    trials_per_task, time_per_task, trial_timeout, max_rows, seed :
        As in :func:`build_metabase`.
    storage : str or optuna storage, optional
        Run the search in this storage (in memory by default) as study ``study_name``; an
        existing study of that name is continued (its finished trials count towards
        ``trials_per_task``) and must have been made for the same data and settings.
    on_trial : callable, optional
        Passed to :func:`~automl_meta.search.optimize.run_search`; an exception it raises ends the
        search (the task is then recorded as failed).
    """
    t0 = time.monotonic()
    row: dict[str, Any] = {"task_id": spec.task_id, "name": spec.name,
                           "openml_id": spec.openml_id, "source": spec.source,
                           "task": spec.task_hint, "status": "failed", "error": ""}
    try:
        loaded = spec.load()
    except Exception as exc:
        row["error"] = f"load: {type(exc).__name__}: {str(exc)[:300]}"
        return TaskOutcome(row, [])
    ds = loaded.dataset
    tseed = task_seed(seed, spec.task_id)
    row.update(task=ds.task, target=ds.target, n_rows=ds.n_rows, n_features=ds.X.shape[1],
               n_classes=len(ds.classes) if ds.classes else None)
    if loaded.extra.get("openml_dataset_id") and not spec.openml_id:
        row["openml_id"] = loaded.extra["openml_dataset_id"]
    mf, mf_error = _metafeatures(loaded, tseed)
    row.update(mf)
    metric = METRICS[DEFAULT_METRIC[ds.task]]
    prepared = prepare_search(ds, metric.name, tseed, max_rows, space, folds=loaded.folds)
    ctx, idx, folds = prepared.ctx, prepared.search_idx, prepared.ctx.folds
    study_attrs = None
    if storage is not None:
        study_attrs = study_attributes(ds, metric.name, tseed, max_rows, space.version,
                                       len(prepared.ctx.folds))
    try:
        result = run_search(ctx, n_trials=trials_per_task,
                            deadline=None if time_per_task is None else t0 + time_per_task,
                            seed=tseed, trial_timeout=trial_timeout, storage=storage,
                            study_name=study_name, study_attrs=study_attrs, on_trial=on_trial)
    except Exception as exc:
        row["error"] = f"search: {type(exc).__name__}: {str(exc)[:300]}"
        return TaskOutcome(row, [])
    trials = []
    for r in result.records:
        cid = config_id(r.config)
        trials.append((r.config, {"task_id": spec.task_id, "config_id": cid,
                                  "trial": r.number, "state": r.state, "score": r.score,
                                  "fit_seconds": round(r.fit_seconds, 4),
                                  "duration": round(r.duration, 3)}))
    best = result.best
    row.update(search_rows=len(idx), n_folds=len(folds), metric=metric.name,
               greater_is_better=metric.greater_is_better, n_trials=len(result.records),
               search_seconds=round(time.monotonic() - t0, 1))
    if best is None:
        errors = [r.error for r in result.records if r.error]
        row["error"] = "all trials failed" + (f": {errors[0][:300]}" if errors else "")
    else:
        row.update(status="ok", best_score=best.score, best_config_id=config_id(best.config),
                   error=mf_error)
    return TaskOutcome(row, trials)


def outcome_to_doc(outcome: TaskOutcome) -> dict[str, Any]:
    """A task outcome as a JSON-able document (how the build queue stores it)."""
    return {"row": outcome.row, "trials": [[config, row] for config, row in outcome.trials]}


def outcome_from_doc(doc: Mapping[str, Any]) -> TaskOutcome:
    """The inverse of :func:`outcome_to_doc`."""
    return TaskOutcome(dict(doc["row"]), [(dict(c), dict(r)) for c, r in doc["trials"]])


def manifest_base(*, trials_per_task: int, time_per_task: float | None,
                  trial_timeout: float | None, max_rows: int, seed: int,
                  source: dict[str, Any] | None, command: str,
                  space: SearchSpace) -> dict[str, Any]:
    """The manifest entries fixed when a build starts: provenance and build settings."""
    if trials_per_task < 1:
        raise UsageError("--trials-per-task must be at least 1")
    return {"built_with": f"automl-meta {__version__}", "command": command,
            "source": source or {}, "search_space_version": space.version,
            "build": {"trials_per_task": trials_per_task, "time_per_task": time_per_task,
                      "trial_timeout": trial_timeout, "max_rows": max_rows, "seed": seed,
                      "metric": DEFAULT_METRIC},
            "created": pd.Timestamp.now("UTC").isoformat()}


class BuildState:
    """The metabase being built: tasks, configs and results, written after every task."""

    def __init__(self, output: Path, manifest_base: dict[str, Any],
                 tasks: pd.DataFrame | None = None, configs: dict | None = None,
                 results: pd.DataFrame | None = None):
        self.output = output
        self.manifest_base = manifest_base
        self.tasks = tasks if tasks is not None else pd.DataFrame(columns=TASK_COLUMNS)
        self.configs: dict[str, dict[str, Any]] = dict(configs or {})
        self.results = results if results is not None else pd.DataFrame(columns=RESULT_COLUMNS)
        self.lock = threading.Lock()

    def done_ids(self) -> set[str]:
        """Tasks that need no more work (failed ones are tried again on resume)."""
        return set(self.tasks.loc[self.tasks["status"] == "ok", "task_id"].astype(str))

    def add(self, outcome: TaskOutcome) -> None:
        with self.lock:
            tid = outcome.row["task_id"]
            self.tasks = self.tasks[self.tasks["task_id"].astype(str) != tid]
            self.results = self.results[self.results["task_id"].astype(str) != tid]
            self.tasks = pd.concat([self.tasks, pd.DataFrame([outcome.row])], ignore_index=True)
            rows = []
            for config, result_row in outcome.trials:
                self.configs[result_row["config_id"]] = config
                rows.append(result_row)
            if rows:
                self.results = pd.concat([self.results, pd.DataFrame(rows)], ignore_index=True)

    def write(self, status: str, metafeature_names: Sequence[str]) -> dict[str, Any]:
        with self.lock:
            cols = TASK_COLUMNS + [c for c in metafeature_names if c not in TASK_COLUMNS]
            extra = [c for c in self.tasks.columns if c not in cols]
            tasks = self.tasks.reindex(columns=cols + extra)
            manifest = dict(self.manifest_base)
            manifest["status"] = status
            manifest["updated"] = pd.Timestamp.now("UTC").isoformat()
            manifest["metafeatures"] = {"names": [c for c in metafeature_names
                                                  if c in tasks.columns]}
            manifest["metafeatures"]["computed_on"] = COMPUTED_ON
            manifest["openml_ids"] = {str(r.task_id): int(r.openml_id) for r in
                                      tasks.itertuples() if pd.notna(r.openml_id)}
            stored = as_stored(tasks, self.configs, self.results[RESULT_COLUMNS])
            manifest.update(derived_statistics(*stored, manifest))
            written = write_metabase(self.output, *stored, manifest)
            if status == "complete":  # the warm start's performance models, fitted once
                from automl_meta.meta.surrogate import store_surrogates

                written["surrogates"] = store_surrogates(self.output)
            return written


def derived_statistics(tasks: pd.DataFrame, configs: dict, results: pd.DataFrame,
                       manifest: dict[str, Any]) -> dict[str, Any]:
    """What the warm start derives from the whole metabase, stored in its manifest:
    the meta-feature normalisation and the greedy portfolio per task kind."""
    from automl_meta.meta.metabase import Metabase
    from automl_meta.meta.neighbors import fit_normalisation
    from automl_meta.meta.warmstart import compute_portfolio

    space = load_space()
    mb = Metabase(tasks, configs, results, manifest)
    out: dict[str, Any] = {"normalisation": fit_normalisation(tasks), "portfolio": {}}
    if len(tasks):
        for kind in ("classification", "regression"):
            out["portfolio"][kind] = compute_portfolio(mb, space, kind)
    return out


def all_metafeature_names() -> list[str]:
    """Every meta-feature name of every task type, in a stable order."""
    from automl_meta.meta.features import metafeature_names

    names: list[str] = []
    for task in ("binary", "multiclass", "regression"):
        names += [n for n in metafeature_names(task) if n not in names]
    return names


def build_metabase(specs: Sequence[TaskSpec], output: str | Path, *,
                   trials_per_task: int = DEFAULT_TRIALS_PER_TASK,
                   time_per_task: float | None = None,
                   trial_timeout: float | None = DEFAULT_TRIAL_TIMEOUT,
                   max_rows: int = DEFAULT_MAX_ROWS, n_jobs: int = DEFAULT_BUILD_JOBS,
                   seed: int = DEFAULT_SEED,
                   resume: bool = False, overwrite: bool = False,
                   source: dict[str, Any] | None = None, command: str = "",
                   space: SearchSpace | None = None,
                   on_task: Callable[[TaskOutcome, int, int], None] | None = None
                   ) -> dict[str, Any]:
    """Build (or resume building) a metabase in ``output``.

    Parameters
    ----------
    specs : sequence of TaskSpec
        The prior tasks (see :mod:`automl_meta.meta.builder.sources`).
    output : str or Path
        Metabase folder; it holds the build state, so a killed build resumes from it.
    trials_per_task : int
        Optuna trials per task (every one is stored).
    time_per_task, trial_timeout : float, optional
        Wall-clock limits per task and per trial (seconds).
    max_rows : int
        Searches use at most this many rows of a task (stratified subsample).
    n_jobs : int
        Tasks built in parallel.
    resume : bool
        Continue a partial build in ``output`` (tasks already there are skipped).
    overwrite : bool
        Start afresh even if ``output`` holds a metabase.
    source, command : provenance recorded in the manifest.
    on_task : callable, optional
        Called after each task with (outcome, tasks done, tasks total).

    Returns
    -------
    dict
        The final manifest.
    """
    output = Path(output)
    space = space or load_space()
    base = manifest_base(trials_per_task=trials_per_task, time_per_task=time_per_task,
                         trial_timeout=trial_timeout, max_rows=max_rows, seed=seed,
                         source=source, command=command, space=space)
    exists = (output / MANIFEST_FILE).exists()
    state: BuildState
    if exists and resume:
        try:
            mb = load_metabase(output, space_version=space.version)
        except MetabaseError as exc:
            raise UsageError(f"cannot resume: {exc}") from None
        if mb.manifest.get("build", {}).get("trials_per_task") != trials_per_task:
            raise UsageError(f"cannot resume: {output} was built with "
                             f"{mb.manifest.get('build', {}).get('trials_per_task')} trials "
                             f"per task, not {trials_per_task}")
        base["created"] = mb.manifest.get("created", base["created"])
        state = BuildState(output, base, mb.tasks, mb.configs, mb.results)
    elif exists and not overwrite:
        raise UsageError(f"{output} already holds a metabase; pass --resume to continue it "
                         "or --overwrite to start again")
    else:
        state = BuildState(output, base)
    mf_names = all_metafeature_names()
    done = state.done_ids()
    todo = [s for s in specs if s.task_id not in done]
    total = len(specs)
    n_done = total - len(todo)
    state.write("partial" if todo else "complete", mf_names)
    if not todo:
        return state.write("complete", mf_names)

    def job(spec: TaskSpec) -> TaskOutcome:
        return build_task(spec, space, trials_per_task=trials_per_task,
                          time_per_task=time_per_task, trial_timeout=trial_timeout,
                          max_rows=max_rows, seed=seed)

    parallel = Parallel(n_jobs=max(1, n_jobs), backend="threading",
                        return_as="generator_unordered")
    for outcome in parallel(delayed(job)(s) for s in todo):
        state.add(outcome)
        n_done += 1
        state.write("partial" if n_done < total else "complete", mf_names)
        if on_task is not None:
            on_task(outcome, n_done, total)
    return state.write("complete", mf_names)


def refresh_metafeatures(specs: Sequence[TaskSpec], output: str | Path, *, seed: int = 0,
                         on_task: Callable[[str, int, int], None] | None = None
                         ) -> dict[str, Any]:
    """Recompute ``tasks.csv``'s meta-features from the source data; results stay as they are."""
    output = Path(output)
    space = load_space()
    mb = load_metabase(output, space_version=space.version)
    by_id = {s.task_id: s for s in specs}
    tasks = mb.tasks.copy()
    mf_names = all_metafeature_names()
    # a refreshed task's previous meta-features go (a name no longer computed must not
    # linger); the tasks of other layers (no spec: e.g. imported OpenML runs, described by
    # OpenML's qualities) keep theirs, and every task keeps its other columns
    stale = (set(mb.manifest.get("metafeatures", {}).get("names", [])) | set(mf_names)) - set(
        TASK_COLUMNS)
    rows = []
    for i, row in enumerate(tasks.to_dict("records")):
        spec = by_id.get(str(row["task_id"]))
        if spec is not None and row["status"] == "ok":
            row = {k: v for k, v in row.items() if k not in stale}
            try:
                loaded = spec.load()
                row["target"] = loaded.dataset.target
                mf, err = _metafeatures(loaded, task_seed(seed, spec.task_id))
            except Exception as exc:
                mf, err = {}, f"load: {type(exc).__name__}: {exc}"
            row.update(mf)
            row["error"] = err
        rows.append(row)
        if on_task is not None:
            on_task(str(row["task_id"]), i + 1, len(tasks))
    state = BuildState(output, {k: v for k, v in mb.manifest.items()
                                if k not in ("files", "counts")},
                       pd.DataFrame(rows), mb.configs, mb.results)
    return state.write(mb.manifest.get("status", "complete"), mf_names)


def summarize_failures(tasks: pd.DataFrame) -> list[str]:
    """One line per failed task."""
    failed = tasks[tasks["status"] != "ok"]
    return [f"{r.task_id}: {r.error}" for r in failed.itertuples()]
