"""``automl-meta history``: list, show, forget and export the fits recorded in the history."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from automl_meta.cli.entry import app, emit_json
from automl_meta.defaults import HISTORY_ENV

history_app = typer.Typer(
    help="The history of your fits, which warm-starts your next ones: list, show, forget, "
         "export.", no_args_is_help=True)
app.add_typer(history_app, name="history")

_FOLDER_HELP = (f"History folder (default: ${HISTORY_ENV}, else your user data directory).")
HistoryOption = Annotated[Path | None, typer.Option(
    "--history", envvar=HISTORY_ENV, help=_FOLDER_HELP)]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]


def _open(folder: Path | None) -> Any:
    from automl_meta.meta.history import History, resolve_history_dir

    return History(resolve_history_dir(str(folder) if folder else True))


@history_app.command("list")
def history_list(history: HistoryOption = None, json_out: JsonOption = False) -> None:
    """The recorded fits, newest first: run id, date, data, shape, metric, best CV score,
    trials and schema fingerprint."""
    h = _open(history)
    runs = h.runs()
    rows = [{"run": r.run_id, "created": r.created, "name": r.name, "task": r.task,
             "rows": int(r.n_rows), "features": int(r.n_features), "metric": r.metric,
             "best_score": r.best_score, "trials": int(r.n_trials),
             "fingerprint": r.fingerprint} for r in runs.itertuples(index=False)]
    if json_out:
        emit_json({"history": str(h.folder), "runs": rows})
        return
    typer.echo(f"history {h.folder}: {len(rows)} run(s)")
    if rows:
        typer.echo(f"{'run':<32} {'created':<20} {'data':<24} {'task':<10} {'rows':>7} "
                   f"{'cols':>5} {'best':>16} {'trials':>6}  fingerprint")
    for r in rows:
        best = "-" if r["best_score"] is None else f"{r['metric']} {r['best_score']:.4f}"
        typer.echo(f"{r['run']:<32} {str(r['created'])[:19]:<20} {str(r['name'])[:24]:<24} "
                   f"{r['task']:<10} {r['rows']:>7} {r['features']:>5} {best:>16} "
                   f"{r['trials']:>6}  {r['fingerprint']}")


@history_app.command("show")
def history_show(
    run: Annotated[str, typer.Argument(help="Run id (a unique prefix is enough).")],
    history: HistoryOption = None, json_out: JsonOption = False,
) -> None:
    """One recorded fit: its task, meta-features, best and final configuration, trials."""
    from automl_meta.errors import UsageError

    h = _open(history)
    try:
        doc = h.run(run)
    except KeyError as exc:
        raise UsageError(f"no run {exc.args[0]} in the history {h.folder}") from None
    if json_out:
        emit_json(doc)
        return
    best = doc["best_score"]
    typer.echo(f"run          {doc['run_id']} ({doc['created']})\n"
               f"data         {doc['name']}: {doc['n_rows']} rows, {doc['n_features']} "
               f"features, target {doc['target']} ({doc['task']})\n"
               f"fingerprint  {doc['fingerprint']}\n"
               f"best         {doc['metric']} "
               + ("-" if best is None else f"{best:.4f}")
               + f" {json.dumps(doc['best_config'], sort_keys=True)}\n"
               f"final model  {json.dumps(doc['final_config'], sort_keys=True)}\n"
               f"trials       {doc['n_trials']} ({len(doc['trials'])} kept)")
    for t in doc["trials"][:20]:
        score = "-" if t["score"] is None else f"{t['score']:.4f}"
        typer.echo(f"  #{t['trial']:<4} {t['state']:<9} {score:>8}  "
                   f"{t['config'].get('family', ''):<7} {t['origin']}")


@history_app.command("forget")
def history_forget(
    runs: Annotated[list[str] | None, typer.Argument(help="Run ids to forget.")] = None,
    all_runs: Annotated[bool, typer.Option("--all", help="Forget every run.")] = False,
    history: HistoryOption = None, json_out: JsonOption = False,
) -> None:
    """Remove runs from the history (``--all``: every run, and a history that cannot be
    read)."""
    from automl_meta.errors import UsageError

    if bool(runs) == all_runs:
        raise UsageError("name the runs to forget, or give --all")
    h = _open(history)
    if all_runs:
        n = h.forget(None)
    else:
        ids = []
        for run in runs or []:
            try:
                ids.append(h.run(run)["run_id"])
            except KeyError as exc:
                raise UsageError(f"no run {exc.args[0]} in the history {h.folder}") from None
        n = h.forget(ids)
    if json_out:
        emit_json({"history": str(h.folder), "forgotten": n})
    else:
        typer.echo(f"forgot {n} run(s) from {h.folder}")


@history_app.command("export")
def history_export(
    output: Annotated[Path, typer.Argument(help="Metabase folder to write (new or empty).")],
    history: HistoryOption = None, json_out: JsonOption = False,
) -> None:
    """Write the history as a metabase folder that any ``--metabase`` can use (its runs as
    prior tasks, with their meta-features and trials)."""
    from automl_meta.meta.history import export_metabase

    manifest = export_metabase(_open(history), output)
    if json_out:
        emit_json(manifest)
        return
    c = manifest["counts"]
    typer.echo(f"exported {c['tasks']} run(s) with meta-features and {c['results']} trials "
               f"to {output}")
