"""The search loop: determinism, failures recorded, time budget kept."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from automl_meta import AutoML
from automl_meta.budget import (
    MIN_BUDGET_SEARCH_ROWS,
    REFIT_EXPONENT,
    budget_search_rows,
    refit_seconds,
)
from automl_meta.data import prepare_dataset
from automl_meta.search.cv import EvalContext, make_folds
from automl_meta.search.families import fit_exponent
from automl_meta.search.optimize import run_search
from automl_meta.search.space import load_space


def _ctx(df: pd.DataFrame, target: str, metric: str = "accuracy") -> EvalContext:
    ds = prepare_dataset(df, target)
    if ds.classes is not None:
        y = ds.y.map({c: i for i, c in enumerate(ds.classes)}).to_numpy()
    else:
        y = ds.y.to_numpy(dtype=float)
    return EvalContext(ds.X, y, ds.task, ds.schema, len(ds.classes or []), metric,
                       make_folds(y, ds.task, 0), load_space(), 0)


@pytest.mark.slow
def test_same_seed_same_leaderboard(mixed_frame):
    ctx = _ctx(mixed_frame, "label")
    a = run_search(ctx, n_trials=6, seed=3)
    b = run_search(ctx, n_trials=6, seed=3)
    cols = lambda r: (r.number, r.state, r.score, r.config, r.fold_scores)  # noqa: E731
    assert [cols(r) for r in a.records] == [cols(r) for r in b.records]
    assert len(a.records) == 6


@pytest.mark.slow
def test_enqueued_configs_run_first_with_origin(mixed_frame):
    ctx = _ctx(mixed_frame, "label")
    space = ctx.space
    warm = [(space.default_config("linear", "binary"), "neighbour:x"),
            (space.default_config("knn", "binary"), "portfolio")]
    res = run_search(ctx, n_trials=3, enqueue=warm)
    assert [r.origin for r in res.records] == ["neighbour:x", "portfolio", "tpe"]
    assert res.records[0].config == warm[0][0]


@pytest.mark.slow
def test_failing_configuration_is_recorded_and_search_goes_on(mixed_frame):
    ctx = _ctx(mixed_frame, "label")
    space = ctx.space
    # max_leaf_nodes=1 is outside the space: scikit-learn raises on it, deterministically
    bad = space.default_config("hgb", "binary") | {"hgb.max_leaf_nodes": 1}
    good = space.default_config("linear", "binary")
    res = run_search(ctx, n_trials=3, enqueue=[(bad, "test"), (good, "test")])
    assert [r.state for r in res.records[:2]] == ["FAIL", "COMPLETE"]
    assert "max_leaf_nodes" in res.records[0].error
    assert len(res.records) == 3 and res.best is not None


@pytest.mark.slow
def test_time_budget_kills_a_slow_configuration():
    """A configuration that would train for minutes is stopped; fit still ends in budget."""
    rng = np.random.default_rng(0)
    n, d = 20_000, 40
    X = pd.DataFrame(rng.normal(size=(n, d)), columns=[f"f{i}" for i in range(d)])
    y = (X["f0"] + rng.normal(size=n) > 0).astype(int)
    space = load_space()
    slow = space.default_config("rf", "binary") | {
        "rf.n_estimators": 300, "rf.max_features": 1.0, "rf.bootstrap": False}
    budget = 8.0
    t0 = time.monotonic()
    model = AutoML(time_budget=budget, warm_start_configs=[slow], seed=0).fit(X, y)
    elapsed = time.monotonic() - t0
    assert elapsed <= budget + max(5.0, 0.1 * budget)
    first = model.search_.records[0]
    assert first.state == "FAIL" and "stopped" in first.error
    # the bundled metabase stores the performance model: the learned warm start fits none
    assert model.warm_start_strategy_ == "learned"
    assert "performance model: the one stored in the metabase" in model.warm_start_log_
    assert model.predict(X.iloc[:3]).shape == (3,)


@pytest.mark.slow
def test_without_a_stored_model_a_short_budget_warm_starts_with_local(tmp_path):
    """A metabase without a usable performance model would have it fitted first: with under
    8 s left for the search the learned warm start gives way to "local", and says why."""
    import shutil

    from sklearn.datasets import load_breast_cancer

    from automl_meta.meta.metabase import read_manifest, write_manifest
    from automl_meta.resources import bundled_metabase_dir

    mb = tmp_path / "mb"
    shutil.copytree(bundled_metabase_dir(), mb)
    manifest = read_manifest(mb)
    del manifest["surrogates"]
    write_manifest(mb, manifest)
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    model = AutoML(time_budget=4, metabase=str(mb), seed=0, diagnostics=False).fit(X, y)
    assert model.warm_start_strategy_ == "local"
    assert any("instead of 'learned': the metabase stores no performance model" in line
               for line in model.warm_start_log_), model.warm_start_log_


@pytest.mark.slow
def test_family_defaults_start_while_the_warm_start_is_computed():
    """Two workers, a time budget, no history: the HGB defaults are the first trial, on one
    worker, while the rest of the warm start is computed; the other worker waits for the
    strategy's list instead of starting a sampled configuration."""
    from sklearn.datasets import load_breast_cancer

    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    model = AutoML(time_budget=6, n_jobs=2, seed=0, diagnostics=False, history=False
                   ).fit(X, y)
    origins = model.leaderboard_.sort_values("trial")["origin"].tolist()
    assert origins[0] == "default:hgb"
    assert origins[1] not in ("tpe", "default:hgb"), origins  # the strategy's first
    assert origins.count("default:hgb") == 1
    assert any("default:hgb started at once" in line for line in model.warm_start_log_)
    events = dict(model.timeline_)
    assert events["first trial started"] < events["warm start ready"]


