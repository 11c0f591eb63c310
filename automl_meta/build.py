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
build state instead: the tasks are claimed through :mod:`automl_meta.build_queue` by any
number of worker threads and processes on any number of machines, each task's search runs
in an Optuna study of that database, and :func:`export_build` writes the usual metabase
files from it (through the same :class:`BuildState` as a local build).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from joblib import Parallel, delayed

from . import __version__
from .automl import prepare_search
from .errors import MetabaseError, UsageError
from .metabase import (
    MANIFEST_FILE,
    RESULT_COLUMNS,
    TASK_COLUMNS,
    config_id,
    load_metabase,
    read_manifest,
    write_metabase,
)
from .metrics import DEFAULT_METRIC, METRICS
from .search import TrialRecord, run_search
from .sources import LoadedTask, TaskSpec
from .space import SearchSpace, load_space

DEFAULT_MAX_ROWS = 5000
DEFAULT_TRIAL_TIMEOUT = 120.0


@dataclass
class TaskOutcome:
    """What building one task produced."""

    row: dict[str, Any]
    trials: list[tuple[dict[str, Any], dict[str, Any]]]  # (config, result row)


def task_seed(seed: int, task_id: str) -> int:
    """Per-task seed, stable across runs and resumes."""
    return (seed + int(hashlib.sha1(task_id.encode()).hexdigest()[:8], 16)) % (2**31 - 1)


def _metafeatures(loaded: LoadedTask, seed: int) -> tuple[dict[str, Any], str]:
    from .metafeatures import compute_metafeatures

    ds = loaded.dataset
    try:
        return compute_metafeatures(ds.X, ds.y, ds.task, random_state=seed), ""
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
        Passed to :func:`~automl_meta.search.run_search`; an exception it raises ends the
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
        from .automl import study_attributes

        study_attrs = study_attributes(ds, metric.name, tseed, max_rows, space.version)
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
            manifest["metafeatures"]["computed_on"] = (
                "the prepared features (constant, ID-like and text columns dropped), as fit "
                "computes them")
            manifest["openml_ids"] = {str(r.task_id): int(r.openml_id) for r in
                                      tasks.itertuples() if pd.notna(r.openml_id)}
            manifest.update(derived_statistics(tasks, self.configs,
                                               self.results[RESULT_COLUMNS], manifest))
            return write_metabase(self.output, tasks, self.configs,
                                  self.results[RESULT_COLUMNS], manifest)


def derived_statistics(tasks: pd.DataFrame, configs: dict, results: pd.DataFrame,
                       manifest: dict[str, Any]) -> dict[str, Any]:
    """What the warm start derives from the whole metabase, stored in its manifest:
    the meta-feature normalisation and the greedy portfolio per task kind."""
    from .metabase import Metabase
    from .neighbors import fit_normalisation
    from .warmstart import compute_portfolio

    space = load_space()
    mb = Metabase(tasks, configs, results, manifest)
    out: dict[str, Any] = {"normalisation": fit_normalisation(tasks), "portfolio": {}}
    if len(tasks):
        for kind in ("classification", "regression"):
            out["portfolio"][kind] = compute_portfolio(mb, space, kind)
    return out


def _all_metafeature_names() -> list[str]:
    from .metafeatures import metafeature_names

    names: list[str] = []
    for task in ("binary", "multiclass", "regression"):
        names += [n for n in metafeature_names(task) if n not in names]
    return names


def build_metabase(specs: Sequence[TaskSpec], output: str | Path, *, trials_per_task: int = 50,
                   time_per_task: float | None = None,
                   trial_timeout: float | None = DEFAULT_TRIAL_TIMEOUT,
                   max_rows: int = DEFAULT_MAX_ROWS, n_jobs: int = 1, seed: int = 0,
                   resume: bool = False, overwrite: bool = False,
                   source: dict[str, Any] | None = None, command: str = "",
                   space: SearchSpace | None = None,
                   on_task: Callable[[TaskOutcome, int, int], None] | None = None
                   ) -> dict[str, Any]:
    """Build (or resume building) a metabase in ``output``.

    Parameters
    ----------
    specs : sequence of TaskSpec
        The prior tasks (see :mod:`automl_meta.sources`).
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
    mf_names = _all_metafeature_names()
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
    mf_names = _all_metafeature_names()
    tasks = tasks.drop(columns=[c for c in tasks.columns if c not in TASK_COLUMNS])
    rows = []
    for i, row in enumerate(tasks.to_dict("records")):
        spec = by_id.get(str(row["task_id"]))
        if spec is not None and row["status"] == "ok":
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



# ----------------------------------------------------------------------- distributed builds
class ClaimLost(Exception):
    """This worker's claim on a task was taken over: it had been presumed dead."""


