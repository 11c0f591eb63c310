"""Meta-knowledge commands: ``metafeatures``, ``neighbors``, ``build-metabase`` and the
``metabase`` group (``info``, ``export``)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from automl_meta.cli.entry import STORAGE_ENV, app, emit_json
from automl_meta.defaults import (
    DEFAULT_BUILD_JOBS,
    DEFAULT_BUILD_MAX_ROWS,
    DEFAULT_HEARTBEAT_GRACE,
    DEFAULT_MAX_RUNS_PER_TASK,
    DEFAULT_NEIGHBORS,
    DEFAULT_SEED,
    DEFAULT_TRIAL_TIMEOUT,
    DEFAULT_TRIALS_PER_TASK,
)


@app.command()
def metafeatures(
    data: Annotated[Path, typer.Argument(help="CSV, TSV, Parquet or ARFF file.")],
    target: Annotated[str, typer.Option("--target", "-t", help="Target column.")],
    task: Annotated[str | None, typer.Option(help="Override the inferred task.")] = None,
    no_landmarkers: Annotated[bool, typer.Option(
        "--no-landmarkers", help="Skip the landmarkers (the fastest qualities only).")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Meta-features of DATA under OpenML's quality names (what the neighbour search compares).

    They are computed on the table as read, as OpenML computes its qualities and as fit
    computes them: every column counts (constant, ID-like and text ones too), the target
    included. Undefined values are shown as null / "-", never NaN.
    """
    from automl_meta.data import load_dataset
    from automl_meta.meta.features import compute_metafeatures

    ds = load_dataset(data, target, task)
    t0 = time.perf_counter()
    values = compute_metafeatures(*ds.as_read(), ds.task, landmarkers=not no_landmarkers)
    seconds = time.perf_counter() - t0
    if json_out:
        emit_json({"data": str(data), "target": ds.target, "task": ds.task,
                    "seconds": round(seconds, 3), "metafeatures": values})
        return
    width = max(len(k) for k in values)
    typer.echo(f"# {data} · target {ds.target!r} · {ds.task} · {len(values)} qualities "
               f"in {seconds:.2f} s")
    for name, value in values.items():
        shown = "-" if value is None else f"{value:.6g}"
        typer.echo(f"{name:<{width}}  {shown}")