def test_final_svm_with_a_single_example_class_still_gives_probabilities():
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=60), "b": rng.normal(size=60)})
    y = np.where(X["a"] > 0, "p", "n").astype(object)
    y[0] = "rare"  # too rare for a 3-fold probability calibration
    svm = load_space().default_config("svm", "multiclass")
    model = AutoML(n_trials=1, warm_start=0, warm_start_configs=[svm], isolation=False,
                   diagnostics=False).fit(X, y)
    assert model.refit_["config"]["family"] == "svm"
    proba = model.predict_proba(X.head(4))
    assert proba.shape == (4, 3) and np.allclose(proba.sum(axis=1), 1)


def test_budget_search_rows_grows_with_the_budget_within_bounds():
    assert budget_search_rows(500, 10, 2) == 500  # small data: every row
    assert budget_search_rows(100_000, None, 2) == 100_000  # no budget: no limit here
    sizes = [budget_search_rows(100_000, b, 2) for b in (1, 5, 10, 20, 30, 60)]
    assert sizes == sorted(sizes) and sizes[0] == MIN_BUDGET_SEARCH_ROWS
    assert sizes[2] < 5_000 < 20_000 <= sizes[-1]
    assert budget_search_rows(100_000, 10, 1) < budget_search_rows(100_000, 10, 2)


@pytest.mark.slow
def test_refit_estimate_follows_the_family():
    """A kernel SVM's fit grows at least with the square of the rows: its refit on ten
    times the rows is estimated at a hundred times a fold (times the safety factor), where
    a forest's is 10 ** REFIT_EXPONENT; histogram gradient boosting's grows less than
    linearly."""
    assert fit_exponent("svm") == 2.0
    assert fit_exponent("rf") == fit_exponent("nope") == REFIT_EXPONENT
    assert 0 < fit_exponent("hgb") < 1
    svm = refit_seconds(0.1, 1000, 10_000, safety=1.0, exponent=fit_exponent("svm"))
    rf = refit_seconds(0.1, 1000, 10_000, safety=1.0, exponent=fit_exponent("rf"))
    assert svm == pytest.approx(10.0) and rf == pytest.approx(0.1 * 10 ** REFIT_EXPONENT)


def test_short_budget_searches_on_an_affordable_subsample_and_says_so():
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=4_000, n_features=6, random_state=0)
    model = AutoML(time_budget=5, n_jobs=2, warm_start=0, diagnostics=False, seed=0)
    model.fit(X, y)
    summary = model.summary()
    assert summary["search_rows"] == budget_search_rows(4_000, 5, 2) < 4_000
    assert any(w.startswith(f"searching on {summary['search_rows']} of 4000 rows")
               for w in summary["warnings"])
    assert model.predict(X).shape == (4_000,)
    assert (model.predict(X) == y).mean() > 0.8


