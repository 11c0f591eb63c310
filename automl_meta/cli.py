"""The ``automl-meta`` command line: parses arguments, calls the library, prints.

Exit codes: 0 ok · 1 quality gate failed (``evaluate --fail-under``) · 2 bad input or usage
(one line on stderr) · 3 internal error · 130 interrupted · 141 stdout was closed by its
reader (e.g. ``automl-meta predict run/ new.csv | head -1``): the command stops writing,
prints nothing on stderr, and exits like a Unix tool killed by SIGPIPE (128 + 13).

Every JSON document printed on stdout is valid JSON: NaN and infinities are written as
``null``.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from .errors import AutoMLError

#: where --storage is read from when it is not given (keeps a password out of `ps`)
STORAGE_ENV = "AUTOML_META_STORAGE"

app = typer.Typer(
    name="automl-meta",
    help="AutoML for tabular data, warm-started from searches on similar datasets.\n\n"
         "Typical use: `automl-meta fit data.csv --target y --output run/`, then "
         "`automl-meta predict run/ new.csv` and `automl-meta evaluate run/ test.csv`.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    rich_markup_mode=None)


class GateFailed(Exception):
    """``evaluate --fail-under`` threshold not met (exit 1)."""


class StdoutClosed(Exception):
    """The reader of stdout went away (a broken pipe): exit 141, quietly."""


EXIT_STDOUT_CLOSED = 141


@contextlib.contextmanager
def _writing_stdout() -> Iterator[None]:
    """Write (and flush) stdout inside: a broken pipe becomes :class:`StdoutClosed`."""
    try:
        yield
        sys.stdout.flush()
    except BrokenPipeError:
        raise StdoutClosed from None


def _emit_json(doc: Any) -> None:
    from .report import dumps_json

    text = dumps_json(doc, indent=2) + "\n"
    with _writing_stdout():
        sys.stdout.write(text)


def _version_callback(value: bool) -> None:
    if value:
        from . import __version__

        typer.echo(f"automl-meta {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option(
        "--version", callback=_version_callback, is_eager=True,
        help="Print the version and exit.")] = False) -> None:
    """AutoML for tabular data, warm-started from searches on similar datasets."""


# ------------------------------------------------------------------------------------- fit
@app.command()
def fit(
    data: Annotated[Path, typer.Argument(help="CSV, TSV, Parquet or ARFF file (optionally .gz).")],
    target: Annotated[str, typer.Option("--target", "-t", help="Column to predict.")],
    task: Annotated[str | None, typer.Option(
        help="binary, multiclass, classification or regression (inferred if omitted).")] = None,
    time_budget: Annotated[float | None, typer.Option(
        help="Wall-clock seconds for the whole command; it ends within budget + "
             "max(5 s, 10 %). Default 60 when --n-trials is not given.")] = None,
    n_trials: Annotated[int | None, typer.Option(help="Stop after this many trials.")] = None,
    metric: Annotated[str | None, typer.Option(
        help="accuracy, balanced_accuracy, roc_auc, log_loss, f1_macro (classification); "
             "r2, rmse, mae (regression). Default: accuracy / r2.")] = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Run directory to create (default: runs/<data>-<time>).")] = None,
    seed: Annotated[int, typer.Option(help="Seed for CV split, sampler and models.")] = 0,
    warm_start: Annotated[int, typer.Option(
        help="Configurations from the nearest prior tasks evaluated first.")] = 10,
    no_warm_start: Annotated[bool, typer.Option(
        "--no-warm-start", help="Cold start: plain TPE, nothing from the metabase.")] = False,
    warm_start_strategy: Annotated[str, typer.Option(
        help="How warm-start configurations are chosen: learned (a performance model "
             "fitted on the metabase ranks the prior tasks' best configurations), local "
             "(a similarity-weighted portfolio of the nearest tasks), blend, rank, or "
             "portfolio (good across the whole metabase).")] = "learned",
    metabase: Annotated[Path | None, typer.Option(
        help="Metabase folder (default: the bundled one).")] = None,
    n_jobs: Annotated[int, typer.Option(help="Trials evaluated in parallel.")] = 1,
    memory_limit: Annotated[float | None, typer.Option(
        help="Memory limit per trial worker, in GiB; a trial exceeding it fails.")] = None,
    storage: Annotated[str | None, typer.Option(
        envvar=STORAGE_ENV,
        help="Optuna storage URL (default: SQLite in the run directory). With "
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
             "pickle: predict/evaluate then need --allow-pickle).")] = "skops",
    no_report: Annotated[bool, typer.Option(
        "--no-report", help="Do not render report.html (report.json is always written).")
    ] = False,
    json_out: Annotated[bool, typer.Option(
        "--json", help="Print one JSON document on stdout and nothing else there.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress, no summary.")] = False,
) -> None:
    """Search pipelines for DATA and fit the best one on all rows; write a run directory.

    The run directory holds model.skops (or model.joblib), manifest.json (versions,
    schema, checksum), leaderboard.csv (every trial), report.json and report.html.
    """
    started = time.monotonic()
    from .automl import AutoML, save_reserve
    from .data import load_dataset
    from .errors import UsageError
    from .metrics import get_metric, task_from_metric
    from .rundir import RunStaging, check_output_dir

    if output is None:
        if resume:
            raise UsageError("--resume needs the --output of the fit to continue")
        output = Path("runs") / f"{_stem(data)}-{time.strftime('%Y%m%d-%H%M%S')}"
    check_output_dir(output, overwrite, data_files=[data])
    if model_format not in ("joblib", "skops"):
        raise UsageError(f"unknown --model-format {model_format!r}; use skops or joblib")
    from .warmstart import STRATEGIES

    if warm_start_strategy not in STRATEGIES:
        raise UsageError(f"unknown --warm-start-strategy {warm_start_strategy!r}; use one of "
                         + ", ".join(STRATEGIES))

    implied = None if task else task_from_metric(metric)
    from .automl import DEFAULT_TIME_BUDGET
    from .data import Deadline

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
    if time_budget is not None and not (math.isfinite(time_budget) and time_budget > 0):
        raise UsageError("--time-budget must be a finite positive number")
    if memory_limit is not None and not (math.isfinite(memory_limit) and memory_limit > 0):
        raise UsageError("--memory-limit must be a finite positive number (GiB)")
    if n_trials is not None and n_trials < 1:
        raise UsageError("--n-trials must be at least 1")
    from .search import check_study_name

    check_study_name(study)  # before any state is written
    staging = RunStaging(output).open(resume=resume, overwrite=overwrite)
    if study is None:
        study = f"automl-meta-{dataset.sha256[:12]}-seed{seed}"
    automl = AutoML(task=dataset.task, metric=metric, time_budget=time_budget,
                    n_trials=n_trials, seed=seed, n_jobs=n_jobs, memory_limit=memory_limit,
                    storage=storage or staging.storage_url, study_name=study,
                    warm_start=0 if no_warm_start else warm_start,
                    warm_start_strategy=warm_start_strategy,
                    metabase=str(metabase) if metabase else None, report=not no_report)
    reporter = None
    if not quiet and not json_out or (json_out and not quiet and sys.stderr.isatty()):
        from .progress import RichReporter

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
        _emit_json(summary)
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
    table.add_row("final model", f"{s['final_model']['config']['family']} — "
                                 f"{s['final_model']['reason']}")
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


# --------------------------------------------------------------------------------- predict
ALLOW_PICKLE_HELP = ("Load a pickle (joblib) model. A pickle runs any code its author put in "
                     "it: only for runs you made yourself (or set AUTOML_META_ALLOW_PICKLE=1).")


@app.command()
def predict(
    run_dir: Annotated[Path, typer.Argument(help="Run directory written by fit.")],
    data: Annotated[Path, typer.Argument(help="Rows to predict (any supported format).")],
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="CSV file to write (default: stdout).")] = None,
    proba: Annotated[bool, typer.Option(
        help="Add one probability column per class (classification).")] = False,
    allow_pickle: Annotated[bool, typer.Option(
        "--allow-pickle", help=ALLOW_PICKLE_HELP)] = False,
) -> None:
    """Predict DATA with a fitted run directory; writes CSV with a column named like the
    target (plus `proba_<class>` columns with --proba).

    The model's SHA-256 is checked against the manifest before the model is loaded.
    Columns may come in any order; extra columns are ignored; missing ones are an error.
    """
    import pandas as pd

    from .data import read_table
    from .rundir import load_run

    manifest, model = load_run(run_dir, allow_pickle=allow_pickle or None)
    df = read_table(data)
    pred = model.predict(df)
    out = pd.DataFrame({manifest["target"]: pred})
    if proba:
        p = model.predict_proba(df)
        for i, c in enumerate(model.classes):
            out[f"proba_{c}"] = p[:, i]
    if output is None:
        with _writing_stdout():
            out.to_csv(sys.stdout, index=False)
    else:
        out.to_csv(output, index=False)
        print(f"wrote {len(out)} predictions to {output}", file=sys.stderr)


# -------------------------------------------------------------------------------- evaluate
@app.command()
def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="Run directory written by fit.")],
    data: Annotated[Path, typer.Argument(help="Labelled rows to score.")],
    target: Annotated[str | None, typer.Option(
        "--target", "-t", help="Target column (default: the one the model was fitted on).")
    ] = None,
    metric: Annotated[str | None, typer.Option(
        help="Metric to report and gate on (default: the fit's metric).")] = None,
    fail_under: Annotated[float | None, typer.Option(
        help="Exit 1 when the score is worse than this: below it for scores (accuracy, r2, "
             "…), above it for errors (log_loss, rmse, mae).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
    allow_pickle: Annotated[bool, typer.Option(
        "--allow-pickle", help=ALLOW_PICKLE_HELP)] = False,
) -> None:
    """Score a fitted model on labelled DATA; with --fail-under, gate a CI job on it."""
    from .automl import score_model
    from .data import closest_column, read_table
    from .errors import UsageError
    from .metrics import get_metric
    from .rundir import load_run

    manifest, model = load_run(run_dir, allow_pickle=allow_pickle or None)
    target = target or manifest["target"]
    df = read_table(data)
    if target not in df.columns:
        hint = closest_column(target, list(df.columns))
        raise UsageError(f"target column {target!r} not found in {data}"
                         + (f"; did you mean {hint!r}?" if hint else ""))
    df = df[df[target].notna()]
    if df.empty:
        raise UsageError(f"{data}: no rows with a target value")
    m = get_metric(metric or manifest["metric"], model.task)
    import warnings

    from sklearn.exceptions import UndefinedMetricWarning

    with warnings.catch_warnings():  # an undefined score is reported below, as such
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        score = score_model(model, df, df[target], m.name)
    passed = None
    if fail_under is not None:
        passed = score >= fail_under if m.greater_is_better else score <= fail_under
    defined = math.isfinite(score)
    doc = {"metric": m.name, "score": score, "rows": len(df), "greater_is_better":
           m.greater_is_better, "threshold": fail_under, "passed": passed,
           "run_dir": str(run_dir), "data": str(data)}
    if not defined:  # e.g. roc_auc on one class, r2 on one row: "score": null
        doc["note"] = f"{m.name} is undefined on these rows"
    if json_out:
        _emit_json(doc)
    else:
        line = (f"{m.name}: {score:.6f} on {len(df)} rows" if defined else
                f"{m.name}: undefined on {len(df)} rows")
        if passed is not None:
            line += f" — {'PASS' if passed else 'FAIL'} (threshold {fail_under:g})"
        with _writing_stdout():
            typer.echo(line)
    if passed is False:
        raise GateFailed(f"{m.name} {score:.6f} is worse than the threshold {fail_under:g}"
                         if defined else f"{m.name} is undefined on these rows (threshold "
                         f"{fail_under:g})")


# ---------------------------------------------------------------------------------- report
@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="Run directory written by fit.")],
    open_browser: Annotated[bool, typer.Option(
        "--open", help="Open the report in the default web browser.")] = False,
) -> None:
    """(Re)render RUN_DIR/report.html from the run's files: dataset, nearest prior tasks,
    optimisation history, top-10 leaderboard, out-of-fold diagnostics, importance."""
    from .report import write_report

    path = write_report(run_dir)
    typer.echo(str(path))
    if open_browser:
        import webbrowser

        webbrowser.open(path.resolve().as_uri())


# ---------------------------------------------------------------------------------- worker
@app.command()
def worker(
    data: Annotated[Path, typer.Argument(help="The same data file the study was created for.")],
    storage: Annotated[str, typer.Option(
        envvar=STORAGE_ENV,
        help=f"Storage URL of the study (postgresql://…); read from ${STORAGE_ENV} when "
             "not given.")],
    study: Annotated[str, typer.Option(help="Study name (printed by `fit --json`).")],
    time_budget: Annotated[float | None, typer.Option(
        help="Seconds to work (default 60 when --n-trials is not given).")] = None,
    n_trials: Annotated[int | None, typer.Option(
        help="Stop when the study holds this many trials.")] = None,
    memory_limit: Annotated[float | None, typer.Option(
        help="Memory limit per trial worker, GiB.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Join a running search from another process or machine.

    The study records the data's SHA-256, the search-space version, target, task, metric,
    seed and CV settings; the worker refuses data or a space that differ, rebuilds the same
    CV folds, and evaluates trials into the shared study. The `fit` that created the study
    refits the best trial of all workers.
    """
    import optuna

    from .automl import DEFAULT_TIME_BUDGET, prepare_search, study_attributes
    from .data import file_sha256, load_dataset
    from .errors import UsageError
    from .metrics import get_metric
    from .search import check_study_name, make_storage, run_search
    from .space import load_space

    started = time.monotonic()
    check_study_name(study)
    st = make_storage(storage)
    try:
        attrs = optuna.load_study(study_name=study, storage=st).user_attrs
    except KeyError:
        raise UsageError(f"no study named {study!r} in the storage") from None
    space = load_space()
    if attrs.get("search_space_version") != space.version:
        raise UsageError(f"study {study!r} uses search space "
                         f"{attrs.get('search_space_version')}, this install has "
                         f"{space.version}; install the same automl-meta version")
    if not data.is_file():
        raise UsageError(f"{data}: no such file")
    sha = file_sha256(data)
    if sha != attrs.get("data_sha256"):
        raise UsageError(f"{data} has SHA-256 {sha[:12]}…, but study {study!r} was created "
                         f"for {str(attrs.get('data_sha256'))[:12]}…: not the same data")
    dataset = load_dataset(data, attrs["target"], attrs["task"])
    metric = get_metric(attrs["metric"], dataset.task)
    prepared = prepare_search(dataset, metric.name, int(attrs["seed"]),
                              int(attrs["max_search_rows"]), space)
    budget = time_budget if time_budget or n_trials else DEFAULT_TIME_BUDGET
    before = len(optuna.load_study(study_name=study, storage=st).trials)
    result = run_search(
        prepared.ctx, n_trials=n_trials, deadline=None if not budget else started + budget,
        seed=int(attrs["seed"]) + 1 + os.getpid() % 100_000, storage=st, study_name=study,
        study_attrs=study_attributes(dataset, metric.name, int(attrs["seed"]),
                                     int(attrs["max_search_rows"]), space.version),
        memory_limit_gb=memory_limit)
    mine = [r for r in result.records if r.number >= before]
    best = result.best
    doc = {"study": study, "trials_by_this_worker": len(mine),
           "trials_in_study": len(result.records),
           "best": None if best is None else {"trial": best.number, "score": best.score,
                                              "family": best.family}}
    if json_out:
        _emit_json(doc)
    else:
        typer.echo(f"worker: {len(mine)} trials evaluated; the study holds "
                   f"{len(result.records)}; best {metric.name} "
                   + ("-" if best is None else f"{best.score:.4f} ({best.family})"))


