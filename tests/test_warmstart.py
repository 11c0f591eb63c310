"""Neighbours, suggestions and the warm-started fit, on a metabase built by the test."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from automl_meta import AutoML
from automl_meta.cli import main
from automl_meta.errors import UsageError
from automl_meta.meta.builder.local import build_metabase
from automl_meta.meta.builder.sources.directory import list_tasks
from automl_meta.meta.metabase import load_metabase
from automl_meta.meta.neighbors import distances, fit_normalisation, nearest, normalise
from automl_meta.meta.warmstart import (
    MAX_CHEAPER,
    Context,
    Strategy,
    Suggestion,
    WarmStart,
    available,
    cheaper,
    compute_portfolio,
    cost_exponents,
    estimated_trial_seconds,
    get,
    greedy_order,
    order_by_cost,
    register,
    suggest,
)
from automl_meta.meta.warmstart import registry as ws_registry
from automl_meta.meta.warmstart.cost import FEATURE_EXPONENT_BOUNDS, ROW_EXPONENT_BOUNDS
from automl_meta.search.space import load_space

ROOT = Path(__file__).resolve().parents[1]


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


def test_a_quality_a_source_does_not_record_is_left_out_for_its_tasks_only():
    """A quality missing on every task of a source (the moments the openml-runs layer does
    not import) weighs nothing for that source's tasks; the same gap on a few tasks of
    another source is a difference (it may be undefined there)."""
    from automl_meta.meta.neighbors import (
        MIN_LAYER_TASKS,
        MISSING_PENALTY,
        unrecorded_weights,
    )

    n = MIN_LAYER_TASKS
    tasks = pd.DataFrame({"source": ["openml-run"] * n + [f"corpus/t{i}.arff" for i in range(n)]
                          + ["history"]})
    prior = np.zeros((2 * n + 1, 2))
    prior[:n, 1] = np.nan  # the layer records no second quality
    prior[n, 1] = np.nan  # one corpus task lacks it
    prior[-1, 1] = np.nan  # so does the one history task
    w = unrecorded_weights(tasks, prior)
    assert (w[:n] == [1.0, 0.0]).all() and (w[n:] == 1.0).all()
    d = distances(np.array([0.0, 0.0]), prior, w)
    assert (d[:n] == 0.0).all()  # same on what the layer records
    expected = np.sqrt(MISSING_PENALTY**2 / 2)
    assert d[n] == pytest.approx(expected) and d[-1] == pytest.approx(expected)
    assert (d[n + 1:-1] == 0.0).all()
    assert (unrecorded_weights(tasks.drop(columns="source"), prior) == 1.0).all()


@pytest.mark.slow
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


@pytest.mark.slow
def test_nearest_same_kind_and_exclusion(tiny_metabase, mixed_frame):
    from automl_meta.data import prepare_dataset
    from automl_meta.meta.features import compute_metafeatures

    mb = load_metabase(tiny_metabase)
    ds = prepare_dataset(mixed_frame, "label")
    mf = compute_metafeatures(*ds.as_read(), ds.task)
    found = nearest(mb, mf, ds.task, k=3)
    assert len(found) == 3 and all(n.task != "regression" for n in found)
    assert [n.distance for n in found] == sorted(n.distance for n in found)
    fewer = nearest(mb, mf, ds.task, k=10, exclude={found[0].task_id})
    assert found[0].task_id not in {n.task_id for n in fewer} and len(fewer) == 3


@pytest.mark.slow
def test_suggestions_ordered_deduplicated_and_adapted(tiny_metabase):
    mb = load_metabase(tiny_metabase)
    space = load_space()
    nbs = nearest(mb, mb.tasks.iloc[0].to_dict(), "binary", k=4)
    ws = suggest(mb, nbs, "binary", 500, space, n=8)
    origins = [s.origin for s in ws.suggestions]
    assert origins[0] in {f"neighbour:{nb.task_id}" for nb in nbs}
    ids = [json.dumps(s.config, sort_keys=True) for s in ws.suggestions]
    assert len(ids) == len(set(ids)) and len(ids) <= 8
    assert all(space.check_config(s.config, "binary") is None for s in ws.suggestions)
    # on 200 000 rows the SVM family is not offered: such configurations are skipped, logged
    big = suggest(mb, nbs, "binary", 200_000, space, n=30)
    assert all(s.config["family"] != "svm" for s in big.suggestions)
    if any(mb.configs[c]["family"] == "svm" for c in mb.results["config_id"]):
        assert any("svm" in line for line in big.log)


@pytest.mark.slow
def test_family_defaults_are_second_in_every_list(tiny_metabase):
    """The HGB default configuration is in the list whatever the strategy proposes, second,
    within ``n``; not in a list of one, not twice, not where the family is not offered."""
    mb = load_metabase(tiny_metabase)
    space = load_space()
    nbs = nearest(mb, mb.tasks.iloc[0].to_dict(), "binary", k=4)
    hgb = space.default_config("hgb", "binary")
    plain = suggest(mb, nbs, "binary", 500, space, n=6, defaults=())
    assert not any(s.config == hgb for s in plain.suggestions)
    for strategy in ("local", "portfolio"):
        ws = suggest(mb, nbs, "binary", 500, space, n=6, strategy=strategy)
        assert len(ws.suggestions) <= 6
        assert ws.suggestions[1].origin == "default:hgb" and ws.suggestions[1].config == hgb
        assert sum(s.config == hgb for s in ws.suggestions) == 1
    ws = suggest(mb, nbs, "binary", 500, space, n=6)
    # the strategy's list keeps its order; its last entry gives way
    assert [s.config for s in ws.suggestions[:1] + ws.suggestions[2:]] == \
        [s.config for s in plain.suggestions[:5]]
    one = suggest(mb, nbs, "binary", 500, space, n=1)
    assert [s.config for s in one.suggestions] == [plain.suggestions[0].config]
    svm = suggest(mb, nbs, "binary", 200_000, space, n=6, defaults=("svm",))
    assert not any(s.origin == "default:svm" for s in svm.suggestions)


def test_greedy_order_weighs_tasks_and_covers_them():
    perf = np.array([[1.0, -1.0, -1.0],    # excellent on task 0 only
                     [0.6, 0.6, 0.6],      # good everywhere
                     [-1.0, 1.0, 1.0]])    # excellent on tasks 1 and 2
    # equal weights: the all-rounder first, then what covers tasks 1 and 2, then task 0
    assert greedy_order(perf, np.ones(3), 3) == [1, 2, 0]
    # task 0 is by far the most similar: its specialist first
    assert greedy_order(perf, np.array([10.0, 1.0, 1.0]), 3)[0] == 0
    assert greedy_order(perf, np.ones(3), 2) == [1, 2]


@pytest.mark.slow
def test_local_strategy_starts_with_the_best_across_neighbours(tiny_metabase):
    from automl_meta.meta.warmstart.transfer import (
        neighbor_weights,
        normalised_results,
        top_candidates,
        transfer_matrix,
    )

    mb = load_metabase(tiny_metabase)
    space = load_space()
    nbs = nearest(mb, mb.tasks.iloc[0].to_dict(), "binary", k=4)
    ids = [nb.task_id for nb in nbs]
    res = normalised_results(mb, space, ids)
    cands = top_candidates(res, ids, 10)
    expected = transfer_matrix(mb, space, cands, res, ids) @ neighbor_weights(nbs)
    first = suggest(mb, nbs, "binary", 500, space, n=1).suggestions[0]
    best = cands[int(np.argmax(expected))]
    assert json.dumps(first.config, sort_keys=True) == json.dumps(mb.configs[best],
                                                                  sort_keys=True)


@pytest.mark.slow
def test_portfolio_is_greedy_and_valid(tiny_metabase):
    mb = load_metabase(tiny_metabase)
    space = load_space()
    pf = compute_portfolio(mb, space, "classification", size=5)
    assert 1 <= len(pf) <= 5 and len(set(pf)) == len(pf)
    assert pf == mb.manifest["portfolio"]["classification"][:len(pf)]
    # no neighbours at all: the portfolio alone fills the list
    ws = suggest(mb, [], "binary", 100, space, n=3, defaults=())
    assert ws.suggestions and all(s.origin == "portfolio" for s in ws.suggestions)


@pytest.mark.slow
def test_warm_fit_marks_origins_and_reports_neighbours(tiny_metabase, mixed_frame):
    X, y = mixed_frame.drop(columns="label"), mixed_frame["label"]
    model = AutoML(n_trials=5, warm_start=3, metabase=str(tiny_metabase), seed=0,
                   diagnostics=False).fit(X, y)
    origins = model.leaderboard_["origin"].tolist()
    assert all(o.startswith(("neighbour:", "portfolio")) for o in origins[:3]
               if o != "default:hgb")
    assert "default:hgb" in origins[:3]
    assert origins[3:] == ["tpe", "tpe"]
    summary = model.summary()
    assert len(summary["warm_start"]["neighbors"]) == 4
    cold = AutoML(n_trials=3, warm_start=0, metabase=str(tiny_metabase),
                  diagnostics=False).fit(X, y)
    assert set(cold.leaderboard_["origin"]) == {"tpe"}


@pytest.mark.slow
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


@pytest.mark.slow
def test_broken_metabase_against_the_clock_keeps_the_early_defaults(tiny_metabase, tmp_path):
    """Against the clock with two workers the HGB defaults start before the metabase is
    read; a metabase that cannot be read then leaves them as the whole warm start, and the
    warning says so."""
    from sklearn.datasets import load_breast_cancer

    broken = tmp_path / "broken"
    shutil.copytree(tiny_metabase, broken)
    with open(broken / "tasks.csv", "a") as fh:
        fh.write("garbage\n")
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    model = AutoML(time_budget=4, n_jobs=2, seed=0, metabase=str(broken), history=False,
                   diagnostics=False).fit(X, y)
    origins = model.leaderboard_.sort_values("trial")["origin"].tolist()
    assert origins[0] == "default:hgb"
    assert set(origins[1:]) <= {"tpe"}, origins
    assert any(w.startswith("cold start") and "checksum" in w and "family defaults" in w
               for w in model.warnings_), model.warnings_
    assert model.neighbors_ == []


@pytest.mark.slow
def test_neighbors_command(tiny_metabase, breast_cancer_csv, capsys):
    assert main(["neighbors", str(breast_cancer_csv), "--target", "diagnosis", "-k", "2",
                 "--metabase", str(tiny_metabase), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["neighbors"]) == 2
    assert {"task_id", "distance", "n_rows", "best_score", "best_family"} <= set(
        doc["neighbors"][0])


@pytest.mark.slow
def test_trial_cost_is_estimated_from_the_source_trial_and_slow_ones_go_last(tiny_metabase):
    mb = load_metabase(tiny_metabase)
    space = load_space()
    nbs = nearest(mb, mb.tasks.iloc[0].to_dict(), "binary", k=4)
    ws = suggest(mb, nbs, "binary", 500, space, n=6, defaults=())
    assert all(s.source_config_id in mb.configs for s in ws.suggestions)
    first = ws.suggestions[0]
    src = mb.results[mb.results["config_id"] == first.source_config_id].iloc[0]
    task = mb.tasks.set_index("task_id").loc[src["task_id"]]
    # on the source task's own size, the estimate is the duration it took there
    same = estimated_trial_seconds(mb, first, int(task["search_rows"]),
                                   int(task["n_folds"]), 2)
    assert same == pytest.approx(float(src["duration"]))
    # ten times the rows (same folds): dearer, by at most ten times (a fit's time grows
    # with the rows by the family's exponent, fitted on the metabase within bounds)
    tenfold = estimated_trial_seconds(mb, first, 10 * int(task["search_rows"]),
                                      int(task["n_folds"]), 2)
    assert same < tenfold <= 10 * same + 1e-9
    for row_exp, feat_exp in cost_exponents(mb).values():
        assert ROW_EXPONENT_BOUNDS[0] <= row_exp <= ROW_EXPONENT_BOUNDS[1]
        assert FEATURE_EXPONENT_BOUNDS[0] <= feat_exp <= FEATURE_EXPONENT_BOUNDS[1]
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
    # a short budget per trial: forests and boosting are made cheaper (at most MAX_CHEAPER
    # times), the others keep their configuration
    per_trial = float(min(ests)) / 2
    adapted, log = order_by_cost(mb, ws.suggestions, 5000, 5, 2, 1e9, per_trial=per_trial,
                                 space=space, task="binary")
    assert len(adapted) == len(ws.suggestions)
    for before, after in zip(ws.suggestions, adapted, strict=True):
        family = before.config["family"]
        if family in ("rf", "et", "hgb") and after.cost_factor < 1:
            assert after.cost_factor >= 1 / MAX_CHEAPER - 0.01
            assert estimated_trial_seconds(mb, after, 5000, 5, 2) == pytest.approx(
                after.cost_factor * estimated_trial_seconds(mb, before, 5000, 5, 2))
            assert space.check_config(after.config, "binary") is None
        elif family not in ("rf", "et", "hgb"):
            assert after.config == before.config and after.cost_factor == 1
    assert sum("cheaper for the budget" in line for line in log) == sum(
        a.cost_factor < 1 for a in adapted)
    # 30 000 rows in 3 folds: 20 000 training rows, where boosting stops early on its own
    # validation split: its configurations are kept (the estimate is an upper bound), the
    # forests are still made cheaper
    per_trial = min(estimated_trial_seconds(mb, s, 30_000, 3, 2) for s in ws.suggestions) / 2
    adapted, log = order_by_cost(mb, ws.suggestions, 30_000, 3, 2, 1e9, per_trial=per_trial,
                                 space=space, task="binary")
    for before, after in zip(ws.suggestions, adapted, strict=True):
        if before.config["family"] == "hgb":
            assert after.config == before.config and after.cost_factor == 1
        if before.config["family"] in ("rf", "et"):
            assert after.cost_factor < 1 or before.config[
                f"{before.config['family']}.n_estimators"] <= 50
    n_hgb = sum(s.config["family"] == "hgb" for s in ws.suggestions)
    assert sum("stops early" in line for line in log) == n_hgb


def test_cheaper_configurations_keep_the_model_and_the_domain():
    space = load_space()
    hgb = Suggestion({"family": "hgb", "hgb.learning_rate": 0.05, "hgb.max_iter": 400,
                      "hgb.max_leaf_nodes": 31, "hgb.min_samples_leaf": 20,
                      "hgb.l2_regularization": 1e-6, "hgb.max_features": 1.0}, "learned:t")
    made, what = cheaper(hgb, 0.25, space, "binary")
    assert made.config["hgb.max_iter"] == 100
    assert made.config["hgb.learning_rate"] == pytest.approx(0.2)  # fewer, larger steps
    assert made.cost_factor == pytest.approx(0.25) and "max_iter 400 → 100" in what
    assert hgb.config["hgb.max_iter"] == 400  # the original is left alone
    # the learning rate stays within its domain; the rounds within theirs
    made, _ = cheaper(hgb, 0.05, space, "binary")
    assert made.config["hgb.max_iter"] == 30 and made.config["hgb.learning_rate"] <= 0.5
    assert made.cost_factor == pytest.approx(30 / 400)
    rf = Suggestion({"family": "rf", "rf.n_estimators": 60, "rf.max_features": 0.5,
                     "rf.min_samples_leaf": 1, "rf.min_samples_split": 2,
                     "rf.bootstrap": True, "rf.criterion": "gini", "rf.impute": "median"},
                    "learned:t")
    made, _ = cheaper(rf, 0.5, space, "binary")
    assert made.config["rf.n_estimators"] == 50  # the space's lowest
    assert cheaper(made, 0.5, space, "binary") is None  # nothing left to take
    linear = Suggestion({"family": "linear", "linear.C": 1.0}, "learned:t")
    assert cheaper(linear, 0.5, space, "binary") is None


# ------------------------------------------------------------------------------ strategies
def test_the_product_strategies_and_one_validation_for_api_and_cli(tmp_path, small_csv,
                                                                    capsys):
    assert available() == ("learned", "local", "portfolio")
    assert [type(get(name)).name for name in available()] == list(available())
    # one message, from the registry, for suggest(), AutoML and the command line
    for name in ("blend", "rank", "nope", None):
        with pytest.raises(UsageError, match=r"unknown warm-start strategy .*; use one of "
                                             r"learned, local, portfolio$"):
            get(name)
    mb_dir = ROOT / "metabase"
    with pytest.raises(UsageError, match="unknown warm-start strategy 'rank'"):
        suggest(load_metabase(mb_dir), [], "binary", 100, load_space(), 3, strategy="rank")
    frame = pd.read_csv(small_csv)
    with pytest.raises(UsageError, match="unknown warm-start strategy 'blend'"):
        AutoML(n_trials=1, warm_start_strategy="blend", diagnostics=False).fit(
            frame.drop(columns="label"), frame["label"])
    run = tmp_path / "run"
    code = main(["fit", str(small_csv), "--target", "label", "--n-trials", "1",
                 "--warm-start-strategy", "blend", "--output", str(run)])
    assert code == 2 and not run.exists()
    assert "unknown warm-start strategy 'blend'; use one of learned, local, portfolio" in \
        capsys.readouterr().err


@pytest.fixture
def restored_registry():
    """The registry as it was before the test (strategies a test registers are removed)."""
    saved = dict(ws_registry._STRATEGIES)
    yield
    ws_registry._STRATEGIES.clear()
    ws_registry._STRATEGIES.update(saved)


@pytest.mark.slow
def test_a_registered_strategy_goes_through_the_same_checks(tiny_metabase, restored_registry):
    mb = load_metabase(tiny_metabase)
    space = load_space()
    seen_contexts = []

    @register
    class Echo(Strategy):
        """Every configuration of the metabase twice, an SVM first."""

        name = "echo-test"

        def candidates(self, context: Context) -> WarmStart:
            seen_contexts.append(context)
            svm = {"family": "svm", **{k: v for k, v in space.default_config(
                "svm", "binary").items() if k != "family"}}
            configs = [svm] + [dict(c) for c in context.metabase.configs.values()]
            return WarmStart([Suggestion(c, "echo") for c in configs + configs], ["echo ran"])

    assert "echo-test" in available()
    ws = suggest(mb, [], "binary", 200_000, space, 5, portfolio=[], strategy="echo-test",
                 defaults=())
    (ctx,) = seen_contexts
    assert ctx.n == 5 and ctx.task == "binary" and "svm" not in ctx.allowed
    assert ws.log[0] == "echo ran"  # the strategy's own log comes first
    assert any("svm" in line and "not offered" in line for line in ws.log)
    assert all(s.config["family"] != "svm" for s in ws.suggestions)
    ids = [json.dumps(s.config, sort_keys=True) for s in ws.suggestions]
    assert len(ids) == len(set(ids))  # the repeated candidates are dropped
    # no neighbours: half the list is left to the portfolio (empty here) ...
    assert len(ws.suggestions) == 5 // 2
    # ... unless the strategy says it does not want that (like "learned")
    Echo.portfolio_when_far = False
    assert len(suggest(mb, [], "binary", 500, space, 5, portfolio=[],
                       strategy="echo-test", defaults=()).suggestions) == 5
    # a second class under a registered name is refused; the first one stays
    with pytest.raises(ValueError, match="already registered"):
        register(type("Other", (Strategy,), {"name": "local"}))
    assert type(get("local")).__name__ == "LocalStrategy"
    with pytest.raises(ValueError, match="no name"):
        register(type("Nameless", (Strategy,), {}))


#: the bundled metabase these suggestions were recorded on (sha256 of its results.csv and
#: tasks.csv: the trials, and the meta-features the neighbours and performance models use)
BUNDLED_RESULTS_SHA256 = "b69d4fed51d534f04601d797158fa660b6e45a8d695bd93bf031aad4b6945265"
BUNDLED_TASKS_SHA256 = "eb77436ed4e924312a3d5fa3d2332dc9524bbd34fd013e244cf0ba522a0b86d5"
#: suggest(n=10) with the 10 nearest tasks on that metabase (config ids, origins' task ids);
#: regression as the single-module warmstart.py of the previous layout returned them,
#: classification as recorded when the metabase gained the openml-runs layer
RECORDED = {
    ("breast_cancer", "learned"): (
        ["e0dd024e57cd", "963c910d93cd", "642524acce7c", "51baa100e4ae", "694aa11a468d",
         "641e52a57997", "6c4fb8078422", "a2e411703396", "e04db4c15799", "5799ac1d8153"],
        ["learned:openml-run/15", "learned:openml-run/125922", "learned:openml-run/14",
         "learned:classification/spambase", "learned:classification/spambase",
         "learned:classification/anneal.orig", "learned:classification/soybean",
         "learned:classification/anneal.orig", "learned:statlib/numeric/hutsof99_tab3_11d",
         "learned:agridata/eucalyptus"]),
    ("breast_cancer", "local"): (
        ["e662888c426f", "39a6a59465b2", "bd46cfbc1cc6", "a6f64ee891d1", "82a9604cd33f",
         "4894a8dd1a26", "8de79be2cd27", "cb191e97ef85", "efad8cef6b3c", "8a675d3fbcdc"],
        ["neighbour:openml-run/43", "neighbour:openml-run/3917", "neighbour:openml-run/3918",
         "neighbour:openml-run/3913", "neighbour:openml-run/9946", "neighbour:openml-run/9957",
         "neighbour:openml-run/3913", "neighbour:openml-run/125923",
         "neighbour:openml-run/3902", "neighbour:openml-run/9946"]),
    ("diabetes", "learned"): (
        ["21c1994dc155", "47bb48efc3bb", "af3a2e8dbd14", "011cea346139", "5fcf28bd729c",
         "c07626a0b02a", "eddc6a154afb", "0bfd6c947140", "5d3deecb4397", "25600b731b0c"],
        ["learned:regression/bodyfat", "learned:statlib/numeric/arsenic-male-bladder",
         "learned:regression/bodyfat", "learned:regression/sensory",
         "learned:statlib/numeric/rmftsa_ladata", "learned:regression/autompg (2)",
         "learned:statlib/numeric/sleuth_case1502", "learned:statlib/numeric/bodyfat",
         "learned:statlib/numeric/rabe_266", "learned:statlib/numeric/diggle_table_a2"]),
    ("diabetes", "local"): (
        ["6eeca0ae9e1f", "ec0530ffb31a", "efc640b22184", "579fdb26df8c", "0290f3187127",
         "76c8dde9d51f", "a3a217e04041", "3a62ebf1271f", "eace3be56655", "bcb2668472eb"],
        ["neighbour:statlib/numeric/visualizing_galaxy", "neighbour:statlib/numeric/vinnie",
         "neighbour:statlib/numeric/space_ga", "neighbour:statlib/numeric/smoothmeth_whale",
         "neighbour:statlib/numeric/visualizing_environmental",
         "neighbour:statlib/numeric/no2", "neighbour:statlib/numeric/space_ga",
         "neighbour:statlib/numeric/visualizing_galaxy",
         "neighbour:statlib/numeric/rmftsa_ladata",
         "neighbour:statlib/numeric/smoothmeth_whale"]),
}


@pytest.mark.parametrize("data", ["breast_cancer", "diabetes"])
def test_learned_and_local_suggest_what_they_did_before_the_registry(data):
    import hashlib

    from sklearn import datasets

    from automl_meta.data import prepare_dataset
    from automl_meta.meta.features import compute_metafeatures
    from automl_meta.meta.metabase import config_id

    space = load_space()
    mb = load_metabase(None, space_version=space.version)
    sha = hashlib.sha256((Path(mb.path) / "results.csv").read_bytes()).hexdigest()
    assert sha == BUNDLED_RESULTS_SHA256, "the bundled metabase changed: record RECORDED anew"
    sha = hashlib.sha256((Path(mb.path) / "tasks.csv").read_bytes()).hexdigest()
    assert sha == BUNDLED_TASKS_SHA256, "the bundled metabase changed: record RECORDED anew"
    X, y = getattr(datasets, f"load_{data}")(return_X_y=True, as_frame=True)
    ds = prepare_dataset(X.assign(target=y), "target")
    mf = compute_metafeatures(*ds.as_read(), ds.task, random_state=0)
    nbs = nearest(mb, mf, ds.task, k=10)
    for strategy in ("learned", "local"):
        ws = suggest(mb, nbs, ds.task, len(ds.y), space, 10, strategy=strategy,
                     metafeatures=mf, defaults=())
        ids, origins = RECORDED[data, strategy]
        assert [config_id(s.config) for s in ws.suggestions] == ids, strategy
        assert [s.origin for s in ws.suggestions] == origins, strategy
        assert ws.log == []


@pytest.mark.slow
def test_the_experiments_strategies_register_on_import_only(tiny_metabase):
    """blend and rank live in benchmarks/experiments/strategies.py: importing it (as the
    experiment scripts do) makes them usable through suggest(); the product lacks them."""
    assert not {"blend", "rank"} & set(available())
    script = f"""
import json, sys
sys.path.insert(0, {str(ROOT / "benchmarks" / "experiments")!r})
import strategies
from automl_meta.meta.metabase import load_metabase
from automl_meta.meta.neighbors import nearest
from automl_meta.meta.warmstart import available, suggest
from automl_meta.search.space import load_space
mb, space = load_metabase({str(tiny_metabase)!r}), load_space()
nbs = nearest(mb, mb.tasks.iloc[0].to_dict(), "binary", k=4)
out = {{"available": available(), "nearest": nbs[0].task_id}}
for name in ("rank", "blend"):
    ws = suggest(mb, nbs, "binary", 500, space, n=8, strategy=name, defaults=())
    out[name] = [(s.origin, s.rank) for s in ws.suggestions]
print(json.dumps(out))
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["available"] == ["learned", "local", "portfolio", "blend", "rank"]
    # rank: the nearest neighbour's best comes first
    assert doc["rank"][0] == [f"neighbour:{doc['nearest']}", 0]
    assert 1 <= len(doc["blend"]) <= 8
    assert all(o.startswith(("neighbour:", "portfolio")) for o, _ in doc["blend"])
