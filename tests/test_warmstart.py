"""Neighbours, suggestions and the warm-started fit, on a metabase built by the test."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from automl_meta import AutoML
from automl_meta.build import build_metabase
from automl_meta.cli import main
from automl_meta.metabase import load_metabase
from automl_meta.neighbors import distances, fit_normalisation, nearest, normalise
from automl_meta.sources.directory import list_tasks
from automl_meta.space import load_space
from automl_meta.warmstart import (
    compute_portfolio,
    estimated_trial_seconds,
    greedy_order,
    order_by_cost,
    suggest,
)


@pytest.fixture(scope="module")
def tiny_metabase(tmp_path_factory):
    """Four small classification tasks and one regression task, 4 trials each."""
    rng = np.random.default_rng(1)
    folder = tmp_path_factory.mktemp("corpus")
    for i, n in enumerate([60, 120, 200, 400]):
        X = rng.normal(size=(n, 3 + i))
        df = pd.DataFrame(X, columns=[f"f{j}" for j in range(X.shape[1])])
        df["y"] = np.where(X[:, 0] + rng.normal(scale=0.5 + i * 0.3, size=n) > 0, "a", "b")
        df.to_csv(folder / f"cls{i}.csv", index=False)
    r = pd.DataFrame(rng.normal(size=(150, 4)), columns=list("abcd"))
    r["t"] = r.a * 2 + rng.normal(size=150)
    r.to_csv(folder / "reg.csv", index=False)
    out = tmp_path_factory.mktemp("mb") / "metabase"
    build_metabase(list_tasks(folder), out, trials_per_task=4, n_jobs=2)
    return out


def test_distance_handles_missing_values_explicitly():
    prior = np.array([[0.0, 1.0], [0.0, np.nan], [np.nan, np.nan]])
    query = np.array([0.0, np.nan])
    d = distances(query, prior)
    assert d[1] == 0.0  # both miss the second quality: no penalty
    assert d[0] > 0 and np.isfinite(d).all()


def test_normalisation_is_stored_and_finite(tiny_metabase):
    mb = load_metabase(tiny_metabase)
    stats = mb.manifest["normalisation"]
    assert set(stats) == {"classification", "regression"}
    z = normalise(mb.tasks, stats["classification"])
    assert np.nanmax(np.abs(z)) <= 5
    refit = fit_normalisation(mb.tasks)  # from tasks.csv (10 significant digits)
    for kind, per_feature in stats.items():
        for name, st in per_feature.items():
            assert refit[kind][name]["log"] == st["log"]
            assert refit[kind][name]["center"] == pytest.approx(st["center"], rel=1e-6)


def test_nearest_same_kind_and_exclusion(tiny_metabase, mixed_frame):
    from automl_meta.data import prepare_dataset
    from automl_meta.metafeatures import compute_metafeatures

    mb = load_metabase(tiny_metabase)
    ds = prepare_dataset(mixed_frame, "label")
    mf = compute_metafeatures(ds.X, ds.y, ds.task)
    found = nearest(mb, mf, ds.task, k=3)
    assert len(found) == 3 and all(n.task != "regression" for n in found)
    assert [n.distance for n in found] == sorted(n.distance for n in found)
    fewer = nearest(mb, mf, ds.task, k=10, exclude={found[0].task_id})
    assert found[0].task_id not in {n.task_id for n in fewer} and len(fewer) == 3


def test_suggestions_ordered_deduplicated_and_adapted(tiny_metabase):
    mb = load_metabase(tiny_metabase)
    space = load_space()
    nbs = nearest(mb, mb.tasks.iloc[0].to_dict(), "binary", k=4)
    ws = suggest(mb, nbs, "binary", 500, space, n=8)
    origins = [s.origin for s in ws.suggestions]
    assert origins[0] in {f"neighbour:{nb.task_id}" for nb in nbs}
    ranked = suggest(mb, nbs, "binary", 500, space, n=8, strategy="rank")
    assert ranked.suggestions[0].origin == f"neighbour:{nbs[0].task_id}"
    assert ranked.suggestions[0].rank == 0  # the nearest neighbour's best comes first
    ids = [json.dumps(s.config, sort_keys=True) for s in ws.suggestions]
    assert len(ids) == len(set(ids)) and len(ids) <= 8
    assert all(space.check_config(s.config, "binary") is None for s in ws.suggestions)
    # on 200 000 rows the SVM family is not offered: such configurations are skipped, logged
    big = suggest(mb, nbs, "binary", 200_000, space, n=30)
    assert all(s.config["family"] != "svm" for s in big.suggestions)
    if any(mb.configs[c]["family"] == "svm" for c in mb.results["config_id"]):
        assert any("svm" in line for line in big.log)


def test_greedy_order_weighs_tasks_and_covers_them():
    perf = np.array([[1.0, -1.0, -1.0],    # excellent on task 0 only
                     [0.6, 0.6, 0.6],      # good everywhere
                     [-1.0, 1.0, 1.0]])    # excellent on tasks 1 and 2
    # equal weights: the all-rounder first, then what covers tasks 1 and 2, then task 0
    assert greedy_order(perf, np.ones(3), 3) == [1, 2, 0]
    # task 0 is by far the most similar: its specialist first
    assert greedy_order(perf, np.array([10.0, 1.0, 1.0]), 3)[0] == 0
    assert greedy_order(perf, np.ones(3), 2) == [1, 2]


def test_local_strategy_starts_with_the_best_across_neighbours(tiny_metabase):
    from automl_meta.warmstart import (
        _normalised_results,
        _top_candidates,
        neighbour_weights,
        transfer_matrix,
    )

    mb = load_metabase(tiny_metabase)
    space = load_space()
    nbs = nearest(mb, mb.tasks.iloc[0].to_dict(), "binary", k=4)
    ids = [nb.task_id for nb in nbs]
    res = _normalised_results(mb, space, ids)
    cands = _top_candidates(res, ids, 10)
    expected = transfer_matrix(mb, space, cands, res, ids) @ neighbour_weights(nbs)
    first = suggest(mb, nbs, "binary", 500, space, n=1).suggestions[0]
    best = cands[int(np.argmax(expected))]
    assert json.dumps(first.config, sort_keys=True) == json.dumps(mb.configs[best],
                                                                  sort_keys=True)
    with pytest.raises(ValueError, match="strategy"):
        suggest(mb, nbs, "binary", 500, space, n=1, strategy="nope")


def test_portfolio_is_greedy_and_valid(tiny_metabase):
    mb = load_metabase(tiny_metabase)
    space = load_space()
    pf = compute_portfolio(mb, space, "classification", size=5)
    assert 1 <= len(pf) <= 5 and len(set(pf)) == len(pf)
    assert pf == mb.manifest["portfolio"]["classification"][:len(pf)]
    # no neighbours at all: the portfolio alone fills the list
    ws = suggest(mb, [], "binary", 100, space, n=3)
    assert ws.suggestions and all(s.origin == "portfolio" for s in ws.suggestions)


def test_warm_fit_marks_origins_and_reports_neighbours(tiny_metabase, mixed_frame):
    X, y = mixed_frame.drop(columns="label"), mixed_frame["label"]
    model = AutoML(n_trials=5, warm_start=3, metabase=str(tiny_metabase), seed=0,
                   diagnostics=False).fit(X, y)
    origins = model.leaderboard_["origin"].tolist()
    assert all(o.startswith(("neighbour:", "portfolio")) for o in origins[:3])
    assert origins[3:] == ["tpe", "tpe"]
    summary = model.summary()
    assert len(summary["warm_start"]["neighbors"]) == 4
    cold = AutoML(n_trials=3, warm_start=0, metabase=str(tiny_metabase),
                  diagnostics=False).fit(X, y)
    assert set(cold.leaderboard_["origin"]) == {"tpe"}


def test_broken_metabase_means_cold_start_with_warning(tiny_metabase, tmp_path, small_csv,
                                                       capsys):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_metabase, broken)
    with open(broken / "tasks.csv", "a") as fh:
        fh.write("garbage\n")
    run = tmp_path / "run"
    code = main(["fit", str(small_csv), "--target", "label", "--n-trials", "2", "--no-report",
                 "--metabase", str(broken), "--output", str(run), "--json"])
    captured = capsys.readouterr()
    assert code == 0
    summary = json.loads(captured.out)
    assert any("cold start" in w and "checksum" in w for w in summary["warnings"])
    assert set(pd.read_csv(run / "leaderboard.csv")["origin"]) == {"tpe"}


def test_neighbors_command(tiny_metabase, breast_cancer_csv, capsys):
    assert main(["neighbors", str(breast_cancer_csv), "--target", "diagnosis", "-k", "2",
                 "--metabase", str(tiny_metabase), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["neighbors"]) == 2
    assert {"task_id", "distance", "n_rows", "best_score", "best_family"} <= set(
        doc["neighbors"][0])


def test_trial_cost_is_estimated_from_the_source_trial_and_slow_ones_go_last(tiny_metabase):
    mb = load_metabase(tiny_metabase)
    space = load_space()
    nbs = nearest(mb, mb.tasks.iloc[0].to_dict(), "binary", k=4)
    ws = suggest(mb, nbs, "binary", 500, space, n=6)
    assert all(s.source_config_id in mb.configs for s in ws.suggestions)
    first = ws.suggestions[0]
    src = mb.results[mb.results["config_id"] == first.source_config_id].iloc[0]
    task = mb.tasks.set_index("task_id").loc[src["task_id"]]
    # on the source task's own size, the estimate is the duration it took there
    same = estimated_trial_seconds(mb, first, int(task["search_rows"]),
                                   int(task["n_folds"]), 2)
    assert same == pytest.approx(float(src["duration"]))
    # ten times the rows (same folds): ten times the row-fits
    assert estimated_trial_seconds(mb, first, 10 * int(task["search_rows"]),
                                   int(task["n_folds"]), 2) == pytest.approx(10 * same)
    ests = [estimated_trial_seconds(mb, s, 5000, 5, 2) for s in ws.suggestions]
    # a budget between the cheapest and the dearest: the dear ones move behind or go
    seconds = 4 * float(np.median(ests))
    ordered, log = order_by_cost(mb, ws.suggestions, 5000, 5, 2, seconds)
    kept = [estimated_trial_seconds(mb, s, 5000, 5, 2) for s in ordered]
    assert all(e <= seconds for e in kept)
    cheap = [e <= seconds / 4 for e in kept]
    assert cheap == sorted(cheap, reverse=True)  # every cheap one before every slow one
    assert len(log) == sum(e > seconds / 4 for e in ests)
    assert len(ordered) == sum(e <= seconds for e in ests)
    # all the time in the world: nothing moves
    assert order_by_cost(mb, ws.suggestions, 5000, 5, 2, 1e9) == (ws.suggestions, [])