# ---------------------------------------------------------------------------- metafeatures
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

    They are computed on the features fit uses (constant, ID-like and text columns dropped).
    Undefined values are shown as null / "-", never NaN.
    """
    from .data import load_dataset
    from .metafeatures import compute_metafeatures

    ds = load_dataset(data, target, task)
    t0 = time.perf_counter()
    values = compute_metafeatures(ds.X, ds.y, ds.task, landmarkers=not no_landmarkers)
    seconds = time.perf_counter() - t0
    if json_out:
        _emit_json({"data": str(data), "target": ds.target, "task": ds.task,
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
    k: Annotated[int, typer.Option("-k", help="How many neighbours.")] = 10,
    task: Annotated[str | None, typer.Option(help="Override the inferred task.")] = None,
    metabase: Annotated[Path | None, typer.Option(
        help="Metabase folder (default: the bundled one).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """The prior tasks most similar to DATA: distance, size, best score and model family.

    These are the tasks whose best configurations `fit` evaluates first.
    """
    from .data import load_dataset
    from .metabase import load_metabase
    from .metafeatures import compute_metafeatures
    from .neighbors import nearest
    from .space import load_space

    ds = load_dataset(data, target, task)
    mb = load_metabase(metabase, space_version=load_space().version)
    mf = compute_metafeatures(ds.X, ds.y, ds.task)
    found = nearest(mb, mf, ds.task, k=k)
    if json_out:
        _emit_json({"data": str(data), "task": ds.task, "metabase": mb.path,
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
    source: Annotated[str, typer.Option(help="'dir' (a local folder) or 'openml'.")] = "dir",
    path: Annotated[Path | None, typer.Argument(
        help="With --source dir: folder of CSV / Parquet / ARFF(.gz) files, with an optional "
             "manifest.csv (name, file, task, target, openml_id).")] = None,
    suite: Annotated[str | None, typer.Option(
        help="With --source openml: suite name or id (e.g. OpenML-CC18).")] = None,
    tasks: Annotated[str | None, typer.Option(
        help="With --source openml: comma-separated task ids.")] = None,
    only: Annotated[str | None, typer.Option(
        help="Build only these task ids / names (comma-separated).")] = None,
    trials_per_task: Annotated[int, typer.Option(help="Trials per task (all stored).")] = 50,
    time_per_task: Annotated[float | None, typer.Option(
        help="Wall-clock limit per task, seconds.")] = None,
    trial_timeout: Annotated[float, typer.Option(
        help="Wall-clock limit per trial, seconds.")] = 120.0,
    max_rows: Annotated[int, typer.Option(
        help="Searches use at most this many rows per task (stratified subsample).")] = 5000,
    n_jobs: Annotated[int, typer.Option(
        "--n-jobs", "--n-workers",
        help="Tasks built in parallel by this process (with --storage: its worker "
             "threads).")] = 1,
    seed: Annotated[int, typer.Option(help="Base seed (each task derives its own).")] = 0,
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
             "died is claimed again by another.")] = 60.0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Build the meta-knowledge base: a search on every prior task, every trial stored.

    Resumable: killed at any point, run the same command with --resume.

    Distributed: `build-metabase SOURCE --storage postgresql://… --n-workers N --output DIR`
    registers the build in the database and builds with N worker threads; the same command
    with --worker instead of --output on other machines adds workers. The metabase is
    exported to --output when every task is finished (or any time with `metabase export`).
    """
    from .build import build_metabase
    from .build import refresh_metafeatures as refresh
    from .errors import UsageError

    if source == "dir":
        if path is None:
            raise UsageError("--source dir needs the folder as an argument")
        from .sources.directory import list_tasks

        specs = list_tasks(path)
        from .data import file_sha256

        manifest_csv = path / "manifest.csv"
        source_info: dict[str, Any] = {
            "type": "dir", "path": str(path),
            "manifest_sha256": file_sha256(manifest_csv) if manifest_csv.exists() else None}
    elif source == "openml":
        from .sources import openml_source

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
        raise UsageError(f"unknown --source {source!r}; use dir or openml")
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
        _build_distributed(specs, storage, output=output, build=build, n_workers=n_jobs,
                           worker=worker, grace=heartbeat_grace, overwrite=overwrite,
                           trials_per_task=trials_per_task, time_per_task=time_per_task,
                           trial_timeout=trial_timeout, max_rows=max_rows, seed=seed,
                           source_info=source_info, command=command, console=console,
                           quiet=quiet)
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
            console.print(f"[{done}/{total}] {_task_line(outcome.row)}  · "
                          f"{elapsed / 60:.1f} min elapsed")

        manifest = build_metabase(
            specs, output, trials_per_task=trials_per_task, time_per_task=time_per_task,
            trial_timeout=trial_timeout, max_rows=max_rows, n_jobs=n_jobs, seed=seed,
            resume=resume, overwrite=overwrite, source=source_info, command=command,
            on_task=on_task)
    if not quiet:
        _print_metabase_summary(console, output, manifest, time.monotonic() - started)