# ------------------------------------------------------------------------------- neighbors
@app.command()
def neighbors(
    data: Annotated[Path, typer.Argument(help="CSV, TSV, Parquet or ARFF file.")],
    target: Annotated[str, typer.Option("--target", "-t", help="Target column.")],
    k: Annotated[int, typer.Option("-k", help="How many neighbours.")] = DEFAULT_NEIGHBORS,
    task: Annotated[str | None, typer.Option(help="Override the inferred task.")] = None,
    metabase: Annotated[Path | None, typer.Option(
        help="Metabase folder (default: the bundled one).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """The prior tasks most similar to DATA: distance, size, best score and model family.

    These are the tasks whose best configurations `fit` evaluates first.
    """
    from automl_meta.data import load_dataset
    from automl_meta.meta.features import compute_metafeatures
    from automl_meta.meta.metabase import load_metabase
    from automl_meta.meta.neighbors import nearest
    from automl_meta.search.space import load_space

    ds = load_dataset(data, target, task)
    mb = load_metabase(metabase, space_version=load_space().version)
    mf = compute_metafeatures(*ds.as_read(), ds.task)
    found = nearest(mb, mf, ds.task, k=k)
    if json_out:
        emit_json({"data": str(data), "task": ds.task, "metabase": mb.path,
                    "neighbors": [n.to_dict() for n in found]})
        return
    from rich.console import Console
    from rich.table import Table

    if not found:
        typer.echo(f"the metabase {mb.path} holds no prior {ds.task} task of this kind")
        return
    table = Table(title=f"nearest prior tasks for {data.name} ({ds.task}, {ds.n_rows} rows)",
                  title_justify="left")
    for col in ("task", "distance", "rows", "features", "best score", "best family"):
        table.add_column(col, justify="right" if col in ("distance", "rows", "features",
                                                          "best score") else "left")
    for n in found:
        score = "-" if n.best_score is None else f"{n.best_score:.4f} {n.metric}"
        table.add_row(n.task_id, f"{n.distance:.3f}", str(n.n_rows), str(n.n_features), score,
                      n.best_family or "-")
    Console().print(table)


# --------------------------------------------------------------------------- metabase
@app.command("build-metabase")
def build_metabase_cmd(
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Metabase folder to write (with --storage: where the "
                               "finished build is exported; not needed with --worker).")
    ] = None,
    source: Annotated[str, typer.Option(
        help="'dir' (a local folder), 'openml', or 'openml-runs' (published OpenML runs "
             "as a layer of the metabase in --output).")] = "dir",
    path: Annotated[Path | None, typer.Argument(
        help="With --source dir: folder of CSV / Parquet / ARFF(.gz) files, with an optional "
             "manifest.csv (name, file, task, target, openml_id). With --source openml-runs: "
             "folder of run exports (ARFF / CSV) and task_qualities.json; without it the runs "
             "are fetched with the openml client.")] = None,
    suite: Annotated[str | None, typer.Option(
        help="With --source openml: suite name or id (e.g. OpenML-CC18).")] = None,
    tasks: Annotated[str | None, typer.Option(
        help="With --source openml (or openml-runs without PATH): comma-separated task "
             "ids.")] = None,
    flows: Annotated[str | None, typer.Option(
        help="With --source openml-runs without PATH: comma-separated OpenML flow ids to "
             "fetch (default: every flow mapped in configs/flows).")] = None,
    max_runs_per_task: Annotated[int, typer.Option(
        help="With --source openml-runs: runs kept per task, the best half plus the other "
             "half spread over the rest by score rank (0: all).")] = DEFAULT_MAX_RUNS_PER_TASK,
    only: Annotated[str | None, typer.Option(
        help="Build only these task ids / names (comma-separated).")] = None,
    trials_per_task: Annotated[int, typer.Option(
        help="Trials per task (all stored).")] = DEFAULT_TRIALS_PER_TASK,
    time_per_task: Annotated[float | None, typer.Option(
        help="Wall-clock limit per task, seconds.")] = None,
    trial_timeout: Annotated[float, typer.Option(
        help="Wall-clock limit per trial, seconds.")] = DEFAULT_TRIAL_TIMEOUT,
    max_rows: Annotated[int, typer.Option(
        help="Searches use at most this many rows per task (stratified subsample).")
    ] = DEFAULT_BUILD_MAX_ROWS,
    n_jobs: Annotated[int, typer.Option(
        "--n-jobs", "--n-workers",
        help="Tasks built in parallel by this process (with --storage: its worker "
             "threads).")] = DEFAULT_BUILD_JOBS,
    seed: Annotated[int, typer.Option(help="Base seed (each task derives its own).")
    ] = DEFAULT_SEED,
    resume: Annotated[bool, typer.Option(
        help="Continue a partial build in --output; finished tasks are kept.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Start again over an existing one.")] = False,
    refresh_metafeatures: Annotated[bool, typer.Option(
        help="Only recompute tasks.csv's meta-features (results are kept).")] = False,
    cache_dir: Annotated[Path | None, typer.Option(
        help="openml client cache folder.")] = None,
    openml_server: Annotated[str | None, typer.Option(
        help="openml API URL (e.g. the test server).")] = None,
    storage: Annotated[str | None, typer.Option(
        envvar=STORAGE_ENV,
        help="Build through this database (postgresql://user@host/db) so that many "
             "processes and machines share the tasks; the database holds the build state "
             "and the searches. Re-running the command resumes the build. Read from "
             f"${STORAGE_ENV} when not given.")] = None,
    worker: Annotated[bool, typer.Option(
        "--worker", help="With --storage: only build tasks of the build (started by the "
                         "same command on another machine), do not export; exits when "
                         "every task is finished.")] = False,
    build: Annotated[str | None, typer.Option(
        help="With --storage: the build's name (default: build-<hash of the task ids>, so "
             "that every machine listing the same tasks joins the same build; printed at "
             "the start).")] = None,
    heartbeat_grace: Annotated[float, typer.Option(
        help="With --storage: seconds without a heartbeat after which a task whose worker "
             "died is claimed again by another.")] = DEFAULT_HEARTBEAT_GRACE,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Build the meta-knowledge base: a search on every prior task, every trial stored.

    Resumable: killed at any point, run the same command with --resume.

    Distributed: `build-metabase SOURCE --storage postgresql://… --n-workers N --output DIR`
    registers the build in the database and builds with N worker threads; the same command
    with --worker instead of --output on other machines adds workers. The metabase is
    exported to --output when every task is finished (or any time with `metabase export`).

    Published OpenML runs: `build-metabase PATH --source openml-runs --output DIR` maps the
    run exports in PATH (and its task_qualities.json) through configs/flows/<flow>.yaml and
    writes them as the openml-runs layer of the metabase in DIR (replacing an earlier
    version of the layer; a new metabase when DIR holds none), then prints the mapping
    report. Without PATH the runs are fetched with the openml client.
    """
    from automl_meta.errors import UsageError
    from automl_meta.meta.builder.local import build_metabase
    from automl_meta.meta.builder.local import refresh_metafeatures as refresh
    from automl_meta.meta.builder.progress import (
        build_distributed_logged,
        summary_lines,
        task_line,
    )

    if source == "openml-runs":
        if output is None:
            raise UsageError("--output is required (the metabase folder to write the layer "
                             "into)")
        _build_openml_runs(path, output, flows=flows, tasks=tasks,
                           max_runs_per_task=max_runs_per_task, cache_dir=cache_dir,
                           openml_server=openml_server, quiet=quiet)
        return
    if source == "dir":
        if path is None:
            raise UsageError("--source dir needs the folder as an argument")
        from automl_meta.meta.builder.sources.directory import list_tasks

        specs = list_tasks(path)
        from automl_meta.data import file_sha256

        manifest_csv = path / "manifest.csv"
        source_info: dict[str, Any] = {
            "type": "dir", "path": str(path),
            "manifest_sha256": file_sha256(manifest_csv) if manifest_csv.exists() else None}
    elif source == "openml":
        from automl_meta.meta.builder.sources import openml_source

        openml_source.configure(cache_dir, openml_server)
        if tasks:
            ids = [int(t) for t in tasks.split(",") if t.strip()]
        elif suite:
            ids = openml_source.suite_task_ids(suite)
        else:
            raise UsageError("--source openml needs --suite or --tasks")
        specs = openml_source.list_tasks(ids)
        source_info = {"type": "openml", "suite": suite, "task_ids": ids,
                       "server": openml_server}
    else:
        raise UsageError(f"unknown --source {source!r}; use dir, openml or openml-runs")
    if only:
        wanted = {w.strip() for w in only.split(",")}
        specs = [s for s in specs if s.task_id in wanted or s.name in wanted]
        if not specs:
            raise UsageError(f"--only matched no task: {only}")
    command = "automl-meta " + " ".join(sys.argv[1:]) if sys.argv else ""
    from rich.console import Console

    console = Console(stderr=True)
    started = time.monotonic()
    if storage is None and (worker or build):
        raise UsageError("--worker and --build need --storage (a database shared by the "
                         "workers)")
    if storage is not None:
        if refresh_metafeatures or resume:
            raise UsageError("with --storage, re-running the command resumes the build; "
                             "--resume and --refresh-metafeatures are for local builds"
                             + (f" (the storage came from ${STORAGE_ENV}: unset it)"
                                if os.environ.get(STORAGE_ENV) == storage else ""))
        if worker and output is not None and not quiet:
            console.print("note: --worker does not export, --output is ignored (the leader "
                          "exports; or run `automl-meta metabase export`)")
        build_distributed_logged(
            specs, storage, output=output, build=build, n_workers=n_jobs, worker=worker,
            grace=heartbeat_grace, overwrite=overwrite, trials_per_task=trials_per_task,
            time_per_task=time_per_task, trial_timeout=trial_timeout, max_rows=max_rows,
            seed=seed, source_info=source_info, command=command,
            log=None if quiet else console.print)
        return
    if output is None:
        raise UsageError("--output is required (the metabase folder to write)")
    if refresh_metafeatures:
        manifest = refresh(specs, output, seed=seed, on_task=None if quiet else (
            lambda tid, i, n: console.print(f"[{i}/{n}] {tid}")))
    else:
        def on_task(outcome: Any, done: int, total: int) -> None:
            if quiet:
                return
            elapsed = time.monotonic() - started
            console.print(f"[{done}/{total}] {task_line(outcome.row)}  · "
                          f"{elapsed / 60:.1f} min elapsed")

        manifest = build_metabase(
            specs, output, trials_per_task=trials_per_task, time_per_task=time_per_task,
            trial_timeout=trial_timeout, max_rows=max_rows, n_jobs=n_jobs, seed=seed,
            resume=resume, overwrite=overwrite, source=source_info, command=command,
            on_task=on_task)
    if not quiet:
        for line in summary_lines(output, manifest, time.monotonic() - started):
            console.print(line)


def _build_openml_runs(path: Path | None, output: Path, *, flows: str | None,
                       tasks: str | None, max_runs_per_task: int, cache_dir: Path | None,
                       openml_server: str | None, quiet: bool) -> None:
    """``build-metabase --source openml-runs``: map published OpenML runs and write them as
    the ``openml-runs`` layer of the metabase in ``output`` (replacing an earlier version of
    the layer; a new metabase of just the layer when ``output`` holds none); duplicates are
    linked to the tasks of that metabase, else of the bundled one. Prints the mapping
    report."""
    from automl_meta.meta.builder.sources import openml_runs
    from automl_meta.meta.metabase import MANIFEST_FILE, load_metabase
    from automl_meta.resources import bundled_metabase_dir
    from automl_meta.search.space import load_space

    space = load_space()
    link_to = output if (output / MANIFEST_FILE).exists() else bundled_metabase_dir()
    reference = load_metabase(link_to).tasks
    keep = max_runs_per_task or None
    if path is not None:
        layer = openml_runs.layer_from_folder(path, max_runs_per_task=keep,
                                              reference=reference,
                                              reference_name=str(link_to), space=space)
        where = str(path)
    else:
        from automl_meta.meta.builder.sources import openml_source

        openml_source.configure(cache_dir, openml_server)
        known = openml_runs.load_flows(space=space)
        flow_ids = [int(f) for f in flows.split(",") if f.strip()] if flows else sorted(known)
        task_ids = [int(t) for t in tasks.split(",") if t.strip()] if tasks else None
        pairs, qualities = openml_runs.fetch_openml_runs(flow_ids, task_ids, flows=known)
        layer = openml_runs.build_layer(pairs, qualities, max_runs_per_task=keep,
                                        reference=reference, reference_name=str(link_to),
                                        space=space)
        where = f"openml:{openml_server or 'default server'}/flows/" + \
            ",".join(str(f) for f in flow_ids)
    command = "automl-meta " + " ".join(sys.argv[1:]) if sys.argv else ""
    provenance = openml_runs.layer_provenance(layer, where, command=command)
    manifest = openml_runs.write_layer(layer, output, provenance, command=command,
                                       space=space)
    if not quiet:
        for line in layer.report.lines():
            typer.echo(line)
        c = manifest["counts"]
        typer.echo(f"wrote {output}: {c['tasks']} tasks ({len(layer.tasks)} of the layer), "
                   f"{c['results']} trials, {c['configs']} configurations")


metabase_app = typer.Typer(help="Inspect a metabase, or export one built in a database.",
                           no_args_is_help=True)
app.add_typer(metabase_app, name="metabase")


@metabase_app.command("info")
def metabase_info(
    path: Annotated[Path | None, typer.Argument(
        help="Metabase folder (default: the bundled one).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """What a metabase holds: source, counts per task type, search-space version, build date,
    and whether every file matches its checksum."""
    from automl_meta.meta.metabase import describe_metabase
    from automl_meta.search.space import load_space

    doc = describe_metabase(path)
    checks = doc["checksums"]
    space_version = load_space().version  # this install's, for the line below
    if json_out:
        emit_json(doc)
        return
    c = doc["counts"] or {}
    src = doc["source"] or {}
    by_type = ", ".join(f"{k}: {v}" for k, v in (c.get("by_task_type") or {}).items())
    lines = [
        f"metabase       {doc['path']}",
        f"status         {doc['status']}",
        f"source         {src.get('type')} {src.get('path') or src.get('suite') or ''}",
        f"tasks          {c.get('tasks')} ok ({by_type}), {c.get('tasks_failed')} failed",
        f"trials         {c.get('results')} ({c.get('configs')} distinct configurations)",
        f"meta-features  {doc['n_metafeatures']}",
        f"search space   {doc['search_space_version']} "
        f"({'matches' if doc['search_space_matches'] else 'DIFFERS from'} this install's "
        f"{space_version})",
        f"built          {doc['created']} (updated {doc['updated']})",
        "checksums      " + ("OK" if doc["checksums_ok"] else "MISMATCH: " + ", ".join(
            k for k, v in checks.items() if not v)),
    ]
    if doc.get("layers"):
        lines.insert(4, "layers         " + ", ".join(
            f"{k}: {v} tasks" for k, v in sorted(doc["layers"].items())))
    for name, layer in (doc.get("layer_provenance") or {}).items():
        lc = layer.get("counts") or {}
        lines.insert(5, f"  {name:<12} {layer.get('task_source')} from {layer.get('source')}"
                        f" ({layer.get('date')}): flows {', '.join(layer.get('flows') or [])}"
                        f", {lc.get('runs_read')} runs read, {lc.get('mapped')} mapped, "
                        f"{lc.get('kept')} kept, {layer.get('linked')} tasks linked; "
                        f"{layer.get('licence')}")
    models = doc.get("surrogates") or {}
    lines.append("models         " + ("; ".join(
        f"{kind}: {'current' if m['current'] else 'NOT USED (stale or changed)'} "
        f"({m['n_trials']} trials, scikit-learn {m['sklearn']})"
        for kind, m in sorted(models.items())) or "none stored (fitted at each fit)"))
    typer.echo("\n".join(lines))


@metabase_app.command("export")
def metabase_export(
    storage: Annotated[str, typer.Option(
        envvar=STORAGE_ENV,
        help="Database of the build (as given to build-metabase --storage); read from "
             f"${STORAGE_ENV} when not given.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Metabase folder to write.")],
    build: Annotated[str | None, typer.Option(
        help="The build's name (needed only when the database holds several).")] = None,
    overwrite: Annotated[bool, typer.Option(
        help="Replace a metabase in --output that is not an export of this build.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the manifest as JSON.")
                        ] = False,
) -> None:
    """Write the metabase of a `build-metabase --storage` build (same files as a local
    build): status complete when every task is done or failed, else partial (a snapshot)."""
    from automl_meta.meta.builder.distributed import export_build

    manifest = export_build(storage, output, build_name=build, overwrite=overwrite)
    if json_out:
        emit_json(manifest)
        return
    c = manifest["counts"]
    d = manifest["distributed"]["tasks_by_state"]
    typer.echo(f"exported build {manifest['distributed']['build']} to {output}: "
               f"{manifest['status']}, {c['tasks']} tasks ok, {c['tasks_failed']} failed"
               + (f", {d['pending'] + d['running']} not finished yet"
                  if d["pending"] + d["running"] else "")
               + f", {c['results']} trials")