@dataclass
class TaskEvent:
    """What a worker of a distributed build reports after building a claimed task."""

    outcome: TaskOutcome
    worker: str
    attempt: int
    #: False when the task had been claimed again meanwhile: this result was discarded
    accepted: bool
    #: the build's tasks by state, after this one
    counts: dict[str, int]


@dataclass
class DistributedResult:
    """What :func:`build_metabase_distributed` did."""

    build: str
    counts: dict[str, int]
    built: int = 0  # tasks built by this process and stored
    discarded: int = 0  # built by this process, but claimed again meanwhile
    manifest: dict[str, Any] | None = None  # the exported manifest (not for workers)
    retried: list[str] = field(default_factory=list)  # failed tasks put back to pending


def default_build_name(specs: Sequence[TaskSpec]) -> str:
    """A build's default name, derived from its task ids: the leader and the workers on
    other machines agree on it without being told, as long as their sources list the same
    tasks (the folder may be elsewhere on each machine)."""
    digest = hashlib.sha1("\n".join(sorted(s.task_id for s in specs)).encode()).hexdigest()
    return f"build-{digest[:12]}"


def study_name_for(build: str, task_id: str) -> str:
    """The Optuna study of one task of a distributed build."""
    return f"{build}/{task_id}"


def fail_orphaned_trials(storage: Any, study_name: str, reason: str) -> int:
    """Mark FAIL the RUNNING trials of ``study_name``.

    Called by the worker that has just claimed the task: nobody else may be running trials
    in its study, so those belong to a worker that died or was stopped (Optuna's own
    heartbeat would fail them too, but only after its grace period and only when a later
    trial starts). Returns how many trials were failed.
    """
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    try:
        study_id = storage.get_study_id_from_name(study_name)
    except KeyError:
        return 0
    n = 0
    for trial in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        try:
            storage.set_trial_user_attr(trial_id, "error", reason)
            storage.set_trial_state_values(trial_id, TrialState.FAIL)
            n += 1
        except UpdateFinishedTrialError:  # it finished after all
            pass
    return n


def _dispose(storage: Any) -> None:
    engine = getattr(storage, "engine", None)
    if engine is not None:
        engine.dispose()


def _open_optuna_storage(url: str) -> Any:
    """Optuna's storage for ``url``; retried, because processes that start together on an
    empty database race to create Optuna's tables (the losers fail once)."""
    from .search import make_storage

    for attempt in range(4):
        try:
            return make_storage(url)
        except UsageError:
            if attempt == 3:
                raise
            time.sleep(0.5 + attempt)


def _delete_studies(url: str, names: Sequence[str]) -> None:
    import optuna

    if not names:
        return
    storage = _open_optuna_storage(url)
    try:
        for name in names:
            try:
                optuna.delete_study(study_name=name, storage=storage)
            except KeyError:
                pass
    finally:
        _dispose(storage)


def check_export_target(output: Path, build: str, overwrite: bool) -> None:
    """Refuse to replace a metabase in ``output`` that is not an export of ``build``."""
    if overwrite or not (output / MANIFEST_FILE).exists():
        return
    try:
        previous = read_manifest(output).get("distributed", {}).get("build")
    except MetabaseError:
        previous = None
    if previous != build:
        raise UsageError(f"{output} already holds a metabase that is not an export of build "
                         f"{build!r}; pass --overwrite to replace it, or another --output")


def _build_claimed(queue: Any, claim: Any, spec: TaskSpec, space: SearchSpace,
                   settings: Mapping[str, Any]) -> tuple[TaskOutcome, bool]:
    from .build_queue import ClaimHeartbeat

    study = study_name_for(queue.name, claim.task_id)
    storage = _open_optuna_storage(queue.url)
    try:
        fail_orphaned_trials(storage, study, f"worker {claim.previous_worker or '?'} stopped "
                             f"or was presumed dead; task claimed again by {claim.worker}")
        with ClaimHeartbeat(queue, claim) as beat:
            def on_trial(record: TrialRecord, result: Any) -> None:
                if beat.lost.is_set():
                    raise ClaimLost(f"task {claim.task_id} was claimed by another worker")

            outcome = build_task(spec, space, storage=storage, study_name=study,
                                 on_trial=on_trial, **settings)
    finally:
        _dispose(storage)
    ok = outcome.row["status"] == "ok"
    accepted = queue.complete(claim, outcome_to_doc(outcome), ok=ok,
                              error="" if ok else str(outcome.row.get("error", "")))
    return outcome, accepted


