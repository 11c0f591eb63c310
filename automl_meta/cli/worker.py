"""``automl-meta worker``: join a running search from another process or machine."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated

import typer

from automl_meta.budget import DEFAULT_TIME_BUDGET
from automl_meta.cli.entry import STORAGE_ENV, app, check_budget_options, emit_json


@app.command()
def worker(
    data: Annotated[Path, typer.Argument(help="The same data file the study was created for.")],
    storage: Annotated[str, typer.Option(
        envvar=STORAGE_ENV,
        help=f"Storage URL of the study (postgresql://…); read from ${STORAGE_ENV} when "
             "not given.")],
    study: Annotated[str, typer.Option(help="Study name (printed by `fit --json`).")],
    time_budget: Annotated[float | None, typer.Option(
        help=f"Seconds to work (default {DEFAULT_TIME_BUDGET:g} when --n-trials is not "
             "given).")] = None,
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

    from automl_meta.data import file_sha256, load_dataset
    from automl_meta.errors import UsageError
    from automl_meta.metrics import get_metric
    from automl_meta.search.optimize import run_search
    from automl_meta.search.prepare import prepare_search, study_attributes
    from automl_meta.search.space import load_space
    from automl_meta.search.study import check_study_name, make_storage

    started = time.monotonic()
    check_budget_options(time_budget, n_trials, memory_limit)
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
                              int(attrs["max_search_rows"]), space,
                              n_folds=int(attrs["n_folds"]) if "n_folds" in attrs else None)
    budget = time_budget if time_budget or n_trials else DEFAULT_TIME_BUDGET
    before = len(optuna.load_study(study_name=study, storage=st).trials)
    result = run_search(
        prepared.ctx, n_trials=n_trials, deadline=None if not budget else started + budget,
        seed=int(attrs["seed"]) + 1 + os.getpid() % 100_000, storage=st, study_name=study,
        study_attrs=study_attributes(dataset, metric.name, int(attrs["seed"]),
                                     int(attrs["max_search_rows"]), space.version,
                                     len(prepared.ctx.folds)),
        memory_limit_gb=memory_limit)
    mine = [r for r in result.records if r.number >= before]
    best = result.best
    doc = {"study": study, "trials_by_this_worker": len(mine),
           "trials_in_study": len(result.records),
           "best": None if best is None else {"trial": best.number, "score": best.score,
                                              "family": best.family}}
    if json_out:
        emit_json(doc)
    else:
        typer.echo(f"worker: {len(mine)} trials evaluated; the study holds "
                   f"{len(result.records)}; best {metric.name} "
                   + ("-" if best is None else f"{best.score:.4f} ({best.family})"))