def test_importing_the_library_leaves_optuna_logging_alone():
    """A notebook's Optuna logging setting survives ``import automl_meta`` (run in a fresh
    interpreter, where nothing was imported before)."""
    import subprocess
    import sys

    code = (
        "import logging, optuna\n"
        "optuna.logging.set_verbosity(optuna.logging.DEBUG)\n"
        "before = (logging.getLogger('optuna').level, optuna.logging.get_verbosity())\n"
        "import automl_meta, automl_meta.search.optimize, automl_meta.search.study\n"
        "import automl_meta.estimator, automl_meta.cli\n"
        "after = (logging.getLogger('optuna').level, optuna.logging.get_verbosity())\n"
        "print(before == after == (logging.DEBUG, logging.DEBUG))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.strip() == "True", out.stderr


@pytest.mark.slow
def test_run_search_quiets_optuna_only_while_it_runs(mixed_frame):
    import logging

    import optuna

    ctx = _ctx(mixed_frame, "label")
    seen: list[int] = []
    before = optuna.logging.get_verbosity()
    try:
        optuna.logging.set_verbosity(optuna.logging.INFO)
        run_search(ctx, n_trials=2, seed=0, in_process=True,
                   on_trial=lambda record, result: seen.append(optuna.logging.get_verbosity()))
        assert seen == [optuna.logging.ERROR] * 2
        assert optuna.logging.get_verbosity() == optuna.logging.INFO
        assert logging.getLogger("optuna").level == logging.INFO
        # a host that wants even less keeps its setting during the search
        optuna.logging.set_verbosity(optuna.logging.CRITICAL)
        seen.clear()
        run_search(ctx, n_trials=1, seed=0, in_process=True,
                   on_trial=lambda record, result: seen.append(optuna.logging.get_verbosity()))
        assert seen == [optuna.logging.CRITICAL]
        assert optuna.logging.get_verbosity() == optuna.logging.CRITICAL
    finally:
        optuna.logging.set_verbosity(before)


def test_quiet_optuna_restores_after_overlapping_uses_in_threads():
    """Searches in two threads: the setting is restored when the last one ends, not when the
    first one does."""
    import threading

    import optuna

    from automl_meta.search.study import quiet_optuna

    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.INFO)
    entered, release = threading.Event(), threading.Event()
    during: list[int] = []

    def other() -> None:
        with quiet_optuna():
            entered.set()
            release.wait(30)

    try:
        t = threading.Thread(target=other)
        t.start()
        assert entered.wait(30)
        with quiet_optuna():
            pass  # this thread's search ends first
        during.append(optuna.logging.get_verbosity())
        release.set()
        t.join(30)
        assert during == [optuna.logging.ERROR]
        assert optuna.logging.get_verbosity() == optuna.logging.INFO
    finally:
        release.set()
        optuna.logging.set_verbosity(before)


def test_a_trial_whose_folds_cannot_end_in_time_is_stopped_after_a_fold():
    """At the pace of its first fold, a trial whose remaining folds would end past its
    time-out (or the search's end) is stopped then, not at the time-out; one that can end
    in time, allowing for faster folds, goes on."""
    from automl_meta.budget import FOLD_PACE_MARGIN
    from automl_meta.search.optimize import TrialFailed, _check_pace

    now = time.monotonic()
    start = now - 2.0  # one fold took 2 s: two more need ~4 s, at least 4 / margin
    need = 2 * 2.0 / FOLD_PACE_MARGIN
    with pytest.raises(TrialFailed, match="2 fold.* past its time-out"):
        _check_pace(start, 1, 3, now + need - 0.5, None)
    with pytest.raises(TrialFailed, match="past the search's end"):
        _check_pace(start, 1, 3, None, now + need - 0.5)
    _check_pace(start, 1, 3, now + need + 0.5, now + need + 0.5)
    _check_pace(start, 1, 3, None, None)
    _check_pace(start, 2, 2, now, now)  # no fold left


