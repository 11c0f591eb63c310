"""Commands that use a fitted run directory: ``predict``, ``evaluate``, ``report``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from automl_meta.cli.entry import GateFailed, app, emit_json, writing_stdout

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

    from automl_meta.artifacts.rundir import load_run
    from automl_meta.data import read_table

    manifest, model = load_run(run_dir, allow_pickle=allow_pickle or None)
    df = read_table(data)
    pred = model.predict(df)
    out = pd.DataFrame({manifest["target"]: pred})
    if proba:
        p = model.predict_proba(df)
        for i, c in enumerate(model.classes):
            out[f"proba_{c}"] = p[:, i]
    if output is None:
        with writing_stdout():
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
    from automl_meta.artifacts.rundir import load_run
    from automl_meta.artifacts.scoring import evaluate_table
    from automl_meta.data import read_table

    manifest, model = load_run(run_dir, allow_pickle=allow_pickle or None)
    ev = evaluate_table(model, read_table(data), target or manifest["target"],
                        metric or manifest["metric"], threshold=fail_under, source=str(data))
    score, passed, defined = ev.score, ev.passed, ev.defined
    doc = {"metric": ev.metric, "score": score, "rows": ev.rows, "greater_is_better":
           ev.greater_is_better, "threshold": fail_under, "passed": passed,
           "run_dir": str(run_dir), "data": str(data)}
    if not defined:  # e.g. roc_auc on one class, r2 on one row: "score": null
        doc["note"] = f"{ev.metric} is undefined on these rows"
    if json_out:
        emit_json(doc)
    else:
        line = (f"{ev.metric}: {score:.6f} on {ev.rows} rows" if defined else
                f"{ev.metric}: undefined on {ev.rows} rows")
        if passed is not None:
            line += f" — {'PASS' if passed else 'FAIL'} (threshold {fail_under:g})"
        with writing_stdout():
            typer.echo(line)
    if passed is False:
        raise GateFailed(f"{ev.metric} {score:.6f} is worse than the threshold {fail_under:g}"
                         if defined else f"{ev.metric} is undefined on these rows (threshold "
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
    from automl_meta.artifacts.report import write_report

    path = write_report(run_dir)
    typer.echo(str(path))
    if open_browser:
        import webbrowser

        webbrowser.open(path.resolve().as_uri())