def _task_line(row: dict[str, Any]) -> str:
    if row["status"] == "ok":
        return (f"{row['task_id']}: {row['n_trials']} trials, best {row['metric']} "
                f"{row['best_score']:.4f} ({row.get('search_seconds', 0):.0f} s)")
    return f"{row['task_id']}: FAILED — {row['error']}"


def _print_metabase_summary(console: Any, output: Path, manifest: dict[str, Any],
                            seconds: float) -> None:
    from .build import summarize_failures
    from .metabase import load_metabase

    mb = load_metabase(output)
    c = manifest["counts"]
    console.print(f"metabase {output}: {c['tasks']} tasks ok, {c['tasks_failed']} failed, "
                  f"{c['results']} trials, {c['configs']} configurations ({seconds:.0f} s)")
    for line in summarize_failures(mb.tasks):
        console.print(f"  failed {line}")


def _build_distributed(specs: list[Any], storage: str, *, output: Path | None,
                       build: str | None, n_workers: int, worker: bool, grace: float,
                       overwrite: bool, trials_per_task: int, time_per_task: float | None,
                       trial_timeout: float, max_rows: int, seed: int,
                       source_info: dict[str, Any], command: str, console: Any,
                       quiet: bool) -> None:
    """``build-metabase --storage``: register or join the build, work, export (leader)."""
    from .build_distributed import build_metabase_distributed
    from .search import redact

    started = time.monotonic()

    def on_start(name: str, counts: dict[str, int]) -> None:
        if quiet:
            return
        total = sum(counts.values())
        role = f"{n_workers} worker{'s' if n_workers > 1 else ''}" + \
            (" (--worker)" if worker else f", export to {output}")
        console.print(f"build {name} in {redact(storage)}: {total} tasks ({counts['done']} "
                      f"done, {counts['failed']} failed, {counts['running']} running, "
                      f"{counts['pending']} pending); this process: {role}")

    def on_task(event: Any) -> None:
        if quiet:
            return
        c = event.counts
        line = f"[{c['done'] + c['failed']}/{sum(c.values())}] {_task_line(event.outcome.row)}"
        if event.attempt > 1:
            line += f" (attempt {event.attempt})"
        if not event.accepted:
            line += " — DISCARDED: another worker claimed it meanwhile"
        console.print(f"{line}  · {event.worker} · {(time.monotonic() - started) / 60:.1f} "
                      "min elapsed")

    result = build_metabase_distributed(
        specs, storage, output=output, build_name=build, n_workers=n_workers,
        worker_only=worker, heartbeat_grace=grace, overwrite=overwrite,
        trials_per_task=trials_per_task, time_per_task=time_per_task,
        trial_timeout=trial_timeout, max_rows=max_rows, seed=seed, source=source_info,
        command=redact(command), on_start=on_start, on_task=on_task)
    if quiet:
        return
    if result.retried:
        console.print(f"(tried again: {len(result.retried)} tasks that had failed)")
    c = result.counts
    console.print(f"build {result.build}: this process built {result.built} tasks"
                  + (f" ({result.discarded} discarded)" if result.discarded else "")
                  + f"; {c['done'] + c['failed']} of {sum(c.values())} finished")
    if result.manifest is not None and output is not None:
        _print_metabase_summary(console, output, result.manifest, time.monotonic() - started)


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
    from .metabase import read_manifest, verify_files
    from .resources import bundled_metabase_dir
    from .space import load_space

    path = path or bundled_metabase_dir()
    manifest = read_manifest(path)
    checks = verify_files(path, manifest)
    space_version = load_space().version
    doc = {"path": str(path), "status": manifest.get("status"),
           "source": manifest.get("source"), "command": manifest.get("command"),
           "created": manifest.get("created"), "updated": manifest.get("updated"),
           "counts": manifest.get("counts"),
           "search_space_version": manifest.get("search_space_version"),
           "search_space_matches": manifest.get("search_space_version") == space_version,
           "checksums_ok": all(checks.values()), "checksums": checks,
           "n_metafeatures": len(manifest.get("metafeatures", {}).get("names", []))}
    if json_out:
        _emit_json(doc)
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
    from .build_distributed import export_build

    manifest = export_build(storage, output, build_name=build, overwrite=overwrite)
    if json_out:
        _emit_json(manifest)
        return
    c = manifest["counts"]
    d = manifest["distributed"]["tasks_by_state"]
    typer.echo(f"exported build {manifest['distributed']['build']} to {output}: "
               f"{manifest['status']}, {c['tasks']} tasks ok, {c['tasks_failed']} failed"
               + (f", {d['pending'] + d['running']} not finished yet"
                  if d["pending"] + d["running"] else "")
               + f", {c['results']} trials")


