"""Progress lines of a metabase build, and the distributed build with its progress reported.

The builders report through callbacks; this module turns those callbacks into the lines
``automl-meta build-metabase`` shows, handed to a ``log`` callable (the command line prints
them on stderr; a notebook can collect them). Nothing here prints.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from automl_meta.meta.builder.sources import TaskSpec

#: where a line of progress goes
Log = Callable[[str], None]


def task_line(row: dict[str, Any]) -> str:
    """One task of a build, as a line: its trials and best score, or why it failed.

    Parameters
    ----------
    row : dict
        The task's row (``TaskOutcome.row``): ``task_id``, ``status`` and either the
        search's figures or ``error``.

    Returns
    -------
    str
        The line, without a newline.
    """
    if row["status"] == "ok":
        return (f"{row['task_id']}: {row['n_trials']} trials, best {row['metric']} "
                f"{row['best_score']:.4f} ({row.get('search_seconds', 0):.0f} s)")
    return f"{row['task_id']}: FAILED — {row['error']}"


def summary_lines(output: str | Path, manifest: dict[str, Any], seconds: float) -> list[str]:
    """The summary of a written metabase: counts, then one line per failed task.

    Parameters
    ----------
    output : str or Path
        The metabase folder (read for the failed tasks).
    manifest : dict
        Its manifest, as the build returned it.
    seconds : float
        How long the build took.

    Returns
    -------
    list of str
        The lines, without newlines.
    """
    from automl_meta.meta.builder.local import summarize_failures
    from automl_meta.meta.metabase import load_metabase

    mb = load_metabase(output)
    c = manifest["counts"]
    lines = [f"metabase {output}: {c['tasks']} tasks ok, {c['tasks_failed']} failed, "
             f"{c['results']} trials, {c['configs']} configurations ({seconds:.0f} s)"]
    lines += [f"  failed {line}" for line in summarize_failures(mb.tasks)]
    return lines


def build_distributed_logged(specs: Sequence[TaskSpec], storage: str, *,
                             output: Path | None, build: str | None, n_workers: int,
                             worker: bool, grace: float, overwrite: bool,
                             trials_per_task: int, time_per_task: float | None,
                             trial_timeout: float, max_rows: int, seed: int,
                             source_info: dict[str, Any], command: str,
                             log: Log | None) -> Any:
    """Register or join a distributed build, work on it, export it (the leader), and report
    each step as a line to ``log``.

    Parameters
    ----------
    specs : sequence of TaskSpec
        The build's tasks.
    storage : str
        Database URL shared by the build's processes (shown redacted).
    output : Path or None
        Where the leader exports the metabase.
    build : str or None
        The build's name (default: derived from the task ids).
    n_workers : int
        Worker threads of this process.
    worker : bool
        Only build tasks; do not export.
    grace : float
        Seconds without a heartbeat after which a task is claimed again.
    overwrite : bool
        Replace a metabase in ``output`` that is not an export of this build.
    trials_per_task, time_per_task, trial_timeout, max_rows, seed
        The searches' settings (see :func:`~automl_meta.meta.builder.local.build_metabase`).
    source_info : dict
        Where the tasks came from (stored in the manifest).
    command : str
        The command that started the build (stored with the storage URL redacted).
    log : callable or None
        Receives each line of progress; ``None`` reports nothing.

    Returns
    -------
    DistributedResult
        What :func:`~automl_meta.meta.builder.distributed.build_metabase_distributed` did.
    """
    from automl_meta.meta.builder.distributed import build_metabase_distributed
    from automl_meta.search.study import redact

    started = time.monotonic()

    def on_start(name: str, counts: dict[str, int]) -> None:
        if log is None:
            return
        total = sum(counts.values())
        role = f"{n_workers} worker{'s' if n_workers > 1 else ''}" + \
            (" (--worker)" if worker else f", export to {output}")
        log(f"build {name} in {redact(storage)}: {total} tasks ({counts['done']} "
            f"done, {counts['failed']} failed, {counts['running']} running, "
            f"{counts['pending']} pending); this process: {role}")

    def on_task(event: Any) -> None:
        if log is None:
            return
        c = event.counts
        line = f"[{c['done'] + c['failed']}/{sum(c.values())}] {task_line(event.outcome.row)}"
        if event.attempt > 1:
            line += f" (attempt {event.attempt})"
        if not event.accepted:
            line += " — DISCARDED: another worker claimed it meanwhile"
        log(f"{line}  · {event.worker} · {(time.monotonic() - started) / 60:.1f} "
            "min elapsed")

    result = build_metabase_distributed(
        specs, storage, output=output, build_name=build, n_workers=n_workers,
        worker_only=worker, heartbeat_grace=grace, overwrite=overwrite,
        trials_per_task=trials_per_task, time_per_task=time_per_task,
        trial_timeout=trial_timeout, max_rows=max_rows, seed=seed, source=source_info,
        command=redact(command), on_start=on_start, on_task=on_task)
    if log is None:
        return result
    if result.retried:
        log(f"(tried again: {len(result.retried)} tasks that had failed)")
    c = result.counts
    log(f"build {result.build}: this process built {result.built} tasks"
        + (f" ({result.discarded} discarded)" if result.discarded else "")
        + f"; {c['done'] + c['failed']} of {sum(c.values())} finished")
    if result.manifest is not None and output is not None:
        for line in summary_lines(output, result.manifest, time.monotonic() - started):
            log(line)
    return result
