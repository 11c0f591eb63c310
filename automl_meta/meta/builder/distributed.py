"""A metabase built by many workers through a database: the leader registers the build,
workers (threads here, ``--worker`` processes elsewhere) claim tasks from the
:class:`~automl_meta.meta.builder.queue.BuildQueue`, run each task's search in an Optuna
study of the same database, and the finished build is exported in the usual metabase format.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from automl_meta.errors import MetabaseError, UsageError
from automl_meta.meta.builder.local import (
    DEFAULT_MAX_ROWS,
    DEFAULT_TRIAL_TIMEOUT,
    DEFAULT_TRIALS_PER_TASK,
    BuildState,
    TaskOutcome,
    all_metafeature_names,
    build_task,
    manifest_base,
    outcome_from_doc,
    outcome_to_doc,
)
from automl_meta.meta.builder.sources import TaskSpec
from automl_meta.meta.metabase import (
    MANIFEST_FILE,
    read_manifest,
)
from automl_meta.search.optimize import TrialRecord
from automl_meta.search.space import SearchSpace, load_space


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
    empty database race to create Optuna's tables (the losers fail once), and while the
    database is unreachable (a restart between two tasks)."""
    from automl_meta.search.study import STORAGE_RETRY_SECONDS, make_storage

    for attempt in range(4):
        try:
            return make_storage(url, wait=STORAGE_RETRY_SECONDS)
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
    from automl_meta.meta.builder.queue import ClaimHeartbeat

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
    from automl_meta.search.study import WORKER_ID

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

    def release() -> None:
        # a courtesy to the other workers (else they wait for the grace period): it must
        # not hide the error that stopped this process
        try:
            queue.release(ids)
        except Exception:  # noqa: S110
            pass

    threads = [threading.Thread(target=work, args=(w,), daemon=True, name=w) for w in ids]
    for t in threads:
        t.start()
    try:
        for t in threads:
            while t.is_alive():
                t.join(0.5)
    except BaseException:  # Ctrl-C / SIGTERM: hand the tasks back at once
        stop.set()
        release()
        raise
    if errors:
        release()
        raise errors[0]


def _export(queue: Any, output: Path) -> dict[str, Any]:
    from automl_meta.search.study import redact

    base, _created = queue.base()
    counts = queue.counts()
    tasks = queue.tasks()
    finished = [t for t in tasks if t["state"] in ("done", "failed")]
    base = dict(base)
    if base.get("command"):  # recorded by the caller; a library caller may not have redacted it
        base["command"] = redact(str(base["command"]))
    base["distributed"] = {
        "build": queue.name, "storage": redact(queue.url), "tasks_by_state": counts,
        "worker_ids": len({t["worker"] for t in finished}),
        "tasks_claimed_more_than_once": [t["task_id"] for t in finished if t["attempts"] > 1]}
    state = BuildState(output, base)
    for row in queue.outcomes():
        if row["outcome"] is not None:
            state.add(outcome_from_doc(row["outcome"]))
    unfinished = counts["pending"] + counts["running"]
    return state.write("partial" if unfinished else "complete", all_metafeature_names())


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
    from automl_meta.meta.builder.queue import BuildQueue, check_build_name

    if build_name is not None:
        check_build_name(build_name)
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
        trials_per_task: int = DEFAULT_TRIALS_PER_TASK, time_per_task: float | None = None,
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
    from automl_meta.meta.builder.queue import DEFAULT_GRACE, BuildQueue, check_build_name
    from automl_meta.search.study import redact

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
                         source=source, command=redact(command), space=space)
    name = build_name or default_build_name(specs)
    check_build_name(name)
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