# ------------------------------------------------------------------------------------ main
def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM is handled like Ctrl-C: stop, keep the best so far


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point; maps errors to exit codes (see module docstring)."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    stdout = sys.stdout
    try:
        result = app(args=argv, standalone_mode=False)
        return _exit(result if isinstance(result, int) else 0)
    except (StdoutClosed, BrokenPipeError):
        return _stdout_closed()
    except SystemExit:
        if _click_saw_broken_pipe(stdout):
            return _stdout_closed()
        raise
    except GateFailed as exc:
        print(f"quality gate failed: {exc}", file=sys.stderr)
        return _exit(1)
    except AutoMLError as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)  # always one line
        return _exit(exc.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return _exit(130)
    except typer.Exit as exc:
        return _exit(exc.exit_code)
    except Exception as exc:  # usage errors of the argument parser, and the unexpected
        abort, click_exception, no_args_help = _parser_exceptions()
        if isinstance(exc, abort):
            print("interrupted", file=sys.stderr)
            return _exit(130)
        if isinstance(exc, no_args_help):
            exc.show()
            return _exit(2)
        if isinstance(exc, click_exception):
            first = (argv if argv is not None else sys.argv[1:])[:1]
            known = {c.name or c.callback.__name__ for c in app.registered_commands}
            known |= {g.name for g in app.registered_groups}
            command = first[0] if first and first[0] in known else ""
            hint = f"automl-meta {command} --help" if command else "automl-meta --help"
            message = " ".join(exc.format_message().split())
            print(f"error: {message} (see {hint})", file=sys.stderr)
            return _exit(2)
        if os.environ.get("AUTOML_META_DEBUG"):
            raise
        from .search import redact

        message = redact(" ".join(f"{type(exc).__name__}: {exc}".split()))
        print(f"internal error: {message} (set AUTOML_META_DEBUG=1 for a traceback)",
              file=sys.stderr)
        return _exit(3)


def _parser_exceptions() -> tuple[type, type, type]:
    """Abort / ClickException / NoArgsIsHelpError of whichever click typer uses (typer ≥ 0.20
    bundles its own copy as typer._click; older versions use the click package)."""
    try:
        from typer._click.exceptions import ClickException, NoArgsIsHelpError
        from typer.exceptions import Abort
    except ImportError:  # pragma: no cover - depends on the typer version
        from click.exceptions import Abort, ClickException, NoArgsIsHelpError
    return Abort, ClickException, NoArgsIsHelpError


def _exit(code: int) -> int:
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        return _stdout_closed()
    return code


def _click_saw_broken_pipe(stdout: Any) -> bool:
    """Whether click ended the command because stdout was closed (it wraps the streams in
    its ``PacifyFlushWrapper`` and raises ``SystemExit(1)``); the streams are unwrapped."""
    if sys.stdout is stdout or type(sys.stdout).__name__ != "PacifyFlushWrapper":
        return False
    sys.stdout = getattr(sys.stdout, "wrapped", stdout)
    if type(sys.stderr).__name__ == "PacifyFlushWrapper":
        sys.stderr = getattr(sys.stderr, "wrapped", sys.__stderr__)
    return True


def _stdout_closed() -> int:
    """Exit code 141 for a closed stdout; file descriptor 1 is pointed at the null device so
    that the interpreter's final flush of what is still buffered does not fail again."""
    with contextlib.suppress(OSError, ValueError):  # ValueError: stdout has no descriptor
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        finally:
            os.close(devnull)
    return EXIT_STDOUT_CLOSED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