def _run_workers(queue: Any, specs: Sequence[TaskSpec], space: SearchSpace,
                 settings: Mapping[str, Any], n_workers: int, result: DistributedResult,
                 on_task: Callable[[TaskEvent], None] | None) -> None:
    """Worker threads claim and build tasks until every task they can build is finished
    (waiting, while others run tasks, in case one of those is abandoned)."""
    from .search import WORKER_ID

    by_id = {s.task_id: s for s in specs}
    among = list(by_id)
    poll = min(5.0, queue.grace / 2)
    stop = threading.Event()
    lock = threading.Lock()
    errors: list[BaseException] = []
    ids = [f"{WORKER_ID}/{k}" for k in range(n_workers)]

    def work(worker: str) -> None:
        try:
            while not stop.is_set():
                claim = queue.claim(worker, among)
                if claim is None:
                    left = queue.counts(among)
                    if left["pending"] + left["running"] == 0:
                        return
                    stop.wait(poll)
                    continue
                outcome, accepted = _build_claimed(queue, claim, by_id[claim.task_id], space,
                                                   settings)
                with lock:
                    if accepted:
                        result.built += 1
                    else:
                        result.discarded += 1
                    if on_task is not None:
                        on_task(TaskEvent(outcome, worker, claim.attempt, accepted,
                                          queue.counts()))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
            stop.set()

    threads = [threading.Thread(target=work, args=(w,), daemon=True, name=w) for w in ids]
    for t in threads:
        t.start()
    try:
        for t in threads:
            while t.is_alive():
                t.join(0.5)
    except BaseException:  # Ctrl-C / SIGTERM: hand the tasks back at once
        stop.set()
        queue.release(ids)
        raise
    if errors:
        queue.release(ids)
        raise errors[0]


def _export(queue: Any, output: Path) -> dict[str, Any]:
    from .search import redact

    base, _created = queue.base()
    counts = queue.counts()
    tasks = queue.tasks()
    finished = [t for t in tasks if t["state"] in ("done", "failed")]
    base = dict(base)
    base["distributed"] = {
        "build": queue.name, "storage": redact(queue.url), "tasks_by_state": counts,
        "worker_ids": len({t["worker"] for t in finished}),
        "tasks_claimed_more_than_once": [t["task_id"] for t in finished if t["attempts"] > 1]}
    state = BuildState(output, base)
    for row in queue.outcomes():
        if row["outcome"] is not None:
            state.add(outcome_from_doc(row["outcome"]))
    unfinished = counts["pending"] + counts["running"]
    return state.write("partial" if unfinished else "complete", _all_metafeature_names())


def export_build(storage: str, output: str | Path, *, build_name: str | None = None,
                 overwrite: bool = False) -> dict[str, Any]:
    """Write a distributed build's metabase files (the format of a local build).

    Parameters
    ----------
    storage : str
        Database URL of the build.
    output : str or Path
        Metabase folder to write. A metabase there is replaced only if it is an export of
        the same build, or with ``overwrite``.
    build_name : str, optional
        The build; may be omitted when the storage holds only one.

    Returns
    -------
    dict
        The manifest written: ``status`` is ``complete`` when every task is done or failed,
        else ``partial`` (a snapshot of the tasks finished so far).
    """
    from .build_queue import BuildQueue

    builds = BuildQueue.list_builds(storage)
    if build_name is None:
        if not builds:
            raise UsageError("the storage holds no metabase build")
        if len(builds) > 1:
            raise UsageError(f"the storage holds {len(builds)} builds ({', '.join(builds)}); "
                             "choose one with --build")
        build_name = next(iter(builds))
    elif build_name not in builds:
        raise UsageError(f"the storage holds no build named {build_name!r}"
                         + (f" (it holds {', '.join(builds)})" if builds else ""))
    output = Path(output)
    check_export_target(output, build_name, overwrite)
    queue = BuildQueue(storage, build_name)
    try:
        return _export(queue, output)
    finally:
        queue.close()