def test_boosting_does_not_diverge_on_a_class_of_a_handful_of_rows():
    """A class of 2 rows among 6 000 gives gradient boosting's leaves near-zero hessians;
    with almost no L2 and a large learning rate a scikit-learn HGB classifier then diverges
    (training accuracy near chance on separable data). The family raises the L2 to
    HGB_RARE_CLASS_L2 when the rarest class is that rare, and leaves it alone otherwise."""
    from automl_meta.search.families import (
        HGB_RARE_CLASS_L2,
        HGB_RARE_CLASS_SHARE,
        ModelInputs,
        get_family,
    )

    rng = np.random.default_rng(0)
    X = rng.integers(0, 4, size=(6_000, 8)).astype(float)
    y = ((X[:, 0] + 2 * X[:, 1] + (X[:, 2] > 1)) % 4).astype(int)
    y[rng.choice(len(y), 2, replace=False)] = 4
    p = {"learning_rate": 0.4, "max_iter": 78, "max_leaf_nodes": 83, "min_samples_leaf": 59,
         "l2_regularization": 1e-4, "max_features": 1.0}
    counts = np.bincount(y)
    inputs = ModelInputs(n_rows=len(y), n_inputs=8, categorical_mask=[True] * 8,
                         min_class_count=int(counts.min()))
    assert counts.min() < HGB_RARE_CLASS_SHARE * len(y)
    model = get_family("hgb").build(p, True, inputs)
    assert model.l2_regularization == HGB_RARE_CLASS_L2
    assert (model.fit(X, y).predict(X) == y).mean() > 0.99
    common = ModelInputs(n_rows=len(y), n_inputs=8, min_class_count=int(counts[:4].min()))
    assert get_family("hgb").build(p, True, common).l2_regularization == 1e-4
    assert get_family("hgb").build(p, False, inputs).l2_regularization == 1e-4


def test_partially_evaluated_trials_rank_by_their_folds():
    """Trials stopped for time or pruned keep the mean of the folds they completed; they
    rank best first, those that failed with an error or completed no fold are not among
    them, and the refit estimate falls back to the best of them only when no trial
    completed."""
    from automl_meta.search.optimize import SearchResult, TrialRecord

    def rec(n, state, folds, error=""):
        return TrialRecord(n, state, float(np.mean(folds)) if folds else None,
                           {"family": "hgb"}, "tpe", list(folds), fit_seconds=1.0,
                           error=error)

    res = SearchResult([rec(0, "FAIL", [0.80], "stopped: 2 fold(s) left at ~2.0 s"),
                        rec(1, "FAIL", [0.95], "ValueError: boom"),
                        rec(2, "PRUNED", [0.70, 0.72]),
                        rec(3, "FAIL", [], "stopped: time budget"),
                        rec(4, "FAIL", [0.90, 0.88], "stopped: trial time-out")],
                       "accuracy", True, 3, "time budget")
    assert [r.number for r in res.partial()] == [4, 0, 2]
    assert res.best is None and res.refit_basis().number == 4
    res.records.append(rec(5, "COMPLETE", [0.6, 0.6, 0.6]))
    assert res.refit_basis().number == 5
    lower = SearchResult(res.records[:5], "rmse", False, 3, "time budget")
    assert [r.number for r in lower.partial()] == [2, 0, 4]


@pytest.mark.slow
def test_with_no_complete_trial_the_final_model_is_the_best_partial_one(mixed_frame):
    """When no trial completed its folds, the final model is refitted from the best trial
    stopped after some folds (with its score on them), not a default linear model; a
    trial that failed with an error is not a candidate."""
    from dataclasses import replace

    from automl_meta.search.optimize import SearchResult
    from automl_meta.search.prepare import prepare_search
    from automl_meta.search.workers import Worker

    space = load_space()
    warm = [space.default_config(f, "binary") for f in ("knn", "rf", "hgb")]
    model = AutoML(n_trials=3, warm_start_configs=warm, warm_start=0, ensemble_size=1,
                   seed=0).fit(mixed_frame.drop(columns=["label"]), mixed_frame["label"])
    records = model.search_.records
    assert [r.family for r in records] == ["knn", "rf", "hgb"]
    stopped = [replace(r, state="FAIL", fold_scores=r.fold_scores[:1],
                       score=r.fold_scores[0], error="stopped: 2 fold(s) left")
               for r in records]
    # the trial with the best first fold failed with an error: not a candidate
    order = sorted(range(3), key=lambda i: -stopped[i].score)
    stopped[order[0]] = replace(stopped[order[0]], error="ValueError: boom")
    search = SearchResult(stopped, "accuracy", True, model.search_.n_folds, "time budget")
    assert search.best is None and search.partial()[0] is stopped[order[1]]
    full_ctx = prepare_search(model.dataset_, "accuracy", 0, model.max_search_rows, space,
                              n_folds=model.search_.n_folds).full_ctx
    worker = Worker(full_ctx, None, in_process=True)
    final, info = model._refit(search, [worker], model.dataset_, space, None, None)
    chosen = stopped[order[1]]
    assert info["config"] == chosen.config and info["trial"] == chosen.number
    assert info["reason"].startswith("best partially evaluated trial (1 of ")
    assert info["cv_score"] == pytest.approx(chosen.score)
    assert final.predict(mixed_frame.drop(columns=["label"]).iloc[:3]).shape == (3,)


