"""``automl-meta fit``: search pipelines for a table and write a run directory."""

from __future__ import annotations

import math
import shutil
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from automl_meta.budget import DEFAULT_TIME_BUDGET
from automl_meta.cli.entry import (
    STORAGE_ENV,
    app,
    check_budget_options,
    command_started,
    emit_json,
)
from automl_meta.defaults import (
    DEFAULT_ENSEMBLE_SIZE,
    DEFAULT_MODEL_FORMAT,
    DEFAULT_SEED,
    DEFAULT_STRATEGY,
    DEFAULT_WARM_START,
    HISTORY_ENV,
)


@app.command()
def fit(
    data: Annotated[Path, typer.Argument(help="CSV, TSV, Parquet or ARFF file (optionally .gz).")],
    target: Annotated[str, typer.Option("--target", "-t", help="Column to predict.")],
    task: Annotated[str | None, typer.Option(
        help="binary, multiclass, classification or regression (inferred if omitted).")] = None,
    time_budget: Annotated[float | None, typer.Option(
        help="Wall-clock seconds for the whole command; it ends within budget + "
             f"max(5 s, 10 %). Default {DEFAULT_TIME_BUDGET:g} when --n-trials is not "
             "given.")] = None,
    n_trials: Annotated[int | None, typer.Option(help="Stop after this many trials.")] = None,
    metric: Annotated[str | None, typer.Option(
        help="accuracy, balanced_accuracy, roc_auc, log_loss, f1_macro (classification); "
             "r2, rmse, mae (regression). Default: accuracy / r2.")] = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Run directory to create (default: runs/<data>-<time>).")] = None,
    seed: Annotated[int, typer.Option(
        help="Seed for CV split, sampler and models.")] = DEFAULT_SEED,
    warm_start: Annotated[int, typer.Option(
        help="Configurations from the nearest prior tasks evaluated first.")
    ] = DEFAULT_WARM_START,
    no_warm_start: Annotated[bool, typer.Option(
        "--no-warm-start", help="Cold start: plain TPE, nothing from the metabase.")] = False,
    warm_start_strategy: Annotated[str, typer.Option(
        help="How warm-start configurations are chosen: learned (a performance model "
             "fitted on the metabase ranks the prior tasks' best configurations), local "
             "(a similarity-weighted portfolio of the nearest tasks; no model to fit), or "
             "portfolio (good across the whole metabase, the same for every dataset).")
    ] = DEFAULT_STRATEGY,
    metabase: Annotated[Path | None, typer.Option(
        help="Metabase folder (default: the bundled one).")] = None,
    n_jobs: Annotated[int | None, typer.Option(
        help="Trials evaluated in parallel, one worker process each. Default: every core "
             "this process may use (CPU affinity and cgroup quota).")] = None,
    memory_limit: Annotated[float | None, typer.Option(
        help="Memory limit per trial worker, in GiB; a trial exceeding it fails.")] = None,
    ensemble_size: Annotated[int, typer.Option(
        help="Rounds of the ensemble selection over the best trials' out-of-fold "
             "predictions; the final model averages the trials picked when that scores "
             "better than the best trial alone. 1: the single best trial.")
    ] = DEFAULT_ENSEMBLE_SIZE,
    storage: Annotated[str | None, typer.Option(
        envvar=STORAGE_ENV,
        help="Optuna storage URL (default: a journal file in the run directory). With "
             "postgresql://…, `automl-meta worker` processes can join the search. Read from "
             f"${STORAGE_ENV} when not given (then not shown by `ps`).")] = None,
    study: Annotated[str | None, typer.Option(
        help="Study name in --storage (default: automl-meta-<data sha>-<seed>).")] = None,
    resume: Annotated[bool, typer.Option(
        help="Continue the search of a fit that was killed (same data and options).")] = False,
    overwrite: Annotated[bool, typer.Option(
        help="Replace the output directory if it is empty or a previous run directory "
             "(nothing else is ever replaced).")] = False,
    model_format: Annotated[str, typer.Option(
        help="skops (default; loading builds only an allow-list of types) or joblib (a "
             "pickle: predict/evaluate then need --allow-pickle).")
    ] = DEFAULT_MODEL_FORMAT,
    no_report: Annotated[bool, typer.Option(
        "--no-report", help="Do not render report.html (report.json is always written).")
    ] = False,
    history: Annotated[Path | None, typer.Option(
        envvar=HISTORY_ENV,
        help="Folder of your history of fits: the warm start draws on it and this fit is "
             f"recorded in it (no data, only meta-features and trials). Default: ${HISTORY_ENV}"
             ", else your user data directory (`automl-meta history list` shows where).")
    ] = None,
    no_history: Annotated[bool, typer.Option(
        "--no-history", help="Neither use nor record the history for this fit.")] = False,
    json_out: Annotated[bool, typer.Option(
        "--json", help="Print one JSON document on stdout and nothing else there.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress, no summary.")] = False,
) -> None:
    """Search pipelines for DATA and fit the best one on all rows; write a run directory.

    The run directory holds model.skops (or model.joblib), manifest.json (versions,
    schema, checksum), leaderboard.csv (every trial), report.json and report.html.
    """
    # the budget counts from the start of the process: interpreter start-up included
    started = command_started()
    from automl_meta.search.workers import worker_context

    # the workers' fork server imports scikit-learn while this process imports the library
    # and reads DATA
    worker_context()
    from automl_meta.artifacts.rundir import RunStaging, check_output_dir
    from automl_meta.budget import save_reserve
    from automl_meta.data import load_dataset
    from automl_meta.errors import UsageError
    from automl_meta.estimator import AutoML
    from automl_meta.metrics import get_metric, task_from_metric

    if output is None:
        if resume:
            raise UsageError("--resume needs the --output of the fit to continue")
        output = Path("runs") / f"{_stem(data)}-{time.strftime('%Y%m%d-%H%M%S')}"
    check_output_dir(output, overwrite, data_files=[data])
    if model_format not in ("joblib", "skops"):
        raise UsageError(f"unknown --model-format {model_format!r}; use skops or joblib")
    check_budget_options(time_budget, n_trials, memory_limit)
    if n_jobs is not None and n_jobs < 1 and n_jobs != -1:
        raise UsageError("--n-jobs must be at least 1 (or -1: every core)")
    if ensemble_size < 1:
        raise UsageError("--ensemble-size must be at least 1 (1: the single best trial)")
    from automl_meta.meta.warmstart import get as get_strategy

    get_strategy(warm_start_strategy)  # UsageError for an unknown name, before any work

    implied = None if task else task_from_metric(metric)
    from automl_meta.data import Deadline

    # reading and typing DATA count against the time budget (the default one included)
    read_budget = DEFAULT_TIME_BUDGET if time_budget is None and n_trials is None \
        else time_budget
    valid = read_budget is not None and math.isfinite(read_budget) and read_budget > 0
    try:
        dataset = load_dataset(data, target, task or implied,
                               deadline=Deadline(started, read_budget) if valid else None)
    except UsageError as exc:
        if implied is None or "target" not in str(exc):
            raise
        raise UsageError(f"--metric {metric} is a {implied} metric, but {exc}") from None
    get_metric(metric, dataset.task)  # usage errors before any state is written
    from automl_meta.search.study import check_study_name

    check_study_name(study)  # before any state is written
    staging = RunStaging(output).open(resume=resume, overwrite=overwrite)
    if study is None:
        study = f"automl-meta-{dataset.sha256[:12]}-seed{seed}"
    automl = AutoML(task=dataset.task, metric=metric, time_budget=time_budget,
                    n_trials=n_trials, seed=seed, n_jobs=n_jobs, memory_limit=memory_limit,
                    storage=storage or staging.storage(), study_name=study,
                    warm_start=0 if no_warm_start else warm_start,
                    warm_start_strategy=warm_start_strategy,
                    metabase=str(metabase) if metabase else None, report=not no_report,
                    ensemble_size=ensemble_size,
                    history=False if no_history else (str(history) if history else True))
    reporter = None
    if not quiet and not json_out or (json_out and not quiet and sys.stderr.isatty()):
        from automl_meta.progress import RichReporter

        reporter = RichReporter()
    if reporter is not None:
        for note in dataset.notes:
            reporter.note(note)
    try:
        automl.fit_dataset(dataset, started=started, reporter=reporter,
                           reserve=save_reserve(not no_report))
    except UsageError:
        if not resume:  # nothing worth resuming: leave no state behind
            shutil.rmtree(staging.path, ignore_errors=True)
        raise
    run_dir = automl.save(output, overwrite=overwrite, data_file=str(data),
                          model_format=model_format, staging=staging, report=not no_report)
    summary = automl.summary() | {"run_dir": str(run_dir), "study": study,
                                  "elapsed_seconds": round(time.monotonic() - started, 2)}
    if json_out:
        emit_json(summary)
    elif not quiet:
        _print_fit_summary(summary)
    if automl.interrupted_:
        print(f"interrupted: the best configuration so far was refitted and saved to "
              f"{run_dir} (manifest status 'interrupted')", file=sys.stderr)
        raise typer.Exit(130)


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".gz", ".csv", ".tsv", ".arff", ".parquet", ".pq", ".txt"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    return name or "data"