def build_metabase_distributed(
        specs: Sequence[TaskSpec], storage: str, *, output: str | Path | None = None,
        build_name: str | None = None, n_workers: int = 1, worker_only: bool = False,
        heartbeat_grace: float | None = None, overwrite: bool = False,
        trials_per_task: int = 50, time_per_task: float | None = None,
        trial_timeout: float | None = DEFAULT_TRIAL_TIMEOUT, max_rows: int = DEFAULT_MAX_ROWS,
        seed: int = 0, source: dict[str, Any] | None = None, command: str = "",
        space: SearchSpace | None = None,
        on_start: Callable[[str, dict[str, int]], None] | None = None,
        on_task: Callable[[TaskEvent], None] | None = None) -> DistributedResult:
    """Build a metabase with many workers on many machines, through a database.

    The build (its settings and its tasks) is registered in ``storage`` under
    ``build_name``; registering again with the same settings joins it (so re-running the
    command resumes it), with other settings is an error. ``n_workers`` threads of this
    process then claim tasks one at a time and build them, each task's search in the Optuna
    study ``<build>/<task id>`` of the same database. A task whose worker stops sending
    heartbeats for ``heartbeat_grace`` seconds is claimed again by another worker, which
    fails the dead worker's RUNNING trials and continues its study; the late result of a
    worker presumed dead is discarded, so every task is stored once. The threads stop when
    every task they can build is done or failed.

    Parameters
    ----------
    specs : sequence of TaskSpec
        The tasks this process can build (its source); other processes must list the same
        task ids (possibly from files elsewhere).
    storage : str
        ``postgresql://…`` (or ``sqlite:///…`` for processes on one machine).
    output : str or Path, optional
        Where the leader exports the metabase when every task is finished (required unless
        ``worker_only``).
    build_name : str, optional
        Default: :func:`default_build_name` of ``specs``.
    n_workers : int
        Worker threads in this process (each search evaluates in child processes).
    worker_only : bool
        Only build tasks, do not export. Failed tasks are put back to pending (tried again)
        only by the leader (``worker_only=False``), as a local ``--resume`` does.
    heartbeat_grace : float, optional
        Seconds without a heartbeat after which a task is claimed again (default 60).
    overwrite : bool
        Replace a metabase in ``output`` that is not an export of this build.
    trials_per_task, time_per_task, trial_timeout, max_rows, seed, source, command, space :
        As in :func:`build_metabase`; they must be the same for every process of a build.
    on_start : callable, optional
        Called with (build name, tasks by state) once the build is registered.
    on_task : callable, optional
        Called with a :class:`TaskEvent` after each task this process built.
    """
    from .build_queue import DEFAULT_GRACE, BuildQueue

    if n_workers < 1:
        raise UsageError("--n-workers must be at least 1")
    if output is None and not worker_only:
        raise UsageError("--output is needed to export the metabase (or pass --worker to "
                         "only build tasks)")
    if not specs:
        raise UsageError("no task to build")
    space = space or load_space()
    base = manifest_base(trials_per_task=trials_per_task, time_per_task=time_per_task,
                         trial_timeout=trial_timeout, max_rows=max_rows, seed=seed,
                         source=source, command=command, space=space)
    name = build_name or default_build_name(specs)
    if output is not None and not worker_only:
        output = Path(output)
        check_export_target(output, name, overwrite)  # refused now, not after hours
    queue = BuildQueue(storage, name, grace=heartbeat_grace or DEFAULT_GRACE)
    try:
        retried = queue.register(base, [s.task_id for s in specs], leader=not worker_only)
        _dispose(_open_optuna_storage(storage))  # Optuna's tables exist before threads start
        _delete_studies(storage, [study_name_for(name, t) for t in retried])
        stored, _created = queue.base()
        settings = {k: stored["build"][k] for k in ("trials_per_task", "time_per_task",
                                                    "trial_timeout", "max_rows", "seed")}
        result = DistributedResult(name, queue.counts(), retried=retried)
        if on_start is not None:
            on_start(name, result.counts)
        _run_workers(queue, specs, space, settings, n_workers, result, on_task)
        result.counts = queue.counts()
        if not worker_only:
            assert output is not None
            result.manifest = _export(queue, Path(output))
        return result
    finally:
        queue.close()