@pytest.mark.slow
def test_a_refit_that_cannot_make_it_falls_back_to_the_hgb_defaults(mixed_frame):
    """When no trial completed and the best partially evaluated one would need longer than
    the time left to refit, it is skipped (and said so), and the final model is the HGB
    defaults fitted on all rows, not a linear model on a subsample."""
    from dataclasses import replace

    from automl_meta.search.optimize import SearchResult
    from automl_meta.search.prepare import prepare_search
    from automl_meta.search.workers import Worker

    space = load_space()
    model = AutoML(n_trials=1, warm_start_configs=[space.default_config("rf", "binary")],
                   warm_start=0, ensemble_size=1, seed=0
                   ).fit(mixed_frame.drop(columns=["label"]), mixed_frame["label"])
    rf = model.search_.records[0]
    slow = replace(rf, state="FAIL", fold_scores=rf.fold_scores[:1], score=rf.fold_scores[0],
                   fit_seconds=1000.0, error="stopped: 2 fold(s) left")
    search = SearchResult([slow], "accuracy", True, model.search_.n_folds, "time budget")
    full_ctx = prepare_search(model.dataset_, "accuracy", 0, model.max_search_rows, space,
                              n_folds=model.search_.n_folds).full_ctx
    worker = Worker(full_ctx, None, in_process=True)
    deadline = time.monotonic() + 5.0
    final, info = model._refit(search, [worker], model.dataset_, space, deadline, 5.0)
    assert info["config"] == space.default_config("hgb", "binary")
    assert info["reason"] == "fallback: hgb defaults (no trial completed)"
    assert info["trial"] is None and info["skipped"][0].startswith("rf: needs ~")
    X = mixed_frame.drop(columns=["label"])
    assert (final.predict(X) == mixed_frame["label"]).mean() > 0.8
    # the partially evaluated trial is the HGB defaults themselves, skipped on its estimate:
    # the fallback is still tried, on the time it has
    hgb = replace(slow, config=space.default_config("hgb", "binary"))
    search = SearchResult([hgb], "accuracy", True, model.search_.n_folds, "time budget")
    _, info = model._refit(search, [worker], model.dataset_, space, time.monotonic() + 5.0,
                           5.0)
    assert info["reason"] == "fallback: hgb defaults (no trial completed)"
    assert info["skipped"][0].startswith("hgb: needs ~")


@pytest.mark.slow
def test_observations_inform_the_sampler_and_are_not_trials(mixed_frame):
    """Scores measured before are finished trials of the study for the sampler, marked and
    with their origin, and not records of the search; a configuration outside the space is
    left out; a study that has trials already gets none."""
    import optuna

    from automl_meta.search.optimize import OBSERVED_ATTR

    ctx = _ctx(mixed_frame, "label")
    space = ctx.space
    seen = [(space.default_config("hgb", "binary"), 0.91, "history:a"),
            (space.default_config("rf", "binary"), 0.88, "history:a"),
            (space.default_config("hgb", "binary") | {"hgb.max_leaf_nodes": 1}, 0.99,
             "history:a"),
            (space.default_config("linear", "binary"), float("nan"), "history:a")]
    storage = optuna.storages.InMemoryStorage()
    res = run_search(ctx, n_trials=3, seed=0, storage=storage, study_name="s",
                     observations=seen)
    study = optuna.load_study(study_name="s", storage=storage)
    told = [t for t in study.trials if t.user_attrs.get(OBSERVED_ATTR)]
    assert [(t.params["family"], t.value) for t in told] == [("hgb", 0.91), ("rf", 0.88)]
    assert all(t.user_attrs["origin"] == "history:a" for t in told)
    assert len(res.records) == 3 and len(study.trials) == 5
    assert all(r.origin == "tpe" for r in res.records)
    # resumed: the observations are not told twice, the trials so far count
    again = run_search(ctx, n_trials=4, seed=0, storage=storage, study_name="s",
                       observations=seen)
    study = optuna.load_study(study_name="s", storage=storage)
    assert len([t for t in study.trials if t.user_attrs.get(OBSERVED_ATTR)]) == 2
    assert len(again.records) == 4