def _print_fit_summary(s: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(markup=False)  # names from the data are printed as written
    table = Table(title="automl-meta fit", show_header=False, title_justify="left")
    best = s["best"]
    trials = s["trials"]["by_state"]
    table.add_row("task", f"{s['task']} (target {s['target']!r})")
    table.add_row("rows", f"{s['rows_used']} used of {s['rows']} read"
                  + (f", search on {s['search_rows']}" if s["search_rows"] < s["rows_used"]
                     else ""))
    if best:
        table.add_row("best model", f"{best['family']} (trial {best['trial']}, "
                                    f"{best['origin']})")
        table.add_row(f"CV {s['metric']}", f"{best['cv_score']:.4f} ± {best['cv_std']:.4f} "
                                            f"over {s['n_folds']} folds")
    else:
        table.add_row("best model", "no trial completed")
    final = s["final_model"]
    if final["config"].get("family") == "ensemble":  # the reason names its families
        table.add_row("final model", final["reason"])
    else:
        table.add_row("final model", f"{final['config']['family']} — {final['reason']}")
    ens = final.get("ensemble") or {}
    if ens.get("used"):
        single = ens["best_single"]
        table.add_row("ensemble", f"out-of-fold {s['metric']} {ens['oof_score']:.4f} vs "
                                  f"{single['oof_score']:.4f} for the best trial alone")
    elif ens.get("reason"):
        table.add_row("ensemble", f"not used: {ens['reason']}")
    origins = s["trials"]["by_origin"]
    warm = sum(v for k, v in origins.items() if k != "tpe")
    table.add_row("trials", f"{s['trials']['total']}: {warm} warm-start, "
                  f"{origins.get('tpe', 0)} TPE; "
                  + ", ".join(f"{v} {k.lower()}" for k, v in trials.items())
                  + f" (stopped by {s['stop_reason']})")
    nbs = s["warm_start"]["neighbors"]
    if nbs:
        table.add_row("nearest tasks", ", ".join(f"{n['name']} ({n['distance']:.2f})"
                                                 for n in nbs[:3]))
    table.add_row("time", f"{s['elapsed_seconds']} s"
                  + (f" of a {s['time_budget']:g} s budget" if s["time_budget"] else ""))
    table.add_row("run directory", s["run_dir"])
    report_html = Path(s["run_dir"]) / "report.html"
    if report_html.exists():
        table.add_row("report", str(report_html))
    console.print(table)

